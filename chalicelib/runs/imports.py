"""Import runs: a source's records, mapped to profiles and merged with idempotent upserts
tagged by the step (docs/engine.md). The engine hands every step of an import job to
`import_stage` once it holds the run's lease, and commits what it returns; a replayed step
writes with the same tag, so nothing counts twice."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from chalicelib.domain import profiles as P
from chalicelib.domain.models import Job
from chalicelib.domain.runs import LogLine, Run
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.roles import ReadResult
from chalicelib.runs.control import Delivery, RunControl, step_context
from chalicelib.runs.outcome import StepOutcome

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.store.profiles.lease import Ticket
    from chalicelib.store.protocols import Profiles


def import_stage(ctl: RunControl, job: Job, run: Run, delivery: Delivery, started: float, budget: float,
                 calls: CallCounter) -> StepOutcome:
    """One step of an import run: read a page from the source, write its profiles."""
    ctx = step_context(ctl, job, run, started, budget, calls)
    impl = ctl.d.registry.source(job.provider, job.workflow)
    repo = ctl.d.profiles
    # The write lease is taken while the page is read; profiles are read only under it.
    ticket = repo.lease_ahead(job.account_id, f"{run.id}#{run.step}")
    try:
        out = _import_page(ctl, job, run, impl.read(ctx), repo, ticket)
    finally:
        ticket.release()
    stats = getattr(repo, "last_stats", None)  # the lease's take and release included
    if stats is not None:
        out.store_cost = {"dynamodb_rcu": float(stats.read_units), "dynamodb_wcu": float(stats.write_units)}
    return out


def _import_page(ctl: RunControl, job: Job, run: Run, result: ReadResult, repo: Profiles,
                 ticket: Ticket) -> StepOutcome:
    mapping = P.Mapping.from_config(job.config)
    reasons: Counter[str] = Counter()
    reasons["invalid"] += len(result.invalid)

    def records() -> Iterator[P.ProfileRecord]:
        # Mapped as the store takes them: it reads the profiles of the first records while
        # the later ones are mapped.
        for row in result.rows:
            mapped = P.map_record(row.data, mapping, row.ref)
            if isinstance(mapped, P.Omitted):
                reasons[mapped.reason] += 1
            else:
                yield mapped

    ctl.o.fault("before_write")
    outcomes = repo.upsert_batch(job.account_id, records(), step_tag=ticket.owner, rules=mapping.merge_rules,
                                 ticket=ticket)
    ctl.o.fault("after_write")
    added = sum(1 for o in outcomes if o in ("added", "updated"))
    reasons["unchanged"] += sum(1 for o in outcomes if o == "unchanged")
    reasons["too_large"] += sum(1 for o in outcomes if o == "too_large")
    omitted_reasons = {k: v for k, v in reasons.items() if v}
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
        total_unit=result.total_unit, read=read, reports_removed=False,
        summary={"read": len(result.rows), "added": added, "omitted": omitted, "done": result.done},
    )


__all__ = ["import_stage"]
