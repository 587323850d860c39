"""Where opinion scores live: SQLite (default) or PostgreSQL.

Every rating is one transaction, committed before the server answers, so a
rating acknowledged with a 2xx survives ``kill -9`` of the server. SQLite runs
in WAL mode with ``synchronous=FULL`` (the WAL is fsynced at every commit).
A rater rates an item at most once: ``UNIQUE(rater, item_id)``, and rating it
again updates the stored score and its time.

Raters are identified by private, random link tokens (``secrets``); the
ratings table holds the rater's *name*, so an export never reveals a token.

Two more tables sit beside ``ratings`` and never change it (an export reads
``ratings`` alone, so neither reaches a MOS):

* ``training_ratings``: the scores a rater gave the training anchors shown before
  the study (one per rater and anchor), kept to check that the rater understood
  the scale;
* ``rating_context``: how a stored score was given, when the client says so:
  whether the flicker view was used and the time from both images on screen to
  the score (one row per rating, replaced with it, removed when a client rates
  again without saying).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

#: Bytes of randomness per token (192 bits), encoded as 32 URL-safe characters.
TOKEN_BYTES = 24

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS raters (
        token TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS ratings (
        rater TEXT NOT NULL REFERENCES raters(name),
        item_id TEXT NOT NULL,
        score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
        updated TEXT NOT NULL,
        UNIQUE (rater, item_id))""",
    """CREATE TABLE IF NOT EXISTS training_ratings (
        rater TEXT NOT NULL REFERENCES raters(name),
        anchor TEXT NOT NULL,
        item_id TEXT NOT NULL,
        score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
        updated TEXT NOT NULL,
        UNIQUE (rater, anchor))""",
    """CREATE TABLE IF NOT EXISTS rating_context (
        rater TEXT NOT NULL REFERENCES raters(name),
        item_id TEXT NOT NULL,
        flicker INTEGER,
        response_ms INTEGER,
        updated TEXT NOT NULL,
        UNIQUE (rater, item_id))""",
)

UPSERT = """INSERT INTO ratings (rater, item_id, score, updated)
    SELECT name, ?, ?, ? FROM raters WHERE token = ?
    ON CONFLICT (rater, item_id) DO UPDATE SET score = excluded.score, updated = excluded.updated"""

UPSERT_TRAINING = """INSERT INTO training_ratings (rater, anchor, item_id, score, updated)
    SELECT name, ?, ?, ?, ? FROM raters WHERE token = ?
    ON CONFLICT (rater, anchor) DO UPDATE SET item_id = excluded.item_id,
        score = excluded.score, updated = excluded.updated"""

UPSERT_CONTEXT = """INSERT INTO rating_context (rater, item_id, flicker, response_ms, updated)
    SELECT name, ?, ?, ?, ? FROM raters WHERE token = ?
    ON CONFLICT (rater, item_id) DO UPDATE SET flicker = excluded.flicker,
        response_ms = excluded.response_ms, updated = excluded.updated"""

DELETE_CONTEXT = """DELETE FROM rating_context WHERE item_id = ?
    AND rater = (SELECT name FROM raters WHERE token = ?)"""

#: Longest response time stored (a day, in ms); anything longer is not a response time.
MAX_RESPONSE_MS = 24 * 3600 * 1000


