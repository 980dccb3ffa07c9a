"""Daily purge of jobs left paused, failed or completed for 90 days (services/purge.py)."""

from __future__ import annotations

import logging
from typing import Any

from chalice import Blueprint, Cron

from chalicelib import logs
from chalicelib.bootstrap import deps
from chalicelib.services.purge import purge_due

bp = Blueprint(__name__)
log = logging.getLogger("switchyard.purge")


@bp.schedule(Cron(40, 3, "*", "*", "?", "*"), name="purge_jobs")
def purge_jobs(event: Any) -> None:
    from chalicelib.workers.events import scheduled

    with logs.scope(**scheduled(event)):
        report = purge_due(deps())
    log.info("purge finished", extra={"purged": report.purged, "skipped": report.skipped})
