"""Import runs: a source's records, mapped to profiles and merged with idempotent upserts
tagged by the step (docs/engine.md). The engine hands every step of an import job to
`import_stage` once it holds the run's lease, and commits what it returns; a replayed step
writes with the same tag, so nothing counts twice."""

from __future__ import annotations

from collections import Counter

from chalicelib.domain import profiles as P
from chalicelib.domain.models import Job
from chalicelib.domain.runs import LogLine, Run
from chalicelib.providers.calls import CallCounter
from chalicelib.runs.control import Delivery, RunControl, step_context
from chalicelib.runs.outcome import StepOutcome


def import_stage(ctl: RunControl, job: Job, run: Run, delivery: Delivery, started: float, budget: float,
                 calls: CallCounter) -> StepOutcome:
    """One step of an import run: read a page from the source, write its profiles."""
    ctx = step_context(ctl, job, run, started, budget, calls)
    impl = ctl.d.registry.source(job.provider, job.workflow)
    result = impl.read(ctx)
    mapping = P.Mapping.from_config(job.config)
    records = []
    reasons: Counter[str] = Counter()
    reasons["invalid"] += len(result.invalid)
    for row in result.rows:
        mapped = P.map_record(row.data, mapping, row.ref)
        if isinstance(mapped, P.Omitted):
            reasons[mapped.reason] += 1
        else:
            records.append(mapped)
    ctl.o.fault("before_write")
    repo = ctl.d.profiles
    outcomes = repo.upsert_batch(job.account_id, records, step_tag=f"{run.id}#{run.step}", rules=mapping.merge_rules)
    ctl.o.fault("after_write")
    added = sum(1 for o in outcomes if o in ("added", "updated"))
    reasons["unchanged"] += sum(1 for o in outcomes if o == "unchanged")
    reasons["too_large"] += sum(1 for o in outcomes if o == "too_large")
    omitted_reasons = {k: v for k, v in reasons.items() if v}
    store_cost = {}
    stats = getattr(repo, "last_stats", None)
    if stats is not None:
        store_cost = {"dynamodb_rcu": float(stats.read_units), "dynamodb_wcu": float(stats.write_units)}
    omitted = sum(omitted_reasons.values())
    lines = [LogLine("info", "run.step", f"step {run.step}: {len(result.rows)} read, {added} added, "
                     f"{omitted} omitted", run_id=run.id,
                     context={"added": added, "removed": 0, "omitted": omitted,
                              "omitted_reasons": dict(omitted_reasons), "processed": result.processed})]
    for ref, why in result.invalid[:5]:
        lines.append(LogLine("warning", "record.invalid", f"{ref}: {why}", run_id=run.id))
    read = int(result.cursor.get("bytes_read", result.processed)) if result.total_unit == "bytes" \
        else result.processed
    return StepOutcome(
        cursor=result.cursor, processed=result.processed, total=result.total, done=result.done,
        state=result.state, added=added, omitted_reasons=omitted_reasons, lines=lines,
        total_unit=result.total_unit, read=read, store_cost=store_cost, reports_removed=False,
        summary={"read": len(result.rows), "added": added, "omitted": omitted, "done": result.done},
    )


__all__ = ["import_stage"]
