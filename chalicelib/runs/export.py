"""Export runs: an audience's membership, diffed against what the job last confirmed,
sent as adds and removes (docs/export.md).

The engine (chalicelib/runs/engine.py) hands every step of an export job to
`export_stage` once it holds the run's lease, and commits what it returns. A run is:

* step 0 — the plan. Once the job holds a cursor in its audience's change log (and the log
  is complete), only the changes since that cursor and the profiles they name are read;
  otherwise (the full path) every profile of the account is read (Query per shard page,
  never a Scan), the members diffed against the job's confirmed membership. Either way the
  run's plan (each change with the exported values captured now) is written, with what the
  job will have confirmed once the run succeeds (generation G+1: a new cursor, or a
  membership set). Both are written under a set id of this attempt, and the commit names
  it: a stale attempt can only ever write items nothing points at.
* steps 1..n — the parts: the next slice of the plan (at most the `max_records` the run
  started with, and what fits the provider's size limit) goes to the destination as ONE
  object with a deterministic name, then the checkpoint moves. A redelivered step writes
  the same rows to the same object.
* the commit that ends the run also moves job.state (generation, cursor or membership) to
  G+1, in the same transaction as the run's counters: what is confirmed is exactly what the
  destination was sent.

Every commit is the run's one commit (chalicelib/runs/commit.py): run counters, activity and
log lines in one transaction conditional on the step and the lease; the end of the run saves
the job in it too.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib.domain.audiences import Audience
from chalicelib.domain.models import RESYNC_KEY, Job
from chalicelib.domain.profiles import Profile, values_of
from chalicelib.domain.runs import LogLine, Run
from chalicelib.providers.base import ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.roles import Destination, StepContext
from chalicelib.runs.control import Delivery, RunControl, RunLease, audience_filter, step_context
from chalicelib.runs.outcome import StepOutcome
from chalicelib.services.membership_log import log_membership, net_changes
from chalicelib.store.membership import MissingChunk, PlanRef, PlanRow, SetRef, new_set_id

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.services.needs import RunNeeds
    from chalicelib.store.protocols import Memberships

log = logging.getLogger("switchyard.export")

CURSOR_VERSION = 1
PAGE_SIZE = 1000  # profiles per Query while computing the membership
OMITTED_NO_VALUES = "missing_identifier"  # an add with none of the exported fields
PENDING_MAX = 1000  # members waiting for values a change-log cursor carries in job.state
OMITTED_TOO_LARGE = "too_large"  # a change whose event is over the destination's size limit


@dataclass
class Diff:
    """What one run sends and the membership it leaves. Pure data (see `diff`)."""

    rows: list[PlanRow]
    members: set[str]  # the membership once every row is sent
    adds: int
    removes: int
    omitted: Counter[str]
    current: int  # members of the audience now


def diff(
    *,
    confirmed: set[str],
    first: bool,
    stay: set[str],
    joining: dict[str, list[Any] | None],
    leaving: dict[str, list[Any]],
    n_fields: int,
    backfill: bool,
    include_removals: bool,
    required: Sequence[int] = (),
    resend: Mapping[str, list[Any] | None] | None = None,
) -> Diff:
    """stay: current members already confirmed; joining: current members not confirmed
    (with their values); leaving: values of confirmed profiles no longer members (a
    confirmed id in neither map is a profile that no longer exists). required: positions of
    values without which an add cannot be sent (a Mailchimp member needs its email).
    resend: members of `stay` sent again as adds (a re-send of everything); one without
    the values stays confirmed, counted as omitted."""
    omitted: Counter[str] = Counter()
    resend = resend or {}
    sent_values: dict[str, list[Any] | None] = {**resend, **joining}
    if first and not backfill:
        # The destination already has the audience: record it, send nothing.
        adds: list[str] = []
        members = stay | set(joining)
    else:
        adds = []
        for pid in sorted(set(joining) | (set(resend) & stay)):
            values = sent_values[pid]
            if values is None or all(v is None for v in values) or any(values[i] is None for i in required):
                omitted[OMITTED_NO_VALUES] += 1  # not recorded: the next run tries again
            else:
                adds.append(pid)
        members = (stay if include_removals else set(confirmed)) | set(adds)
    removes = sorted(confirmed - stay) if include_removals else []
    blank: list[Any] = [None] * n_fields
    rows: list[PlanRow] = [("add", pid, list(sent_values[pid] or blank)) for pid in adds]
    rows += [("remove", pid, list(leaving.get(pid, blank))) for pid in removes]
    return Diff(rows, members, len(adds), len(removes), omitted, len(stay) + len(joining))


# -- one step ----------------------------------------------------------------------------------


def export_stage(ctl: RunControl, job: Job, run: Run, delivery: Delivery, started: float, budget: float,
                 calls: CallCounter) -> StepOutcome:
    """One step of an export run, under the lease the engine took (docs/export.md); the
    engine commits what it returns."""
    try:
        impl = ctl.d.registry.destination(job.provider, job.workflow)
        ctx = step_context(ctl, job, run, started, budget, calls)
        if run.step == 0:
            return _plan(ctl, job, run, delivery, budget, impl)
        return _part(ctl, job, run, ctx, impl)
    except MissingChunk as exc:
        raise ProviderError(
            f"the export's bookkeeping is incomplete ({exc}); resume the job to start a new run") from exc


@dataclass(frozen=True)
class ChangeCursor:
    """Where a job stands in its audience's change log (job.state["changes"]): the
    destination has the audience's members as of change `n`, except `pending` (members
    omitted for lacking values, sent once they have them)."""

    audience_id: str
    n: int
    pending: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"audience_id": self.audience_id, "n": self.n, "pending": list(self.pending)}

    @classmethod
    def from_json(cls, raw: Any) -> ChangeCursor | None:
        if not isinstance(raw, dict):
            return None
        try:
            return cls(str(raw["audience_id"]), int(raw["n"]), tuple(str(p) for p in raw.get("pending") or ()))
        except (KeyError, TypeError, ValueError):
            return None


def log_is_complete(d: RunNeeds, account_id: str, audience: Audience) -> bool:
    """Whether the audience's log covers every profile under its current filter: its
    backfill of the current version has finished."""
    state = d.audience_members.backfill(account_id, audience.id)
    return state is not None and state.done and state.audience_version == audience.version


@dataclass
class Settings:
    """What step 0 needs of the job's configuration, read once."""

    audience: Audience
    fields: list[str]
    frozen: dict[str, Any]
    backfill: bool
    include_removals: bool
    required: list[int]


