"""The documentation: README.md stays short, every relative link resolves, docs/schema.md matches the schema.

docs/schema.md is the output of ``python scripts/schema_doc.py``, which renders ``python -m solvers schema``;
a schema change without a regenerated page fails here with the command that regenerates it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
REGENERATE = "python scripts/schema_doc.py > docs/schema.md"

#: ``[text](target)`` and ``![alt](target)``; the target ends at the first space or closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def _links(page: Path) -> list[str]:
    """Relative link targets of a markdown page, code blocks and inline code left out."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("//")]


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a markdown page (lower case, punctuation dropped, spaces to hyphens)."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_readme_is_short() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= 160, f"README.md has {lines} lines; keep it at 160 or fewer (move reference text to docs/)"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.relative_to(ROOT)})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: " + "; ".join(broken)


def test_schema_page_is_current() -> None:
    current = subprocess.run([sys.executable, "scripts/schema_doc.py"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    page = ROOT / "docs" / "schema.md"
    assert page.exists(), f"docs/schema.md is missing; run: {REGENERATE}"
    if page.read_text(encoding="utf-8") != current:
        pytest.fail(f"docs/schema.md differs from the schema; run: {REGENERATE}", pytrace=False)


def test_schema_page_names_every_field() -> None:
    """Every field of the schema appears in the page, and every described field exists in the schema."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import schema_doc
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    schema = schema_doc.solver_schema()
    paths = {f"{path}.{name}" if path else name
             for path, node in schema_doc._objects(schema, "") for name in node.get("properties", {})}
    page = (ROOT / "docs" / "schema.md").read_text(encoding="utf-8")
    missing = sorted(p for p in paths if f"| `{p.rsplit('.', 1)[-1]}` |" not in page)
    assert not missing, f"fields not in docs/schema.md: {missing}; run: {REGENERATE}"
    stale = sorted(k for k in schema_doc.DESCRIPTIONS
                   if k not in paths and k.removesuffix("[]") not in paths and f"{k}[]" not in paths)
    assert not stale, f"scripts/schema_doc.py describes fields the schema lacks: {stale}"
