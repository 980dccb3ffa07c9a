from __future__ import annotations

from tests.proof.report import render


def test_report_lists_every_suite_with_its_figures_and_table() -> None:
    results = [
        {"suite": "fuzz", "title": "API fuzzing", "order": 1, "size": "full", "measured_at": "t",
         "figures": {"requests": 2100, "server errors": 0}, "table": "| a |\n|---|\n| b |", "summary": "S"},
        {"suite": "load", "title": "Load", "order": 2, "size": "small", "measured_at": "t",
         "figures": {"p95 ms": 41.5}, "table": "", "summary": ""},
    ]
    text = render(results)
    assert text.index("## API fuzzing") < text.index("## Load")
    assert "| requests | 2100 |" in text and "| p95 ms | 41.5 |" in text
    assert "| a |\n|---|\n| b |" in text
    assert "requests: 2100; server errors: 0" in text
