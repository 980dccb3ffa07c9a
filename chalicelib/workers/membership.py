"""Audience membership kept current: the profiles table's stream Lambda, and the backfill
queue's (services/audience_members.py).

The stream handler answers `batchItemFailures` (the package turns ReportBatchItemFailures
on for its event source): Lambda then retries from the first failed record, and records
already applied are skipped by the member items' conditions (docs/audiences.md).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from chalice import Blueprint

from chalicelib.bootstrap import deps
from chalicelib.config import BACKFILL_QUEUE, PROFILES_STREAM_ARN
from chalicelib.services.audience_members import ChangeBatch, backfill_page

bp = Blueprint(__name__)
log = logging.getLogger("switchyard.membership")


@bp.on_dynamodb_record(stream_arn=PROFILES_STREAM_ARN, batch_size=100, starting_position="TRIM_HORIZON",
                       name="profile_changes")
def profile_changes(event: Any) -> dict[str, Any]:
    # Powertools' batch utility costs import time the API must not pay: loaded on first event.
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    batch = ChangeBatch(deps())

    def handle(record: Any) -> None:
        batch.apply(record.raw_event)

    answer: dict[str, Any] = dict(process_partial_response(
        event=event.to_dict(), record_handler=handle, processor=BatchProcessor(EventType.DynamoDBStreams),
        context=getattr(event, "context", None)))
    # A refused nudge fails the records that grew the logs: the stream retries from the
    # first of them, records nothing twice and nudges again.
    failures = list(answer.get("batchItemFailures") or [])
    known = {f.get("itemIdentifier") for f in failures}
    failures += [{"itemIdentifier": seq} for seq in batch.nudge() if seq not in known]
    log.info("profile changes applied", extra={"recorded": batch.recorded, "failed": len(failures)})
    return {"batchItemFailures": failures}


@bp.on_sqs_message(queue=BACKFILL_QUEUE, batch_size=1, name="backfill_audience")
def backfill_audience(event: Any) -> None:
    for record in event:
        try:
            body = json.loads(record.body)
            message = {k: body[k] for k in ("account_id", "audience_id", "version", "page")}
        except (ValueError, KeyError, TypeError):
            log.error("backfill message dropped: not a backfill page")
            continue
        outcome = backfill_page(deps(), message)
        log.info("backfill page: %s", outcome, extra={"audience_id": message["audience_id"],
                                                     "page": message["page"]})
