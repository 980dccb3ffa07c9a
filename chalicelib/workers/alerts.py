"""The alerts queue's Lambda: delivers each alert event by e-mail and webhooks."""

from __future__ import annotations

import json
import logging
from typing import Any

from chalice import Blueprint

from chalicelib.config import ALERTS_QUEUE

bp = Blueprint(__name__)
log = logging.getLogger("switchyard.alerts")


@bp.on_sqs_message(queue=ALERTS_QUEUE, batch_size=10)
def deliver_alerts(event: Any) -> None:
    from chalicelib.services.alerts import deliver
    from chalicelib.services.deps import deps

    for record in event:
        try:
            body = json.loads(record.body)
        except ValueError:
            log.error("alert message dropped: not JSON")
            continue
        if isinstance(body, dict):
            deliver(deps(), body)
