"""Resident memory of this process: now, and the peak over a window (sampled on a thread).

Linux ``/proc/self/statm`` is read directly (no psutil needed on a device); the kernel's own
high-water mark (``ru_maxrss``) covers the whole process life, so a window's peak is sampled.
"""

from __future__ import annotations

import os
import resource
import threading


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the lifetime peak is the best available figure
        return lifetime_peak_bytes()


def lifetime_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


class PeakSampler:
    """``with PeakSampler() as p: ...`` then ``p.peak`` is the highest RSS seen (bytes)."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakSampler:
        self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._loop, name="edgekit-rss", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.peak = max(self.peak, rss_bytes())
