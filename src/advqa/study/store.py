"""Parquet+CSV tables written atomically, and the study lock.

The ledger of finished work units is :class:`advqa.jobs.Ledger`.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import sys
import warnings
from pathlib import Path

import pandas as pd

from advqa.data import atomic_write_bytes
from advqa.study.layout import StudyDir


def write_table(table: pd.DataFrame, stem: str | Path) -> tuple[Path, Path]:
    """Write ``<stem>.parquet`` and ``<stem>.csv`` atomically; return both paths."""
    stem = Path(stem)
    parquet, csv = stem.with_suffix(".parquet"), stem.with_suffix(".csv")
    atomic_write_bytes(parquet, table.to_parquet(index=False))
    atomic_write_bytes(csv, table.to_csv(index=False).encode())
    return parquet, csv


class StudyLockedError(RuntimeError):
    """Another live process is writing the study."""


class StudyLock:
    """An exclusive lock on a study directory, held by one writing process.

    The lock is ``study.lock`` in the directory, holding the owner's PID, command and
    start time, and locked with ``flock``. The kernel drops an ``flock`` when its
    process dies, however it dies, so a lock left by a killed process is taken over
    by the next run (with a note naming the dead process); a live owner makes a
    second process stop with a message naming it. ``flock`` is advisory and local:
    on a network file system that does not support it, two machines are not kept
    apart.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = StudyDir(self.directory).lock_path
        self.descriptor: int | None = None

    def __enter__(self) -> StudyLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(descriptor)
            os.close(descriptor)
            raise StudyLockedError(
                f"{self.directory} is in use by process {holder.get('pid', '?')} "
                f"({holder.get('command', 'advqa')}, since {holder.get('started', '?')}); "
                "wait for it to finish, or write to another directory") from None
        previous = self._holder(descriptor)
        if previous.get("pid") and previous["pid"] != os.getpid():
            warnings.warn(f"took over the lock of process {previous['pid']} on "
                          f"{self.directory}, which is no longer running", stacklevel=2)
        record = {"pid": os.getpid(), "command": " ".join(sys.argv[:3]),
                  "started": datetime.datetime.now().isoformat(timespec="seconds")}
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(record).encode(), 0)
        self.descriptor = descriptor
        return self

    @staticmethod
    def _holder(descriptor: int) -> dict:
        try:
            return json.loads(os.pread(descriptor, 4096, 0) or b"{}")
        except ValueError:
            return {}

    def __exit__(self, *exc) -> None:
        if self.descriptor is not None:
            os.ftruncate(self.descriptor, 0)  # an empty file: released cleanly
            os.close(self.descriptor)  # closing drops the flock
            self.descriptor = None
