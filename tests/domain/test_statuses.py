"""Job statuses and transitions (SPEC rule 4), over every (action, status) pair."""

from __future__ import annotations

import itertools

import pytest

from chalicelib.domain.errors import Conflict, ErrorKind
from chalicelib.domain.statuses import (
    ACTIVE_STATUSES,
    PURGE_AFTER_DAYS,
    PURGEABLE_STATUSES,
    TRANSITIONS,
    Action,
    JobStatus,
    initial_status,
    transition,
)

S = JobStatus
A = Action

# The table SPEC rule 4 implies, written out independently of the code under test.
EXPECTED: dict[Action, dict[JobStatus, JobStatus]] = {
    A.PAUSE: {S.RUNNING: S.PAUSED, S.SLEEPING: S.PAUSED},
    A.RESUME: {S.PAUSED: S.SLEEPING, S.FAILED: S.SLEEPING},
    A.RUN_NOW: {S.SLEEPING: S.SLEEPING},
    A.RUN_STARTED: {S.SLEEPING: S.RUNNING},
    A.RUN_SUCCEEDED: {S.RUNNING: S.SLEEPING},
    A.RUN_FINISHED_ONCE: {S.RUNNING: S.COMPLETED},
    A.RUN_ERRORED: {S.RUNNING: S.SLEEPING},
    A.RUN_FAILED: {S.RUNNING: S.FAILED, S.SLEEPING: S.FAILED},
}

ALL_PAIRS = list(itertools.product(Action, JobStatus))
LEGAL = [(a, s) for a, s in ALL_PAIRS if s in EXPECTED[a]]
ILLEGAL = [(a, s) for a, s in ALL_PAIRS if s not in EXPECTED[a]]


def _pair_id(pair: tuple[Action, JobStatus]) -> str:
    return f"{pair[0].value}-from-{pair[1].value}"


def test_transition_table_is_the_declared_one() -> None:
    # GIVEN the table the spec describes
    # WHEN it is compared with the code's table
    # THEN they agree entry by entry, and every action has an entry
    assert set(TRANSITIONS) == set(Action)
    assert TRANSITIONS == EXPECTED


def test_cartesian_product_is_fully_covered() -> None:
    # GIVEN the two parametrized lists
    # THEN together they are exactly Action x JobStatus, with no pair counted twice
    assert len(LEGAL) + len(ILLEGAL) == len(Action) * len(JobStatus)
    assert set(LEGAL).isdisjoint(ILLEGAL)


@pytest.mark.parametrize("pair", LEGAL, ids=[_pair_id(p) for p in LEGAL])
def test_legal_transition_gives_declared_target(pair: tuple[Action, JobStatus]) -> None:
    # GIVEN a job in a status the action is allowed from
    action, current = pair

    # WHEN the action is applied
    result = transition(current, action)

    # THEN the job moves to the declared status
    assert result is EXPECTED[action][current]


@pytest.mark.parametrize("pair", ILLEGAL, ids=[_pair_id(p) for p in ILLEGAL])
def test_illegal_transition_is_a_conflict(pair: tuple[Action, JobStatus]) -> None:
    # GIVEN a job in a status the action is not allowed from
    action, current = pair

    # WHEN the action is applied
    with pytest.raises(Conflict) as caught:
        transition(current, action)

    # THEN it is refused as a conflict that names the current status and the action
    err = caught.value
    assert err.kind is ErrorKind.CONFLICT
    assert err.code == "job.illegal_transition"
    assert err.details["status"] == current.value
    assert err.details["action"] == action.value
    assert current.value in err.message


def test_illegal_transition_message_lists_allowed_statuses() -> None:
    # GIVEN a completed job
    # WHEN a user tries to resume it
    with pytest.raises(Conflict) as caught:
        transition(S.COMPLETED, A.RESUME)

    # THEN the message says which statuses resume is allowed from
    assert "allowed from: failed, paused" in caught.value.message


def test_completed_is_terminal() -> None:
    # GIVEN a one-time job that finished (SPEC: "never runs again")
    # WHEN any action is applied
    # THEN every one of them is refused
    for action in Action:
        with pytest.raises(Conflict):
            transition(S.COMPLETED, action)


@pytest.mark.parametrize(("start", "expected"), [(True, S.SLEEPING), (False, S.PAUSED)])
def test_initial_status(start: bool, expected: JobStatus) -> None:
    # GIVEN a create request that starts or stages the job
    # WHEN the initial status is chosen
    status = initial_status(start)

    # THEN a started job waits for its first run and a staged one waits, paused, for a user
    assert status is expected


def test_active_statuses_are_running_sleeping_paused() -> None:
    # THEN exactly the statuses that keep an authorization in use (SPEC rule 10)
    assert sorted(s.value for s in ACTIVE_STATUSES) == ["paused", "running", "sleeping"]


def test_purgeable_statuses_are_paused_failed_completed() -> None:
    # THEN exactly the statuses purged after 90 days unless touched (SPEC rule 4)
    assert sorted(s.value for s in PURGEABLE_STATUSES) == ["completed", "failed", "paused"]
    assert PURGE_AFTER_DAYS == 90
