"""Smoke test of the local stack: `python -m devserver` as `make run` starts it, over real HTTP.

Runs its own stack (own moto, own ports, own state directory); it uses none of the
conftest fixtures. It checks the API and the static page on one origin, the gateway's
401 envelope, and that a restart keeps the data and the admin token.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.http_receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "tok_smoketest.Lqtv34pRIiNErUg2U93PmfHmh1grhF8bYpjz5PP0owU"
STOP_TIMEOUT = 15.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    def __init__(self, state_dir: Path, log: Path, extra_env: dict[str, str] | None = None) -> None:
        self.extra_env = dict(extra_env or {})
        self.port = _free_port()
        self.aws_port = _free_port()
        self.state_dir = state_dir
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        # The pytest process may carry another stack's AWS/Switchyard settings: drop them.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "SWITCHYARD_"))}
        env.update(
            PORT=str(self.port),
            AWS_PORT=str(self.aws_port),
            SWITCHYARD_STATE_DIR=str(self.state_dir),
            SWITCHYARD_ADMIN_TOKEN=TOKEN,
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def start(self) -> float:
        """Start `python -m devserver` (what `make run` runs); seconds until /healthz answered."""
        t0 = time.monotonic()
        self.proc = self.spawn()
        # No bound on how long a start may take on a loaded machine: the stack either answers
        # or exits (a failure, with its log); a hang is caught by pytest's own timeout, and
        # whatever ends the wait early ends the process too.
        try:
            while True:
                if self.proc.poll() is not None:
                    pytest.fail(f"devserver exited with {self.proc.returncode}:\n{self.tail()}")
                try:
                    status, _ = self.call("GET", "/api/v1/healthz", token=None)
                    if status == 200:
                        return time.monotonic() - t0
                except OSError:
                    pass
                time.sleep(0.2)
        except BaseException:
            self.kill()
            raise

    def spawn(self) -> subprocess.Popen[bytes]:
        """The process, its stdout and stderr appended to the log (not a terminal)."""
        with self.log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "devserver"], cwd=ROOT, env=self.env(),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def stop(self, sig: int = signal.SIGINT) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def call(self, method: str, path: str, body: Any = None, *, token: str | None = TOKEN,
             ) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                status, raw, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            status, raw, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
        if "json" in ctype and raw:
            return status, json.loads(raw)
        return status, raw.decode("utf-8", "replace")


@pytest.mark.smoke
def test_local_stack_serves_api_and_web_and_keeps_state(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "state", tmp_path / "devserver.log")
    try:
        first_start = stack.start()

        # One origin: the static page at /, the API under /api/v1.
        status, page = stack.call("GET", "/", token=None)
        assert status == 200 and "<title>Switchyard</title>" in page, page
        assert "/api/v1/openapi.json" in page

        # No token: the gateway's 401, answered with the API envelope.
        status, body = stack.call("GET", "/api/v1/jobs", token=None)
        assert status == 401, body
        assert body["error"]["code"] == "auth.invalid_token", body
        assert set(body["error"]) == {"code", "message", "fields", "details"}, body
        status, body = stack.call("GET", "/api/v1/jobs", token="tok_nope.aaaaaaaaaaaaaaaaaaaaaaaaaaaa")
        assert status == 401 and body["error"]["code"] == "auth.invalid_token", body

        # The seeded demo bucket backs a real credential check through moto.
        status, body = stack.call("POST", "/api/v1/authorizations", {
            "provider": "amazon_s3", "method": "access_keys", "label": "smoke keys",
            "credentials": {"access_key_id": "AKIAIOSFODNN7EXAMPLE",
                            "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                            "bucket": "switchyard-demo"},
        })
        assert status == 201, body
        auth_id = body["data"]["id"]
        assert body["data"]["health"]["status"] == "healthy", body
        assert "wJalrXUtnFEMI" not in json.dumps(body)  # never echoes the secret

        # Webhooks may point at this machine locally (the devserver allows private URLs).
        with Receiver() as hook:
            status, body = stack.call("POST", "/api/v1/authorizations", {
                "provider": "webhook", "method": "none", "label": "smoke hook",
                "credentials": {"url": hook.url("/in")}})
            assert status == 201 and body["data"]["health"]["status"] == "healthy", body
            assert [r.path for r in hook.requests] == ["/in"]

        status, body = stack.call("POST", "/api/v1/jobs", {
            "provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
            "authorization_id": auth_id, "label": "smoke import",
            "config": {"bucket": "switchyard-demo", "prefix": "imports/"},
        })
        assert status == 201, body
        job_id = body["data"]["id"]

        status, body = stack.call("GET", "/api/v1/jobs")
        assert status == 200, body
        assert [j["id"] for j in body["data"]] == [job_id], body

        # The local event loop delivers the run request: the one-time import completes.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, body = stack.call("GET", f"/api/v1/jobs/{job_id}")
            if body["data"]["status"] == "completed":
                break
            time.sleep(0.5)
        assert body["data"]["status"] == "completed", (body, stack.tail())
        assert body["data"]["last_run"]["added"] == 200, body
        status, body = stack.call("GET", f"/api/v1/jobs/{job_id}/runs")
        assert body["data"][0]["status"] == "succeeded" and body["data"][0]["added"] == 200, body

        assert stack.stop(signal.SIGINT) == 0, stack.tail()
        assert "saved" in stack.tail() or "unchanged" in stack.tail(), stack.tail()

        # Same state directory: the data, the secret and the token survive the restart.
        second_start = stack.start()
        status, body = stack.call("GET", f"/api/v1/jobs/{job_id}")
        assert status == 200, body
        assert body["data"]["authorization_id"] == auth_id
        assert body["data"]["config"]["prefix"] == "imports/"
        status, body = stack.call("GET", f"/api/v1/authorizations/{auth_id}")
        assert status == 200, body
        assert [j["id"] for j in body["data"]["jobs"]] == [job_id], body
        # Re-checking reads the credentials back from Secrets Manager.
        status, body = stack.call("POST", f"/api/v1/authorizations/{auth_id}/check")
        assert status == 200 and body["data"]["status"] == "healthy", body
        status, body = stack.call("GET", "/api/v1/jobs")
        assert status == 200 and [j["id"] for j in body["data"]] == [job_id], body

        assert stack.stop(signal.SIGTERM) == 0, stack.tail()
        print(f"devserver ready in {first_start:.1f}s (new state), {second_start:.1f}s (restored)")
    finally:
        stack.kill()
