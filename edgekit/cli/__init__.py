"""The ``edgekit`` command: one click group (``app.py``) and one module per group of commands.

Each command parses its options, calls the library and renders the result; the library never imports this
package. The commands are added here, in one place, in the order ``edgekit --help`` lists them.
"""

from __future__ import annotations

from edgekit.cli import catalog, export, fleet, generate, profile, serve, split, stream, train
from edgekit.cli.app import cli

for _module in (catalog, export, train, profile, split, serve, fleet, stream, generate):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    cli(prog_name="edgekit")


__all__ = ["cli", "main"]
