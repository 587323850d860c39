"""The ``advqa`` command."""

from __future__ import annotations

import argparse
import sys
import warnings

import advqa
from advqa.cli import (
    annotate,
    attack,
    benchmark,
    build,
    detect,
    evaluate,
    gate,
    metrics,
    models,
    quality,
    report,
    reproduce,
    run,
    score,
    train,
)
from advqa.cli.common import EXIT_CODES, CommandError

SUBCOMMANDS = (models, metrics, train, attack, build, score, evaluate, report, run, benchmark,
               detect, gate, annotate, quality, reproduce)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="advqa", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Make adversarial examples and judge them the way people see them.",
        epilog=EXIT_CODES + "\n\nshared options (the same on every command that takes them):\n"
        "  --study DIR          the study a command reads or writes\n"
        "  --no-progress        no progress bars or messages\n"
        "  --device DEVICE      torch device; default: cuda if present\n"
        "  --model NAME         a registered classifier, or module:Callable returning one\n"
        "  --metrics NAMES      registered metrics, pyiqa:<name>, or module:Class")
    top.add_argument("--version", action="version", version=f"advqa {advqa.__version__}")
    subparsers = top.add_subparsers(title="commands", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return top


def show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    if not hasattr(arguments, "handler"):
        parser().print_help()
        return 2
    saved, warnings.showwarning = warnings.showwarning, show_warning
    from advqa.attacks import UnknownAttackError
    from advqa.models import MissingWeightsError, UnknownModelError
    from advqa.quality import UnknownMetricError
    from advqa.study.store import StudyLockedError

    try:
        return arguments.handler(arguments)
    except (CommandError, UnknownAttackError, UnknownModelError, UnknownMetricError,
            MissingWeightsError, ImportError, StudyLockedError,
            FileNotFoundError, ValueError) as error:
        print(f"advqa: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("advqa: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = saved  # main() may be called from Python: leave no trace


if __name__ == "__main__":
    sys.exit(main())
