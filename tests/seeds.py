"""Seeds of the tests that make random choices: printed, replayable, a fixed set plus a fresh one.

A test that draws random choices takes the `seed` fixture and is marked `@seeded(a, b, ...)`:
it runs once per fixed seed (the same choices every run, so CI keeps covering the cases those
seeds reach) and once more with a seed drawn fresh in this run (new choices every run). The
seed of each run is printed, recorded as a junit property and shown in a "seed" section of any
failure report; `SWITCHYARD_SEED=<n>` runs every seeded test with that seed alone, so a failure
replays with its own choices.

Loaded as a pytest plugin by tests/conftest.py (`pytest_plugins`).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Generator
from typing import Any, TypeVar

import pytest

ENV = "SWITCHYARD_SEED"
FRESH_ID = "seed-fresh"
_KEY = pytest.StashKey[int]()

F = TypeVar("F", bound=Callable[..., Any])


def replayed() -> int | None:
    """The seed SWITCHYARD_SEED asks for, if any."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise pytest.UsageError(f"{ENV} must be a whole number (a seed a test printed), not {raw!r}") from None


def params(*fixed: int) -> list[Any]:
    """Parameters of a seeded test: each fixed seed, then one drawn fresh at run time (its id
    stays `seed-fresh`, so pytest-xdist's workers collect the same tests); or the replayed one."""
    again = replayed()
    if again is not None:
        return [pytest.param(again, id=f"seed-{again}")]
    return [pytest.param(s, id=f"seed-{s}") for s in fixed] + [pytest.param(None, id=FRESH_ID)]


def seeded(*fixed: int) -> Callable[[F], F]:
    """Mark a test that takes the `seed` fixture: it runs with each fixed seed and a fresh one."""
    if not fixed:
        raise ValueError("a seeded test needs at least one fixed seed")
    return pytest.mark.parametrize("seed", params(*fixed), indirect=True)


def fresh() -> int:
    return random.SystemRandom().randrange(1, 2**31)


def single(fixed: int, *, fresh_instead: bool = False) -> int:
    """The seed of a test too slow to run twice in every run: `fixed` (or a fresh one when
    `fresh_instead`, e.g. at full size); SWITCHYARD_SEED replays either."""
    again = replayed()
    if again is not None:
        return again
    return fresh() if fresh_instead else fixed


def replay_hint(seed: int) -> str:
    return f"seed {seed} ({ENV}={seed} replays it)"


@pytest.fixture()
def seed(request: pytest.FixtureRequest, record_property: Callable[[str, object], None]) -> int:
    """This run's seed (see the module's doc)."""
    if not hasattr(request, "param"):
        raise pytest.UsageError(f"{request.node.nodeid} takes `seed` but is not marked @seeded(...)")
    value = request.param if request.param is not None else fresh()
    request.node.stash[_KEY] = value
    record_property("seed", value)
    print(replay_hint(value))
    return int(value)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[
        None, pytest.TestReport, pytest.TestReport]:
    report = yield
    value = item.stash.get(_KEY, None)
    if value is not None and report.failed:
        test = item.nodeid.split("[")[0]  # replayed, the test's ids name that seed instead
        report.sections.append(("seed", f"{replay_hint(value)}: {ENV}={value} pytest '{test}'"))
    return report
