"""Real-time exports: an audience's enter and exit changes delivered as they are recorded
(docs/export.md, "Real-time exports").

The stream handler (and a backfill page) `nudge`s the real-time jobs of each audience whose
change log grew: one message per job on the real-time queue. `deliver` handles one nudge:
under the job's lease it reads the change log from the job's cursor to the head, sends the
changes in log order through the job's destination, and moves the cursor (a conditional
write) only once the destination accepted them.

Delivery is at least once with stable ids: a crash between the destination's answer and the
cursor's write sends those changes again with the same event ids, derived from the job, the
audience and the change number (never from the nudge or the attempt). SQS FIFO queues drop
the repeat by MessageDeduplicationId within their 5-minute window, webhooks get the same
event ids and Kinesis consumers see the same ids; otherwise a consumer drops by event id.
Per-profile order is the log's: changes go out in number order, one delivery at a time.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from chalicelib.domain.errors import Invalid
from chalicelib.domain.failures import backoff_seconds, gives_up, why_given_up
from chalicelib.domain.models import Job
from chalicelib.domain.profiles import values_of
from chalicelib.domain.runs import LogLine, RunStatus, pending_alert
from chalicelib.domain.schedules import allows_realtime, is_realtime
from chalicelib.domain.statuses import JobStatus
from chalicelib.providers.base import ProviderError
from chalicelib.providers.roles import PlanRow, StepContext
from chalicelib.services import alerts, health
from chalicelib.services import credentials as creds_svc
from chalicelib.services.membership_log import log_membership
from chalicelib.store.audience_members import Change
from chalicelib.store.dynamo import now_iso
from chalicelib.store.jobs import audience_of
from chalicelib.store.realtime import SWEEP_SHARDS, Subscription
from chalicelib.store.unit_of_work import UnitOfWork

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.services.needs import RealtimeNeeds

log = logging.getLogger("switchyard.realtime")

LEASE_SECONDS = 120.0  # longer than one delivery may run (the handler's timeout)
CHUNK = 100  # changes read per Query
SAFETY_MS = 10_000  # stop sending this long before the Lambda's time is up
MAX_DELAY = 900  # SQS's longest DelaySeconds
ACTIONS = {"enter": "add", "exit": "remove"}


class DeliveryBusy(RuntimeError):
    """Another delivery holds the job. Its nudge may be dropped: the holder reads the head
    again after releasing the job, so it sees the change this nudge announced (committed
    before the nudge was sent, so before the refused claim, so before the release); if the
    holder dies instead, its own nudge comes back from SQS and drains everything."""


@dataclass(frozen=True)
class Nudge:
    account_id: str
    audience_id: str
    job_id: str
    attempt: int = 0  # transient failures so far in this series
    first_fault_at: str | None = None

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"account_id": self.account_id, "audience_id": self.audience_id,
                               "job_id": self.job_id}
        if self.attempt:
            out.update(attempt=self.attempt, first_fault_at=self.first_fault_at)
        return out

    @classmethod
    def parse(cls, body: Any) -> Nudge:
        """KeyError/TypeError/ValueError when it is not a nudge."""
        return cls(str(body["account_id"]), str(body["audience_id"]), str(body["job_id"]),
                   int(body.get("attempt", 0)), body.get("first_fault_at"))


@dataclass
class Outcome:
    status: str  # caught_up | more | inactive | gone | retry | failed | lost
    delivered: int = 0  # changes the destination accepted in this delivery
    cursor: int = 0
    delay: int = 0  # retry: seconds before the next attempt


# -- which jobs are real-time ------------------------------------------------------------------


def check_schedule(provider: str, job_type: str, schedule: dict[str, Any] | None) -> None:
    """Only event exports can follow an audience change by change."""
    if not is_realtime(schedule):
        return
    if not allows_realtime(provider, job_type):
        raise Invalid(
            "schedule.type 'realtime' is only for export jobs to Kinesis, SQS or a webhook; "
            "choose once, interval, daily, weekly or cron for this job",
            code="validation.failed",
            fields={"schedule.type": "realtime is only for Kinesis, SQS and webhook exports"},
        )


def realtime_audience(job: Job) -> str | None:
    """The audience a real-time job follows, None for any other job."""
    return audience_of(job) if is_realtime(job.schedule) else None


def add_subscription_writes(d: RealtimeNeeds, tx: UnitOfWork, before: Job | None, after: Job | None) -> bool:
    """Keep the job's subscription in step with the job, in the job's transaction; True
    when `after` follows an audience it did not follow before (it needs a first nudge)."""
    old = realtime_audience(before) if before else None
    new = realtime_audience(after) if after else None
    if old == new:
        return False
    job = after or before
    assert job is not None
    if old is not None:
        d.realtime.add_unsubscribe(tx, job.account_id, old, job.id)
    if new is not None:
        d.realtime.add_subscribe(tx, job.account_id, new, job.id)
    return new is not None


# -- nudges --------------------------------------------------------------------------------------


def nudge(d: RealtimeNeeds, account_id: str, audience_ids: Iterable[str]) -> int:
    """One message per real-time job of each audience (a Query per audience); how many."""
    messages = [Nudge(account_id, aud, sub.job_id).body()
                for aud in sorted(set(audience_ids)) for sub in d.realtime.jobs_of(account_id, aud)]
    if messages:
        d.realtime_queue.send_batch(messages)
    return len(messages)


def nudge_job(d: RealtimeNeeds, job: Job) -> bool:
    """A real-time job that was created, resumed or moved to another audience drains its log.
    False (logged) when the queue refused: the audience's next change nudges it again."""
    aud = realtime_audience(job)
    if aud is None:
        return False
    try:
        d.realtime_queue.send_batch([Nudge(job.account_id, aud, job.id).body()])
    except Exception:
        log.exception("could not nudge real-time job %s", job.id)
        return False
    return True


