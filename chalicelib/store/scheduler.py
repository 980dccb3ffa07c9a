"""EventBridge Scheduler: one schedule per scheduled job, sending run requests to the runs queue.

A schedule is named after its job (`job-<job_id>`) in the stage's group
(`switchyard-<stage>`, created by infra/template.json). Its target is the runs queue and
its input names the job and the trigger only, never credentials or config:

    {"account_id": ..., "job_id": ..., "trigger": "schedule",
     "requested_at": "<aws.scheduler.scheduled-time>"}

EventBridge Scheduler replaces `<aws.scheduler.scheduled-time>` with the occurrence's time
(e.g. 2026-03-22T18:59:00Z) when it sends the message; the local event loop does the same.

The queue's and the role's ARNs are built from the caller's account (STS
GetCallerIdentity, once per process; it needs no permission), the region and the
naming conventions of infra/template.json.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from chalicelib.config import settings, stage_queue
from chalicelib.domain.schedules import parse_rate, wanted_expression
from chalicelib.store import aws
from chalicelib.store.dynamo import error_code

SyncOutcome = Literal["created", "updated", "unchanged", "deleted", "absent"]

SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
# A scheduled run request that could not be delivered for an hour is stale: the next
# occurrence will come (AWS's default is 24 hours and 185 attempts).
RETRY_POLICY = {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 20}
_NAME_OK = re.compile(r"^[0-9A-Za-z_.\-]{1,64}$")

_identity: tuple[str, str] | None = None  # (partition, account id)
_identity_lock = threading.Lock()


def reset() -> None:
    """Forget the cached account (tests and the local runner move the endpoint)."""
    global _identity
    with _identity_lock:
        _identity = None


def _caller() -> tuple[str, str]:
    global _identity
    found = _identity
    if found is None:
        with _identity_lock:
            found = _identity
            if found is None:
                me = aws.client("sts").get_caller_identity()
                found = (str(me["Arn"]).split(":")[1], str(me["Account"]))
                _identity = found
    return found


def own_identity() -> tuple[str, str]:
    """(partition, AWS account id) of the stage's own identity, read once per process."""
    return _caller()


class SchedulerStore:
    """Keeps a job's EventBridge schedule in line with the job (`sync`), idempotently.

    `group`, `queue_name` and `role_name` default to the stage's (tests point them elsewhere).
    """

    def __init__(
        self,
        *,
        group: str | None = None,
        queue_name: str | None = None,
        role_name: str | None = None,
    ) -> None:
        self._group = group
        self._queue_name = queue_name
        self._role_name = role_name

    @property
    def client(self) -> Any:
        return aws.client("scheduler")

    @property
    def group(self) -> str:
        return self._group or f"switchyard-{settings().stage}"

    @property
    def queue_arn(self) -> str:
        partition, account = _caller()
        name = stage_queue(self._queue_name or settings().runs_queue_name)
        return f"arn:{partition}:sqs:{settings().region}:{account}:{name}"

    @property
    def role_arn(self) -> str:
        partition, account = _caller()
        name = self._role_name or f"switchyard-{settings().stage}-scheduler"
        return f"arn:{partition}:iam::{account}:role/{name}"

    @staticmethod
    def name_for(job_id: str) -> str:
        """Deterministic, at most 64 characters of [0-9A-Za-z_.-]."""
        name = f"job-{job_id}"
        if _NAME_OK.match(name):
            return name
        return "job-" + hashlib.sha256(job_id.encode()).hexdigest()[:40]

    @staticmethod
    def message(account_id: str, job_id: str) -> str:
        return json.dumps(
            {"account_id": account_id, "job_id": job_id, "trigger": "schedule", "requested_at": SCHEDULED_TIME},
            sort_keys=True,
        )

    def wanted(
        self, account_id: str, job_id: str, schedule: Mapping[str, Any] | None, active: bool, now: datetime
    ) -> dict[str, Any] | None:
        """The CreateSchedule/UpdateSchedule arguments the job calls for, None for no schedule."""
        # A one-time run "now" has none: the job's own run request covers it.
        expr = wanted_expression(schedule, active, now)
        if expr is None:
            return None
        args: dict[str, Any] = {
            "Name": self.name_for(job_id),
            "GroupName": self.group,
            "Description": f"Switchyard job {job_id} of account {account_id}",
            "ScheduleExpression": expr.expression,
            "ScheduleExpressionTimezone": expr.timezone,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED",
            "ActionAfterCompletion": "DELETE" if expr.one_time else "NONE",
            "Target": {
                "Arn": self.queue_arn,
                "RoleArn": self.role_arn,
                "Input": self.message(account_id, job_id),
                "RetryPolicy": dict(RETRY_POLICY),
            },
        }
        period = parse_rate(expr.expression)
        if period is not None:
            # Without a StartDate a rate schedule fires at once, on top of the run the job
            # was just given: count the first interval from now instead.
            args["StartDate"] = now + period
        return args

    @staticmethod
    def _same(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
        def key(s: Mapping[str, Any]) -> tuple[Any, ...]:
            target = s.get("Target") or {}
            return (
                s.get("ScheduleExpression"),
                s.get("ScheduleExpressionTimezone") or "UTC",
                s.get("State"),
                (s.get("FlexibleTimeWindow") or {}).get("Mode"),
                target.get("Arn"),
                target.get("RoleArn"),
                target.get("Input"),
            )

        return key(current) == key(wanted)

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job's schedule as EventBridge Scheduler holds it, None if there is none."""
        from botocore.exceptions import ClientError

        try:
            found: dict[str, Any] = self.client.get_schedule(Name=self.name_for(job_id), GroupName=self.group)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        return found

    def sync(
        self,
        account_id: str,
        job_id: str,
        schedule: Mapping[str, Any] | None,
        active: bool,
        *,
        now: datetime | None = None,
    ) -> SyncOutcome:
        """Make the job's schedule match the job: present (created or updated) when the job is
        active and its schedule recurs or runs once in the future, absent otherwise.

        Idempotent: an unchanged schedule is left alone (a rate schedule keeps counting from
        its original start). Raises ScheduleError for a schedule it cannot express.
        """
        from botocore.exceptions import ClientError

        moment = now.astimezone(UTC) if now is not None else datetime.now(UTC)
        wanted = self.wanted(account_id, job_id, schedule, active, moment)
        if wanted is None:
            return "deleted" if self.remove(account_id, job_id) else "absent"
        current = self.get(job_id)
        if current is not None and self._same(current, wanted):
            return "unchanged"
        try:
            if current is None:
                self.client.create_schedule(**wanted)
                return "created"
            self.client.update_schedule(**wanted)
            return "updated"
        except ClientError as exc:
            code = error_code(exc)
            if code == "ConflictException":  # created meanwhile
                self.client.update_schedule(**wanted)
                return "updated"
            if code == "ResourceNotFoundException" and current is not None:  # deleted meanwhile
                self.client.create_schedule(**wanted)
                return "created"
            raise

    def remove(self, account_id: str, job_id: str) -> bool:
        """Delete the job's schedule; False when there was none (not an error)."""
        from botocore.exceptions import ClientError

        try:
            self.client.delete_schedule(Name=self.name_for(job_id), GroupName=self.group)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return False
            raise
        return True