def _settings(ctl: RunControl, job: Job, impl: Destination) -> Settings:
    d = ctl.d
    frozen = impl.freeze(job.config)
    fields = list(frozen["fields"])
    audience_id = str(job.config.get("audience_id") or "")
    audience = d.audiences.get(job.account_id, audience_id, consistent=True) if audience_id else None
    if audience is None:
        raise ProviderError(
            f"audience {audience_id!r} not found: it was deleted or never existed; choose an "
            "audience in the job's configuration", field="audience_id")
    return Settings(audience, fields, frozen, bool(job.config.get("backfill", True)),
                    bool(job.config.get("include_removals", True)),
                    [fields.index(f) for f in frozen.get("required", ()) if f in fields])


def _plan(ctl: RunControl, job: Job, run: Run, delivery: Delivery, budget: float,
          impl: Destination) -> StepOutcome:
    s = _settings(ctl, job, impl)
    from_log = s.include_removals and log_is_complete(ctl.d, job.account_id, s.audience)
    cursor = ChangeCursor.from_json(job.state.get("changes"))
    # A re-send reads the whole membership, as a first run does; the cursor it leaves is
    # where a plain run would have left it.
    if from_log and cursor is not None and cursor.audience_id == s.audience.id and not job.resync_requested:
        return _plan_changes(ctl, job, run, s, cursor, RunLease(ctl, run, delivery.message_id, budget))
    return _plan_full(ctl, job, run, delivery, budget, s, from_log, cursor)


