"""The step close's power-law fits in a process of their own, so they run while the close scores and claims.

The two degree fits are about half of a large step's close (powerlaw's xmin scan runs a Nelder–Mead per
candidate: ~40 ms for Elliptic's largest step) and almost all Python: on a thread beside the GCN scoring and the
alert claims they fight the close for the GIL (measured: the close got slower, 77 → 84 ms). In a process they
overlap it, and the consuming loop is held for less time. Same code, same inputs: the same numbers.

The process is spawned (forking a process with torch threads and an event loop is unsafe), on first use, and
exits when the worker does — also when the worker is killed, which a pool's own process would outlive.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from txmon.core.contracts import PowerLawFit
from txmon.core.fits import fit_power_law

log = logging.getLogger(__name__)

DegreeFits = tuple[PowerLawFit | None, PowerLawFit | None]


def degree_fits(n: int, src: NDArray[np.int64], dst: NDArray[np.int64]) -> DegreeFits:
    """Power laws fitted to the in- and out-degrees of a step graph on nodes 0..n-1 with edges src → dst."""
    return fit_power_law(np.bincount(dst, minlength=n)), fit_power_law(np.bincount(src, minlength=n))


def _warm() -> None:
    import powerlaw  # noqa: F401 - imported by the first fit otherwise (~0.6 s)


def _exit_with(parent: int) -> None:
    """In the pool's process: exit once ``parent`` is gone (re-parented processes see another ppid). A Ctrl-C
    reaches the terminal's whole process group: the worker handles it (a SIGTERM to the group ends this process,
    and a close under way fits in the worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="txmon-parent-watch", daemon=True).start()


@dataclass
class PendingFits:
    """A step graph's degree fits under way in the fit process (``future``), or to compute here (None)."""

    pool: FitPool
    future: Future[DegreeFits] | None
    n: int
    src: NDArray[np.int64]
    dst: NDArray[np.int64]

    def result(self) -> DegreeFits:
        """The fits; computed here if they were not sent or the process died meanwhile."""
        if self.future is not None:
            try:
                return self.future.result()
            except BrokenProcessPool as e:
                self.pool.lost(e)
        return degree_fits(self.n, self.src, self.dst)


class FitPool:
    """One process for the fits. ``submit`` starts them there; a pool that broke (its process was killed)
    is replaced, and the fits of that call are computed here instead — a close never fails for it."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False  # closed for good: a close after it (the worker stopping) fits in the worker

    def _executor(self) -> ProcessPoolExecutor:
        if self._closed:
            raise RuntimeError("the fit pool is closed")
        if self._pool is None:
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_exit_with, initargs=(os.getpid(),))
        return self._pool

    def start(self) -> None:
        """Spawn the process now (it imports numpy, scipy and powerlaw: ~1 s), not at the first close."""
        if not self._closed:
            self._executor().submit(_warm)

    def pid(self) -> int:
        """The fit process's pid (it is started if it was not)."""
        return self._executor().submit(os.getpid).result()

    def submit(self, n: int, src: NDArray[np.int64], dst: NDArray[np.int64]) -> PendingFits:
        future = None
        if not self._closed:
            try:
                future = self._executor().submit(degree_fits, n, src, dst)
            except (BrokenProcessPool, RuntimeError) as e:  # RuntimeError: the interpreter is shutting down
                self.lost(e)
        return PendingFits(self, future, n, src, dst)

    def lost(self, why: BaseException) -> None:
        """The process died: the next submit starts a new one."""
        log.warning("the fit process is gone (%s: %s): fitting in the worker, a new process next time",
                    type(why).__name__, why)
        self._stop(wait=False)

    def close(self, wait: bool = False) -> None:
        """Stop the process for good (later fits run in the caller); ``wait``: until it has exited (a fit under way
        ends first: ~50 ms at most)."""
        self._closed = True
        self._stop(wait)

    def _stop(self, wait: bool) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None
