"""What `make run` prints: no warnings at start, a banner with the URL, the token and the AWS
endpoint, and one line per request (JSON when stdout is not a terminal, text when it is).

Two real stacks (`python -m devserver`, as `make run` starts it): one writing to a file, one
to a pseudo-terminal.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import pty
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devserver.console import JSON, TEXT, choose_format
from tests.test_local_stack import ROOT, TOKEN, Stack

# Distinct paths, so each request's lines can be told from everything else in the output.
APP_PATH = "/api/v1/jobs/job_consoleprobe1"  # answered by the app (404: no such job)
GATEWAY_PATH = "/api/v1/jobs/job_consoleprobe2"  # answered by the gateway (401: no token)
STATIC_PATH = "/console-probe.txt"  # a static file that is not there (404)
FENCE_POLLS = 600  # 30 s at most for a line already written to reach the log
_fences = itertools.count()


def test_the_format_follows_whether_stdout_is_a_terminal() -> None:
    leader, follower = pty.openpty()
    try:
        with os.fdopen(os.dup(follower), "w") as tty:
            assert choose_format(tty) == TEXT
    finally:
        os.close(leader)
        os.close(follower)
    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "w") as pipe:
        assert choose_format(pipe) == JSON
    assert choose_format(io.StringIO()) == JSON


class PtyStack(Stack):
    """The stack with stdout and stderr on a pseudo-terminal, copied into the log."""

    def spawn(self) -> subprocess.Popen[bytes]:
        leader, follower = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "devserver"], cwd=ROOT, env=self.env(),
                                stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
                                start_new_session=True)
        os.close(follower)

        def copy() -> None:
            with self.log.open("ab") as out:
                while True:
                    try:
                        data = os.read(leader, 65536)
                    except OSError:  # EIO: the process closed the terminal
                        break
                    if not data:
                        break
                    out.write(data)
                    out.flush()
            os.close(leader)

        threading.Thread(target=copy, name="pty-copy", daemon=True).start()
        return proc


def _lines_about(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def _request_lines(stack: Stack, path: str, *, token: str | None) -> list[str]:
    """The lines the stack wrote about one request to `path`.

    Every line about a request is written before its response, and the output keeps the
    order it was written in. So once the line of a later request (the fence) is out, all the
    lines about this one are too; only the wait for the fence is bounded.
    """
    before = len(stack.tail(10**9))
    stack.call("GET", path, token=token)
    fence = f"/console-fence-{next(_fences)}.txt"
    stack.call("GET", fence, token=None)
    for _ in range(FENCE_POLLS):
        if fence in stack.tail(10**9)[before:]:
            break
        threading.Event().wait(0.05)
    new = stack.tail(10**9)[before:]
    assert fence in new, f"the fence request {fence} was never logged:\n{new}"
    return _lines_about(new, path.rsplit("/", 1)[-1])


def _startup(stack: Stack) -> str:
    """Everything printed up to the banner's last line. The stack answers /healthz before it
    prints the banner, and a terminal's output reaches the log through a copying thread, so
    the banner is waited for (a bound only on something that must happen)."""
    marker = "Ctrl-C stops everything"
    for _ in range(FENCE_POLLS):
        if marker in stack.tail(10**9):
            break
        threading.Event().wait(0.05)
    text = stack.tail(10**9)
    assert marker in text, f"the banner was never printed:\n{text}"
    return text[: text.index(marker)]


def _check_startup(stack: Stack) -> None:
    out = _startup(stack)
    assert not re.search(r"warning", out, re.IGNORECASE), out
    assert f"http://127.0.0.1:{stack.port}/" in out, out
    assert TOKEN in out, out
    assert f"http://127.0.0.1:{stack.aws_port}" in out, out


def _running(kind: type[Stack], tmp: Path) -> Iterator[Stack]:
    stack = kind(tmp / "state", tmp / "devserver.log")
    try:
        stack.start()
        yield stack
    finally:
        stack.kill()


@pytest.fixture(scope="module")
def piped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from _running(Stack, tmp_path_factory.mktemp("piped"))


@pytest.fixture(scope="module")
def terminal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from _running(PtyStack, tmp_path_factory.mktemp("tty"))


def test_piped_start_has_no_warnings_and_the_banner_has_url_token_and_aws_endpoint(piped: Stack) -> None:
    _check_startup(piped)


def test_piped_one_json_line_per_request(piped: Stack) -> None:
    app = _request_lines(piped, APP_PATH, token=TOKEN)
    assert len(app) == 1, app
    line = json.loads(app[0])
    assert line["name"] == "switchyard.request" and line["status"] == 404, line  # the app's own line
    assert line["job_id"] == "job_consoleprobe1" and line["request_id"], line

    for path, status in ((GATEWAY_PATH, 401), (STATIC_PATH, 404)):
        lines = _request_lines(piped, path, token=None)
        assert len(lines) == 1, lines
        line = json.loads(lines[0])
        assert (line["name"], line["path"], line["status"]) == ("devserver.access", path, status), line


def test_terminal_start_has_no_warnings_and_the_banner_has_url_token_and_aws_endpoint(terminal: Stack) -> None:
    _check_startup(terminal)


def test_terminal_one_text_line_per_request(terminal: Stack) -> None:
    for path, token, status in ((APP_PATH, TOKEN, 404), (GATEWAY_PATH, None, 401), (STATIC_PATH, None, 404)):
        lines = _request_lines(terminal, path, token=token)
        assert len(lines) == 1, lines
        assert re.fullmatch(rf"\d\d:\d\d:\d\d GET {re.escape(path)} -> {status} \(\d+ ms\)\r?", lines[0]), lines