@dataclass
class CatchUp:
    """What one catch-up sweep found and did."""

    followed: int = 0  # subscriptions read
    behind: int = 0  # whose cursor is below their audience's head
    held: int = 0  # of those, being delivered right now (not nudged)
    inactive: int = 0  # of those, whose job is paused, failed or completed (not nudged)
    nudged: int = 0


def catch_up(d: RealtimeNeeds, *, clock: Any = time.time, page: int = 100) -> CatchUp:
    """Nudge every real-time job whose cursor is behind its audience's log: the periodic
    safety net for a nudge that was refused where nothing sends it again (create, resume,
    a move to another audience). The subscriptions come from the sharded sweep index (a
    Query per shard page), the heads by key. A job being delivered is left alone (its holder
    reads the head again before it lets go), and so is a paused or failed one (resume nudges
    it). A nudge the job did not need costs one read: its delivery finds nothing after the
    cursor."""
    out = CatchUp()
    for shard in range(SWEEP_SHARDS):
        start: dict[str, Any] | None = None
        while True:
            subs, start = d.realtime.sweep_page(shard, start, limit=page)
            out.followed += len(subs)
            heads = d.audience_members.heads((s.account_id, s.audience_id) for s in subs)
            behind = [s for s in subs if heads[(s.account_id, s.audience_id)] > s.cursor]
            out.behind += len(behind)
            now = clock()
            messages = []
            for sub in behind:
                if sub.lease is not None and sub.lease_until >= now:
                    out.held += 1
                    continue
                job = d.jobs.get(sub.account_id, sub.job_id)
                if job is not None and not delivering(job):
                    out.inactive += 1
                    continue
                # A job that is gone is nudged too: its delivery drops the subscription.
                messages.append(Nudge(sub.account_id, sub.audience_id, sub.job_id).body())
            if messages:
                d.realtime_queue.send_batch(messages)
                out.nudged += len(messages)
            if not start:
                break
    return out


