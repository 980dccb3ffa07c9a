"""tests/requires.py: a missing tool skips a developer's tests but fails them under CI=true."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import requires

ROOT = Path(__file__).resolve().parent.parent
GONE = Path("/nonexistent/switchyard/chromium")


@pytest.mark.parametrize("value", ["true", "1", "TRUE", "yes"])
def test_under_ci_a_missing_executable_fails_with_what_and_how(monkeypatch, value) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception) as failed:
        requires.path(GONE, "chromium", "run `make chromium`")
    assert str(GONE) in str(failed.value) and "make chromium" in str(failed.value)
    assert "CI must not skip" in str(failed.value)


@pytest.mark.parametrize("value", [None, "", "0", "false", "no"])
def test_without_ci_a_missing_executable_skips(monkeypatch, value) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception) as skipped:
        requires.path(GONE, "chromium", "run `make chromium`")
    assert "make chromium" in str(skipped.value)


def test_a_missing_package_fails_under_ci_and_skips_otherwise(monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no_such_package_for_switchyard"):
        requires.module("no_such_package_for_switchyard", "pip install it")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="pip install it"):
        requires.module("no_such_package_for_switchyard", "pip install it")


def test_what_is_there_is_returned_under_ci_too(monkeypatch) -> None:
    # The positive control: present pieces pass through, CI or not.
    monkeypatch.setenv("CI", "true")
    assert requires.path(ROOT, "the repository", "-") == ROOT
    assert requires.module("json", "-") is json


PROBE = """
from pathlib import Path
from tests import requires

CHROMIUM = requires.path(Path({path!r}), "chromium", "run `make chromium`")


def test_uses_the_browser():
    assert CHROMIUM.exists()
"""


def run_probe(tmp_path: Path, chromium: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    """A test module that needs chromium, run by pytest as CI would (module-level check)."""
    (tmp_path / "test_probe.py").write_text(PROBE.format(path=str(chromium)))
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                           "-p", "no:xdist", "-rs", "test_probe.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_test_module_needing_a_missing_chromium_fails_the_ci_run(tmp_path: Path) -> None:
    done = run_probe(tmp_path, GONE, ci="true")
    assert done.returncode != 0, done.stdout
    assert "CI must not skip" in done.stdout and str(GONE) in done.stdout, done.stdout
    # ... and only skips it on a developer's machine
    done = run_probe(tmp_path, GONE, ci=None)
    # (exit 5: the module was skipped whole, so pytest collected no test)
    assert done.returncode == 5 and "1 skipped" in done.stdout and "make chromium" in done.stdout, done.stdout
    # ... while with the piece present the test runs (and passes) under CI
    done = run_probe(tmp_path, Path(sys.executable), ci="true")
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout
