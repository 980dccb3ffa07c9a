"""The alerts queue's Lambda (delivers each alert event by e-mail and webhooks) and the
hourly evaluation of metric threshold rules (services/alert_rules.py)."""

from __future__ import annotations

import json
import logging
from typing import Any

from chalice import Blueprint, Cron

from chalicelib.config import ALERTS_QUEUE

bp = Blueprint(__name__)
log = logging.getLogger("switchyard.alerts")


@bp.on_sqs_message(queue=ALERTS_QUEUE, batch_size=10)
def deliver_alerts(event: Any) -> None:
    from chalicelib import logs
    from chalicelib.services.alerts import deliver
    from chalicelib.services.deps import deps

    for record in event:
        raw = record.to_dict()
        # Per record: one alert's ids (account, job or authorization) never tag the next.
        with logs.scope(message_id=raw.get("messageId")):
            try:
                body = json.loads(record.body)
            except ValueError:
                log.error("alert message dropped: not JSON")
                continue
            if isinstance(body, dict):
                detail = body.get("detail")
                detail = detail if isinstance(detail, dict) else {}
                logs.bind(account_id=detail.get("account_id"), job_id=detail.get("job_id"),
                          run_id=detail.get("run_id"), authorization_id=detail.get("authorization_id"),
                          alert=body.get("detail-type"))
                deliver(deps(), body)


@bp.schedule(Cron(5, "*", "*", "*", "?", "*"), name="evaluate_alert_rules")
def evaluate_alert_rules(event: Any) -> None:
    # Five past the hour: the hour just ended is complete and its runs have committed.
    from chalicelib.services.alert_rules import evaluate
    from chalicelib.services.deps import deps

    evaluate(deps())
