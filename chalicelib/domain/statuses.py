"""Job statuses and the transitions between them, declared as data.

Every status change goes through `transition()`, which refuses anything not in the
table; the store then writes it conditionally on the status it read.
"""

from __future__ import annotations

from enum import StrEnum

from chalicelib.domain.errors import Conflict


class JobStatus(StrEnum):
    RUNNING = "running"
    SLEEPING = "sleeping"
    PAUSED = "paused"
    FAILED = "failed"
    COMPLETED = "completed"


class Action(StrEnum):
    # user actions
    PAUSE = "pause"
    RESUME = "resume"
    RUN_NOW = "run"
    # engine events (the runner issue drives these)
    RUN_STARTED = "run_started"
    RUN_SUCCEEDED = "run_succeeded"  # continuous job: back to sleep until the next run
    RUN_FINISHED_ONCE = "run_finished_once"  # one-time job: done for good
    RUN_ERRORED = "run_errored"  # transient error inside the failure window: back off
    RUN_FAILED = "run_failed"  # past the failure window, or a config/auth error


S = JobStatus

# (action, from) -> to. Anything absent is an illegal transition.
TRANSITIONS: dict[Action, dict[JobStatus, JobStatus]] = {
    Action.PAUSE: {S.RUNNING: S.PAUSED, S.SLEEPING: S.PAUSED},
    Action.RESUME: {S.PAUSED: S.SLEEPING, S.FAILED: S.SLEEPING},
    # Run now keeps the status: it queues a run; the runner moves it to running.
    Action.RUN_NOW: {S.SLEEPING: S.SLEEPING},
    Action.RUN_STARTED: {S.SLEEPING: S.RUNNING},
    Action.RUN_SUCCEEDED: {S.RUNNING: S.SLEEPING},
    Action.RUN_FINISHED_ONCE: {S.RUNNING: S.COMPLETED},
    Action.RUN_ERRORED: {S.RUNNING: S.SLEEPING},
    Action.RUN_FAILED: {S.RUNNING: S.FAILED, S.SLEEPING: S.FAILED},
}

# Statuses that keep an authorization in use (SPEC rule 10).
ACTIVE_STATUSES: frozenset[JobStatus] = frozenset({S.RUNNING, S.SLEEPING, S.PAUSED})
# Statuses that are purged after 90 days unless touched (SPEC rule 4).
PURGEABLE_STATUSES: frozenset[JobStatus] = frozenset({S.PAUSED, S.FAILED, S.COMPLETED})
PURGE_AFTER_DAYS = 90


def transition(current: JobStatus, action: Action) -> JobStatus:
    allowed = TRANSITIONS[action]
    if current not in allowed:
        verbs = ", ".join(sorted(s.value for s in allowed)) or "no status"
        raise Conflict(
            f"cannot {action.value} a job that is {current.value}; allowed from: {verbs}",
            code="job.illegal_transition",
            details={"status": current.value, "action": action.value},
        )
    return allowed[current]


def initial_status(start: bool) -> JobStatus:
    """A started job waits for its first run; a staged one waits for a user."""
    return S.SLEEPING if start else S.PAUSED
