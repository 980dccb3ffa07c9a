"""The collect queue's Lambda: hand-offs applied to profiles (services/collect.py).

FIFO, one group per job: once a record fails, every later record of its job in the batch is
reported failed too, so a job's hand-offs stay in order."""

from __future__ import annotations

import json
import logging
from typing import Any

from chalice import Blueprint

from chalicelib.services.collect import apply_handoff
from chalicelib.services.deps import deps
from chalicelib.store.collect import COLLECT_QUEUE

bp = Blueprint(__name__)
log = logging.getLogger("switchyard.collect")


@bp.on_sqs_message(queue=COLLECT_QUEUE, batch_size=10)
def collect_handoffs(event: Any) -> dict[str, Any]:
    failures: list[dict[str, str]] = []
    blocked: set[str] = set()
    for record in event:
        raw = record.to_dict()
        group = str((raw.get("attributes") or {}).get("MessageGroupId", ""))
        ident = str(raw.get("messageId", ""))
        if group in blocked:
            failures.append({"itemIdentifier": ident})
            continue
        try:
            entry = json.loads(record.body)
            outcome = apply_handoff(deps(), entry)
            log.info("hand-off applied: %s", outcome, extra={"job_id": entry.get("job_id")})
        except Exception:
            log.exception("hand-off failed; SQS redelivers it (and what follows it for the same job)")
            blocked.add(group)
            failures.append({"itemIdentifier": ident})
    return {"batchItemFailures": failures}