def _plan_full(ctl: RunControl, job: Job, run: Run, delivery: Delivery, budget: float, s: Settings,
               from_log: bool, cursor: ChangeCursor | None) -> StepOutcome:
    """Every profile of the account read: a first run, an audience whose log is not
    complete, `include_removals: false`, or a job that moved to another audience."""
    d = ctl.d
    acct = job.account_id
    audience = s.audience
    member = audience_filter(audience)

    repo = d.memberships
    lease = RunLease(ctl, run, delivery.message_id, budget)
    confirmed_ref = SetRef.from_json(job.state.get("membership"))
    if cursor is not None:
        # What the destination has, as of the change the last run confirmed.
        confirmed = log_membership(d, acct, cursor.audience_id, cursor.n, lease.keep)[0] - set(cursor.pending)
        confirmed_ref = None
    else:
        confirmed = repo.read_set(acct, job.id, confirmed_ref) if confirmed_ref else set()
    first = confirmed_ref is None and cursor is None
    resync = job.resync_requested
    backfill = s.backfill or resync is not None
    need_values = backfill or not first
    # With a complete log, membership is the log's (as of `head`), so that later runs can
    # carry on from that change; otherwise the filter decides.
    log_ids, head = log_membership(d, acct, audience.id, None, lease.keep) if from_log else (set(), 0)

    stay: set[str] = set()
    resend: dict[str, list[Any] | None] = {}
    joining: dict[str, list[Any] | None] = {}
    leaving: dict[str, list[Any]] = {}
    scanned = 0
    for profile in d.profiles.iterate(acct, page_size=PAGE_SIZE):
        scanned += 1
        if scanned % PAGE_SIZE == 0:
            lease.keep()
        if (profile.id in log_ids) if from_log else member(profile):
            if profile.id in confirmed:
                stay.add(profile.id)
                if resync is not None:
                    resend[profile.id] = values_of(profile, s.fields)
            else:
                joining[profile.id] = values_of(profile, s.fields) if need_values else None
        elif s.include_removals and profile.id in confirmed:
            leaving[profile.id] = values_of(profile, s.fields)
        log_ids.discard(profile.id)
    for pid in log_ids:  # a member whose profile is gone: its exit is on the way
        if pid in confirmed:
            stay.add(pid)
        else:
            joining[pid] = None
    plan = diff(confirmed=confirmed, first=first, stay=stay, joining=joining, leaving=leaving,
                n_fields=len(s.fields), backfill=backfill, include_removals=s.include_removals,
                required=s.required, resend=resend)
    pending = set(joining) - plan.members
    generation = int(job.state.get("membership_generation") or 0) + 1
    if from_log and len(pending) <= PENDING_MAX:
        after = ChangeCursor(audience.id, head, tuple(sorted(pending)))
        written = _write_plan(ctl, job, run, plan, keep=confirmed_ref)
        state = _state_after(job, generation, changes=after)
        previous = confirmed_ref
    else:
        changed = first or plan.members != confirmed or cursor is not None
        written = _write_plan(ctl, job, run, plan, keep=confirmed_ref,
                              members=(generation, plan.members) if changed else None)
        new_ref = written.members or confirmed_ref
        if new_ref is None:  # unreachable: a first run always writes a set
            raise RuntimeError("export step 0 produced no membership")
        state = _state_after(job, new_ref.generation, membership=new_ref)
        previous = confirmed_ref if changed else None
    message = (f"step 0: audience {audience.name!r} has {plan.current} members among {scanned} profiles; "
               f"{plan.adds} to add, {plan.removes} to remove, {sum(plan.omitted.values())} omitted")
    context = {"members": plan.current, "profiles_read": scanned, "first_run": first, "full": True,
               "resync": resync is not None}
    lines = []
    if resync is not None:
        lines.append(LogLine("info", "export.resync",
                             f"re-sending every member of audience {audience.name!r} (asked by "
                             f"{resync.get('requested_by')} at {resync.get('requested_at')})", run_id=run.id,
                             context={"resync_id": resync.get("id")}))
    elif first and not s.backfill:
        lines.append(LogLine("info", "export.no_backfill",
                             f"first run without backfill: {len(plan.members)} current members recorded, "
                             "none sent; later runs send who joins and leaves", run_id=run.id))
    return _outcome(ctl, job, run, s, plan, written.plan, state, previous, message, context, lines)


