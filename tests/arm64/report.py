"""The numbers the arm64 tests measure, one row per bundle, printed at the end of the run and written to
build/arm64/report.json (the closing note of a run quotes them)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tools.arm64.environment import Arm64Environment


@dataclass(frozen=True)
class Row:
    bundle: str  # model/format/precision
    runtime: str  # the arm64 runtime that ran it
    compared: str  # what was compared: outputs, spike trains, greedy tokens
    max_arm64_vs_x86: float | None  # largest |arm64 - x86| over every compared output value
    max_arm64_vs_torch: float | None
    allowed: float | None  # the bundle's own allowance against PyTorch (None: judged on quality or exactness)
    agreement: str  # top-1 (INT8), identical spike trains or token sequences, arm64 vs x86
    samples: int
    passed: bool


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"facts": self.facts, "rows": [asdict(r) for r in self.rows]}, indent=1) + "\n")

    def lines(self) -> list[str]:
        def num(value: float | None) -> str:
            return "-" if value is None else f"{value:.3g}"

        header = ("bundle", "arm64 runtime", "compared", "max|arm64-x86|", "max|arm64-torch|", "allowed",
                  "arm64 vs x86", "n", "ok")  # fmt: skip
        table = [header] + [
            (r.bundle, r.runtime, r.compared, num(r.max_arm64_vs_x86), num(r.max_arm64_vs_torch), num(r.allowed),
             r.agreement, str(r.samples), "yes" if r.passed else "NO")
            for r in sorted(self.rows, key=lambda r: r.bundle)
        ]  # fmt: skip
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        out = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in table]
        out += [f"{k}: {v}" for k, v in self.facts.items()]
        return out


REPORT = Report()
REPORT_PATH = Arm64Environment().root / "report.json"
