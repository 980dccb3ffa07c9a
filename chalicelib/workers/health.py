"""The daily health sweep (schedule) and the health queue's handler (services/health.py)."""

from __future__ import annotations

import json
import logging
from typing import Any

from chalice import Blueprint

from chalicelib import logs
from chalicelib.bootstrap import deps
from chalicelib.config import HEALTH_QUEUE, sweep_schedule
from chalicelib.services.health import check_many, sweep
from chalicelib.store import metrics as M

bp = Blueprint(__name__)
log = logging.getLogger("switchyard.health")


# Daily 05:00 UTC unless SWITCHYARD_HEALTH_SWEEP_SCHEDULE says otherwise (read at import: see config).
@bp.schedule(sweep_schedule(), name="health_sweep")
def health_sweep(event: Any) -> None:
    from chalicelib.workers.events import scheduled

    with M.flushing() as m, logs.scope(**scheduled(event)):
        try:
            sweep(deps())
        except Exception:
            m.count(M.SWEEP_ERRORS)  # the SweepErrors alarm watches this
            raise


@bp.on_sqs_message(queue=HEALTH_QUEUE, batch_size=10)
def check_health(event: Any) -> None:
    # The batch's checks run side by side (check_many), not one record after another, and a
    # check that fails is a verdict, never a redelivery: the batch succeeds or fails whole.
    from chalicelib.workers.events import records

    with M.flushing() as m:
        targets: list[tuple[str, str]] = []
        for record in records(event):
            try:
                body = json.loads(record.body if isinstance(record.body, str) else "")
                targets.append((str(body["account_id"]), str(body["authorization_id"])))
            except (ValueError, KeyError, TypeError):
                log.error("health message dropped: not a health check request")
                m.count(M.SWEEP_ERRORS)
        verdicts = check_many(deps(), targets)
        log.info("health checked", extra={
            "checked": sum(1 for v in verdicts if v.status is not None),
            "inconclusive": sum(1 for v in verdicts if v.status is None),
            "changed": sum(1 for v in verdicts if v.changed)})