def _plan_changes(ctl: RunControl, job: Job, run: Run, s: Settings, cursor: ChangeCursor,
                  lease: RunLease) -> StepOutcome:
    """Only what changed: the audience's log from the job's cursor to its head, and the
    values of the profiles that joined or left (docs/export.md, "Change log")."""
    d = ctl.d
    acct = job.account_id
    head = d.audience_members.head(acct, s.audience.id)
    # A long backlog (a job paused for weeks) is read page by page under the run's lease.
    log_ = d.audience_members.all_changes(acct, s.audience.id, after=cursor.n, upto=head, on_page=lease.keep)
    net = net_changes(log_)
    pending = set(cursor.pending)
    sent = {pid for pid, (before, _) in net.items() if before and pid not in pending}
    now = {pid: after for pid, (_, after) in net.items()}
    for pid in pending:
        now.setdefault(pid, True)  # unchanged since: still a member
    stay = {pid for pid in sent if now[pid]}
    join_ids = sorted(pid for pid, member in now.items() if member and pid not in sent)
    leave_ids = sorted(pid for pid in sent if not now[pid])
    profiles: dict[str, Profile] = {}
    wanted = join_ids + leave_ids
    for start in range(0, len(wanted), PAGE_SIZE):
        profiles.update(d.profiles.get_many(acct, wanted[start:start + PAGE_SIZE])[0])
        lease.keep()
    joining: dict[str, list[Any] | None] = {
        pid: values_of(profiles[pid], s.fields) if pid in profiles else None for pid in join_ids}
    leaving = {pid: values_of(profiles[pid], s.fields) for pid in leave_ids if pid in profiles}
    plan = diff(confirmed=sent, first=False, stay=stay, joining=joining, leaving=leaving,
                n_fields=len(s.fields), backfill=s.backfill, include_removals=True, required=s.required)
    still_pending = set(joining) - plan.members
    generation = int(job.state.get("membership_generation") or 0) + (1 if plan.rows else 0)
    if len(still_pending) <= PENDING_MAX:
        written = _write_plan(ctl, job, run, plan, keep=None, sweep=False)
        state = _state_after(job, generation, changes=ChangeCursor(s.audience.id, head,
                                                                    tuple(sorted(still_pending))))
    else:
        # Too many members wait for values to carry in the job: keep the full set instead.
        members = log_membership(d, acct, s.audience.id, head, lease.keep)[0] - still_pending
        written = _write_plan(ctl, job, run, plan, keep=None, members=(generation, members))
        if written.members is None:
            raise RuntimeError("export step 0 produced no membership")
        state = _state_after(job, generation, membership=written.members)
    message = (f"step 0: {len(log_)} changes of audience {s.audience.name!r} since the last run "
               f"({len(net)} profiles); {plan.adds} to add, {plan.removes} to remove, "
               f"{sum(plan.omitted.values())} omitted")
    context = {"changes_read": len(log_), "profiles_read": len(profiles), "first_run": False, "full": False,
               "change_head": head}
    return _outcome(ctl, job, run, s, plan, written.plan, state, None, message, context, [])


@dataclass
class Written:
    plan: PlanRef
    members: SetRef | None


def _write_plan(ctl: RunControl, job: Job, run: Run, plan: Diff, *, keep: SetRef | None, sweep: bool = True,
                members: tuple[int, set[str]] | None = None) -> Written:
    """The run's plan, and the membership set it leaves when it keeps one, under a set id
    of this attempt."""
    repo = ctl.d.memberships
    acct = job.account_id
    if sweep:
        # Superseded generations and sets of attempts that never committed get their TTL.
        repo.sweep(acct, job.id, keep=keep)
    set_id = new_set_id()
    ctl.o.fault("before_write")
    plan_ref = repo.write_plan(acct, run.id, set_id, plan.rows) if plan.rows else PlanRef(set_id, 0, ())
    ref = repo.write_set(acct, job.id, members[0], set_id, members[1]) if members else None
    ctl.o.fault("after_write")
    return Written(plan_ref, ref)


def _state_after(job: Job, generation: int, *, membership: SetRef | None = None,
                 changes: ChangeCursor | None = None) -> dict[str, Any]:
    """job.state once the run succeeds: either a membership set or a change-log cursor."""
    # The re-send marker leaves with the run's last commit: the run served it.
    state = {k: v for k, v in job.state.items() if k not in ("membership", "changes", RESYNC_KEY)}
    state["membership_generation"] = generation
    if membership is not None:
        state["membership"] = membership.to_json()
    if changes is not None:
        state["changes"] = changes.to_json()
    return state


def _outcome(ctl: RunControl, job: Job, run: Run, s: Settings, plan: Diff, plan_ref: PlanRef,
             state: dict[str, Any], previous: SetRef | None, message: str, context: dict[str, Any],
             extra: list[LogLine]) -> StepOutcome:
    cursor = {
        "v": CURSOR_VERSION,
        "frozen": s.frozen,
        "rows_per_part": max(1, ctl.o.max_records),
        "plan": plan_ref.to_json(),
        "next": 0,
        "adds": plan.adds,
        "removes": plan.removes,
        "state": state,
        "previous": previous.to_json() if previous else None,
    }
    if job.resync_requested:
        cursor["resync"] = job.resync_requested.get("id")
    omitted = sum(plan.omitted.values())
    lines = [LogLine("info", "run.step", message, run_id=run.id, context={
        **context, "adds": plan.adds, "removes": plan.removes, "omitted": omitted,
        "omitted_reasons": dict(plan.omitted), "membership_generation": state["membership_generation"]})]
    if omitted:
        lines.append(LogLine("warning", "export.omitted",
                             f"{omitted} members lack the exported fields ({', '.join(s.fields)}) the "
                             "destination needs: not sent; they will be once they have them", run_id=run.id,
                             context={"omitted_reasons": dict(plan.omitted)}))
    lines += extra
    return StepOutcome(cursor=cursor, processed=0, total=len(plan.rows), done=not plan.rows, state=state,
                       omitted_reasons=dict(plan.omitted), lines=lines, after_success=_clean_up(ctl, job, run, cursor))


