"""The accessibility audit of the browser tests: axe-core (pinned in web/package.json, so
`make web` installs it and it runs offline) over the screen as it is, failing on any
serious or critical violation.

The script goes in through the DevTools protocol (`page.evaluate`), which the page's
Content-Security-Policy does not apply to: the page itself stays under its real policy.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from tests import requires

ROOT = Path(__file__).resolve().parents[2]
AXE = requires.path(ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js", "axe-core",
                    "run `make web` (web/package.json pins axe-core)")
BLOCKING = ("serious", "critical")

_RUN = """async () => {
  const result = await window.axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ") + ": " + (n.failureSummary || "").split("\\n").slice(1, 2).join("")),
  }));
}"""


@lru_cache(maxsize=1)
def _source() -> str:
    return Path(AXE).read_text(encoding="utf-8")


def violations(page: Any) -> list[dict[str, Any]]:
    """Every violation axe finds on the page now, whatever its impact."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(_source())
    found: list[dict[str, Any]] = page.evaluate(_RUN)
    return found


def check(page: Any, screen: str) -> None:
    """Fail with what axe found when the screen has a serious or critical violation."""
    blocking = [v for v in violations(page) if v["impact"] in BLOCKING]
    assert not blocking, f"{screen}: " + "; ".join(
        f"{v['impact']} {v['id']} ({v['help']}) at {v['nodes']}" for v in blocking)