# -- delivery ------------------------------------------------------------------------------------


def delivering(job: Job) -> bool:
    """Whether the job sends its changes now; otherwise its backlog waits for resume."""
    return job.status in (JobStatus.SLEEPING, JobStatus.RUNNING)


def event_run_id(job_id: str, audience_id: str) -> str:
    """What the events' ids derive from, with the change number: the same for every delivery
    of the job to this audience (a job moved to another audience starts new ids)."""
    return f"rt_{job_id}_{audience_id}"


def segments(changes: Sequence[Change], rows: dict[int, PlanRow], longest: int) -> list[list[Change]]:
    """Runs of consecutive changes that are sent (a change not sent, an exit the job leaves
    out, splits them), at most `longest` each."""
    out: list[list[Change]] = []
    for c in changes:
        if c.n not in rows:
            continue
        if out and out[-1][-1].n == c.n - 1 and len(out[-1]) < longest:
            out[-1].append(c)
        else:
            out.append([c])
    return out


def plan_rows(d: RealtimeNeeds, job: Job, fields: Sequence[str], changes: Sequence[Change]) -> dict[int, PlanRow]:
    """Change number -> the row sent for it, with the profile's values as they are now (the
    log holds no values; a removed profile's exit has none)."""
    include_removals = bool(job.config.get("include_removals", True))
    profiles, _ = d.profiles.get_many(job.account_id, sorted({c.profile_id for c in changes}))
    out: dict[int, PlanRow] = {}
    for c in changes:
        if c.change == "exit" and not include_removals:
            continue
        profile = profiles.get(c.profile_id)
        values = values_of(profile, fields) if profile is not None else [None] * len(fields)
        out[c.n] = (ACTIONS[c.change], c.profile_id, values)
    return out


def deliver(d: RealtimeNeeds, nudge_: Nudge, *, remaining_ms: Any = None, owner: str | None = None,
            clock: Any = time.time) -> Outcome:
    """Send what the job has not delivered yet, from its cursor, in order. Raises DeliveryBusy
    when another delivery holds the job."""
    job = d.jobs.get(nudge_.account_id, nudge_.job_id, consistent=True)
    if job is None or realtime_audience(job) != nudge_.audience_id:
        if job is None and d.realtime.get(nudge_.account_id, nudge_.audience_id, nudge_.job_id):
            d.realtime.drop(nudge_.account_id, nudge_.audience_id, nudge_.job_id)
        return Outcome("gone")
    if not delivering(job):
        return Outcome("inactive")  # the backlog waits: resume nudges the job
    sub = d.realtime.get(job.account_id, nudge_.audience_id, job.id)
    if sub is None:
        return Outcome("gone")
    me = owner or uuid.uuid4().hex
    total = 0
    while True:
        if not d.realtime.claim(sub, me, clock(), LEASE_SECONDS):
            if total:
                return Outcome("caught_up", total, sub.cursor)  # the new holder drains the rest
            raise DeliveryBusy(f"job {job.id}: another delivery holds it")
        try:
            outcome = _resend(d, job, sub, me, nudge_, remaining_ms) or _drain(d, job, sub, me, nudge_, remaining_ms)
        finally:
            d.realtime.release(sub, me)
        total += outcome.delivered
        outcome.delivered = total
        if outcome.status != "caught_up":
            return outcome
        # A change recorded, or a re-send asked for, while the job was held: its nudge may
        # have been dropped as busy, so look again before letting go.
        if d.audience_members.head(job.account_id, sub.audience_id) <= outcome.cursor:
            asked = unserved_resync(d, job, sub.audience_id)
            if asked is None:
                return outcome
            job, sub = asked
            continue
        sub = d.realtime.get(job.account_id, sub.audience_id, job.id) or sub


