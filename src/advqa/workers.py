"""Worker processes that do not outlive their parent.

A :class:`concurrent.futures.ProcessPoolExecutor` worker does not notice that its
parent died (``kill -9``, the OOM killer): it holds the task queue's write end
itself, so it never reads end-of-file, and it goes on with a long unit and then
waits forever, keeping its memory (about 1 GB for a torch worker).
:func:`exit_with_parent`, called from a pool's initializer, ends the worker when
its parent dies::

    ProcessPoolExecutor(..., initializer=exit_with_parent, initargs=(os.getpid(),))
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

__all__ = ["exit_with_parent"]

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def exit_with_parent(parent: int, *, poll: float = 1.0) -> str:
    """End this process when ``parent`` (the pid of the process that started it) dies.

    On Linux the kernel kills this process with SIGKILL when its parent dies
    (``prctl(PR_SET_PDEATHSIG)``; strictly, when the parent's thread that
    started it ends, so start workers from a thread that outlives the pool).
    Elsewhere, or if ``prctl`` fails, a daemon thread checks every ``poll``
    seconds whether the parent pid changed (an orphan is re-parented) and then
    exits. Either way the process exits at once when ``parent`` is already gone:
    it may have died before the request took effect.

    Returns
    -------
    str
        ``"prctl"`` or ``"watchdog"``: how the parent's death is noticed.
    """
    how = "prctl" if _death_signal(signal.SIGKILL) else "watchdog"
    if os.getppid() != parent:
        os._exit(1)
    elif how == "watchdog":
        threading.Thread(target=_watch, args=(parent, float(poll)), daemon=True,
                         name="exit-with-parent").start()
    return how


def _death_signal(signum: int) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent dies; True if it will."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):  # no libc symbol table or no prctl: use the watchdog
        return False


def _watch(parent: int, poll: float) -> None:
    while os.getppid() == parent:
        time.sleep(poll)
    os._exit(1)  # no clean-up: the parent that would receive results is gone
