"""``python -m edgekit.cli`` is the ``edgekit`` command (the torch-free tests run it this way)."""

from edgekit.cli import main

main()
