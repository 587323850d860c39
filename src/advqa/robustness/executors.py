"""Where the benchmark's tasks run: in this process, or on any Dask cluster.

An executor has one method, ``run(function, tasks, shared)``, which yields
``(task, result)`` pairs as tasks finish, in any order; the caller commits each
result as it arrives, so a killed run loses at most the tasks in flight.
``shared`` holds large arguments every task needs (the image sets), sent to
each worker once.

Dask covers the clusters research labs use: ``dask-jobqueue`` starts workers
as SLURM or PBS jobs and ``dask-kubernetes`` as pods; point ``--scheduler`` at
the scheduler they report (``tcp://host:8786``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from tqdm.auto import tqdm


class LocalExecutor:
    """Runs every task here, one after another (torch already uses every core)."""

    name = "local"

    def __init__(self, *, progress: bool = True):
        self.progress = progress

    def run(self, function: Callable, tasks: Iterable, shared: dict, *,
            description: str = "") -> Iterator:
        tasks = list(tasks)
        for task in tqdm(tasks, desc=description, disable=not self.progress or not tasks):
            yield task, function(*task, **shared)

    def close(self) -> None:
        pass


class DaskExecutor:
    """Runs tasks on a Dask distributed cluster.

    Parameters
    ----------
    scheduler : str or distributed.Client
        The scheduler address (``tcp://host:8786``) or a connected client.
    """

    name = "dask"

    def __init__(self, scheduler, *, progress: bool = True):
        try:
            from distributed import Client
        except ImportError as error:
            raise ImportError("the Dask executor needs the `distributed` package: "
                              "pip install 'advqa[dask]'") from error
        self.owns_client = not isinstance(scheduler, Client)
        self.client = Client(scheduler) if self.owns_client else scheduler
        self.progress = progress

    def run(self, function: Callable, tasks: Iterable, shared: dict, *,
            description: str = "") -> Iterator:
        from distributed import as_completed

        tasks = list(tasks)
        if not tasks:
            return
        # Scattered once: every worker holds the images instead of one copy per task.
        # Unhashed keys: a later phase scattering equal data must not share (and then
        # lose, when this phase releases it) the same key.
        remote = {key: self.client.scatter(value, broadcast=True, hash=False)
                  for key, value in shared.items()}
        futures = {self.client.submit(function, *task, **remote, pure=False): task
                   for task in tasks}
        bar = tqdm(total=len(tasks), desc=description, disable=not self.progress)
        try:
            for future, result in as_completed(futures, with_results=True):
                bar.update()
                yield futures[future], result
        finally:
            bar.close()
            for future in futures:
                if not future.done():
                    future.cancel()

    def close(self) -> None:
        if self.owns_client:
            self.client.close()


def make_executor(engine: str = "local", *, scheduler=None, progress: bool = True):
    """``"local"`` or ``"dask"`` (which needs ``scheduler``)."""
    if engine == "local":
        return LocalExecutor(progress=progress)
    if engine == "dask":
        if scheduler is None:
            raise ValueError("--engine dask needs --scheduler tcp://<host>:8786 "
                             "(or a distributed.Client)")
        return DaskExecutor(scheduler, progress=progress)
    raise ValueError(f"unknown engine {engine!r}; valid: local, dask")
