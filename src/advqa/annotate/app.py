"""The rating web service: FastAPI app over a study's manifest and a :class:`RatingStore`.

A *set* is one reference image and up to five of its AEs; a reference with more
AEs is split evenly into several sets. Every rater rates every set. The split,
the order of the sets and the order of the AEs within a set are shuffled per
rater, deterministically from the rater's *name* (``rater-001``), so a rater who
comes back gets the same order, different raters get different orders, and the
order a rater saw can be recomputed from an export (:meth:`Study.order`). The page
shows the AEs of a set one at a time, each beside the set's reference.

Before the study, a rater's first session shows a few *training anchors*
(:func:`pick_anchors`, ITU-R BT.500 training): an identical pair (the bottom of the
scale), the most visibly perturbed AE (the top) and a middle one. Their scores go
to the store's ``training_ratings`` table, never to ``ratings``: no export sees them.

Endpoints (see docs/annotate.md): ``GET /api/session``, ``GET /api/next``,
``POST /api/ratings``, ``POST /api/training``,
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

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from advqa.annotate.store import (
    MAX_RESPONSE_MS,
    RatingStore,
    UnknownTokenError,
    valid_response_ms,
    valid_score,
)
from advqa.study.layout import StudyDir

#: Most AEs shown beside one reference (the paper's Figure 1).
SET_SIZE = 5

STATIC = Path(str(resources.files("advqa.annotate") / "static"))

#: Largest accepted ``POST /api/ratings`` body; a rating is under 100 bytes.
MAX_BODY = 64 * 1024
TOKEN_HEADER = "X-Advqa-Token"
#: The 403 for a token that belongs to no rater (a mistyped or foreign link).
UNKNOWN_TOKEN = ("unknown token: this link belongs to no rater of this study; open the "
                 "link you were given, or ask the study's organiser for a new one")
TOKEN_COOKIE = "advqa_token"
#: What a token may look like in an invitation link (tokens are URL-safe base64).
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: Host names a loopback server answers to by default (any port).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END_CHUNK = b"\x00\x00\x00\x00IEND\xaeB`\x82"
SHOWN_FILES = 10  # unreadable files named in a message before "... and N more"

#: Minutes of rating after which the page suggests a break (``--break-minutes``).
BREAK_MINUTES = 20.0
#: Similarity metrics of ``scores.parquet`` that rank the AEs for the training anchors,
#: in order of preference; the lowest similarity is the most visibly perturbed.
ANCHOR_METRICS = ("advdss", "ssim")

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


@dataclass(frozen=True)
class Anchor:
    """A training trial: ``kind`` ``identical`` (the reference beside itself, expected
    score 1), ``strongest`` (the most visibly perturbed AE, expected 5) or ``practice``
    (a middle AE, or any AE when nothing ranks them; no expected score)."""

    kind: str
    item_id: str
    expected: int | None


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
        table = layout.manifest()
        missing = [c for c in ("reference_path", "adversarial_path", "image")
                   if c not in table.columns]
        if missing:
            raise ValueError(f"{layout.manifest_path} lacks the column(s) {', '.join(missing)}")
        if table["id"].duplicated().any():
            raise ValueError(f"{layout.manifest_path} repeats item ids")
        self.items: dict[str, Item] = {}
        self.unreadable: dict[str, str] = {}
        self.skipped: list[str] = []
        sizes: dict[Path, tuple[int, int] | None] = {}
        for row in table[["id", "reference_path", "adversarial_path", "image"]].itertuples(
                index=False):
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
        ranking, ranked_by = visibility_ranking(layout, table, list(self.items))
        #: How the AEs were ranked for the anchors: a metric, ``strength`` or None.
        self.ranked_by: str | None = ranked_by
        self.anchors = pick_anchors(ranking, ranked=self.ranked_by is not None)

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

    def sets(self, rater: str) -> list[list[str]]:
        """The sets of the rater named ``rater``, in the order they are shown."""
        if rater not in self._sets:  # a benign race: both threads compute the same value
            self._sets[rater] = self._shuffle(rater)
        return self._sets[rater]

    def order(self, rater: str) -> list[str]:
        """Every item id, in the order the rater named ``rater`` is shown them."""
        return [item_id for ids in self.sets(rater) for item_id in ids]

    def anchor(self, kind: str) -> Anchor | None:
        return next((anchor for anchor in self.anchors if anchor.kind == kind), None)

    def _shuffle(self, rater: str) -> list[list[str]]:
        rng = random.Random(hashlib.sha256(f"advqa-order\0{rater}".encode()).digest())
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


def visibility_ranking(layout: StudyDir, manifest: pd.DataFrame, ids: list[str],
                       ) -> tuple[list[str], str | None]:
    """``ids`` from the least to the most visibly perturbed, and what ranked them.

    The first of :data:`ANCHOR_METRICS` that ``scores.parquet`` holds for some of the
    items (higher = more similar, so the lowest is the most visible), else the
    manifest's ``strength`` (the highest is the most visible); ties by id. Items the
    ranking has no value for are left out. Nothing to rank by: ``(sorted ids, None)``.
    """
    try:
        scores = layout.scores()
    except (OSError, ValueError):  # an unreadable scores file ranks nothing
        scores = None
    candidates = []
    if scores is not None and "id" in scores.columns:
        candidates += [(metric, scores, False) for metric in ANCHOR_METRICS
                       if metric in scores.columns]
    if "strength" in manifest.columns:
        candidates.append(("strength", manifest, True))
    for name, table, higher_is_more_visible in candidates:
        values = pd.to_numeric(table[name], errors="coerce").set_axis(
            table["id"].astype(str))
        values = values[~values.index.duplicated()].reindex(ids).dropna()
        if values.empty:
            continue
        visible = dict(zip(values.index, values if higher_is_more_visible else -values,
                           strict=True))
        return sorted(visible, key=lambda item_id: (visible[item_id], item_id)), name
    return sorted(ids), None


def pick_anchors(ranking: list[str], *, ranked: bool) -> list[Anchor]:
    """The training anchors, in the order shown, from ids ranked least to most visible.

    Ranked: the strongest AE's reference beside itself (``identical``, expected 1), the
    strongest AE (``strongest``, 5) and the middle one (``practice``) when it is another
    item. Unranked: ``identical`` and one ``practice`` AE (no AE is known to be strong).
    """
    if not ranking:
        return []
    strongest, middle = ranking[-1], ranking[(len(ranking) - 1) // 2]
    if not ranked:
        return [Anchor("identical", middle, 1), Anchor("practice", middle, None)]
    anchors = [Anchor("identical", strongest, 1), Anchor("strongest", strongest, 5)]
    if middle != strongest:
        anchors.append(Anchor("practice", middle, None))
    return anchors


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

def check_break_minutes(minutes) -> float:
    """``minutes`` as a float if it is a valid break interval (0 = no reminder)."""
    try:
        value = float(minutes)
    except (TypeError, ValueError):
        raise ValueError(f"break minutes is a number, not {minutes!r}") from None
    if not math.isfinite(value) or not 0 <= value <= 24 * 60:
        raise ValueError(f"break minutes is from 0 (no reminder) to 1440, not {minutes!r}")
    return value


def reference_of(item: Item) -> dict:
    return {"image_url": image_url("reference", item.item_id), "name": item.image,
            "width": item.reference_width, "height": item.reference_height}


def training_trial(items: Study, anchor: Anchor, done: bool) -> dict:
    """What the page shows for an anchor: the reference and the image to rate."""
    item = items.items[anchor.item_id]
    if anchor.kind == "identical":
        shown = {"image_url": image_url("reference", item.item_id),
                 "width": item.reference_width, "height": item.reference_height}
    else:
        shown = {"image_url": image_url("adversarial", item.item_id), "width": item.width,
                 "height": item.height}
    return {"anchor": anchor.kind, "expected": anchor.expected,
            "reference": reference_of(item), **shown, "done": done}


def create_app(study: Path, database, *, allowed_hosts: Iterable[str] | None = None,
               break_minutes: float = BREAK_MINUTES, training: bool = True,
               flicker: bool = True) -> FastAPI:
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
    break_minutes : float, default :data:`BREAK_MINUTES`
        The page suggests a break after this many minutes of rating; 0 never does.
    training : bool, default True
        Show the training anchors (:func:`pick_anchors`) before a rater's first item.
    flicker : bool, default True
        Offer the flicker view (the reference and the AE alternate in place).
    """
    minutes = check_break_minutes(break_minutes)
    items = Study(Path(study))
    store = database if isinstance(database, RatingStore) else RatingStore(database)
    owns_store = store is not database
    anchors = items.anchors if training else []

    @asynccontextmanager
    async def lifespan(app):
        yield
        if owns_store:
            store.close()

    app = FastAPI(title="advqa rating study", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.study = items
    app.state.store = store
    app.state.settings = {"break_minutes": minutes, "training": bool(anchors),
                          "flicker": bool(flicker)}
    hosts = list(LOOPBACK_HOSTS if allowed_hosts is None else allowed_hosts)
    parse_hosts(hosts)  # a malformed entry fails now, not at the first request
    app.add_middleware(HostGuard, allowed_hosts=hosts)

    def rater_of(request: Request) -> tuple[str | None, str | None, JSONResponse | None]:
        """``(token, rater name, None)``, or the error response for a bad token."""
        token, problem = request_token(request)
        if problem is not None:
            return None, None, problem
        name = store.rater(token)
        if name is None:
            return None, None, error(403, UNKNOWN_TOKEN)
        return token, name, None

    def progress(token: str) -> tuple[set[str], dict]:
        rated = store.rated_items(token) & items.items.keys()
        return rated, {"done": len(rated), "total": len(items.items)}

    @app.api_route("/api/session", methods=["GET", "HEAD"])
    def session(request: Request):
        token, name, problem = rater_of(request)
        if problem is not None:
            return problem
        trained = store.trained_anchors(token)
        return JSONResponse({
            "rater": name, **progress(token)[1], "settings": app.state.settings,
            "training": [training_trial(items, anchor, anchor.kind in trained)
                         for anchor in anchors]})

    @app.api_route("/api/next", methods=["GET", "HEAD"])
    def next_set(request: Request):
        token, name, problem = rater_of(request)
        if problem is not None:
            return problem
        rated, counts = progress(token)
        body = {"items": [], **counts}
        for ids in items.sets(name):
            if rated.issuperset(ids):
                continue
            body = {"reference": reference_of(items.items[ids[0]]),
                    "items": [{"item_id": item_id,
                               "image_url": image_url("adversarial", item_id),
                               "width": items.items[item_id].width,
                               "height": items.items[item_id].height,
                               "rated": item_id in rated} for item_id in ids],
                    **counts}
            break
        return JSONResponse(body)

    async def rated_body(request: Request) -> tuple[str | None, object, JSONResponse | None]:
        """``(token, parsed JSON body, None)`` of a POST, or the error response.

        The token first, then the size: a stranger's or an oversized body is never read.
        Answering before the body is read ends the connection (Connection: close).
        """
        close = {"Connection": "close"}
        token, problem = request_token(request)
        if problem is not None:
            problem.headers.update(close)
            return None, None, problem
        if await run_in_threadpool(store.rater, token) is None:
            return None, None, error(403, UNKNOWN_TOKEN, headers=close)
        try:
            raw = await read_body(request, MAX_BODY)
        except BodyTooLargeError:
            return None, None, error(413, f"a rating is a small JSON object; bodies over "
                                     f"{MAX_BODY} bytes are refused", headers=close)
        except ClientDisconnect:
            return None, None, error(400, "the client left before sending the whole body")
        # Parsed and validated by hand so every bad input gets a 4xx with a plain message.
        try:
            return token, json.loads(raw), None
        except RecursionError:
            return None, None, error(400, "the body is JSON nested too deeply")
        except (ValueError, UnicodeDecodeError):
            return None, None, error(400, "the body is not JSON")

    @app.post("/api/ratings", status_code=201)
    async def post_rating(request: Request):
        token, body, problem = await rated_body(request)
        if problem is not None:
            return problem
        return await run_in_threadpool(store_rating, token, body)

    @app.post("/api/training", status_code=201)
    async def post_training(request: Request):
        token, body, problem = await rated_body(request)
        if problem is not None:
            return problem
        return await run_in_threadpool(store_training, token, body)

    def check_body(body, key: str) -> JSONResponse | None:
        """A 422 for a body that is not ``{key: str, "score": 1..5, ...}``."""
        if not isinstance(body, dict):
            return error(422, f'the body is a JSON object {{"{key}": …, "score": …}}')
        if "token" in body:
            return error(422, f"send the token in the {TOKEN_HEADER} header, not in the body")
        missing = [name for name in (key, "score") if name not in body]
        if missing:
            return error(422, f"missing field(s): {', '.join(missing)}")
        if not isinstance(body[key], str):
            return error(422, f"{key} is a string")
        if not valid_score(body["score"]):
            return error(422, f"score is an integer from 1 to 5, not {body['score']!r}")
        return None

    def store_rating(token: str, body) -> JSONResponse:
        problem = check_body(body, "item_id")
        if problem is not None:
            return problem
        item_id, score = body["item_id"], body["score"]
        flicker_used, response_ms = body.get("flicker"), body.get("response_ms")
        if flicker_used is not None and type(flicker_used) is not bool:
            return error(422, f"flicker is true or false, not {flicker_used!r}")
        if not valid_response_ms(response_ms):
            return error(422, f"response_ms is an integer from 0 to {MAX_RESPONSE_MS}, "
                         f"not {response_ms!r}")
        if item_id not in items.items:
            return error(404, f"unknown item: {item_id!r}")
        try:
            store.rate(token, item_id, score, flicker=flicker_used, response_ms=response_ms)
        except UnknownTokenError:
            return error(403, UNKNOWN_TOKEN)
        return JSONResponse({"stored": True}, status_code=201)

    def store_training(token: str, body) -> JSONResponse:
        problem = check_body(body, "anchor")
        if problem is not None:
            return problem
        anchor = items.anchor(body["anchor"]) if anchors else None
        if anchor is None:
            known = ", ".join(a.kind for a in anchors) or "none: training is off"
            return error(404, f"unknown anchor {body['anchor']!r} (anchors: {known})")
        try:
            store.rate_training(token, anchor.kind, anchor.item_id, body["score"])
        except UnknownTokenError:
            return error(403, UNKNOWN_TOKEN)
        return JSONResponse({"stored": True, "training": True}, status_code=201)

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

def describe_settings(app: FastAPI) -> str:
    """One line saying how the page runs: training anchors, breaks, flicker."""
    study, settings = app.state.study, app.state.settings
    if settings["training"]:
        how = f"ranked by {study.ranked_by}" if study.ranked_by else "no ranking found"
        training = (f"training: {len(study.anchors)} anchors before a rater's first item "
                    f"({', '.join(a.kind for a in study.anchors)}; {how})")
    else:
        training = "training: off"
    minutes = settings["break_minutes"]
    pause = f"break reminder every {minutes:g} min" if minutes else "break reminder: off"
    return f"{training}; {pause}; flicker view: {'on' if settings['flicker'] else 'off'}"


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
    (default: loopback names on any port) and the break interval from
    ``ADVQA_BREAK_MINUTES`` (default :data:`BREAK_MINUTES`).
    """
    try:
        study, database = Path(os.environ["ADVQA_STUDY"]), os.environ["ADVQA_DB"]
    except KeyError as missing:
        raise RuntimeError(f"set the environment variable {missing.args[0]}") from None
    hosts = os.environ.get("ADVQA_ALLOWED_HOSTS")
    allowed = None if hosts is None else [h.strip() for h in hosts.split(",") if h.strip()]
    minutes = os.environ.get("ADVQA_BREAK_MINUTES", BREAK_MINUTES)
    return create_app(study, database, allowed_hosts=allowed, break_minutes=minutes)
