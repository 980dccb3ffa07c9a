"""The SPA's Content-Security-Policy on the local server's static origin: the header on
every static answer, and the built app (and the fallback page) working under it in a
real browser, where an inline script or style attribute is refused (the positive control
that the policy is enforced and that violations are seen)."""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from devserver import gateway
from tests import requires

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "web" / "dist"
FALLBACK = ROOT / "web" / "static"
POLICY = "default-src 'self'; object-src 'none'; frame-ancestors 'none'"


@pytest.fixture(scope="module")
def chalice_app() -> tuple[object, object]:
    # Once per process: it rewires the app's class. It also sets the local stage's
    # environment, which the static files do not need and later tests must not inherit.
    from chalicelib import config

    try:
        with mock.patch.dict(os.environ):
            return gateway.load_app("local")
    finally:
        config.reset()


def _serve(root: Path, monkeypatch: pytest.MonkeyPatch, loaded: tuple[object, object]) -> Iterator[str]:
    monkeypatch.setattr(gateway, "static_root", lambda: root)
    app, config = loaded
    srv = gateway.make_server(app, config, "127.0.0.1", 0, quiet=True)
    httpd = srv.server
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        thread.join(timeout=10)


@pytest.fixture(params=["dist", "fallback"])
def origin(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
           chalice_app: tuple[object, object]) -> Iterator[tuple[str, Path]]:
    root = DIST if request.param == "dist" else FALLBACK
    requires.path(root / "index.html", "the built web app", "run `make web`")
    for base in _serve(root, monkeypatch, chalice_app):
        yield base, root


def _headers(url: str, method: str = "GET") -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_every_static_answer_carries_the_policy(origin: tuple[str, Path]) -> None:
    base, root = origin
    asset = next(p for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in (".js", ".css"))
    cases = [("/", "GET", 200), ("/jobs", "GET", 200), (f"/{asset.relative_to(root)}", "GET", 200),
             ("/", "HEAD", 200), ("/missing.js", "GET", 404), ("/../../etc/passwd", "GET", 404)]
    for path, method, status in cases:
        got, headers = _headers(base + path, method)
        assert got == status, (path, method, got)
        assert headers.get("Content-Security-Policy") == POLICY, (path, method, headers)
        assert headers.get("X-Content-Type-Options") == "nosniff"
    # AND it is the very policy CloudFront sends (tests/test_infra.py checks that side)
    assert gateway.CONTENT_SECURITY_POLICY == POLICY


def test_the_page_works_under_the_policy_and_inline_code_is_refused(origin: tuple[str, Path], browser: Any) -> None:
    base, _ = origin
    context = browser.new_context()
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        # The browser's own favicon request 404s (the app has none): not the app's doing.
        page.on("console", lambda m: errors.append(f"{m.text} {m.location.get('url')}")
                if m.type == "error" and not str(m.location.get("url")).endswith("/favicon.ico") else None)
        page.add_init_script("window.__violations = [];"
                             "document.addEventListener('securitypolicyviolation',"
                             " e => window.__violations.push(e.violatedDirective));")
        page.goto(base + "/")
        # THEN the app rendered (its script ran) and its stylesheet applied
        token_box = page.get_by_label("API token")
        token_box.wait_for(state="visible", timeout=15_000)
        sheets = page.evaluate("Array.from(document.styleSheets).filter(s => s.cssRules.length).length")
        assert sheets >= 1
        assert page.evaluate("window.__violations") == [] and errors == [], errors
        # WHEN code is injected inline (what an injection would do)
        page.evaluate("""() => {
            const s = document.createElement('script'); s.textContent = 'window.__ran = 1';
            document.body.appendChild(s);
            document.body.setAttribute('style', 'background: red');
        }""")
        page.wait_for_function("window.__violations.length >= 2", timeout=10_000)
        # THEN the browser refused both, and said so
        assert page.evaluate("window.__ran") is None
        assert {v.split(" ")[0] for v in page.evaluate("window.__violations")} >= {
            "script-src-elem", "style-src-attr"}, page.evaluate("window.__violations")
    finally:
        context.close()
