"""Seeded tests (tests/seeds.py): a fixed set of seeds plus one drawn fresh, each printed and
named in a failure, and SWITCHYARD_SEED replays one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.seeds import ENV, params

ROOT = Path(__file__).resolve().parents[1]

SAMPLE = '''
import random
from tests.seeds import seeded

@seeded(7, 8)
def test_draws(seed):
    rng = random.Random(seed)
    print("draws", seed, [rng.randrange(1000) for _ in range(5)])
    assert seed != 8, "seed 8 fails on purpose"
'''


def _pytest(tmp_path: Path, env: dict[str, str]) -> str:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    run_env = {k: v for k, v in os.environ.items() if k != ENV} | env | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.seeds", "-p", "no:cacheprovider",
                           "-q", "-rA", "-n", "0", str(tmp_path / "test_sample.py")],
                          cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=120)
    return done.stdout + done.stderr


def _ran(out: str) -> list[str]:
    return sorted(re.findall(r"^(?:PASSED|FAILED) test_sample.py::test_draws\[(seed-\w+)\]", out, re.M))


def _draws(out: str) -> dict[int, str]:
    return {int(seed): draws for seed, draws in re.findall(r"draws (\d+) (\[.*?\])", out)}


def test_fixed_seeds_and_a_fresh_one_run_a_failure_names_its_seed_and_the_seed_replays(tmp_path: Path) -> None:
    # WHEN a test seeded with 7 and 8 runs (8 fails on purpose)
    out = _pytest(tmp_path, {})
    # THEN it ran with 7, 8 and a fresh seed, each printed
    assert _ran(out) == ["seed-7", "seed-8", "seed-fresh"], out
    first = _draws(out)
    fresh = next(s for s in first if s not in (7, 8))
    assert set(first) == {7, 8, fresh} and f"seed {fresh} (SWITCHYARD_SEED={fresh} replays it)" in out, out
    # AND the failing run's report names its seed and how to replay it
    assert "SWITCHYARD_SEED=8 pytest 'test_sample.py::test_draws'" in out, out
    assert "1 failed, 2 passed" in out, out
    # WHEN the fresh seed is replayed
    again = _pytest(tmp_path, {ENV: str(fresh)})
    # THEN the test runs with that seed alone and draws what it drew
    assert _ran(again) == [f"seed-{fresh}"], again
    assert _draws(again) == {fresh: first[fresh]}
    # AND the seed matters (else replaying it would prove nothing)
    assert first[7] != first[8]


def test_a_seed_that_is_not_a_number_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "abc")
    with pytest.raises(pytest.UsageError, match="SWITCHYARD_SEED must be a whole number"):
        params(1)
