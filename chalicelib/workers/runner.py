"""The runs queue's Lambda: one step of one run per message (batch size 1)."""

from __future__ import annotations

import json
import logging
from typing import Any

from chalice import Blueprint

from chalicelib import logs
from chalicelib.bootstrap import deps
from chalicelib.config import RUNS_QUEUE
from chalicelib.store.metrics import flushing

bp = Blueprint(__name__)
log = logging.getLogger("switchyard.runner")


@bp.on_sqs_message(queue=RUNS_QUEUE, batch_size=1)
def run_step(event: Any) -> None:
    with flushing():  # run outcomes and provider requests, as EMF lines
        _run_step(event)


def _run_step(event: Any) -> None:
    from chalicelib.runs.engine import AlertNotSent, Delivery, Engine, PoisonMessage, StepBusy

    context = getattr(event, "context", None)
    engine = Engine(deps())
    for record in event:
        raw = record.to_dict()
        try:
            body = json.loads(record.body)
        except ValueError:
            body = None
        delivery = Delivery(
            body=body,
            message_id=str(raw.get("messageId", "")),
            remaining_ms=(context.get_remaining_time_in_millis if context else (lambda: 60_000)),
            memory_mb=int(getattr(context, "memory_limit_in_mb", 512) or 512),
            receive_count=int((raw.get("attributes") or {}).get("ApproximateReceiveCount", 1)),
        )
        # The engine binds the job's ids inside; the scope drops them with the record.
        with logs.scope(message_id=delivery.message_id, receive_count=delivery.receive_count):
            try:
                engine.handle(delivery)
            except PoisonMessage as exc:
                # Raised on purpose: after maxReceiveCount, SQS moves it to the DLQ.
                log.error("poison message %s: %s", delivery.message_id, exc)
                raise
            except StepBusy:
                log.info("step busy: another delivery holds the run's lease; SQS redelivers")
                raise
            except AlertNotSent as exc:
                log.warning("%s; SQS redelivers the message to send it", exc)
                raise
            except Exception:
                log.exception("step crashed; SQS redelivers it (resumes from the last commit)")
                raise
