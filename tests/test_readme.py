"""The README's walkthrough, run as written against the local stack.

The shell blocks marked `<!-- walkthrough -->` run in order in one bash, against
`python -m devserver` started as `make run` starts it (own ports, own state directory, the
admin token generated into it). The `# ...` lines under a command are its output as the
README shows it: each must appear in what the block printed, in order, with `…` standing
for any text and ids standing for any id of their kind. If an endpoint, a field or a
status changes, the README's output no longer matches and this test fails.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_local_stack import Stack

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MARKER = "<!-- walkthrough -->"
# A guard against a hung command, not a speed bound: the walkthrough's own loop waits at
# most a minute for the run.
BASH_TIMEOUT = 300
_ID = re.compile(r"\b(auth|job|run|usr|acct|tok)_[0-9a-z]{26}\b")
_SEPARATOR = "@@walkthrough-block-end@@"


@dataclass
class Block:
    line: int  # where the block starts in README.md (1-based), for messages
    code: str
    expected: list[str]  # output lines as shown (continuations joined)


def walkthrough_blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks: list[Block] = []
    for i, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        assert lines[i + 1].strip() == "```sh", f"README.md:{i + 2}: a {MARKER} must be followed by ```sh"
        body: list[str] = []
        for j in range(i + 2, len(lines)):
            if lines[j].strip() == "```":
                break
            body.append(lines[j])
        else:
            raise AssertionError(f"README.md:{i + 2}: unclosed code block")
        blocks.append(Block(i + 2, "\n".join(body) + "\n", expected_output(body)))
    return blocks


def expected_output(body: list[str]) -> list[str]:
    """'# x' lines at the start of a line; '#   y' (three spaces) continues the one before."""
    out: list[str] = []
    for line in body:
        if line.startswith("#   ") and out:
            out[-1] += " " + line[4:].strip()
        elif line.startswith("# "):
            out.append(line[2:].strip())
    return out


def pattern(expected: str) -> str:
    """A regex for one shown output line, both sides with their whitespace collapsed to one
    space: `…` is any text, and an id is any id of its kind."""
    parts = []
    for piece in expected.split("…"):
        out, last = [], 0
        for m in _ID.finditer(piece):
            out += [re.escape(piece[last:m.start()]), m.group(1) + "_[0-9a-z]+"]
            last = m.end()
        parts.append("".join([*out, re.escape(piece[last:])]))
    return ".*?".join(parts)


def check_output(block: Block, printed: str) -> None:
    text = " ".join(printed.split())
    at = 0
    for shown in block.expected:
        found = re.compile(pattern(" ".join(shown.split()))).search(text, at)
        assert found, (f"README.md:{block.line}: the README shows\n  {shown}\nbut the block printed"
                       f" (from where the previous output matched):\n  {text[at:][:3000]}")
        at = found.end()


def test_the_blocks_are_found_and_show_the_story() -> None:
    blocks = walkthrough_blocks(README.read_text())
    shown = "\n".join(line for b in blocks for line in b.expected)
    assert len(blocks) >= 6, [b.line for b in blocks]
    # The story the walkthrough must tell (SPEC rules 4 and 10).
    for fact in ('"status": "sleeping"', "authorization.in_use", '"status": "paused"', "completed", "204"):
        assert fact in shown, fact
    assert all(b.expected for b in blocks), [b.line for b in blocks if not b.expected]


def test_pattern_matches_abbreviations_ids_and_wrapping() -> None:
    shown = '{"data": {"id": "job_01m8d4zzpeajm9jbw5a7ry0kec", …, "status": "sleeping"}}'
    printed = '{"data": {"id": "job_01m92abcdefghjkmnpqrstvwxy", "label": "x",\n "status": "sleeping"}}'
    assert re.search(pattern(shown), " ".join(printed.split()))
    assert not re.search(pattern(shown), printed.replace("sleeping", "paused"))
    assert not re.search(pattern(shown), printed.replace("job_", "run_"))


class GeneratedTokenStack(Stack):
    """`make run` as a new user starts it: no token given, so one is generated into the
    state directory, where the walkthrough reads it."""

    def env(self) -> dict[str, str]:
        env = super().env()
        del env["SWITCHYARD_ADMIN_TOKEN"]
        return env


@pytest.mark.smoke
def test_the_walkthrough_runs_as_written(tmp_path: Path) -> None:
    blocks = walkthrough_blocks(README.read_text())
    stack = GeneratedTokenStack(tmp_path / "state", tmp_path / "devserver.log")
    script = "".join(f"{b.code}\necho {_SEPARATOR}\n" for b in blocks)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SWITCHYARD_"))}
    env.update(PORT=str(stack.port), SWITCHYARD_STATE_DIR=str(stack.state_dir))
    try:
        stack.start()
        # -e: a command that fails stops the walkthrough here, as it would stop a reader.
        done = subprocess.run(["bash", "-e", "-u", "-o", "pipefail", "-c", script], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=BASH_TIMEOUT)
    finally:
        stack.kill()
    outputs = done.stdout.split(_SEPARATOR + "\n")
    assert done.returncode == 0, (done.returncode, done.stdout[-3000:], done.stderr[-3000:], stack.tail())
    assert len(outputs) == len(blocks) + 1 and outputs[-1] == "", done.stdout[-3000:]
    for block, printed in zip(blocks, outputs, strict=False):
        check_output(block, printed)