def unserved_resync(d: RealtimeNeeds, job: Job, audience_id: str) -> tuple[Job, Subscription] | None:
    """The job and its subscription as they are now when the job asks for a re-send the
    subscription has not served yet (one consistent read; a second only when a re-send is
    asked for), else None."""
    fresh = d.jobs.get(job.account_id, job.id, consistent=True)
    marker = fresh.resync_requested if fresh is not None and delivering(fresh) else None
    if fresh is None or marker is None:
        return None
    sub = d.realtime.get(job.account_id, audience_id, job.id)
    return (fresh, sub) if sub is not None and sub.resynced != str(marker.get("id")) else None


def resend_run_id(job_id: str, resync_id: str) -> str:
    """What a re-send's event ids derive from, with the member's position: the same for
    every delivery of that re-send, new for the next one."""
    return f"rs_{job_id}_{resync_id}"


def _resend(d: RealtimeNeeds, job: Job, sub: Subscription, me: str, nudge_: Nudge, remaining_ms: Any) -> Outcome | None:
    """A re-send of every member asked for (docs/export.md, "Re-send everything"): the
    audience's members as of the job's cursor go out as adds, in id order, before the log
    after the cursor does, so each profile's events stay in order. Progress is kept on the
    subscription while the cursor waits; a redelivery goes on from there with the same event
    ids. None when there is nothing (left) to re-send: the log is drained next."""
    marker = job.resync_requested
    if marker is None:
        return None
    resync_id = str(marker.get("id"))
    if sub.resynced == resync_id:
        _resync_served(d, job, resync_id)
        return None
    acct = job.account_id
    try:
        impl = d.registry.destination(job.provider, job.workflow)
        frozen = impl.freeze(job.config)
        fields = list(frozen.get("fields") or [])
        ctx = _context(d, job, sub.audience_id)
        ctx.run_id = resend_run_id(job.id, resync_id)
        members = sorted(log_membership(d, acct, sub.audience_id, sub.cursor)[0])
        done = sub.resync_next if sub.resync_id == resync_id else 0
        if done == 0:
            d.runs.write_logs(acct, job.id, [LogLine(
                "info", "realtime.resync", f"re-sending every member: {len(members)} members of the audience "
                f"as of change {sub.cursor}, then the changes after it (asked by {marker.get('requested_by')})",
                context={"resync_id": resync_id, "members": len(members)})])
        longest = int(frozen.get("batch_size", 1)) if job.provider == "webhook" else 1
        while done < len(members):
            if remaining_ms is not None and remaining_ms() < SAFETY_MS:
                return Outcome("more", 0, sub.cursor)
            ids = members[done:done + CHUNK]
            profiles, _ = d.profiles.get_many(acct, ids)
            blank: list[Any] = [None] * len(fields)
            rows: list[PlanRow] = [("add", pid, values_of(profiles[pid], fields) if pid in profiles else blank)
                                   for pid in ids]
            partial = False
            for start in range(0, len(rows), longest):
                seg = rows[start:start + longest]
                ctx.first_row = done
                ctx.deadline = _deadline(remaining_ms)
                result = impl.write_part(ctx, frozen, done + 1, seg)
                done += result.rows
                if result.rows < len(seg):
                    partial = True
                    break
            if not d.realtime.resync_progress(sub, me, resync_id, done, done=done >= len(members)):
                return Outcome("lost", 0, sub.cursor)
            if partial:
                return Outcome("more", 0, sub.cursor)  # the destination took part: go on later
    except ProviderError as exc:
        return _failed(d, job, nudge_, exc, 0, sub.cursor)
    if not members:
        d.realtime.resync_progress(sub, me, resync_id, 0, done=True)
    d.runs.write_logs(acct, job.id, [LogLine(
        "info", "realtime.resynced", f"re-sent every member: {len(members)} members; the changes after "
        f"change {sub.cursor} follow", context={"resync_id": resync_id, "members": len(members)})])
    _resync_served(d, job, resync_id)
    return None


