"""How the long-running commands (``edgekit worker``, ``edgekit serve``) learn they are to stop: SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import threading


class StopSignal:
    """Installs the handlers at construction; ``wait()`` returns once either signal has arrived."""

    def __init__(self) -> None:
        self._event = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._event.set())

    def wait(self) -> None:
        # Polled, not one wait without a timeout: Linux may hand the signal to any thread (gRPC runs many), and
        # then CPython only flags it for the main thread, which runs the handler when it next executes bytecode.
        # Blocked in a lock with no timeout it may never do so; workers were seen ignoring SIGTERM for 60 s.
        while not self._event.wait(0.25):
            pass
