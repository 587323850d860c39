"""The rating web service: FastAPI app over a study's manifest and a :class:`RatingStore`.

A *set* is one reference image and up to five of its AEs; a reference with more
AEs is split evenly into several sets. Every rater rates every set. The split,
the order of the sets and the order of the AEs within a set are shuffled per
rater, deterministically from the rater's token, so a rater who comes back gets
the first set that still holds an item they have not rated.

Endpoints (see docs/annotate.md): ``GET /api/next``, ``POST /api/ratings``,
``GET /images/{reference,adversarial}/{item_id}``, ``GET /`` and ``/static``.
Images are looked up in the manifest by item id; no path is built from a request.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from advqa.annotate.store import RatingStore, UnknownTokenError, valid_score

#: Most AEs shown beside one reference (the paper's Figure 1).
SET_SIZE = 5

STATIC = Path(str(resources.files("advqa.annotate") / "static"))

#: Tokens travel in the page URL: never send them on in a Referer header; no caching.
PRIVATE_HEADERS = {
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


def image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def inside(path: Path, root: Path) -> Path:
    """``path`` resolved, if it is a file inside ``root``; otherwise ``FileNotFoundError``."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root) or not resolved.is_file():
        raise FileNotFoundError(f"not a file inside the study: {path}")
    return resolved


class Study:
    """The manifest's items, grouped by reference image."""

    def __init__(self, directory: Path):
        self.directory = Path(directory).resolve()
        manifest = self.directory / "manifest.parquet"
        if not manifest.is_file():
            raise FileNotFoundError(f"no manifest.parquet in {self.directory} "
                                    "(run `advqa build` first)")
        table = pd.read_parquet(manifest, columns=["id", "reference_path", "adversarial_path",
                                                   "image"])
        if table["id"].duplicated().any():
            raise ValueError(f"{manifest} repeats item ids")
        self.items: dict[str, Item] = {}
        sizes: dict[Path, tuple[int, int]] = {}
        for row in table.itertuples(index=False):
            reference = inside(self.directory / row.reference_path, self.directory)
            adversarial = inside(self.directory / row.adversarial_path, self.directory)
            if reference not in sizes:
                sizes[reference] = image_size(reference)
            width, height = image_size(adversarial)
            self.items[str(row.id)] = Item(str(row.id), str(row.image), reference, adversarial,
                                           width, height, *sizes[reference])
        groups: dict[Path, list[str]] = {}
        for item in self.items.values():
            groups.setdefault(item.reference, []).append(item.item_id)
        self.groups = [sorted(ids) for _, ids in sorted(groups.items())]
        self._sets: dict[str, list[list[str]]] = {}

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


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=PRIVATE_HEADERS)


def create_app(study: Path, database) -> FastAPI:
    """The rating service for ``study`` (a study directory) storing into ``database``.

    ``database`` is a SQLite path, a ``postgresql://`` URL or a :class:`RatingStore`.
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

    @app.get("/api/next")
    def next_set(token: str | None = None):
        if not token:
            return error(403, "missing token: open the link you were given (…/?token=…)")
        if store.rater(token) is None:
            return error(403, "unknown token")
        rated = store.rated_items(token) & items.items.keys()
        progress = {"done": len(rated), "total": len(items.items)}
        body = {"items": [], **progress}
        for ids in items.sets(token):
            if rated.issuperset(ids):
                continue
            first = items.items[ids[0]]
            body = {"reference": {"image_url": f"/images/reference/{first.item_id}",
                                  "name": first.image, "width": first.reference_width,
                                  "height": first.reference_height},
                    "items": [{"item_id": item_id,
                               "image_url": f"/images/adversarial/{item_id}",
                               "width": items.items[item_id].width,
                               "height": items.items[item_id].height} for item_id in ids],
                    **progress}
            break
        return JSONResponse(body, headers=PRIVATE_HEADERS)

    @app.post("/api/ratings", status_code=201)
    async def post_rating(request: Request):
        # Parsed and validated by hand so every bad input gets a 4xx with a plain message.
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return error(400, "the body is not JSON")
        return await run_in_threadpool(store_rating, body)

    def store_rating(body) -> JSONResponse:
        if not isinstance(body, dict):
            return error(422, 'the body is a JSON object {"token": …, "item_id": …, "score": …}')
        missing = [key for key in ("token", "item_id", "score") if key not in body]
        if missing:
            return error(422, f"missing field(s): {', '.join(missing)}")
        token, item_id, score = body["token"], body["item_id"], body["score"]
        if not isinstance(token, str) or not isinstance(item_id, str):
            return error(422, "token and item_id are strings")
        if not valid_score(score):
            return error(422, f"score is an integer from 1 to 5, not {score!r}")
        if store.rater(token) is None:
            return error(403, "unknown token")
        if item_id not in items.items:
            return error(404, f"unknown item: {item_id!r}")
        try:
            store.rate(token, item_id, score)
        except UnknownTokenError:
            return error(403, "unknown token")
        return JSONResponse({"stored": True}, status_code=201, headers=PRIVATE_HEADERS)

    def image(item_id: str, kind: str) -> FileResponse | JSONResponse:
        item = items.items.get(item_id)
        if item is None:
            return error(404, "no such image")
        try:
            path = inside(getattr(item, kind), items.directory)
        except FileNotFoundError:
            return error(404, "no such image")
        return FileResponse(path, media_type="image/png", headers=PRIVATE_HEADERS)

    @app.get("/images/reference/{item_id}")
    def reference_image(item_id: str):
        return image(item_id, "reference")

    @app.get("/images/adversarial/{item_id}")
    def adversarial_image(item_id: str):
        return image(item_id, "adversarial")

    @app.get("/")
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers=PRIVATE_HEADERS)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory advqa.annotate.app:app_from_environment``.

    Reads the study directory from ``ADVQA_STUDY`` and the database from ``ADVQA_DB``.
    """
    try:
        return create_app(Path(os.environ["ADVQA_STUDY"]), os.environ["ADVQA_DB"])
    except KeyError as missing:
        raise RuntimeError(f"set the environment variable {missing.args[0]}") from None
