"""Atomic files and the SQLite ledger of finished work units."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd

from advqa.data import atomic_write_bytes


def write_table(table: pd.DataFrame, stem: str | Path) -> tuple[Path, Path]:
    """Write ``<stem>.parquet`` and ``<stem>.csv`` atomically; return both paths."""
    stem = Path(stem)
    parquet, csv = stem.with_suffix(".parquet"), stem.with_suffix(".csv")
    atomic_write_bytes(parquet, table.to_parquet(index=False))
    atomic_write_bytes(csv, table.to_csv(index=False).encode())
    return parquet, csv


class Ledger:
    """Which work units are finished, and the rows they produced.

    A unit's rows and its "finished" mark are committed in one transaction,
    so a manifest row never exists without its unit having completed.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(self.path)
        with self.connection:
            self.connection.execute(
                "CREATE TABLE IF NOT EXISTS units (key TEXT PRIMARY KEY, spec TEXT NOT NULL)")
            self.connection.execute(
                "CREATE TABLE IF NOT EXISTS rows (id TEXT PRIMARY KEY, unit TEXT NOT NULL, "
                "data TEXT NOT NULL)")

    def finished(self) -> set[str]:
        return {key for (key,) in self.connection.execute("SELECT key FROM units")}

    def record(self, key: str, spec: dict, rows: list[dict]) -> None:
        with self.connection:
            self.connection.executemany(
                "INSERT OR REPLACE INTO rows (id, unit, data) VALUES (?, ?, ?)",
                [(row["id"], key, json.dumps(row)) for row in rows])
            self.connection.execute(
                "INSERT OR REPLACE INTO units (key, spec) VALUES (?, ?)", (key, json.dumps(spec)))

    def rows(self) -> list[dict]:
        return [json.loads(data) for (data,) in
                self.connection.execute("SELECT data FROM rows ORDER BY rowid")]

    def close(self) -> None:
        self.connection.close()
