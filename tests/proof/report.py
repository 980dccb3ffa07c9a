"""Assemble `.proof/*.json` (written by the proof suites) into docs/proof.md."""

from __future__ import annotations

import json
import sys

from tests.proof.record import RESULTS, ROOT


def render(results: list[dict]) -> str:
    lines = [
        "# Proof suites: figures of the last `make proof`",
        "",
        "Written by `make proof` (`python -m tests.proof.report`); do not edit by hand. Each suite",
        "also runs in `make test` at a small size. The suites are in `tests/proof/`.",
        "",
        "| suite | size | measured | key figures |",
        "|---|---|---|---|",
    ]
    for r in results:
        key = "; ".join(f"{k}: {v}" for k, v in list(r["figures"].items())[:4])
        lines.append(f"| [{r['title']}](#{r['suite']}) | {r['size']} | {r['measured_at']} | {key} |")
    for r in results:
        lines += ["", f"## {r['title']}", f'<a id="{r["suite"]}"></a>', ""]
        if r.get("summary"):
            lines += [r["summary"], ""]
        lines += ["| figure | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in r["figures"].items()]
        if r.get("table"):
            lines += ["", r["table"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    files = sorted(RESULTS.glob("*.json"))
    if not files:
        print("no proof results in .proof/: run the suites first", file=sys.stderr)
        return 1
    results = sorted((json.loads(f.read_text()) for f in files), key=lambda r: (r["order"], r["suite"]))
    out = ROOT / "docs" / "proof.md"
    out.write_text(render(results))
    small = [r["suite"] for r in results if r["size"] != "full"]
    print(f"wrote {out} ({len(results)} suites)" + (f"; small size: {', '.join(small)}" if small else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
