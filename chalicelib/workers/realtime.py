"""The real-time queue's Lambda: one nudge of one real-time export job per message
(services/realtime.py delivers what the job has not sent yet); and the catch-up sweep, every
minute, that nudges the jobs left behind."""

from __future__ import annotations

import json
import logging
from typing import Any

from chalice import Blueprint, Rate

from chalicelib import logs
from chalicelib.bootstrap import deps
from chalicelib.config import REALTIME_QUEUE
from chalicelib.services.realtime import DeliveryBusy, Nudge, catch_up, deliver, follow_up

bp = Blueprint(__name__)
log = logging.getLogger("switchyard.realtime")


@bp.on_sqs_message(queue=REALTIME_QUEUE, batch_size=1, name="deliver_realtime")
def deliver_realtime(event: Any) -> None:
    context = getattr(event, "context", None)
    remaining = context.get_remaining_time_in_millis if context else None
    d = deps()
    for record in event:
        try:
            nudge = Nudge.parse(json.loads(record.body))
        except (ValueError, KeyError, TypeError):
            log.error("real-time message dropped: not a nudge")
            continue
        try:
            outcome = deliver(d, nudge, remaining_ms=remaining)
        except DeliveryBusy:
            # Dropped: the holder checks the head again once it lets the job go.
            log.info("real-time job %s is being delivered; its holder sends this change", nudge.job_id)
            continue
        follow_up(d, nudge, outcome)
        log.info("real-time delivery: %s", outcome.status,
                 extra={"job_id": nudge.job_id, "delivered": outcome.delivered, "cursor": outcome.cursor})


# Every minute (EventBridge's shortest rate): how long a job whose nudge was lost waits at most.
@bp.schedule(Rate(1, unit=Rate.MINUTES), name="realtime_catch_up")
def realtime_catch_up(event: Any) -> None:
    # The event's keys straight from Chalice's object: the Powertools parser the daily sweeps
    # use (workers/events.py) is a few hundred ms of import, for a Lambda started every minute.
    with logs.scope(scheduled_event_id=str(getattr(event, "event_id", "")),
                    scheduled_time=str(getattr(event, "time", ""))):
        report = catch_up(deps())
    log.info("real-time catch-up: %d jobs nudged", report.nudged, extra={
        "followed": report.followed, "behind": report.behind, "held": report.held,
        "inactive": report.inactive, "nudged": report.nudged})
