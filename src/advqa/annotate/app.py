"""The rating web service: FastAPI app over a study's manifest and a :class:`RatingStore`.

A *set* is one reference image and up to five of its AEs; a reference with more
AEs is split evenly into several sets. Every rater rates every set. The split,
the order of the sets and the order of the AEs within a set are shuffled per
rater, deterministically from the rater's token, so a rater who comes back gets
the first set that still holds an item they have not rated.

Endpoints (see docs/annotate.md): ``GET /api/next``, ``POST /api/ratings``,
``GET /images/{reference,adversarial}/{item_id}``, ``GET /`` and ``/static``.
Images are looked up in the manifest by item id; no path is built from a request.

Tokens never travel in URLs after the invitation link: ``GET /?token=T`` stores the
token in an HttpOnly, SameSite=Strict cookie and redirects to ``/``; the API takes the
token from the ``X-Advqa-Token`` header or that cookie, and refuses it in a query
string. The token is checked before a request body is read, and bodies over
:data:`MAX_BODY` bytes are refused (413) before they are read whole. Every response
passes a Host check (DNS rebinding) and carries a restrictive Content-Security-Policy.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import random
import re
import warnings
from collections.abc import Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from advqa.annotate.store import RatingStore, UnknownTokenError, valid_score
from advqa.study.layout import StudyDir

#: Most AEs shown beside one reference (the paper's Figure 1).
SET_SIZE = 5

STATIC = Path(str(resources.files("advqa.annotate") / "static"))

#: Largest accepted ``POST /api/ratings`` body; a rating is under 100 bytes.
MAX_BODY = 64 * 1024
TOKEN_HEADER = "X-Advqa-Token"
TOKEN_COOKIE = "advqa_token"
#: What a token may look like in an invitation link (tokens are URL-safe base64).
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: Host names a loopback server answers to by default (any port).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END_CHUNK = b"\x00\x00\x00\x00IEND\xaeB`\x82"
SHOWN_FILES = 10  # unreadable files named in a message before "... and N more"

#: Sent with every response. Nothing is cached or leaks a Referer; the page may load
#: scripts, styles and images from this server only, and may not be framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


@dataclass(frozen=True)
class Item:
    item_id: str
    image: str
    reference: Path
    adversarial: Path
    width: int
    height: int
    reference_width: int
    reference_height: int


class UnreadableImageError(ValueError):
    """A study image that cannot be served: missing, not a PNG, truncated or corrupt."""


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of a PNG that decodes completely; UnreadableImageError otherwise.

    Decoding the whole file at start-up catches a truncated or corrupt image before a
    rater sees it broken. The end chunk is checked too, because Pillow pads truncated
    data silently wherever ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` has been set.
    """
    try:
        data = path.read_bytes()
    except OSError as problem:
        raise UnreadableImageError(problem.strerror or type(problem).__name__) from None
    if not data.startswith(PNG_SIGNATURE):
        raise UnreadableImageError("not a PNG file (the service sends image/png)")
    if PNG_END_CHUNK not in data:
        raise UnreadableImageError("truncated PNG (no end chunk)")
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.load()
            return image.size
    # Pillow reports corrupt data through many exception types (OSError, SyntaxError,
    # EOFError, zlib errors, DecompressionBombError, ...).
    except Exception as problem:
        raise UnreadableImageError(str(problem) or type(problem).__name__) from None


def inside(path: Path, root: Path) -> Path:
    """``path`` resolved, if it is a file inside ``root``; otherwise ``FileNotFoundError``."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root) or not resolved.is_file():
        raise FileNotFoundError(f"not a file inside the study: {path}")
    return resolved


def within(path: Path, root: Path) -> Path:
    """``path`` resolved if it lies under ``root`` (existing or not); else an error."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise FileNotFoundError(f"not a file inside the study: {path}")
    return resolved