def _part(ctl: RunControl, job: Job, run: Run, ctx: StepContext, impl: Destination) -> StepOutcome:
    cur = dict(run.cursor or {})
    if cur.get("v") != CURSOR_VERSION:
        raise ProviderError("this run's checkpoint is not an export checkpoint; resume to start a new run")
    frozen = cur["frozen"]
    plan_ref = PlanRef.from_json(cur["plan"])
    start = int(cur["next"])
    rows = ctl.d.memberships.read_plan(job.account_id, run.id, plan_ref, start, int(cur["rows_per_part"]))
    ctx.first_row = start
    ctl.o.fault("before_write")
    part = impl.write_part(ctx, frozen, run.step, rows)
    end = start + part.rows
    done = end >= plan_ref.rows
    if done:
        impl.write_manifest(ctx, frozen, {
            "job_id": job.id, "run_id": run.id, "parts": run.step, "rows": plan_ref.rows,
            "added": cur["adds"], "removed": cur["removes"],
            "membership_generation": cur["state"]["membership_generation"],
            **({"resync": True} if cur.get("resync") else {}),
        })
    ctl.o.fault("after_write")
    skipped = set(getattr(part, "skipped", ()) or ())
    # Members the destination refused one by one (e.g. Mailchimp: a fake-looking address)
    # are counted as omitted ("rejected"), not as sent; they never fail the run.
    rejected = list(getattr(part, "rejected", ()) or ())
    refused = {pid for pid, _ in rejected}
    sent = [row for i, row in enumerate(rows[:part.rows]) if i not in skipped and row[1] not in refused]
    added = sum(1 for action, _, _ in sent if action == "add")
    removed = len(sent) - added
    omitted = {OMITTED_TOO_LARGE: len(skipped)} if skipped else {}
    cur["next"] = end
    if rejected:
        omitted["rejected"] = len(rejected)
    extra = (f", {len(skipped)} too large" if skipped else "") + (f", {len(rejected)} rejected" if rejected else "")
    lines = [LogLine("info", "run.step",
                     f"step {run.step}: wrote {part.key} ({part.rows} rows: {added} added, {removed} removed"
                     + extra + ")",
                     run_id=run.id, context={"added": added, "removed": removed,
                                             "omitted": len(skipped) + len(rejected),
                                             "key": part.key, "bytes": part.bytes, "processed": end})]
    if skipped:
        # Profile ids only: the values that made the event too large stay out of the logs.
        ids = [rows[i][1] for i in sorted(skipped)]
        lines.append(LogLine("warning", "export.too_large",
                             f"{len(ids)} changes were not sent: their event is over the destination's "
                             f"size limit (profiles {', '.join(ids[:5])}{' …' if len(ids) > 5 else ''})",
                             run_id=run.id, context={"omitted_reasons": omitted}))
    if rejected:
        why = Counter(reason for _, reason in rejected)
        sample = "; ".join(f"{n} × {reason}" for reason, n in why.most_common(3))
        lines.append(LogLine("warning", "export.rejected",
                             f"{len(rejected)} members were refused by the destination: {sample}",
                             run_id=run.id, context={"rejected": len(rejected)}))
    lines += [LogLine("warning", "export.note", note, run_id=run.id) for note in getattr(part, "notes", ()) or ()]
    # The membership the destination now has becomes the confirmed one.
    return StepOutcome(cursor=cur, processed=end, total=plan_ref.rows, done=done, state=_kept(job, cur), added=added,
                       removed=removed, omitted_reasons=omitted, lines=lines,
                       after_success=_clean_up(ctl, job, run, cur))


def _kept(job: Job, cur: dict[str, Any]) -> dict[str, Any]:
    """The state the run leaves, keeping a re-send asked for after this run planned (it
    was not served by it). The API only asks while no run is under way: defence in depth."""
    marker = job.resync_requested
    if marker is None or marker.get("id") == cur.get("resync"):
        return dict(cur["state"])
    return {**cur["state"], RESYNC_KEY: marker}


# -- after the run ------------------------------------------------------------------------------


def _clean_up(ctl: RunControl, job: Job, run: Run, cursor: dict[str, Any]) -> Callable[[], None]:
    """What runs after the run's last commit: the superseded membership gets its TTL and the
    plan (a copy of exported values) goes. Best effort: the next run's sweep and the plan's
    own TTL catch whatever a crash here leaves."""
    return lambda: _clean(ctl.d.memberships, job, run, cursor)


def _clean(repo: Memberships, job: Job, run: Run, cursor: dict[str, Any]) -> None:
    try:
        previous = SetRef.from_json(cursor.get("previous"))
        if previous is not None:
            repo.expire_set(job.account_id, job.id, previous)
        plan_ref = PlanRef.from_json(cursor["plan"]) if cursor.get("plan") else None
        if plan_ref is not None and plan_ref.rows:
            repo.delete_plan(job.account_id, run.id, plan_ref)
    except Exception:  # the run is committed: nothing here may fail it
        log.warning("export clean-up after run %s failed", run.id, exc_info=True)


__all__ = ["ChangeCursor", "diff", "export_stage"]
