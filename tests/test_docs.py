"""The project's documents point only at documents that exist in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ["README.md", "ARCHITECTURE.md", "pyproject.toml", *(f"docs/{p.name}" for p in ROOT.glob("docs/*.md"))]
# A Markdown link's target, a capitalised document name (README.md, VERSIONS.md ...) or a path under docs/.
REFERENCE = re.compile(r"\]\((?!\w+://)([^)#\s]+)|(?<![\w/.-])((?:[\w.-]+/)*[A-Z][\w-]*\.md|docs/[\w./-]+)")


def references(text: str) -> set[str]:
    return {link or name for link, name in REFERENCE.findall(text)}


def test_the_pattern_finds_what_a_document_points_at():
    found = references("see [the notes](docs/papers.md#ed-vit), VERSIONS.md and docs/toolchain.md; not https://x/y.md")
    assert found == {"docs/papers.md", "VERSIONS.md", "docs/toolchain.md"}


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_document_a_document_names_exists(document):
    path = ROOT / document
    missing = sorted(r for r in references(path.read_text()) if not ((ROOT / r).exists() or (path.parent / r).exists()))
    assert not missing, f"{document} points at {missing}"
