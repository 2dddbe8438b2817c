"""What is there: ``models``, ``targets`` and ``doctor`` (the toolchain and what each format can do here)."""

from __future__ import annotations

import click

from edgekit.cli import render
from edgekit.cli.app import requiet, session


@click.command()
@click.argument("pattern", default="*")
def models(pattern: str) -> None:
    """List the built-in models (PATTERN filters names, e.g. 'vit*')."""
    from edgekit.models import MODELS

    requiet()
    columns = {"name": "left", "family": "left", "params": "right", "input": "left", "what": "left"}
    table = render.table("edgekit models", columns, keep=("name", "family", "params"))
    for name in MODELS.names(pattern):
        entry = MODELS.get(name)
        spec = entry.build()
        shapes = ", ".join(f"{s.name} {list(s.shape)}" for s in spec.input_specs)
        streams = " Streams: export with --streaming." if entry.streams else ""
        what = render.text(entry.description + streams)
        table.add_row(name, entry.family, render.count(spec.parameters), render.text(shapes), what)
    session().out.print(table)


@click.command()
def targets() -> None:
    """List the deployment targets and what each one means."""
    from edgekit.targets import TARGETS

    table = render.table("edgekit targets", dict.fromkeys(("target", "format", "delegate", "precision", "why"), "left"))
    for name, t in TARGETS.items():
        table.add_row(name, t.format, t.delegate or "-", t.precision, render.text(t.why))
    session().out.print(table)


@click.command()
def doctor() -> None:
    """Show which exporters and runtimes are installed, and their versions."""
    from edgekit.formats import FORMATS
    from edgekit.toolchain import PACKAGES, versions

    out = session().out
    table = render.table("toolchain", {"package": "left", "version": "left", "used for": "left"})
    for name, version in versions().items():
        table.add_row(
            name, render.text(version) if version else "[red]not installed[/red]", render.text(PACKAGES[name])
        )
    out.print(table)
    caps = render.table("formats", {"format": "left", "export": "left", "run": "left", "install": "left"})
    for name, fmt in FORMATS.items():
        install = f"pip install 'edgekit-sdk[{fmt.runtime_extra}]' to run, 'edgekit-sdk[export]' to export"
        caps.add_row(
            name, render.yes(fmt.can_export()), render.yes(fmt.runtime_class().installed()), render.text(install)
        )
    out.print(caps)


COMMANDS = (models, targets, doctor)
