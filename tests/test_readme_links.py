"""The README and the architecture document link only inside the repository: a person who clones the
project must be able to follow every relative link (a link to `../elsewhere` broke once). Web links
(http/https, e.g. to Envoy's site) are allowed; every other target must be a file or directory of the
repository, and an anchor must name a heading of the target."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ("README.md", "docs/architecture.md", "DESIGN.md", "bench/README.md")
# [text](target) and [text](target "title"); images too. Code spans are dropped first.
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)
_WEB = re.compile(r"^(https?:)?//", re.IGNORECASE)


def links(markdown: str) -> list[str]:
    return _LINK.findall(_CODE.sub("", markdown))


def anchors(markdown: str) -> set[str]:
    """GitHub's heading slugs: lower case, punctuation dropped, spaces to hyphens."""
    slugs = set()
    for heading in re.findall(r"^#+\s+(.*)$", _CODE.sub("", markdown), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        slugs.add(slug)
    return slugs


def test_the_link_pattern_finds_relative_and_web_links() -> None:
    text = "see [a](docs/a.md), [b](https://x.org/), ![i](img.png) and `[c](not/a/link)`"
    assert links(text) == ["docs/a.md", "https://x.org/", "img.png"]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_link_stays_inside_the_repository(document: str) -> None:
    path = ROOT / document
    if not path.exists():
        pytest.skip(f"{document} is not part of this checkout")
    text = path.read_text()
    for target in links(text):
        if _WEB.match(target) or target.startswith("mailto:"):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        assert resolved.is_relative_to(ROOT), f"{document} links outside the repository: {target}"
        assert resolved.exists(), f"{document} links to a missing file: {target}"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved.read_text()), f"{document}: no heading #{anchor} in {file_part}"