class Study:
    """The manifest's items whose images can be read, grouped by reference image.

    Items whose reference or AE image is missing or cannot be decoded (e.g. a
    truncated PNG) are skipped with a warning: ``unreadable`` maps each such file
    (relative to the study) to the reason, ``skipped`` lists the item ids left out.
    A manifest path outside the study directory is an error, as is a study with no
    readable item.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory).resolve()
        layout = StudyDir(self.directory)
        table = layout.manifest(columns=["id", "reference_path", "adversarial_path", "image"])
        if table["id"].duplicated().any():
            raise ValueError(f"{layout.manifest_path} repeats item ids")
        self.items: dict[str, Item] = {}
        self.unreadable: dict[str, str] = {}
        self.skipped: list[str] = []
        sizes: dict[Path, tuple[int, int] | None] = {}
        for row in table.itertuples(index=False):
            reference = within(layout.resolve(row.reference_path), self.directory)
            adversarial = within(layout.resolve(row.adversarial_path), self.directory)
            found = [self._size(path, sizes) for path in (reference, adversarial)]
            if None in found:
                self.skipped.append(str(row.id))
                continue
            (reference_width, reference_height), (width, height) = found
            self.items[str(row.id)] = Item(str(row.id), str(row.image), reference,
                                           adversarial, width, height, reference_width,
                                           reference_height)
        self._check_readable(len(table))
        groups: dict[Path, list[str]] = {}
        for item in self.items.values():
            groups.setdefault(item.reference, []).append(item.item_id)
        self.groups = [sorted(ids) for _, ids in sorted(groups.items())]
        self._sets: dict[str, list[list[str]]] = {}

    def _size(self, path: Path, sizes: dict) -> tuple[int, int] | None:
        """The image's size, or None (and the reason noted) if it cannot be served."""
        if path not in sizes:
            try:
                sizes[path] = image_size(path)
            except UnreadableImageError as problem:
                sizes[path] = None
                self.unreadable[self._name(path)] = str(problem)
        return sizes[path]

    def _name(self, path: Path) -> str:
        return str(path.relative_to(self.directory))

    def _check_readable(self, total: int) -> None:
        if not self.skipped:
            return
        files = "; ".join(f"{name}: {reason}" for name, reason in
                          list(self.unreadable.items())[:SHOWN_FILES])
        more = (f" ... and {len(self.unreadable) - SHOWN_FILES} more"
                if len(self.unreadable) > SHOWN_FILES else "")
        if not self.items:
            raise ValueError(f"no item of {self.directory} can be served: every one of "
                             f"the {total} items has an unreadable image ({files}{more})")
        warnings.warn(f"skipped {len(self.skipped)} of {total} items whose image cannot be "
                      f"read: {files}{more}", stacklevel=3)

    def sets(self, token: str) -> list[list[str]]:
        """This rater's sets, in the order they are shown (call only for known tokens)."""
        if token not in self._sets:  # a benign race: both threads compute the same value
            self._sets[token] = self._shuffle(token)
        return self._sets[token]

    def _shuffle(self, token: str) -> list[list[str]]:
        rng = random.Random(hashlib.sha256(token.encode()).digest())
        sets = []
        for group in self.groups:
            ids = list(group)
            rng.shuffle(ids)
            count = math.ceil(len(ids) / SET_SIZE)
            size, extra = divmod(len(ids), count)
            start = 0
            for index in range(count):
                stop = start + size + (index < extra)
                sets.append(ids[start:stop])
                start = stop
        rng.shuffle(sets)
        return sets


# -- HTTP plumbing ----------------------------------------------------------------------

