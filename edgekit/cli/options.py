"""Options several commands share: ``--set key=value`` model overrides, the energy meter choice, and how a
worker or coordinator authenticates (``--tls``, ``--token-file``)."""

from __future__ import annotations

import json
from typing import Any

import click

from edgekit.errors import UnsupportedOptionError

ENERGY_HELP = "auto (first meter found, else an estimate), rapl, hwmon, pi5-pmic, android-battery, estimate, none"


def parse_settings(items: tuple[str, ...]) -> dict[str, Any]:
    """--set key=value pairs; values parse as JSON when they can (numbers, lists, booleans)."""
    config: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UnsupportedOptionError("--set", item, ["key=value, e.g. --set depth=2"])
        try:
            config[key] = json.loads(raw)
        except json.JSONDecodeError:
            config[key] = raw
    return config


set_option = click.option(
    "-s",
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a model config value (repeatable), e.g. --set depth=2.",
)

tls_option = click.option(
    "--tls",
    type=click.Path(file_okay=False),
    help="Fleet identity directory (ca.pem, cert.pem, key.pem from `edgekit fleet`): mutual TLS.",
)
token_option = click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    help="File holding the bearer token (beyond loopback only together with --tls).",
)
