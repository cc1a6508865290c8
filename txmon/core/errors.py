"""One base for txmon's own errors, so a command can tell a clear message from a bug."""

from __future__ import annotations


class TxmonError(Exception):
    """An error txmon explains itself: the message says what and where; the CLI prints it without a traceback."""
