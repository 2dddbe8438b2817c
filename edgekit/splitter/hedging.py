"""When a slow shard call is also sent to a replica (``--hedge-after auto|MS``).

gRPC Python retries calls but does not hedge them, so the coordinator does: a call with no answer after
the delay is sent again to another holder of the shard, the first answer wins and the other call is
cancelled. ``auto`` takes the delay from the answers seen so far for that shard: their 95th percentile
over a sliding window, never below a floor (below it, ordinary scheduling jitter would double the load)
and only after a warm-up count of answers (before it there is no percentile worth the name).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from edgekit.errors import ConfigError

AUTO = "auto"
FLOOR_MS = 5.0
WARMUP = 20
WINDOW = 256


@dataclass(frozen=True)
class HedgePolicy:
    after_ms: float | None = None  # a fixed delay; None: auto
    floor_ms: float = FLOOR_MS
    warmup: int = WARMUP

    @property
    def auto(self) -> bool:
        return self.after_ms is None

    @property
    def label(self) -> str:
        return f"auto (p95, at least {self.floor_ms:g} ms, after {self.warmup} answers)" if self.auto else \
            f"{self.after_ms:g} ms"  # fmt: skip

    @classmethod
    def parse(cls, value: str | float | HedgePolicy | None) -> HedgePolicy | None:
        """``None`` / "off" -> no hedging; "auto"; a number of milliseconds."""
        if value is None or isinstance(value, HedgePolicy):
            return value
        text = str(value).strip().lower()
        if text in ("", "off", "none"):
            return None
        if text == AUTO:
            return cls()
        try:
            ms = float(text.removesuffix("ms"))
        except ValueError:
            raise ConfigError(f"--hedge-after takes auto or a delay in ms, got {value!r}") from None
        if not ms > 0:
            raise ConfigError(f"--hedge-after must be positive, got {value!r}")
        return cls(after_ms=ms)


class ShardLatencies:
    """Recent answered round trips per shard (thread-safe), and the hedge delay they give."""

    def __init__(self, window: int = WINDOW):
        self._window = window
        self._samples: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def add(self, shard: str, round_trip_ms: float) -> None:
        with self._lock:
            self._samples.setdefault(shard, deque(maxlen=self._window)).append(round_trip_ms)

    def p95(self, shard: str) -> tuple[float | None, int]:
        with self._lock:
            samples = list(self._samples.get(shard, ()))
        return (float(np.percentile(samples, 95)) if samples else None), len(samples)

    def delay_ms(self, shard: str, policy: HedgePolicy | None) -> float | None:
        """How long a call on ``shard`` waits before it is hedged; None: not (yet) hedged."""
        if policy is None:
            return None
        if not policy.auto:
            return policy.after_ms
        p95, count = self.p95(shard)
        if p95 is None or count < policy.warmup:
            return None
        return max(policy.floor_ms, p95)
