"""``python -m txmon`` is the ``txmon`` command."""

from txmon.cli import main

main()
