"""``edgekit fleet`` (the fleet's certificate authority and its members' identities, ``edgekit.fleet.ca``) and
``edgekit devices`` (the workers that answer over mDNS, ``edgekit.fleet.discovery``)."""

from __future__ import annotations

from pathlib import Path

import click
from rich import box

from edgekit.cli import render
from edgekit.cli.app import session
from edgekit.cli.options import tls_option, token_option


@click.group()
def fleet() -> None:
    """A fleet CA and device certificates for mutual TLS between coordinator and workers."""


@fleet.command(name="init")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--days", default=3650, show_default=True, help="How long the CA is valid.")
def init(directory, days) -> None:
    """Create a fleet CA (ECDSA P-256) in DIRECTORY and the coordinator's identity."""
    from edgekit.fleet.ca import COORDINATOR, IDENTITIES, fingerprint, init_fleet

    root = init_fleet(directory, days=days)
    coordinator = root / IDENTITIES / COORDINATOR
    ui = session()
    ui.out.print(f"fleet CA in {root} (keep {root / 'ca.key'} on this machine only)", soft_wrap=True)
    digest = fingerprint((coordinator / "cert.pem").read_bytes())
    ui.out.print(f"coordinator identity: {coordinator} (sha256 {digest[:16]}...)", soft_wrap=True)
    ui.out.print(f"next: edgekit fleet add-device NAME --fleet {root}", soft_wrap=True)


@fleet.command(name="add-device")
@click.argument("name")
@click.option("--fleet", "fleet_dir", default="fleet", show_default=True, type=click.Path(file_okay=False),
              help="The fleet directory from `edgekit fleet init`.")  # fmt: skip
@click.option("--days", default=825, show_default=True, help="How long the certificate is valid.")
@click.option("--address", "addresses", multiple=True, help="An IP address to add to the certificate (repeatable).")
def add_device(name, fleet_dir, days, addresses) -> None:
    """Issue NAME a key and a certificate signed by the fleet CA (NAME in its SAN)."""
    from edgekit.fleet.ca import fingerprint, issue

    out = issue(Path(fleet_dir), name, days=days, addresses=tuple(addresses))
    ui = session()
    ui.out.print(f"identity of {name}: {out} (sha256 {fingerprint((out / 'cert.pem').read_bytes())[:16]}...)",
                 soft_wrap=True)  # fmt: skip
    ui.out.print(f"copy that directory to the device and run: edgekit worker --name {name} --tls DIR", soft_wrap=True)


@click.command()
@click.option("--timeout", default=3.0, show_default=True, help="Seconds to listen for announcements.")
@tls_option
@token_option
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the list as JSON.")
def devices(timeout, tls, token_file, json_path) -> None:
    """List the workers that announce themselves on this network (mDNS), and whether they answer."""
    import json

    from edgekit.fleet.auth import ClientAuth
    from edgekit.fleet.discovery import browse, reachability

    auth = ClientAuth.from_options(tls, token_file)
    with session().err.status(f"listening for workers for {timeout:g} s", spinner="dots"):
        found = browse(timeout)
        reach = {a.name: reachability(a, auth) for a in found}
    table = render.table(
        f"{len(found)} worker(s) on this network",
        {"name": "left", "address": "left", "arch": "left", "runtimes": "left", "memory": "right", "GFLOP/s": "right",
         "auth": "left", "reachable": "left"},
        keep=("name", "address"), box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
    )  # fmt: skip
    for a in found:
        ok, _ = reach[a.name]
        runtimes = render.text(",".join(a.runtimes) or "-")
        memory = f"{a.memory_bytes / 2**30:.1f}G"
        table.add_row(render.text(a.name), a.address, render.text(a.arch), runtimes, memory, f"{a.gflops:.1f}",
                      render.text(a.auth), render.yes(ok))  # fmt: skip
    session().out.print(table)
    for a in found:  # the reasons below the table: a sentence does not fit a column of 80
        if reach[a.name][1]:
            session().out.print(f"{render.text(a.name)}: {render.text(reach[a.name][1])}", soft_wrap=True)
    if json_path:
        rows = [{**a.properties(), "address": a.address, "reachable": reach[a.name][0], "why": reach[a.name][1]}
                for a in found]  # fmt: skip
        Path(json_path).write_text(json.dumps(rows, indent=2))


COMMANDS = (fleet, devices)
