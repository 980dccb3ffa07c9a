"""The alerts queue's Lambda (delivers each alert event by e-mail and webhooks) and the
hourly evaluation of metric threshold rules (services/alert_rules.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chalice import Blueprint, Cron

from chalicelib import logs
from chalicelib.bootstrap import Deps, deps
from chalicelib.config import ALERTS_QUEUE
from chalicelib.services.alert_rules import evaluate
from chalicelib.services.alerts import deliver

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.workers.events import SqsRecordModel, TargetEvent

bp = Blueprint(__name__)
log = logging.getLogger("switchyard.alerts")


@bp.on_sqs_message(queue=ALERTS_QUEUE, batch_size=10)
def deliver_alerts(event: Any) -> dict[str, Any]:
    from chalicelib.workers import events

    d = deps()
    # One failed delivery is redelivered alone: the others of the batch are done.
    return events.each_record(event, lambda record: deliver_record(d, record, events.eventbridge))


def deliver_record(d: Deps, record: SqsRecordModel,
                   eventbridge: Callable[[dict[str, Any]], TargetEvent | None]) -> None:
    # Per record: one alert's ids (account, job or authorization) never tag the next.
    with logs.scope(message_id=record.messageId):
        try:
            body = json.loads(record.body if isinstance(record.body, str) else "")
        except ValueError:
            log.error("alert message dropped: not JSON")
            return
        envelope = eventbridge(body) if isinstance(body, dict) else None
        if envelope is None:
            log.error("alert message dropped: not an EventBridge event")
            return
        detail = envelope.detail if isinstance(envelope.detail, dict) else {}
        logs.bind(account_id=detail.get("account_id"), job_id=detail.get("job_id"),
                  run_id=detail.get("run_id"), authorization_id=detail.get("authorization_id"),
                  alert=envelope.detail_type)
        try:
            # The event as EventBridge wrote it: webhooks receive its id and time verbatim.
            deliver(d, body)
        except Exception:
            log.exception("alert not delivered; SQS redelivers this message alone")
            raise


@bp.schedule(Cron(5, "*", "*", "*", "?", "*"), name="evaluate_alert_rules")
def evaluate_alert_rules(event: Any) -> None:
    # Five past the hour: the hour just ended is complete and its runs have committed.
    from chalicelib.workers.events import scheduled

    with logs.scope(**scheduled(event)):
        evaluate(deps())
