"""The worker Lambdas' events, read through Powertools: Parser models for SQS records,
EventBridge events and scheduled events, and the BatchProcessor's partial batch response.

Only worker handlers import this module, on their first event: the parser's models and the
batch utility cost a few hundred milliseconds of import that the API and the authorizer
must not pay (tests/test_cold_start.py keeps them off `import app`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, SqsModel, SqsRecordModel
from pydantic import ValidationError

log = logging.getLogger("switchyard.workers")

__all__ = ["EventBridgeModel", "SqsRecordModel", "TargetEvent", "ValidationError", "each_record", "eventbridge",
           "records", "scheduled"]


def each_record(event: Any, handle: Callable[[SqsRecordModel], None]) -> dict[str, Any]:
    """Hand each record of a Chalice SQS event to `handle`, in order. The records whose
    handler raised are returned as `batchItemFailures`: with ReportBatchItemFailures on the
    event source (infra/), SQS redelivers those alone and deletes the others. When every
    record failed, the batch raises, and SQS redelivers it whole."""
    processor = BatchProcessor(event_type=EventType.SQS, model=SqsRecordModel)
    answer: dict[str, Any] = dict(process_partial_response(
        event=event.to_dict(), record_handler=handle, processor=processor,
        context=getattr(event, "context", None)))
    return answer


def records(event: Any) -> list[SqsRecordModel]:
    """The records of a Chalice SQS event, validated (a malformed event raises)."""
    return list(SqsModel.model_validate(event.to_dict()).Records)


class TargetEvent(EventBridgeModel):
    """An EventBridge event as a rule's target receives it. `account` may be missing: no
    worker reads it, and the local emulation (moto) leaves it out of what it delivers."""

    account: str | None = None  # type: ignore[assignment]


def eventbridge(body: dict[str, Any]) -> TargetEvent | None:
    """An EventBridge event as a target receives it, or None when `body` is not one."""
    try:
        return TargetEvent.model_validate(body)
    except ValidationError:
        return None


def scheduled(event: Any) -> dict[str, str]:
    """Log keys naming the "Scheduled Event" a schedule rule sent (its id and the time it
    was due). The scheduled work reads nothing from the event, so a malformed one is logged
    and the work still runs."""
    try:
        parsed = EventBridgeModel.model_validate(event.to_dict())
    except ValidationError as exc:
        log.warning("scheduled event is not an EventBridge event", extra={"errors": exc.error_count()})
        return {}
    return {"scheduled_event_id": parsed.id, "scheduled_time": parsed.time.isoformat()}
