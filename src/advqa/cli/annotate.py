"""``advqa annotate``: invite raters and serve the rating study in the browser."""

from __future__ import annotations

import importlib
import importlib.util
import ipaddress
import sys
import warnings

from advqa.cli.common import CommandError, add_study_argument, study_of

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "annotate", help="subjective study: invite raters, serve the rating page",
        description="Collect 1–5 opinion scores for a study's AEs in the browser: each rater "
        "sees the reference beside one AE at a time, at native device pixels, after a short "
        "training with anchor examples. See docs/annotate.md.")
    commands = parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND")
    parser.set_defaults(handler=lambda arguments: (parser.print_help(), 2)[1])
    add_invite(commands)
    add_serve(commands)
    # `advqa annotate export` lives in its own module, added when present.
    if importlib.util.find_spec("advqa.cli.annotate_export") is not None:
        importlib.import_module("advqa.cli.annotate_export").add_commands(commands)


def add_invite(commands) -> None:
    invite = commands.add_parser(
        "invite", help="create raters and print their private link tokens",
        description="Create N raters in the rating database (created if missing) and print "
        "one private token per line on stdout; the links to send are printed on stderr.")
    invite.add_argument("--db", required=True,
                        help="SQLite file (e.g. ratings.sqlite) or postgresql:// URL")
    invite.add_argument("--n", type=int, required=True, help="number of raters to create")
    invite.add_argument("--prefix", default="rater",
                        help="rater names are PREFIX-001, PREFIX-002, … (default: %(default)s)")
    invite.add_argument("--host", default="127.0.0.1", help="host for the printed links")
    invite.add_argument("--port", type=int, default=8000, help="port for the printed links")
    invite.set_defaults(handler=run_invite)


def add_serve(commands) -> None:
    serve = commands.add_parser(
        "serve", help="serve the rating page and API with uvicorn",
        description="Serve the study's rating page and API. Listens on loopback only unless "
        "--allow-remote is given: the study's images may be private, and anyone who can "
        "reach the port can fetch them.")
    add_study_argument(serve)
    serve.add_argument("--db", required=True,
                       help="SQLite file (e.g. ratings.sqlite) or postgresql:// URL")
    serve.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    serve.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    serve.add_argument("--allow-remote", action="store_true",
                       help="allow a non-loopback --host (exposes the study's images)")
    serve.add_argument("--allowed-host", action="append", default=[], metavar="HOST[:PORT]",
                       help="also answer requests for this Host header (the name raters "
                       "use, e.g. behind a reverse proxy); repeatable. Default: only "
                       "127.0.0.1, localhost, [::1] and --host, on --port")
    serve.add_argument("--break-minutes", type=float, default=20.0, metavar="N",
                       help="suggest a break after N minutes of rating; 0 never does "
                       "(default: %(default)s)")
    serve.add_argument("--no-training", dest="training", action="store_false",
                       help="skip the training anchors shown before a rater's first item")
    serve.add_argument("--no-flicker", dest="flicker", action="store_false",
                       help="do not offer the flicker view (reference and AE alternating)")
    serve.set_defaults(handler=run_serve)


def check_port(host: str, port: int) -> None:
    """Refuse a port outside 1–65535 or one another program holds, before uvicorn would
    fail with a traceback."""
    import socket

    if not 1 <= port <= 65535:
        raise CommandError(f"--port must be 1–65535, got {port}")
    address = host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, port))
        except OSError as error:
            raise CommandError(f"cannot listen on {host}:{port}: {error.strerror or error}; "
                               "choose another --port") from error


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def link(host: str, port: int, token: str) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/?token={token}"


def run_invite(arguments) -> int:
    from advqa.annotate.store import RatingStore

    if arguments.n < 1:
        raise CommandError("--n must be 1 or more")
    with RatingStore(arguments.db) as store:
        tokens = store.invite(arguments.n, prefix=arguments.prefix)
    for token in tokens:
        print(token)
    print(f"created {len(tokens)} rater(s) in {arguments.db}; send each rater their link:",
          file=sys.stderr)
    for token in tokens:
        print(f"  {link(arguments.host, arguments.port, token)}", file=sys.stderr)
    return 0


def run_serve(arguments) -> int:
    if not is_loopback(arguments.host) and not arguments.allow_remote:
        raise CommandError(
            f"refusing to listen on {arguments.host}: the study's images may be private and "
            "anyone reaching that address could fetch them. Use a loopback host "
            "(127.0.0.1) behind a reverse proxy, or pass --allow-remote.")
    study = study_of(arguments)
    if not study.is_dir():
        raise CommandError(f"not a directory: {study}")
    check_port(arguments.host, arguments.port)
    from advqa.annotate.app import allowed_hosts_for, create_app, serve

    hosts = allowed_hosts_for(arguments.host, arguments.port, arguments.allowed_host)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the skipped images are listed below
            app = create_app(study, arguments.db, allowed_hosts=hosts,
                             break_minutes=arguments.break_minutes,
                             training=arguments.training, flicker=arguments.flicker)
    except ValueError as error:
        raise CommandError(str(error)) from error
    print_serving(app, arguments, hosts)
    serve(app, host=arguments.host, port=arguments.port)
    return 0


def print_serving(app, arguments, hosts: list[str]) -> None:
    from advqa.annotate.app import describe_settings

    study = app.state.study
    if study.skipped:
        print(f"skipped {len(study.skipped)} item(s) whose image cannot be read; "
              f"unreadable files:", file=sys.stderr)
        for name, reason in study.unreadable.items():
            print(f"  {name}: {reason}", file=sys.stderr)
    print(f"serving {len(study.items)} item(s) from {study_of(arguments)} on "
          f"{link(arguments.host, arguments.port, 'TOKEN')} (Host headers answered: "
          f"{', '.join(hosts)})", file=sys.stderr)
    print(describe_settings(app), file=sys.stderr)
