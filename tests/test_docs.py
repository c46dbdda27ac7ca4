"""The documentation stays usable: a short README, and no relative link that leads nowhere.

Anchors (``file.md#section``) are not checked, only that the file exists. The examples in the docs are
checked against real output elsewhere (``test_rejects.py``, ``test_property.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.workspace import REPO

README_MAX_BYTES = 12 * 1024
DOCS = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
# [text](target) or [text](target "title"); images too. Code spans and fenced blocks are removed first.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def relative_links(markdown: str) -> list[str]:
    """Targets of the Markdown links that point into the repository (no scheme, no mailto, not only an anchor)."""
    text = CODE_SPAN.sub("", FENCE.sub("", markdown))
    targets = [target for target in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)]
    return [target for target in targets if not target.startswith("#")]


def test_the_readme_is_at_most_12_kb() -> None:
    size = (REPO / "README.md").stat().st_size
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move details into docs/ (limit {README_MAX_BYTES})"


def test_the_expected_docs_exist() -> None:
    names = {path.relative_to(REPO).as_posix() for path in DOCS}
    assert {
        "README.md",
        "CONTRIBUTING.md",
        "docs/operations.md",
        "docs/input.md",
        "docs/rules.md",
        "docs/configuration.md",
        "docs/schema.md",
        "docs/performance.md",
    } <= names


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.relative_to(REPO).as_posix())
def test_every_relative_link_points_to_an_existing_file(doc: Path) -> None:
    broken = []
    for target in relative_links(doc.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0].split("?", 1)[0]
        if not (doc.parent / path).exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(REPO)}: links to missing files: {broken}"


def test_the_link_finder_sees_links_and_skips_code() -> None:
    text = "[a](docs/x.md) [b](https://example.org) [c](#here) `[d](no.md)` ![e](img.png)\n```\n[f](no.md)\n```\n"
    assert relative_links(text) == ["docs/x.md", "img.png"]
