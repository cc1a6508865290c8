"""Who is running, read from /proc (for tests that check nothing is left behind, and benchmarks that count CPU): the
children of a process, the members of a session, the CPU a process tree used. Empty off Linux."""

from __future__ import annotations

import os
from pathlib import Path


def _stat(pid: str) -> tuple[str, list[str]] | None:
    """(command name, the fields after it: state ppid pgrp session ...) of a process, None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split at the last ')'
    return stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()


def _live() -> list[tuple[int, str, list[str]]]:
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    out = []
    for entry in entries:
        if entry.isdigit() and (got := _stat(entry)) is not None and got[1] and got[1][0] != "Z":
            out.append((int(entry), got[0], got[1]))
    return out


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds so far of a process and its live descendants (a worker's fit process is the
    worker's work); 0 if it is gone."""
    live = _live()
    children: dict[int, list[int]] = {}
    fields_of = {}
    for p, _, fields in live:
        children.setdefault(int(fields[1]), []).append(p)  # ppid
        fields_of[p] = fields
    if pid is None or pid not in fields_of:
        return 0.0
    ticks, todo = 0, [pid]
    while todo:
        p = todo.pop()
        ticks += int(fields_of[p][11]) + int(fields_of[p][12])  # utime, stime
        todo += children.get(p, [])
    return ticks / os.sysconf("SC_CLK_TCK")


def child_processes(pid: int | None = None) -> dict[int, str]:
    """Live child processes of ``pid`` (default: this one): pid → command name."""
    pid = os.getpid() if pid is None else pid
    return {p: comm for p, comm, fields in _live() if int(fields[1]) == pid}


def session_pids(sid: int) -> set[int]:
    """Live processes (zombies excluded) in session ``sid``: a worker runs in a session of its own."""
    return {p for p, _, fields in _live() if int(fields[3]) == sid}


def describe(pids: set[int]) -> str:
    """``pid: command line`` of each of ``pids`` (for a failure message)."""
    def cmdline(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            return "(gone)"
    return "; ".join(f"{p}: {cmdline(p)[:200]}" for p in sorted(pids))
