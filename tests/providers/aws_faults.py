"""Failures moto never produces, injected honestly through botocore's event hooks on the
shared provider session (every client the providers create inherits them):

* `refuse_kinesis_records` / `refuse_sqs_entries` take the entries to refuse OUT of the
  request before it is sent (moto never stores them) and put them back into the parsed
  answer as AWS reports a per-entry failure: `ErrorCode` in PutRecords' Records, an entry
  of SendMessageBatch's `Failed`. Everything else is moto's real answer.
* `answer_error` short-circuits one operation with an AWS error answer (botocore's
  `before-call` hook: no request is sent), for throttling and outages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chalicelib.providers import calls


@dataclass
class _Http:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Calls:
    """What each intercepted call asked for (before refusals) and what was refused."""

    sent: list[list[Any]] = field(default_factory=list)
    refused: list[list[Any]] = field(default_factory=list)


def refuse_kinesis_records(choose: Callable[[int, list[dict[str, Any]]], set[int]],
                           code: str = "ProvisionedThroughputExceededException") -> Calls:
    """`choose(call_number, records)` -> positions of this PutRecords call to refuse. When
    every record of a call is refused, the call is answered without reaching moto (an empty
    request would not pass botocore's validation)."""
    seen = Calls()
    pending: list[tuple[set[int], int]] = []

    def error() -> dict[str, str]:
        return {"ErrorCode": code, "ErrorMessage": f"Rate exceeded for shard in stream under account 123456789012 ({code})"}

    def before(params: dict[str, Any], **kw: Any) -> None:
        records = list(params["Records"])
        refuse = choose(len(seen.sent), records)
        seen.sent.append([r["Data"] for r in records])
        seen.refused.append([records[i]["Data"] for i in sorted(refuse)])
        pending.append((refuse, len(records)))
        if len(refuse) < len(records):
            params["Records"] = [r for i, r in enumerate(records) if i not in refuse]

    def short_circuit(**kw: Any) -> tuple[_Http, dict[str, Any]] | None:
        refuse, total = pending[-1]
        if len(refuse) < total:
            return None
        return _Http(200), {"FailedRecordCount": total, "Records": [error() for _ in range(total)],
                            "ResponseMetadata": {"HTTPStatusCode": 200}}

    def after(parsed: dict[str, Any], **kw: Any) -> None:
        refuse, total = pending.pop(0)
        if len(refuse) == total:
            return
        stored = iter(parsed.get("Records", []))
        parsed["Records"] = [error() if i in refuse else next(stored) for i in range(total)]
        parsed["FailedRecordCount"] = len(refuse)

    events = calls.shared_session().events
    events.register("before-parameter-build.kinesis.PutRecords", before)
    events.register("before-call.kinesis.PutRecords", short_circuit)
    events.register("after-call.kinesis.PutRecords", after)
    return seen


def refuse_sqs_entries(choose: Callable[[int, list[dict[str, Any]]], set[int]], *,
                       code: str = "InternalError", sender_fault: bool = False) -> Calls:
    """`choose(call_number, entries)` -> positions of this SendMessageBatch call to refuse
    (all of them: answered without reaching moto, as for Kinesis)."""
    seen = Calls()
    pending: list[tuple[list[dict[str, Any]], int]] = []

    def failed(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"Id": e["Id"], "SenderFault": sender_fault, "Code": code, "Message": f"{code} for this entry"}
                for e in entries]

    def before(params: dict[str, Any], **kw: Any) -> None:
        entries = list(params["Entries"])
        refuse = choose(len(seen.sent), entries)
        seen.sent.append([e["Id"] for e in entries])
        seen.refused.append([entries[i]["Id"] for i in sorted(refuse)])
        pending.append(([entries[i] for i in sorted(refuse)], len(entries)))
        if len(refuse) < len(entries):
            params["Entries"] = [e for i, e in enumerate(entries) if i not in refuse]

    def short_circuit(**kw: Any) -> tuple[_Http, dict[str, Any]] | None:
        refused, total = pending[-1]
        if len(refused) < total:
            return None
        return _Http(200), {"Successful": [], "Failed": failed(refused), "ResponseMetadata": {"HTTPStatusCode": 200}}

    def after(parsed: dict[str, Any], **kw: Any) -> None:
        refused, total = pending.pop(0)
        if len(refused) == total:
            return
        parsed.setdefault("Failed", [])
        parsed["Failed"] += failed(refused)

    events = calls.shared_session().events
    events.register("before-parameter-build.sqs.SendMessageBatch", before)
    events.register("before-call.sqs.SendMessageBatch", short_circuit)
    events.register("after-call.sqs.SendMessageBatch", after)
    return seen


def answer_error(service: str, operation: str, code: str, status: int, message: str = "",
                 times: int | None = None) -> list[int]:
    """Every `operation` call (or the next `times` ones: later calls reach moto) answers this
    AWS error; returns a list that grows by one per answered call."""
    hits: list[int] = []

    def before_call(**kw: Any) -> tuple[_Http, dict[str, Any]] | None:
        if times is not None and len(hits) >= times:
            return None
        hits.append(1)
        return _Http(status), {"Error": {"Code": code, "Message": message or code},
                               "ResponseMetadata": {"HTTPStatusCode": status}}

    calls.shared_session().events.register(f"before-call.{service}.{operation}", before_call)
    return hits


def time_out(service: str, operation: str, times: int | None = None) -> list[int]:
    """Every call of `operation` (or the next `times` ones) times out waiting for AWS's answer
    (botocore's ReadTimeoutError, raised before anything reaches moto). Returns one entry per
    call that timed out."""
    from botocore.exceptions import ReadTimeoutError

    hits: list[int] = []

    def before_call(**kw: Any) -> None:
        if times is not None and len(hits) >= times:
            return
        hits.append(1)
        raise ReadTimeoutError(endpoint_url=f"https://{service}.us-east-1.amazonaws.com/")

    calls.shared_session().events.register(f"before-call.{service}.{operation}", before_call)
    return hits
