"""Enrichment runs: profiles -> a provider's lookup -> fields merged back into the profiles
(docs/providers/enrichment.md).

The engine (chalicelib/runs/engine.py) hands every step of an `enrichment` job to
`enrichment_stage` once it holds the run's lease. A run is:

* step 0 — the plan: read the account's profiles (Query per shard page, never a Scan),
  keep those in the job's audience (optional) that this job has not enriched in the last
  `refresh_after_days` and that carry what the provider looks up by, and write their ids
  as the run's plan (export's plan chunks, store/membership.py) under a set id of this
  attempt; the commit names it.
* steps 1..n — lookups: the next slice of the plan (at most `max_records`, and only as
  many as the step's deadline allows) is re-read from the store, looked up one profile at
  a time through the provider, and what it returned is merged with
  `ProfileRepo.upsert_batch(step_tag="<run>#<step>")`, together with the job's marker
  field (`enriched_at_<job>`). Then the run's one-transaction commit (runs/commit.py)
  moves the checkpoint and the counters.

Exactly once: a replayed step re-reads its slice; the profiles its first attempt already
wrote carry its step tag, so they are counted from the store and not looked up (nor
billed) again; the others are looked up and written by the replay alone.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from chalicelib.domain import enrichment as E
from chalicelib.domain.models import Job
from chalicelib.domain.profiles import ProfileRecord
from chalicelib.domain.runs import LogLine, Run
from chalicelib.providers.base import ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.roles import Enricher, StepContext
from chalicelib.runs.control import Delivery, RunControl, RunLease, audience_filter, step_context
from chalicelib.runs.outcome import StepOutcome
from chalicelib.store.membership import MissingChunk, PlanRef, PlanRow, new_set_id

log = logging.getLogger("switchyard.enrichment")

CURSOR_KIND = "enrichment"
CURSOR_VERSION = 1
PAGE_SIZE = 1000  # profiles per Query while planning
# Time kept back from the step's budget for the merge and the commit once lookups stop.
RESERVE_FRACTION = 0.25
RESERVE_MAX_SECONDS = 10.0


# -- one step ---------------------------------------------------------------------------------


def enrichment_stage(ctl: RunControl, job: Job, run: Run, delivery: Delivery, started: float, budget: float,
                     calls: CallCounter) -> StepOutcome:
    """One step of an enrichment run, under the lease the engine took; the engine commits
    what it returns."""
    try:
        impl = ctl.d.registry.enricher(job.provider, job.workflow)
        if run.step == 0:
            return _plan(ctl, job, run, delivery, budget, impl)
        ctx = step_context(ctl, job, run, started, budget, calls)
        return _lookups(ctl, job, run, ctx, impl, started, budget)
    except MissingChunk as exc:
        raise ProviderError(
            f"the enrichment's plan is incomplete ({exc}); resume the job to start a new run") from exc


def _plan(ctl: RunControl, job: Job, run: Run, delivery: Delivery, budget: float,
          impl: Enricher) -> StepOutcome:
    d = ctl.d
    acct = job.account_id
    frozen = impl.freeze(job.config)
    audience_id = str(job.config.get("audience_id") or "")
    member = None
    audience_name = None
    if audience_id:
        audience = d.audiences.get(acct, audience_id, consistent=True)
        if audience is None:
            raise ProviderError(
                f"audience {audience_id!r} not found: it was deleted or never existed; choose an "
                "audience in the job's configuration, or none to enrich every profile", field="audience_id")
        member = audience_filter(audience)
        audience_name = audience.name
    days = float(job.config.get("refresh_after_days", E.DEFAULT_REFRESH_DAYS))
    marker = E.marker_field(job.id)
    since = E.fresh_since(ctl.o.now(), days)

    lease = RunLease(ctl, run, delivery.message_id, budget)
    ids: list[str] = []
    omitted: Counter[str] = Counter()
    scanned = selected = 0
    for profile in d.profiles.iterate(acct, page_size=PAGE_SIZE):
        scanned += 1
        if scanned % PAGE_SIZE == 0:
            lease.keep()
        if member is not None and not member(profile):
            continue  # outside the job's filter: not this job's business, not counted
        selected += 1
        if E.is_fresh(profile, marker, since):
            omitted[E.RECENTLY_ENRICHED] += 1
        elif not impl.eligible(profile):
            omitted[E.MISSING_IDENTIFIER] += 1
        else:
            ids.append(profile.id)
    ids.sort()
    rows: list[PlanRow] = [("add", pid, []) for pid in ids]
    set_id = new_set_id()
    ctl.o.fault("before_write")
    plan_ref = d.memberships.write_plan(acct, run.id, set_id, rows) if rows else PlanRef(set_id, 0, ())
    ctl.o.fault("after_write")
    cursor = {
        "v": CURSOR_VERSION,
        "kind": CURSOR_KIND,
        "frozen": frozen,
        "marker": marker,
        "rows_per_step": max(1, ctl.o.max_records),
        "plan": plan_ref.to_json(),
        "next": 0,
        "state": job.state,  # enrichment keeps no job state: the markers live on the profiles
    }
    n_omitted = sum(omitted.values())
    scope = f"audience {audience_name!r}" if audience_name else "every profile"
    lines = [LogLine("info", "run.step",
                     f"step 0: {scope}: {selected} of {scanned} profiles; {len(ids)} to look up, "
                     f"{n_omitted} omitted", run_id=run.id,
                     context={"profiles_read": scanned, "selected": selected, "to_look_up": len(ids),
                              "omitted": n_omitted, "omitted_reasons": dict(omitted),
                              "refresh_after_days": days})]
    return StepOutcome(cursor=cursor, processed=0, total=len(ids), done=not ids, state=job.state,
                       omitted_reasons=dict(omitted), lines=lines)


def _lookups(ctl: RunControl, job: Job, run: Run, ctx: StepContext, impl: Enricher, started: float,
             budget: float) -> StepOutcome:
    cur = dict(run.cursor or {})
    if cur.get("kind") != CURSOR_KIND or cur.get("v") != CURSOR_VERSION:
        raise ProviderError("this run's checkpoint is not an enrichment checkpoint; resume to start a new run")
    d = ctl.d
    acct = job.account_id
    frozen: dict[str, Any] = cur["frozen"]
    marker: str = cur["marker"]
    plan_ref = PlanRef.from_json(cur["plan"])
    start = int(cur["next"])
    rows = d.memberships.read_plan(acct, run.id, plan_ref, start, int(cur["rows_per_step"]))
    tag = f"{run.id}#{run.step}"
    repo = d.profiles
    profiles, written = repo.get_many(acct, [pid for _, pid, _ in rows], step_tag=tag)

    stop_at = started + budget - min(RESERVE_MAX_SECONDS, budget * RESERVE_FRACTION)
    reasons: Counter[str] = Counter()
    records: list[ProfileRecord] = []
    replayed = processed = asked = 0
    words: dict[str, str] = {}
    stopped: ProviderError | None = None
    now = E.iso(ctl.o.now())
    # A replay may not stop before the last profile its first attempt merged: the next step
    # (another tag) would merge and count that one again.
    must_reach = max((i for i, (_, pid, _) in enumerate(rows) if pid in written), default=-1)
    for i, (_, pid, _) in enumerate(rows):
        if processed and i > must_reach and time.monotonic() >= stop_at:
            break  # the rest is the next step's: keep time to merge and commit
        profile = profiles.get(pid)
        if pid in written:
            replayed += 1  # merged by an earlier attempt of this very step
        elif profile is None or not impl.eligible(profile):
            reasons[E.MISSING_IDENTIFIER] += 1
        else:
            try:
                asked += 1
                found = impl.lookup(ctx, frozen, profile)
            except ProviderError as exc:
                if exc.transient and processed and i > must_reach:
                    stopped = exc  # keep what was looked up; the engine backs off on the next step
                    break
                raise
            # A returned "email" field would shadow the identifier in audience filters.
            fields = {k: v for k, v in (found.fields or {}).items() if k not in profile.identifiers}
            if fields:
                ident = E.creating_identifier(profile)
                if ident is None:  # unreachable: a stored profile always has an identifier
                    reasons[E.MISSING_IDENTIFIER] += 1
                else:
                    records.append(ProfileRecord(identifiers=dict([ident]),
                                                 fields={**fields, marker: now}, ref=pid))
            else:
                reasons[found.reason] += 1
                if found.words:
                    words.setdefault(found.reason, found.words)
        processed += 1

    rules = {name: ("latest" if frozen.get("overwrite", True) else "first")
             for r in records for name in r.fields}
    rules[marker] = "latest"
    ctl.o.fault("before_write")
    outcomes = repo.upsert_batch(acct, records, step_tag=tag, rules=rules) if records else []
    if not records:
        # Nothing to write now, but an earlier attempt of this step may have died holding
        # the account's write lease (after its last write, say): free it now, not when it
        # lapses, or the next step and every import of the account wait for it. One
        # conditional DeleteItem, a no-op when this step holds nothing.
        repo.release(acct, tag)
    ctl.o.fault("after_write")
    too_large = sum(1 for o in outcomes if o == "too_large")
    if too_large:
        reasons[E.TOO_LARGE] += too_large
    added = replayed + len(outcomes) - too_large
    end = start + processed
    cur["next"] = end
    omitted = sum(reasons.values())
    lines = [LogLine("info", "run.step",
                     f"step {run.step}: {processed} profiles, {asked} looked up, {added} enriched, "
                     f"{omitted} omitted", run_id=run.id,
                     context={"added": added, "removed": 0, "omitted": omitted, "omitted_reasons": dict(reasons),
                              "processed": end, "provider_calls": ctx.counter.total if ctx.counter else 0})]
    for reason, said in sorted(words.items()):
        lines.append(LogLine("warning", f"enrichment.{reason}",
                             f"the provider refused some profiles ({reason}): {said}", run_id=run.id))
    if stopped is not None:
        lines.append(LogLine("warning", "enrichment.stopped_early",
                             f"lookups stopped after {processed} profiles: {stopped.reason}; the next step "
                             "carries on", run_id=run.id))
    return StepOutcome(cursor=cur, processed=end, total=plan_ref.rows, done=end >= plan_ref.rows, state=cur["state"],
                       added=added, omitted_reasons=dict(reasons), lines=lines)


__all__ = ["enrichment_stage"]
