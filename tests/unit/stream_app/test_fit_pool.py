"""The step close's fit process: the same fits as in-line, a killed process replaced, gone with its worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from stream_app.fit_pool import FitPool, degree_fits


def _graph(seed: int, n: int = 600) -> tuple[int, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    src = rng.zipf(2.2, 3 * n) % n  # heavy-tailed degrees, so the fits have a tail to find
    dst = rng.integers(0, n, 3 * n)
    return n, src.astype(np.int64), dst.astype(np.int64)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_fits_in_the_process_equal_the_fits_in_line() -> None:
    pool = FitPool()
    try:
        for seed in range(3):
            n, src, dst = _graph(seed)
            assert pool.submit(n, src, dst).result() == degree_fits(n, src, dst)
        n, src, dst = 5, np.array([0, 1], dtype=np.int64), np.array([1, 2], dtype=np.int64)
        assert pool.submit(n, src, dst).result() == (None, None)  # too few values to fit
    finally:
        pool.close()


def test_a_killed_fit_process_costs_no_close_and_is_replaced() -> None:
    pool = FitPool()
    try:
        n, src, dst = _graph(1)
        want = degree_fits(n, src, dst)
        assert pool.submit(n, src, dst).result() == want
        first = pool.pid()
        assert first is not None
        os.kill(first, signal.SIGKILL)  # the process this pool started
        for _ in range(50):  # bounded: 5 s
            if not _alive(first):
                break
            time.sleep(0.1)
        assert pool.submit(n, src, dst).result() == want  # computed in-line, with a warning
        assert pool.submit(n, src, dst).result() == want  # a new process
        assert pool.pid() not in (None, first)
    finally:
        pool.close()


def test_the_fit_process_exits_when_its_worker_is_killed(tmp_path) -> None:  # noqa: ANN001
    worker = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        from stream_app.fit_pool import FitPool
        pool = FitPool()
        pool.start()
        print(pool.pid(), flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(worker.stdout.readline())  # type: ignore[union-attr]
        assert _alive(child)
    finally:
        worker.kill()  # ours, by pid: as kill -9 of a worker
        worker.wait(10)
    for _ in range(100):  # bounded: 10 s (the process looks for its parent every 0.5 s)
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child), f"fit process {child} outlived its killed worker"


def test_a_closed_pool_has_stopped_its_process_and_fits_in_the_caller() -> None:
    pool = FitPool()
    pool.start()
    child = pool.pid()
    pool.close(wait=True)  # what the worker does at shutdown
    assert not _alive(child)
    n, src, dst = _graph(2)
    assert pool.submit(n, src, dst).result() == degree_fits(n, src, dst)  # fitted here
    with pytest.raises(RuntimeError, match="closed"):
        pool.pid()  # no new process after the close
