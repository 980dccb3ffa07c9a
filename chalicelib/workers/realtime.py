"""The real-time queue's Lambda: one nudge of one real-time export job per message
(services/realtime.py delivers what the job has not sent yet)."""

from __future__ import annotations

import json
import logging
from typing import Any

from chalice import Blueprint

from chalicelib.bootstrap import deps
from chalicelib.config import REALTIME_QUEUE
from chalicelib.services.realtime import DeliveryBusy, Nudge, deliver, retry_nudge

bp = Blueprint(__name__)
log = logging.getLogger("switchyard.realtime")
BUSY_DELAY = 2  # seconds before a nudge that found the job busy is looked at again


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
            # Sent again shortly (not dropped): the holder may have read the head before the
            # change this nudge announces.
            log.info("real-time job %s is being delivered; the nudge comes back in %d s", nudge.job_id, BUSY_DELAY)
            d.realtime_queue.send(nudge.body(), delay_seconds=BUSY_DELAY)
            continue
        if outcome.status == "more":
            d.realtime_queue.send(Nudge(nudge.account_id, nudge.audience_id, nudge.job_id).body())
        elif outcome.status == "retry":
            d.realtime_queue.send(retry_nudge(nudge).body(), delay_seconds=outcome.delay)
        log.info("real-time delivery: %s", outcome.status,
                 extra={"job_id": nudge.job_id, "delivered": outcome.delivered, "cursor": outcome.cursor})
