"""A process's full garbage collections, logged to a file and summed up (benchmarks: a full collection stops the
process that makes it — the worker's consuming loop, or the producer's sends)."""

from __future__ import annotations

import gc
import time
from pathlib import Path


def log_full_collections(path: Path | str) -> None:
    """Append a line per full (generation 2) collection of this process to ``path``: its end (wall time) and
    its length in seconds."""
    out, started = open(path, "a", buffering=1), [0.0]  # noqa: SIM115 - open for the process's life

    def collected(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        elif info["generation"] == 2:
            out.write(f"{time.time():.4f} {time.perf_counter() - started[0]:.6f}\n")

    gc.callbacks.append(collected)


def full_collections(path: Path, start: float, end: float) -> str:
    """How many full collections ``path`` logged between ``start`` and ``end``, and the longest."""
    lines = path.read_text().splitlines() if path.exists() else []
    lengths = [float(s) for t, s in (line.split() for line in lines) if start <= float(t) <= end]
    return f"{len(lengths)} full garbage collection(s)" + (f", longest {max(lengths) * 1e3:,.0f} ms"
                                                           if lengths else "")
