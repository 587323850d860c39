"""A Dask worker plugin; its own module because it imports ``distributed`` (optional)."""

from __future__ import annotations

import os

from distributed.diagnostics.plugin import WorkerPlugin


class ExitWithClient(WorkerPlugin):
    """The worker exits when the client process that started the local cluster dies
    (:func:`advqa.workers.exit_with_parent`), however it dies. Applied again to every
    worker the nanny restarts."""

    name = "advqa-exit-with-client"

    def __init__(self, client_pid: int):
        self.client_pid = client_pid

    def setup(self, worker) -> None:
        from advqa.workers import exit_with_parent

        if os.getppid() == self.client_pid:  # a local cluster's worker: its parent is us
            exit_with_parent(self.client_pid)
