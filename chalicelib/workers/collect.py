"""The collect queue's Lambda: hand-offs applied to profiles (services/collect.py).

FIFO, one group per job: once a record fails, every later record of its job in the batch is
reported failed too, so a job's hand-offs stay in order."""

from __future__ import annotations

import json
import logging
from typing import Any

from chalice import Blueprint

from chalicelib.bootstrap import deps
from chalicelib.services.collect import apply_handoff, log_blocked
from chalicelib.store.collect import COLLECT_QUEUE

bp = Blueprint(__name__)
log = logging.getLogger("switchyard.collect")


@bp.on_sqs_message(queue=COLLECT_QUEUE, batch_size=10)
def collect_handoffs(event: Any) -> dict[str, Any]:
    d = deps()
    failures: list[dict[str, str]] = []
    blocked: set[str] = set()
    for record in event:
        raw = record.to_dict()
        attributes = raw.get("attributes") or {}
        group = str(attributes.get("MessageGroupId", ""))
        ident = str(raw.get("messageId", ""))
        if group in blocked:
            failures.append({"itemIdentifier": ident})
            continue
        entry: Any = None
        try:
            entry = json.loads(record.body)
            outcome = apply_handoff(d, entry)
            log.info("hand-off applied: %s", outcome, extra={"job_id": entry.get("job_id")})
        except Exception as exc:
            log.exception("hand-off failed; SQS redelivers it (and what follows it for the same job)")
            blocked.add(group)
            failures.append({"itemIdentifier": ident})
            received = int(attributes.get("ApproximateReceiveCount", 1))
            if isinstance(entry, dict) and received in TELL_AT:
                _tell(entry, received, exc)
    return {"batchItemFailures": failures}


# Receive counts at which the job's log says its events are held up (not every retry).
TELL_AT = frozenset({3, 10, 100, 1000})


def _tell(entry: dict[str, Any], received: int, exc: Exception) -> None:
    """A line in the job's log: accepted events wait behind a hand-off that keeps failing.
    Names the error's type only (its text may quote data)."""
    try:
        log_blocked(deps(), str(entry["account_id"]), str(entry["job_id"]), received, type(exc).__name__)
    except Exception:
        log.exception("could not write the blocked hand-off's log line")
