"""The progress callback long jobs report to (the CLI draws it as rich progress bars)."""

from collections.abc import Callable

PhaseProgress = Callable[[str, int, int], None]  # (phase, done, total)