def _resync_served(d: RealtimeNeeds, job: Job, resync_id: str) -> None:
    """The job forgets the re-send it asked for, unless a newer one was asked meanwhile. Best
    effort: the subscription says it was served, so a later delivery only tries this again."""
    fresh = d.jobs.get(job.account_id, job.id, consistent=True)
    marker = fresh.resync_requested if fresh is not None else None
    if fresh is None or marker is None or marker.get("id") != resync_id:
        return
    try:
        d.jobs.save(fresh, fresh.resync_served(), expected_version=fresh.version)
    except Exception:
        log.warning("job %s: could not clear its served re-send; a later delivery will", job.id, exc_info=True)


def _drain(d: RealtimeNeeds, job: Job, sub: Subscription, me: str, nudge_: Nudge, remaining_ms: Any) -> Outcome:
    members = d.audience_members
    cursor, delivered = sub.cursor, 0
    try:
        impl = d.registry.destination(job.provider, job.workflow)
        frozen = impl.freeze(job.config)
        ctx = _context(d, job, sub.audience_id)
        while True:
            head = members.head(job.account_id, sub.audience_id)
            if head <= cursor:
                return Outcome("caught_up", delivered, cursor)
            if remaining_ms is not None and remaining_ms() < SAFETY_MS:
                return Outcome("more", delivered, cursor)
            changes = members.changes(job.account_id, sub.audience_id, after=cursor, upto=head, limit=CHUNK)
            rows = plan_rows(d, job, list(frozen.get("fields") or []), changes)
            # One change per request for queues and streams: their event ids come from the
            # part and the position in it, so a change alone in its part keeps one id
            # however the log is cut. Webhooks name events by their row: batches are fine.
            longest = int(frozen.get("batch_size", 1)) if job.provider == "webhook" else 1
            reached = changes[-1].n
            for seg in segments(changes, rows, longest):
                ctx.first_row = seg[0].n - 1
                ctx.deadline = _deadline(remaining_ms)
                result = impl.write_part(ctx, frozen, seg[0].n, [rows[c.n] for c in seg])
                accepted = seg[0].n - 1 + result.rows
                if result.rows < len(seg):
                    reached = accepted
                    break
            if reached > cursor:
                if not d.realtime.advance(sub, me, cursor, reached, now_iso()):
                    return Outcome("lost", delivered, cursor)
                delivered += reached - cursor
                cursor = reached
            if reached < changes[-1].n:
                return Outcome("more", delivered, cursor)  # the destination took part: go on later
    except ProviderError as exc:
        return _failed(d, job, nudge_, exc, delivered, cursor)


def _deadline(remaining_ms: Any) -> float:
    """When a send must return: before the Lambda's time is up, and well inside the lease."""
    seconds = LEASE_SECONDS / 2
    if remaining_ms is not None:
        seconds = min(seconds, (remaining_ms() - SAFETY_MS) / 1000)
    return time.monotonic() + max(1.0, seconds)


def _context(d: RealtimeNeeds, job: Job, audience_id: str) -> StepContext:
    auth = d.auths.get(job.account_id, job.authorization_id)
    if auth is None:
        raise ProviderError("the job's authorization was deleted; change it, then resume")
    credentials = creds_svc.load(d, auth, d.registry.get(job.provider).spec)
    return StepContext(
        account_id=job.account_id, job_id=job.id, run_id=event_run_id(job.id, audience_id), step=1,
        method=auth.method, credentials=credentials, config=job.config, cursor=None, state={},
        max_records=CHUNK, deadline=time.monotonic() + LEASE_SECONDS / 2, counter=d.calls(auth.id),
    )


