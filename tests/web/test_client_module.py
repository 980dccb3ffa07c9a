"""Every API call of the SPA goes through one client module, web/src/api.ts:
no other source file of the app makes an HTTP request of its own."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "web" / "src"
CLIENT = SRC / "api.ts"
# Ways a browser app sends a request: fetch, XHR, axios (or any HTTP library), beacons,
# event streams and sockets. Comments are stripped first, so a mention in one is fine.
REQUEST = re.compile(r"\bfetch\s*\(|\bXMLHttpRequest\b|\baxios\b|\bsendBeacon\b|\bEventSource\b|\bWebSocket\b"
                     r"|from\s+[\"'](?:ky|got|superagent|ofetch|redaxios)[\"']")
COMMENT = re.compile(r"/\*.*?\*/|(?<![:\"'])//[^\n]*", re.S)


def requests_in(text: str) -> list[str]:
    return [m.group(0) for m in REQUEST.finditer(COMMENT.sub("", text))]


def test_the_request_pattern_finds_each_way_of_calling_out() -> None:
    # GIVEN snippets a component might sneak in; THEN each is found, and a comment is not.
    for snippet in ('await fetch("/api/v1/jobs")', "new XMLHttpRequest()", 'import axios from "axios"',
                    "navigator.sendBeacon(url)", "new EventSource(u)", "new WebSocket(u)", 'import ky from "ky"'):
        assert requests_in(snippet), snippet
    assert not requests_in("// we never fetch( here\n/* XMLHttpRequest */ const x = 1;")
    assert not requests_in('const url = "https://example.com"; prefetch(x);')


def test_only_the_client_module_calls_the_network() -> None:
    # GIVEN the app's sources (web/index.html too: an inline script could call out)
    files = [p for p in SRC.rglob("*") if p.suffix in (".ts", ".tsx", ".js", ".jsx", ".mjs")]
    files.append(SRC.parent / "index.html")
    assert CLIENT in files and len(files) > 5
    # WHEN each is searched for a request; THEN only api.ts makes one (and it does).
    offenders = {str(p.relative_to(SRC.parent)): found for p in files if p != CLIENT
                 and (found := requests_in(p.read_text(encoding="utf-8")))}
    assert not offenders, f"API calls outside web/src/api.ts: {offenders}"
    assert requests_in(CLIENT.read_text(encoding="utf-8")) == ["fetch("]