class UnknownTokenError(LookupError):
    """The token belongs to no invited rater."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def valid_score(score) -> bool:
    """An integer from 1 to 5; booleans, floats and strings are not scores."""
    return type(score) is int and 1 <= score <= 5


def valid_response_ms(value) -> bool:
    """None, or an integer number of milliseconds from 0 to :data:`MAX_RESPONSE_MS`."""
    return value is None or (type(value) is int and 0 <= value <= MAX_RESPONSE_MS)


class RatingStore:
    """Raters and their scores, safe to share between threads.

    Parameters
    ----------
    database : str or os.PathLike
        A SQLite file (created if missing) or a ``postgresql://`` URL (needs
        ``pip install "psycopg[binary]"``).

    Each thread gets its own connection; ``close()`` closes them all.
    """

    def __init__(self, database: str | os.PathLike):
        text = os.fspath(database)
        self.postgres = text.startswith(("postgresql://", "postgres://"))
        if self.postgres:
            try:
                import psycopg
            except ImportError as error:
                raise ImportError(
                    "a PostgreSQL database needs psycopg: pip install \"psycopg[binary]\""
                ) from error
            self._psycopg = psycopg
        else:
            path = Path(text)
            if not path.parent.is_dir():
                raise FileNotFoundError(f"no such directory for the database: {path.parent}")
        self.database = text
        self._local = threading.local()
        self._connections: list = []
        self._lock = threading.Lock()
        self._closed = False
        with self._transaction() as cursor:
            for statement in SCHEMA:
                cursor.execute(statement)

    # -- connections -------------------------------------------------------

    def _connect(self):
        if self.postgres:
            return self._psycopg.connect(self.database, autocommit=True)
        connection = sqlite3.connect(self.database, timeout=60, isolation_level=None,
                                     check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA busy_timeout=60000")
        return connection

    def _connection(self):
        if self._closed:
            raise RuntimeError("the rating store is closed")
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.postgres else statement

    def _transaction(self):
        return _Transaction(self)

    def _query(self, statement: str, parameters=()) -> list[tuple]:
        cursor = self._connection().cursor()
        try:
            cursor.execute(self._sql(statement), parameters)
            return cursor.fetchall()
        finally:
            cursor.close()

    # -- raters ------------------------------------------------------------

    def invite(self, n: int, *, prefix: str = "rater") -> list[str]:
        """Create ``n`` raters named ``<prefix>-NNN``; return their private tokens."""
        if n < 1:
            raise ValueError("invite at least one rater")
        if not prefix or not prefix.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"a rater prefix is letters, digits, - and _: {prefix!r}")
        tokens = [secrets.token_urlsafe(TOKEN_BYTES) for _ in range(n)]
        with self._transaction() as cursor:
            cursor.execute(self._sql("SELECT name FROM raters WHERE name LIKE ?"),
                           (f"{prefix}-%",))
            taken = {row[0] for row in cursor.fetchall()}
            number = 0
            for token in tokens:
                number += 1
                while f"{prefix}-{number:03d}" in taken:
                    number += 1
                cursor.execute(self._sql(
                    "INSERT INTO raters (token, name, created) VALUES (?, ?, ?)"),
                    (token, f"{prefix}-{number:03d}", now()))
        return tokens

    def rater(self, token: str) -> str | None:
        """The rater's name for a token, or ``None`` if nobody was invited with it."""
        if not isinstance(token, str) or not token:
            return None
        rows = self._query("SELECT name FROM raters WHERE token = ?", (token,))
        return rows[0][0] if rows else None

    def raters(self) -> pd.DataFrame:
        """Invited raters: ``name, created`` (no tokens)."""
        rows = self._query("SELECT name, created FROM raters ORDER BY name")
        return pd.DataFrame(rows, columns=["name", "created"])

    # -- ratings -----------------------------------------------------------

    def rate(self, token: str, item_id: str, score: int, *, flicker: bool | None = None,
             response_ms: int | None = None) -> None:
        """Store (or update) a score, committed when this returns.

        ``flicker`` (whether the rater used the flicker view on this item) and
        ``response_ms`` (time from both images on screen to the score) go to
        ``rating_context`` in the same transaction; when both are None, a context
        row of an earlier score of this item is removed, so it never describes
        another score.
        """
        if not valid_score(score):
            raise ValueError(f"a score is an integer from 1 to 5, not {score!r}")
        if not isinstance(item_id, str) or not item_id:
            raise ValueError(f"an item id is a non-empty string, not {item_id!r}")
        if flicker is not None and type(flicker) is not bool:
            raise ValueError(f"flicker is True, False or None, not {flicker!r}")
        if not valid_response_ms(response_ms):
            raise ValueError(f"response_ms is None or an integer from 0 to {MAX_RESPONSE_MS}, "
                             f"not {response_ms!r}")
        stamp = now()
        with self._transaction() as cursor:
            cursor.execute(self._sql(UPSERT), (item_id, score, stamp, token))
            if cursor.rowcount != 1:
                raise UnknownTokenError("unknown rater token")
            if flicker is None and response_ms is None:
                cursor.execute(self._sql(DELETE_CONTEXT), (item_id, token))
            else:
                cursor.execute(self._sql(UPSERT_CONTEXT), (
                    item_id, None if flicker is None else int(flicker), response_ms, stamp,
                    token))

    def rate_training(self, token: str, anchor: str, item_id: str, score: int) -> None:
        """Store (or update) a training score: never in ``ratings``, never exported."""
        if not valid_score(score):
            raise ValueError(f"a score is an integer from 1 to 5, not {score!r}")
        for name, value in (("anchor", anchor), ("item id", item_id)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"an {name} is a non-empty string, not {value!r}")
        with self._transaction() as cursor:
            cursor.execute(self._sql(UPSERT_TRAINING), (anchor, item_id, score, now(), token))
            if cursor.rowcount != 1:
                raise UnknownTokenError("unknown rater token")

    def trained_anchors(self, token: str) -> set[str]:
        """Training anchors this rater has scored."""
        rows = self._query(
            "SELECT t.anchor FROM training_ratings t JOIN raters p ON p.name = t.rater "
            "WHERE p.token = ?", (token,))
        return {row[0] for row in rows}

    def training_ratings(self) -> pd.DataFrame:
        """Training scores: ``rater, anchor, item_id, score, updated`` (not study data)."""
        rows = self._query("SELECT rater, anchor, item_id, score, updated FROM "
                           "training_ratings ORDER BY rater, anchor")
        table = pd.DataFrame(rows, columns=["rater", "anchor", "item_id", "score", "updated"])
        return table.astype({"rater": str, "anchor": str, "item_id": str, "score": "int64",
                             "updated": str})

    def rating_context(self) -> pd.DataFrame:
        """How scores were given: ``rater, item_id, flicker, response_ms, updated``.

        ``flicker`` is a nullable boolean and ``response_ms`` a nullable integer (pandas
        ``boolean`` and ``Int64``); items rated without context have no row.
        """
        rows = self._query("SELECT rater, item_id, flicker, response_ms, updated FROM "
                           "rating_context ORDER BY rater, item_id")
        table = pd.DataFrame(rows, columns=["rater", "item_id", "flicker", "response_ms",
                                            "updated"])
        return table.astype({"rater": str, "item_id": str, "flicker": "boolean",
                             "response_ms": "Int64", "updated": str})

    def rated_items(self, token: str) -> set[str]:
        """Item ids this rater has scored."""
        rows = self._query(
            "SELECT r.item_id FROM ratings r JOIN raters p ON p.name = r.rater "
            "WHERE p.token = ?", (token,))
        return {row[0] for row in rows}

    def ratings(self) -> pd.DataFrame:
        """All scores: ``rater`` (name), ``item_id``, ``score``, ``updated`` (UTC ISO)."""
        rows = self._query(
            "SELECT rater, item_id, score, updated FROM ratings ORDER BY rater, item_id")
        table = pd.DataFrame(rows, columns=["rater", "item_id", "score", "updated"])
        return table.astype({"rater": str, "item_id": str, "score": "int64", "updated": str})

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()

    def __enter__(self) -> RatingStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (or ``ROLLBACK``) on the thread's connection."""

    def __init__(self, store: RatingStore):
        self.store = store

    def __enter__(self):
        connection = self.store._connection()
        self.cursor = connection.cursor()
        self.cursor.execute("BEGIN" if self.store.postgres else "BEGIN IMMEDIATE")
        return self.cursor

    def __exit__(self, kind, error, traceback) -> None:
        try:
            if kind is None:
                try:
                    self.cursor.execute("COMMIT")
                except Exception:
                    self.cursor.execute("ROLLBACK")
                    raise
            else:
                self.cursor.execute("ROLLBACK")
        finally:
            self.cursor.close()
