"""The one way edgekit writes and reads its own JSON files (manifests, plans, device profiles, records).

Writes are atomic (a reader never sees half a file); reads turn a missing, unreadable or corrupt file into one
``BundleError`` that names the file and what to do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edgekit.errors import BundleError


def write_json(path: str | Path, data: Any) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    return path


def read_json(path: str | Path, what: str = "file", fix: str = "re-create it") -> Any:
    """``what`` names the file's role in the error ("manifest", "split plan" ...), ``fix`` the remedy."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{path}: the {what} is missing; {fix}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is corrupt ({exc}); {fix}") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read the {what} ({exc.strerror}); {fix}") from None
