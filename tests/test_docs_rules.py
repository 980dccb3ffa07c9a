"""Two rules for where reasons are written: code says why without pointing at an issue or a
decision number (numbers mean nothing to a reader without the tracker), and every decision in
docs/decisions.md sits under its topic, not appended after the last section."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE_DIRS = ("chalicelib", "bench", "devserver", "infra", "tests", "web/src")
CODE_FILES = ("app.py",)
SUFFIXES = {".py", ".ts", ".tsx", ".js", ".css", ".html"}
CITATION = re.compile(r"\b(?:issue|decision)s?(?:\.md)?\s+(?:item\s+)?#?\d+", re.IGNORECASE)
DECISIONS = ROOT / "docs" / "decisions.md"


def code_files() -> list[Path]:
    files = [ROOT / f for f in CODE_FILES]
    for d in CODE_DIRS:
        files += [p for p in (ROOT / d).rglob("*") if p.suffix in SUFFIXES and "node_modules" not in p.parts]
    return sorted(files)


def citations(text: str) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if CITATION.search(line)]


def misplaced_decisions(text: str) -> list[str]:
    """Decision anchors outside a topic section: before the first topic, or in a section that
    only points elsewhere ("Contents", "Test harness")."""
    section = ""
    wrong = []
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        anchor = re.match(r'<a id="(d\d+)"></a>', line)
        if anchor and section in ("", "Contents", "Test harness"):
            wrong.append(f"{anchor.group(1)} under {section or 'no heading'!r}")
    return wrong


def test_the_citation_check_sees_a_citation_and_passes_plain_prose() -> None:
    assert citations("x = 1  # the budget (issue 3: 0.05 per member)") == [
        (1, "x = 1  # the budget (issue 3: 0.05 per member)")]
    assert citations("# see Decision #12\n") == [(1, "# see Decision #12")]
    assert citations('"""Why (docs/decisions.md 720)."""') == [(1, '"""Why (docs/decisions.md 720)."""')]
    assert citations("# no trace (SPEC rule 2, issue item 6)") == [(1, "# no trace (SPEC rule 2, issue item 6)")]
    assert citations("# an issue with 3 retries; the decision stands\n") == []


def test_no_code_comment_cites_an_issue_or_a_decision_number() -> None:
    files = code_files()
    assert len(files) > 100, "the scan found too few files to mean anything"
    found = [f"{p.relative_to(ROOT)}:{n}: {line}" for p in files
             for n, line in citations(p.read_text(encoding="utf-8", errors="replace"))
             if p.name != "test_docs_rules.py"]
    assert not found, "say why instead of citing a number:\n" + "\n".join(found)


def test_the_placement_check_sees_a_decision_after_the_last_topic() -> None:
    sample = ('## Contents\n\n## Exports\n\n<a id="d1"></a>\n\n1. x\n\n'
              '## Test harness\n\nMoved.\n\n<a id="d2"></a>\n\n2. y\n')
    assert misplaced_decisions(sample) == ["d2 under 'Test harness'"]


def test_every_decision_sits_under_a_topic() -> None:
    text = DECISIONS.read_text(encoding="utf-8")
    assert text.count('<a id="d') > 100
    assert misplaced_decisions(text) == []