def error(status: int, message: str, *, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def _host_port(text: str) -> tuple[str, int | None] | None:
    """``("name", port)`` of a Host header or allowed-host entry; None if malformed."""
    try:
        parts = urlsplit(f"//{text.strip()}")
        name, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not name or parts.path or parts.query or parts.username is not None:
        return None
    return name.lower().rstrip("."), port


def parse_hosts(entries: Iterable[str]) -> set[tuple[str, int | None]]:
    """``{(name, port or None)}`` of allowed-host entries; ValueError for a malformed one."""
    allowed = set()
    for entry in entries:
        parsed = _host_port(entry) if isinstance(entry, str) else None
        if parsed is None:
            raise ValueError(f"not a host or host:port: {entry!r}")
        allowed.add(parsed)
    return allowed


class HostGuard:
    """ASGI middleware: a 400 for any Host not allowed, security headers on every answer.

    Parameters
    ----------
    app : ASGI application
    allowed_hosts : iterable of str
        ``name`` (any port) or ``name:port`` entries, e.g. ``127.0.0.1:8000``; a request
        without a port in its Host matches ``name`` and ``name:80``.
    """

    def __init__(self, app, allowed_hosts: Iterable[str]):
        self.app = app
        self.allowed = parse_hosts(allowed_hosts)

    def allows(self, host: str | None) -> bool:
        parsed = _host_port(host) if host else None
        if parsed is None:
            return False
        name, port = parsed
        return bool({(name, None), (name, port), (name, 80 if port is None else port)}
                    & self.allowed)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_secured(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", []))
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        host = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1")
        if not self.allows(host):
            # DNS rebinding: a foreign name that resolves to this machine.
            response = error(400, f"this server does not answer to the host {host!r}",
                             headers={"Connection": "close"})
            return await response(scope, receive, send_secured)
        return await self.app(scope, receive, send_secured)


def request_token(request: Request) -> tuple[str | None, JSONResponse | None]:
    """The rater's token from the header or cookie, or the error response to send."""
    if "token" in request.query_params:
        return None, error(400, f"send the token in the {TOKEN_HEADER} header or the "
                           "cookie that the rating page sets, never in a URL")
    token = request.headers.get(TOKEN_HEADER) or request.cookies.get(TOKEN_COOKIE)
    if not token:
        return None, error(403, "missing token: open the link you were given (…/?token=…)")
    return token, None


class BodyTooLargeError(Exception):
    """The request body exceeds the limit (raised before it is read whole)."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or BodyTooLargeError as soon as it is known to exceed ``limit``."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise BodyTooLargeError
    body = bytearray()
    # A chunked body has no length: count what arrives and stop at the limit.
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLargeError
    return bytes(body)


def image_url(kind: str, item_id: str) -> str:
    # Ids are data, not URL syntax: '#', '?', '/' or '\\' must not cut the path short.
    return f"/images/{kind}/{quote(item_id, safe='')}"


# -- the app ----------------------------------------------------------------------------

def create_app(study: Path, database, *, allowed_hosts: Iterable[str] | None = None,
               ) -> FastAPI:
    """The rating service for ``study`` (a study directory) storing into ``database``.

    Parameters
    ----------
    study : Path
        Study directory with ``manifest.parquet``; items with unreadable images are
        skipped (``app.state.study.unreadable`` lists the files).
    database : str, Path or RatingStore
        A SQLite path, a ``postgresql://`` URL or a :class:`RatingStore`.
    allowed_hosts : iterable of str, optional
        Host headers answered (``name`` or ``name:port``); others get 400. Default:
        127.0.0.1, localhost and [::1] on any port.
    """
    items = Study(Path(study))
    store = database if isinstance(database, RatingStore) else RatingStore(database)
    owns_store = store is not database

    @asynccontextmanager
    async def lifespan(app):
        yield
        if owns_store:
            store.close()

    app = FastAPI(title="advqa rating study", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.study = items
    app.state.store = store
    hosts = list(LOOPBACK_HOSTS if allowed_hosts is None else allowed_hosts)
    parse_hosts(hosts)  # a malformed entry fails now, not at the first request
    app.add_middleware(HostGuard, allowed_hosts=hosts)

    @app.api_route("/api/next", methods=["GET", "HEAD"])
    def next_set(request: Request):
        token, problem = request_token(request)
        if problem is not None:
            return problem
        if store.rater(token) is None:
            return error(403, "unknown token")
        rated = store.rated_items(token) & items.items.keys()
        progress = {"done": len(rated), "total": len(items.items)}
        body = {"items": [], **progress}
        for ids in items.sets(token):
            if rated.issuperset(ids):
                continue
            first = items.items[ids[0]]
            body = {"reference": {"image_url": image_url("reference", first.item_id),
                                  "name": first.image, "width": first.reference_width,
                                  "height": first.reference_height},
                    "items": [{"item_id": item_id,
                               "image_url": image_url("adversarial", item_id),
                               "width": items.items[item_id].width,
                               "height": items.items[item_id].height} for item_id in ids],
                    **progress}
            break
        return JSONResponse(body)

    @app.post("/api/ratings", status_code=201)
    async def post_rating(request: Request):
        # The token first, then the size: a stranger's or an oversized body is never read.
        # Answering before the body is read ends the connection (Connection: close).
        close = {"Connection": "close"}
        token, problem = request_token(request)
        if problem is not None:
            problem.headers.update(close)
            return problem
        if await run_in_threadpool(store.rater, token) is None:
            return error(403, "unknown token", headers=close)
        try:
            raw = await read_body(request, MAX_BODY)
        except BodyTooLargeError:
            return error(413, f"a rating is a small JSON object; bodies over {MAX_BODY} "
                         "bytes are refused", headers=close)
        except ClientDisconnect:
            return error(400, "the client left before sending the whole body")
        # Parsed and validated by hand so every bad input gets a 4xx with a plain message.
        try:
            body = json.loads(raw)
        except RecursionError:
            return error(400, "the body is JSON nested too deeply")
        except (ValueError, UnicodeDecodeError):
            return error(400, "the body is not JSON")
        return await run_in_threadpool(store_rating, token, body)

    def store_rating(token: str, body) -> JSONResponse:
        if not isinstance(body, dict):
            return error(422, 'the body is a JSON object {"item_id": …, "score": …}')
        if "token" in body:
            return error(422, f"send the token in the {TOKEN_HEADER} header, not in the body")
        missing = [key for key in ("item_id", "score") if key not in body]
        if missing:
            return error(422, f"missing field(s): {', '.join(missing)}")
        item_id, score = body["item_id"], body["score"]
        if not isinstance(item_id, str):
            return error(422, "item_id is a string")
        if not valid_score(score):
            return error(422, f"score is an integer from 1 to 5, not {score!r}")
        if item_id not in items.items:
            return error(404, f"unknown item: {item_id!r}")
        try:
            store.rate(token, item_id, score)
        except UnknownTokenError:
            return error(403, "unknown token")
        return JSONResponse({"stored": True}, status_code=201)

    def image(item_id: str, kind: str) -> FileResponse | JSONResponse:
        item = items.items.get(item_id)
        if item is None:
            return error(404, "no such image")
        try:
            path = inside(getattr(item, kind), items.directory)
        except FileNotFoundError:
            return error(404, "no such image")
        return FileResponse(path, media_type="image/png")

    # ":path" so that an id holding an encoded "/" still reaches the manifest lookup.
    @app.api_route("/images/reference/{item_id:path}", methods=["GET", "HEAD"])
    def reference_image(item_id: str):
        return image(item_id, "reference")

    @app.api_route("/images/adversarial/{item_id:path}", methods=["GET", "HEAD"])
    def adversarial_image(item_id: str):
        return image(item_id, "adversarial")

    @app.api_route("/", methods=["GET", "HEAD"])
    def index(request: Request):
        token = request.query_params.get("token")
        if token is None:
            return FileResponse(STATIC / "index.html", media_type="text/html")
        # The invitation link: keep the token in a cookie, out of every later URL.
        response = RedirectResponse("/", status_code=303)
        if TOKEN_PATTERN.fullmatch(token):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        else:
            response.delete_cookie(TOKEN_COOKIE, httponly=True, samesite="strict")
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        # Keeps the exception's headers, e.g. the Allow header of a 405.
        return error(exc.status_code, str(exc.detail), headers=exc.headers)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


# -- serving ----------------------------------------------------------------------------

#: ``token=<value>`` in a logged URL (an invitation link, or an old client's API call).
TOKEN_IN_URL = re.compile(r"(token=)[^&\s\"'#]*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every ``token=<value>`` replaced by ``token=[redacted]``."""
    return TOKEN_IN_URL.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    """A logging filter that removes tokens from log records (uvicorn's access log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg
                                for arg in record.args)
        return True


def allowed_hosts_for(host: str, port: int, extra: Iterable[str] = ()) -> list[str]:
    """Host headers a server bound to ``host:port`` answers: loopback names and ``extra``."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return [f"{name}:{port}" for name in dict.fromkeys((*LOOPBACK_HOSTS, shown))] + list(extra)


def serve(app: FastAPI, *, host: str, port: int) -> None:
    """Run ``app`` with uvicorn (one worker), its logs free of tokens."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, workers=1)  # configures logging
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(item, RedactTokens) for item in logger.filters):
            logger.addFilter(RedactTokens())
    uvicorn.Server(config).run()


def app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory advqa.annotate.app:app_from_environment``.

    Reads the study directory from ``ADVQA_STUDY``, the database from ``ADVQA_DB`` and,
    optionally, comma-separated allowed Host headers from ``ADVQA_ALLOWED_HOSTS``
    (default: loopback names on any port).
    """
    try:
        study, database = Path(os.environ["ADVQA_STUDY"]), os.environ["ADVQA_DB"]
    except KeyError as missing:
        raise RuntimeError(f"set the environment variable {missing.args[0]}") from None
    hosts = os.environ.get("ADVQA_ALLOWED_HOSTS")
    allowed = None if hosts is None else [h.strip() for h in hosts.split(",") if h.strip()]
    return create_app(study, database, allowed_hosts=allowed)
