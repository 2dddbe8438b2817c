"""Size of the torch-free runtime environment that `make test-runtime` builds (.venv-runtime), by package.

The README quotes these numbers; run `make test-runtime` first so the environment exists.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def main() -> None:
    venv = ROOT / ".venv-runtime"
    site = next(venv.glob("lib/python*/site-packages"), None)
    if site is None:
        sys.exit(f"{venv} does not exist: run `make test-runtime` first")
    groups = {
        "onnxruntime": ["onnxruntime"], "numpy": ["numpy", "numpy.libs"], "tflite-runtime": ["tflite_runtime"],
        "CLI (rich, pygments, click, markdown-it, mdurl)": ["rich", "pygments", "click", "markdown_it", "mdurl"],
        "pip + setuptools": ["pip", "setuptools", "_distutils_hack"],
    }  # fmt: skip
    total = size(venv)
    print(f"{'part':48s} {'MB':>8s}")
    for label, names in groups.items():
        print(f"{label:48s} {sum(size(site / n) for n in names if (site / n).exists()) / 1e6:8.1f}")
    print(f"{'whole environment (incl. the interpreter links)':48s} {total / 1e6:8.1f}")


if __name__ == "__main__":
    main()
