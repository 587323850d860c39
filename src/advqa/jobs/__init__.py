"""The one engine for every long job: plan → keyed units → executor → table.

A long job (``advqa build``, ``score``, ``benchmark``, ``detect stego-eval``, the
gate's fitting and evaluation) is a list of :class:`Unit` objects. A unit's
``key`` hashes everything that changes its output (:func:`unit_key`), so a unit
finished in an earlier run is skipped; its random seed derives from the run seed
and the key (:func:`unit_seed`), so results do not depend on which units ran
before, where, or how many at once.

:func:`run_units` hands the pending units to an executor and, *in this process*,
commits each unit's rows to the :class:`Ledger` in one SQLite transaction as it
arrives (after the caller's ``on_result`` has written any files). Workers only
compute: they need no shared file system, and large inputs every unit needs
(``shared``) reach each worker once. Expensive objects a worker builds (a model,
a metric) stay in its :func:`worker_cache` across units.

Executors (:func:`make_executor`): ``local`` runs units here, one after another;
``process`` in a pool of local processes, one torch thread each; ``dask`` on a
``distributed.LocalCluster`` on 127.0.0.1 started for the run (``workers``), or on an
existing scheduler (``scheduler="tcp://host:8786"``, as ``dask-jobqueue`` and
``dask-kubernetes`` report it). A killed client loses at most the units in flight;
a killed Dask worker's units are rerun elsewhere.
"""

from advqa.jobs.cache import clear_worker_cache, worker_cache
from advqa.jobs.engine import JobReport, UnitFailure, run_units
from advqa.jobs.executors import (
    ENGINES,
    DaskExecutor,
    Executor,
    LocalExecutor,
    ProcessExecutor,
    make_executor,
)
from advqa.jobs.ledger import Ledger
from advqa.jobs.units import Unit, unit_key, unit_seed

__all__ = [
    "ENGINES",
    "DaskExecutor",
    "Executor",
    "JobReport",
    "Ledger",
    "LocalExecutor",
    "ProcessExecutor",
    "Unit",
    "UnitFailure",
    "clear_worker_cache",
    "make_executor",
    "run_units",
    "unit_key",
    "unit_seed",
    "worker_cache",
]