def _failed(d: RealtimeNeeds, job: Job, nudge_: Nudge, exc: ProviderError, delivered: int, cursor: int) -> Outcome:
    """Transient: the nudge comes back after a backoff (the cursor says where to go on).
    A configuration or authorization error, or errors past the failure window: the job fails
    the way a batch export does (status, log line, Job Failed alert), its backlog kept."""
    now = datetime.now(UTC)
    first = datetime.fromisoformat(nudge_.first_fault_at) if nudge_.first_fault_at else now
    if not gives_up(exc.transient, first, now, job.failure_window_hours):
        delay = int(min(MAX_DELAY, backoff_seconds(nudge_.attempt + 1, retry_after=exc.retry_after)))
        d.runs.write_logs(job.account_id, job.id, [LogLine(
            "warning", "realtime.transient_error",
            f"real-time delivery: transient error: {exc.reason}; retry {nudge_.attempt + 1} in {delay} s")])
        return Outcome("retry", delivered, cursor, delay=delay)
    why = why_given_up(exc.transient, job.failure_window_hours)
    after = job.step_faulted(first.strftime("%Y-%m-%dT%H:%M:%SZ")).gave_up(
        {"status": RunStatus.FAILED.value, "finished_at": now_iso(), "error": exc.reason, "realtime": True},
        pending_alert(alerts.JOB_FAILED, {"job_id": job.id, "label": job.label, "reason": exc.reason,
                                          "fault_count": job.fault_count + 1}))
    tx = d.transaction()
    d.runs.add_logs(tx, job.account_id, job.id, [LogLine(
        "error", "realtime.failed",
        f"real-time delivery failed: {exc.reason} — {why}; fix it, then resume the job "
        f"(undelivered changes wait, from change {cursor + 1})")], now)
    try:
        d.jobs.save(job, after, expected_version=None, expected_status=job.status, tx=tx)
    except Exception:
        log.exception("job %s: could not record the failure; the nudge comes back", job.id)
        return Outcome("retry", delivered, cursor, delay=60)
    alerts.send_job_alert(d, after)
    if exc.auth:
        health.mark_job_authorization_unhealthy(d, job, exc.reason, run_id=f"realtime {job.id}")
    return Outcome("failed", delivered, cursor)


def retry_nudge(nudge_: Nudge) -> Nudge:
    first = nudge_.first_fault_at or datetime.now(UTC).isoformat()
    return Nudge(nudge_.account_id, nudge_.audience_id, nudge_.job_id, nudge_.attempt + 1, first)


def follow_up(d: RealtimeNeeds, nudge_: Nudge, outcome: Outcome) -> None:
    """After a delivery: more to send goes on at once (a fresh nudge), a transient failure
    comes back after its back-off; anything else needs no nudge."""
    if outcome.status == "more":
        d.realtime_queue.send(Nudge(nudge_.account_id, nudge_.audience_id, nudge_.job_id).body())
    elif outcome.status == "retry":
        d.realtime_queue.send(retry_nudge(nudge_).body(), delay_seconds=outcome.delay)


# -- lag -------------------------------------------------------------------------------------------


def lag_seconds(d: RealtimeNeeds, job: Job, now: datetime | None = None) -> float | None:
    """Age of the oldest change the job has not delivered, 0 when caught up; None for a job
    that is not real-time."""
    aud = realtime_audience(job)
    if aud is None:
        return None
    sub = d.realtime.get(job.account_id, aud, job.id)
    cursor = sub.cursor if sub else 0
    oldest = d.audience_members.changes(job.account_id, aud, after=cursor, upto=cursor + 1, limit=1)
    if not oldest:
        return 0.0
    at = datetime.fromisoformat(oldest[0].at.replace("Z", "+00:00"))
    moment = now or datetime.now(UTC)
    return round(max(timedelta(0), moment - at).total_seconds(), 3)


__all__ = [
    "CatchUp",
    "DeliveryBusy",
    "Nudge",
    "Outcome",
    "add_subscription_writes",
    "catch_up",
    "check_schedule",
    "deliver",
    "delivering",
    "event_run_id",
    "follow_up",
    "lag_seconds",
    "nudge",
    "nudge_job",
    "plan_rows",
    "realtime_audience",
    "retry_nudge",
    "segments",
]
