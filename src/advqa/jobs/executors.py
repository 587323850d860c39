"""Where units run: here, in local processes, or on a Dask cluster.

An executor's :meth:`~Executor.run` takes a module-level ``function``, the pending
units and ``shared`` keyword arguments, calls ``function(*unit.args, **shared)`` for
every unit somewhere, and yields ``(unit, result)`` as units finish, in any order.
A unit that raises yields a :class:`~advqa.jobs.engine.UnitFailure` instead, so one
bad unit never ends the run. ``shared`` holds the large inputs every unit needs; it
is sent to each worker once, not with every unit.

Thread counts: ``process`` and ``dask`` workers run torch with one thread each
(``threads``), so that N workers use N cores. ``local`` leaves torch's own count
unless given ``threads``. Reductions (convolutions, sums) may round differently with
another thread count, so floating-point results agree across executors to float
tolerance, and exactly when the thread counts match.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable, Iterable, Iterator

ENGINES = ("local", "process", "dask")


class Executor:
    """Base class: ``run`` yields ``(unit, result)`` pairs; ``close`` frees workers."""

    name = ""
    workers = 1

    def run(self, function: Callable, units: Iterable, shared: dict) -> Iterator:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def call_unit(function: Callable, args: tuple, shared: dict, threads: int | None):
    """Run one unit where it was sent; a raised error comes back as a failure record."""
    from advqa.jobs.engine import UnitFailure

    if threads is not None:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    try:
        return function(*args, **shared)
    except Exception as error:  # one bad unit must not end a long run
        return UnitFailure("", {}, f"{type(error).__name__}: {error}",
                           traceback.format_exc(limit=8))


class LocalExecutor(Executor):
    """Every unit here, one after another (torch already spreads one unit over the cores).

    ``threads`` sets torch's thread count for the run (restored afterwards); ``None``
    keeps it.
    """

    name = "local"

    def __init__(self, *, threads: int | None = None):
        self.threads = threads

    def run(self, function, units, shared):
        import torch

        saved = torch.get_num_threads()
        try:
            for unit in units:
                yield unit, call_unit(function, unit.args, shared, self.threads)
        finally:
            torch.set_num_threads(saved)


_SHARED: dict = {}


def _start_process(parent: int, shared: dict) -> None:
    """Process-pool initializer: keep ``shared``, one torch thread, die with the parent."""
    import torch

    from advqa.workers import exit_with_parent

    torch.set_num_threads(1)
    exit_with_parent(parent)  # else a killed run leaves its workers (~1 GB each) behind
    _SHARED.clear()
    _SHARED.update(shared)


def _process_unit(function: Callable, args: tuple):
    return call_unit(function, args, _SHARED, None)


class ProcessExecutor(Executor):
    """A pool of ``workers`` spawned local processes, one torch thread each.

    ``shared`` reaches each process once, through the pool's initializer. Workers exit
    when this process dies, even by ``kill -9`` (:func:`advqa.workers.exit_with_parent`).
    """

    name = "process"

    def __init__(self, workers: int = 2):
        if not (isinstance(workers, int) and workers >= 1):
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.workers = workers

    def run(self, function, units, shared):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        units = list(units)
        if not units:
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(self.workers, len(units)), mp_context=context,
                                 initializer=_start_process,
                                 initargs=(os.getpid(), shared)) as pool:
            futures = {pool.submit(_process_unit, function, unit.args): unit for unit in units}
            try:
                for future in as_completed(futures):
                    yield futures[future], future.result()
            finally:
                for future in futures:
                    future.cancel()


class DaskExecutor(Executor):
    """Units on a Dask distributed cluster.

    Parameters
    ----------
    workers : int, optional
        Start a ``distributed.LocalCluster`` of this many single-threaded worker
        processes on 127.0.0.1 for the run (closed by :meth:`close`).
    scheduler : str or distributed.Client, optional
        Use an existing cluster instead: its scheduler's address
        (``tcp://host:8786``, as ``dask-jobqueue``'s SLURM/PBS clusters and
        ``dask-kubernetes`` report it) or a connected client.
    threads : int
        torch threads per task (one core per Dask worker thread).

    A worker that dies mid-unit (killed, out of memory) loses only that unit's work:
    the scheduler runs it again on another worker, and the client commits it once.
    """

    name = "dask"

    def __init__(self, *, workers: int | None = None, scheduler=None, threads: int = 1):
        try:
            from distributed import Client, LocalCluster
        except ImportError as error:
            raise ImportError("the dask engine needs the `distributed` package: "
                              "pip install 'advqa[dask]'") from error
        if (workers is None) == (scheduler is None):
            raise ValueError("the dask engine needs either --workers N (a local cluster on "
                             "127.0.0.1) or --scheduler tcp://HOST:8786, not both")
        self.cluster = None
        if scheduler is None:
            if not (isinstance(workers, int) and workers >= 1):
                raise ValueError(f"workers must be a positive integer, got {workers!r}")
            self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                                        processes=True, host="127.0.0.1",
                                        dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
            self.owns_client = True
            # Workers (and the ones the nanny restarts) die with this process, even by kill -9.
            from advqa.jobs.dask_plugin import ExitWithClient

            self.client.register_plugin(ExitWithClient(os.getpid()))
        else:
            self.owns_client = not isinstance(scheduler, Client)
            self.client = Client(scheduler) if self.owns_client else scheduler
        self.workers = workers or len(self.client.scheduler_info().get("workers", {})) or 1
        self.threads = threads

    def run(self, function, units, shared):
        from distributed import as_completed

        units = list(units)
        if not units:
            return
        # Scattered once to every worker. Unhashed keys: a later phase scattering equal
        # data must not share (and then lose, when this phase releases it) the same key.
        remote = {key: self.client.scatter(value, broadcast=True, hash=False)
                  for key, value in shared.items()}
        futures = {self.client.submit(call_unit, function, unit.args, remote, self.threads,
                                      pure=False): unit for unit in units}
        try:
            for future, result in as_completed(futures, with_results=True):
                yield futures[future], result
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()

    def close(self) -> None:
        if self.owns_client:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_executor(engine: str = "local", *, workers: int | None = None,
                  scheduler=None, threads: int | None = None) -> Executor:
    """The executor for ``--engine``, ``--workers`` and ``--scheduler``.

    ``local`` ignores nothing silently: giving it ``workers`` or ``scheduler`` is an
    error, as is a ``scheduler`` for ``process``.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; valid: {', '.join(ENGINES)}")
    if engine == "local":
        if workers not in (None, 1) or scheduler is not None:
            raise ValueError("--engine local runs here, in one process: --workers and "
                             "--scheduler need --engine process or dask")
        return LocalExecutor(threads=threads)
    if engine == "process":
        if scheduler is not None:
            raise ValueError("--scheduler needs --engine dask")
        return ProcessExecutor(workers if workers is not None else os.cpu_count() or 1)
    return DaskExecutor(workers=workers, scheduler=scheduler,
                        threads=1 if threads is None else threads)
