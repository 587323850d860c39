"""The ledger: finished units with their rows, and a job's settings, in one SQLite file.

One file may hold several jobs (a study's ``ledger.sqlite`` holds ``build`` and
``score``): every table is keyed by job name. A unit's rows and its "finished" mark
are committed in one transaction, so a row never exists without its unit having
completed, and a killed run loses only the units in flight.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS job_units (job TEXT NOT NULL, key TEXT NOT NULL, "
    "spec TEXT NOT NULL, PRIMARY KEY (job, key))",
    "CREATE TABLE IF NOT EXISTS job_rows (job TEXT NOT NULL, id TEXT NOT NULL, "
    "unit TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (job, id))",
    "CREATE TABLE IF NOT EXISTS job_meta (job TEXT NOT NULL, name TEXT NOT NULL, "
    "value TEXT NOT NULL, PRIMARY KEY (job, name))",
)


class SettingsMismatchError(ValueError):
    """A resumed job was asked to run with other settings than its stored rows."""


class Ledger:
    """Finished units and their rows for the job ``job`` in the SQLite file ``path``.

    Rows are dicts with a unique ``id`` (within the job); recording a row with an
    existing id replaces it. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | Path, job: str):
        self.path = Path(path)
        self.job = job
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(self.path)
        with self.connection:
            for statement in SCHEMA:
                self.connection.execute(statement)

    def finished(self) -> set[str]:
        query = "SELECT key FROM job_units WHERE job = ?"
        return {key for (key,) in self.connection.execute(query, (self.job,))}

    def record(self, key: str, spec: dict, rows: list[dict]) -> None:
        """Commit a unit's rows and its "finished" mark together."""
        with self.connection:
            self.connection.executemany(
                "INSERT OR REPLACE INTO job_rows (job, id, unit, data) VALUES (?, ?, ?, ?)",
                [(self.job, str(row["id"]), key, json.dumps(row)) for row in rows])
            self.connection.execute(
                "INSERT OR REPLACE INTO job_units (job, key, spec) VALUES (?, ?, ?)",
                (self.job, key, json.dumps(spec, sort_keys=True, default=str)))

    def forget(self, keys) -> None:
        """Drop units' finished marks and rows, e.g. when their artefact was found damaged."""
        keys = list(keys)
        with self.connection:
            self.connection.executemany("DELETE FROM job_rows WHERE job = ? AND unit = ?",
                                        [(self.job, key) for key in keys])
            self.connection.executemany("DELETE FROM job_units WHERE job = ? AND key = ?",
                                        [(self.job, key) for key in keys])

    def rows(self) -> list[dict]:
        """Every row of the job, in the order recorded (a replaced row counts as new)."""
        query = "SELECT data FROM job_rows WHERE job = ? ORDER BY rowid"
        return [json.loads(data) for (data,) in self.connection.execute(query, (self.job,))]

    def get(self, name: str, default=None):
        """A JSON value stored with :meth:`put`."""
        found = self.connection.execute(
            "SELECT value FROM job_meta WHERE job = ? AND name = ?", (self.job, name)).fetchone()
        return default if found is None else json.loads(found[0])

    def put(self, name: str, value) -> None:
        with self.connection:
            self.connection.execute(
                "INSERT OR REPLACE INTO job_meta (job, name, value) VALUES (?, ?, ?)",
                (self.job, name, json.dumps(value, sort_keys=True)))

    def check_settings(self, settings: dict, *, hint: str = "use another output folder") -> None:
        """Store the job's settings on its first run; refuse other settings later."""
        stored = self.get("settings")
        canonical = json.loads(json.dumps(settings, sort_keys=True))
        if stored is None:
            self.put("settings", canonical)
        elif stored != canonical:
            changed = sorted(name for name in set(stored) | set(canonical)
                             if stored.get(name) != canonical.get(name))
            raise SettingsMismatchError(
                f"{self.path} holds {self.job} results made with other settings "
                f"({', '.join(changed)} differ: stored "
                + ", ".join(f"{n}={stored.get(n)!r}" for n in changed) + "; now "
                + ", ".join(f"{n}={canonical.get(n)!r}" for n in changed) + f"); {hint}")

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
