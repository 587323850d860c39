"""``run_units``: pending units through an executor, each result committed as it arrives."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from advqa.jobs.ledger import Ledger
from advqa.jobs.units import Unit


@dataclass
class UnitFailure:
    """A unit that raised: it is not marked finished, so the next run tries it again."""

    key: str
    spec: dict
    error: str
    trace: str = ""


@dataclass
class JobReport:
    """What :func:`run_units` did: units planned, skipped (finished earlier), done, failed."""

    total: int
    skipped: int
    done: int
    failures: list[UnitFailure] = field(default_factory=list)

    @property
    def all_failed(self) -> bool:
        """Units ran and none of them succeeded."""
        return bool(self.failures) and self.done == 0


def run_units(ledger: Ledger, units: Iterable[Unit], function: Callable, *, executor,
              shared: dict | None = None, on_result: Callable | None = None,
              on_commit: Callable | None = None, progress: bool = True,
              description: str = "") -> JobReport:
    """Run every unit that ``ledger`` has not finished and commit each one's rows.

    Parameters
    ----------
    ledger : Ledger
        Where finished units and their rows go.
    units : iterable of Unit
        The plan; keys must be unique.
    function : callable
        Module-level ``function(*unit.args, **shared) -> result``, run by the executor.
    executor : Executor
        See :func:`advqa.jobs.make_executor`.
    shared : dict, optional
        Keyword arguments every unit receives, sent to each worker once.
    on_result : callable, optional
        ``on_result(unit, result) -> rows``, run here before the unit is committed:
        where files are written (atomically) and results turned into rows. Without
        it the result must be the rows (a list of dicts, each with an ``id``).
    on_commit : callable, optional
        ``on_commit(unit, rows)``, run here once the unit is committed (e.g. to rewrite
        a table that must never list an uncommitted row).

    Returns
    -------
    JobReport
        Failed units are listed (with a warning each) and left unfinished.
    """
    units = list(units)
    keys = [unit.key for unit in units]
    if len(set(keys)) != len(keys):
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        raise ValueError(f"units share keys {repeated[:5]}: a plan holds each unit once")
    finished = ledger.finished()
    pending = [unit for unit in units if unit.key not in finished]
    report = JobReport(len(units), len(units) - len(pending), 0)
    bar = tqdm(total=len(pending), desc=description or ledger.job, unit="unit",
               disable=not progress or not pending)
    try:
        for unit, result in executor.run(function, pending, shared or {}):
            bar.update()
            if isinstance(result, UnitFailure):
                failure = UnitFailure(unit.key, unit.spec, result.error, result.trace)
                warnings.warn(f"{ledger.job} unit {unit.spec or unit.key} failed: "
                              f"{result.error}", stacklevel=2)
                report.failures.append(failure)
                continue
            rows = on_result(unit, result) if on_result is not None else result
            ledger.record(unit.key, unit.spec, rows)
            report.done += 1
            if on_commit is not None:
                on_commit(unit, rows)
    finally:
        bar.close()
    return report
