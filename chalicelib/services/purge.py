"""The daily purge of paused, failed and completed jobs left untouched for 90 days (SPEC 4).

The jobs come from the sparse sweep index (store: JobRepo.due_for_purge); each is deleted
through the same conditional transaction as a user's delete, so the authorization's usage
counters and the audience's job count move with it. A job touched since it was listed has
a new version (and a new purge time): its delete fails the version condition and it stays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from chalicelib.domain.audit import AuditEvent
from chalicelib.domain.errors import AppError
from chalicelib.domain.statuses import PURGEABLE_STATUSES
from chalicelib.store.jobs import PURGE_SHARDS

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.services.needs import PurgeNeeds

log = logging.getLogger("switchyard.purge")

MAX_PER_SHARD = 1000  # a day's bound per shard; what is left waits for the next day


@dataclass
class PurgeReport:
    purged: int = 0
    skipped: int = 0  # touched since listed, or already gone


def purge_due(d: PurgeNeeds, now: datetime | None = None) -> PurgeReport:
    now = now or datetime.now(UTC)
    cutoff = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    report = PurgeReport()
    for shard in range(PURGE_SHARDS):
        seen = 0
        while seen < MAX_PER_SHARD:
            due = d.jobs.due_for_purge(shard, cutoff, limit=100)
            if not due:
                break
            progress = False
            for account_id, job_id in due:
                seen += 1
                job = d.jobs.get(account_id, job_id, consistent=True)
                if job is None or job.status not in PURGEABLE_STATUSES:
                    report.skipped += 1
                    continue
                try:
                    tx = d.transaction()
                    d.audit.add(tx, AuditEvent(account_id, "system", "purged", "job", job.id, job.label,
                                               {"status": {"before": job.status.value, "after": None}}))
                    d.alert_rules.add_deletes_for_job(tx, account_id, job.id)
                    d.jobs.delete(job, tx=tx)
                except AppError:
                    report.skipped += 1  # changed meanwhile: it is no longer due
                    continue
                if job.schedule is not None:
                    d.scheduler.remove(job.account_id, job.id)
                progress = True
                report.purged += 1
                log.info("job purged", extra={"account_id": account_id, "job_id": job_id,
                                              "status": job.status.value})
            if not progress:
                break  # everything listed was skipped: nothing more is due here
    return report
