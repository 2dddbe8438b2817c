"""The ``edgekit`` group: global options, logging, and how errors leave the process.

Errors a user can cause arrive as ``EdgekitError`` and leave as one line on stderr with the error's exit code
(2, or 1 for a numerical disagreement); ``--debug`` adds the traceback. The command modules beside this one add
their commands to ``cli`` (see ``edgekit/cli/__init__.py``); nothing here knows them.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.logging import RichHandler

from edgekit._native import NATIVE_LOGGER, quiet_toolchain_logs
from edgekit.errors import EdgekitError


@dataclass(frozen=True)
class Session:
    """What every command of one invocation shares: the consoles and whether --debug was given."""

    out: Console
    err: Console
    debug: bool = False


def session() -> Session:
    """The running invocation's Session (a plain default outside one, e.g. a helper called from a test)."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    return obj if isinstance(obj, Session) else Session(Console(), Console(stderr=True))


def _stderr_console() -> Console:
    """A console on a private copy of fd 2, so exporters silencing native output do not swallow progress."""
    try:
        fd = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # no real fd (e.g. a test runner's buffer)
        return Console(stderr=True)
    return Console(file=os.fdopen(fd, "w", buffering=1), stderr=True)


class EdgekitGroup(click.Group):
    """Turns EdgekitError into one line and an exit code; anything unexpected into an 'internal error' line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except EdgekitError as exc:
            _report(ctx, f"error: {exc}", exc)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # a bug in edgekit or a toolchain: one line, the trace under --debug
            _report(ctx, f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", exc)
            ctx.exit(1)


def _report(ctx: click.Context, line: str, exc: BaseException) -> None:
    debug = isinstance(ctx.obj, Session) and ctx.obj.debug
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    click.echo(line if debug else line.splitlines()[0], err=True)


def _setup_logging(err: Console, verbose: int, quiet: bool, debug: bool) -> None:
    level = logging.DEBUG if debug else logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING
    handler = RichHandler(console=err, show_time=False, show_path=debug, markup=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s", force=True)
    logging.getLogger("edgekit").setLevel(level)
    # The library shows the toolchains' own fd output only when this logger is at DEBUG (``_native``).
    logging.getLogger(NATIVE_LOGGER).setLevel(logging.DEBUG if debug else logging.INFO)
    quiet_toolchain_logs(logging.DEBUG if debug else logging.ERROR)
    if not debug:
        warnings.filterwarnings("ignore")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # gRPC's C core logs handshake failures itself; the CLI says them once, as the error line
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")


@click.group(cls=EdgekitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgekit-sdk", prog_name="edgekit")
@click.option("-v", "--verbose", count=True, help="Log what each stage does.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.option("--debug", is_flag=True, help="Full tracebacks and the toolchains' own output.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, debug: bool) -> None:
    """Put PyTorch models on edge devices: export, verify, run."""
    err = _stderr_console()
    ctx.obj = Session(out=Console(), err=err, debug=debug)
    _setup_logging(err, verbose, quiet, debug)


def requiet() -> None:
    """torch resets its loggers' levels when first imported (inside a command): quiet them again."""
    quiet_toolchain_logs(logging.DEBUG if session().debug else logging.ERROR)
