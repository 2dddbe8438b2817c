"""Keep native toolchains' chatter (C++ logs, converter progress lines) out of the user's terminal.

The exporters' libraries print to file descriptors 1 and 2 directly, bypassing Python's logging.
``captured_output`` points both at a temporary file for the duration of a stage and hands the text to
the debug log (and to the error message, if the stage fails).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

log = logging.getLogger(__name__)

# With this logger at DEBUG (the CLI's --debug) the toolchains write to the terminal as they like; otherwise
# their output is captured and goes to the debug log. A logger level, not an environment variable: it reaches
# library callers too, and does not leak into child processes.
NATIVE_LOGGER = "edgekit.native"


# Libraries that log loudly at import or lowering time (torchao's missing CUDA kernels, torch's pytree
# deprecations, converter progress); edgekit shows them only with --debug.
NOISY_LOGGERS = ("torch", "torchao", "executorch", "onnxscript", "jax", "absl", "litert_torch", "root")


def quiet_toolchain_logs(level: int = logging.ERROR) -> None:
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(level)


class Captured:
    text: str = ""


@contextlib.contextmanager
def captured_output(stage: str) -> Iterator[Captured]:
    captured = Captured()
    if logging.getLogger(NATIVE_LOGGER).isEnabledFor(logging.DEBUG):
        yield captured
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    # Python-level writes too: some bindings print through sys.stderr, which may not be fd 2.
    python_sink = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            for fd in (1, 2):
                os.dup2(sink.fileno(), fd)
            with contextlib.redirect_stdout(python_sink), contextlib.redirect_stderr(python_sink):
                yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace") + python_sink.getvalue()
            if captured.text.strip():
                log.debug("native output while %s:\n%s", stage, captured.text.rstrip())
