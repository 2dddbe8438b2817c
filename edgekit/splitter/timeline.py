"""A run's attempts drawn as a PNG timeline: one lane per worker, one bar per call from sent to ended,
coloured by how it ended (answered, failed, cancelled) and hatched when it was a hedge."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgekit.errors import MissingDependencyError
from edgekit.splitter.records import ANSWERED, CANCELLED, FAILED, RequestRecord

COLOURS = {ANSWERED: "tab:blue", FAILED: "tab:red", CANCELLED: "tab:gray"}


def plot_timeline(records: Sequence[RequestRecord], path: str | Path, workers: Sequence[str] = (),
                  title: str = "split run") -> Path:  # fmt: skip
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        raise MissingDependencyError("matplotlib", "plot", "--timeline") from None
    attempts = [a for r in records for a in r.attempts]
    lanes = list(dict.fromkeys([*workers, *(a.worker for a in attempts)]))
    origin = min((r.started_s for r in records), default=0.0)
    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.6 * max(1, len(lanes))), dpi=120)
    for lane, worker in enumerate(lanes):
        for outcome, colour in COLOURS.items():
            for hedge in (False, True):
                bars = [((a.sent_s - origin) * 1e3, max(0.05, (a.ended_s - a.sent_s) * 1e3)) for a in attempts
                        if a.worker == worker and a.outcome == outcome and a.hedge == hedge]  # fmt: skip
                if bars:
                    ax.broken_barh(bars, (lane - 0.35, 0.7), facecolors=colour, edgecolor="black" if hedge else colour,
                                   linewidth=0.3, hatch="//" if hedge else None, alpha=0.8)  # fmt: skip
    errors = [(r.started_s - origin) * 1e3 + r.latency_ms for r in records if r.error]
    if errors:
        ax.scatter(errors, [-0.8] * len(errors), marker="x", color="tab:red", s=12, label="request error")
    ax.set_yticks(range(len(lanes)), lanes)
    ax.set_ylim(-1.2, len(lanes) - 0.4)
    ax.set_xlabel("ms since the first request")
    ax.set_title(title)
    handles = [Patch(color=c, label=o) for o, c in COLOURS.items()]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="hedge"))
    ax.legend(handles=handles, loc="upper right", fontsize=7, ncol=4)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
