"""The store's SQS batch sends (`send_batches`: the health sweep's fan-out and the real-time
nudges): 10 entries a request, the entries SQS reports in a batch's `Failed` sent again, and
a plain error naming the queue when they stay refused. Against moto; the per-entry refusal,
which moto never gives, is made by botocore hooks on the store's own SQS client: the refused
entries are taken out of the request before it is sent and reported as AWS reports them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from chalicelib.config import settings
from chalicelib.store import aws, queues


@dataclass
class _Http:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)


class Refusals:
    """Refuses the entries `refuse(send number, ids)` picks of each SendMessageBatch."""

    def __init__(self, refuse: Any) -> None:
        self.refuse = refuse
        self.sends: list[list[str]] = []  # the entry ids of each request, before refusals
        self._pending: list[str] = []

    def before(self, params: dict[str, Any], **_: Any) -> None:
        ids = [e["Id"] for e in params["Entries"]]
        self._pending = sorted(self.refuse(len(self.sends), ids))
        self.sends.append(ids)
        params["Entries"] = [e for e in params["Entries"] if e["Id"] not in self._pending]

    def short_circuit(self, **_: Any) -> tuple[Any, dict[str, Any]] | None:
        """Every entry refused: answered without a request (SQS refuses an empty batch)."""
        if self._pending and len(self._pending) == len(self.sends[-1]):
            return _Http(200), {"Successful": [], "ResponseMetadata": {"HTTPStatusCode": 200}}
        return None

    def after(self, parsed: dict[str, Any], **_: Any) -> None:
        parsed.setdefault("Failed", [])
        parsed["Failed"] += [{"Id": i, "SenderFault": False, "Code": "InternalError",
                              "Message": "the entry was not stored"} for i in self._pending]


@pytest.fixture()
def refusals(deps: Any) -> Iterator[Any]:
    sqs = aws.client("sqs")
    made: list[Refusals] = []

    def install(refuse: Any) -> Refusals:
        r = Refusals(refuse)
        sqs.meta.events.register("before-parameter-build.sqs.SendMessageBatch", r.before)
        sqs.meta.events.register("before-call.sqs.SendMessageBatch", r.short_circuit)
        sqs.meta.events.register("after-call.sqs.SendMessageBatch", r.after)
        made.append(r)
        return r

    yield install
    for r in made:
        sqs.meta.events.unregister("before-parameter-build.sqs.SendMessageBatch", r.before)
        sqs.meta.events.unregister("before-call.sqs.SendMessageBatch", r.short_circuit)
        sqs.meta.events.unregister("after-call.sqs.SendMessageBatch", r.after)


def _drain(url: str) -> list[dict[str, Any]]:
    sqs = aws.client("sqs")
    bodies: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            return bodies
        for m in got:
            bodies.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


@pytest.fixture()
def health_url(deps: Any) -> str:
    url = queues.queue_url(settings().health_queue_name)
    _drain(url)
    return url


def messages(n: int) -> list[dict[str, Any]]:
    return [{"n": i} for i in range(n)]


def test_refused_entries_are_sent_again_and_every_message_arrives_once(refusals: Any, health_url: str) -> None:
    # GIVEN SQS refuses entries 1 and 7 of the first request
    seen = refusals(lambda send, ids: {"1", "7"} if send == 0 else set())
    # WHEN 23 messages go out
    sent = queues.send_batches(health_url, messages(23), what="health queue")
    # THEN three requests of 10, 10 and 3, and one more for the two refused
    assert seen.sends == [[str(i) for i in range(10)], ["1", "7"], [str(i) for i in range(10)],
                          [str(i) for i in range(3)]]
    assert sent == 4
    assert sorted(b["n"] for b in _drain(health_url)) == list(range(23))


def test_entries_refused_every_time_fail_the_send_by_name(refusals: Any, health_url: str) -> None:
    refusals(lambda send, ids: {"3"})
    with pytest.raises(RuntimeError, match="the health queue refused 1 messages"):
        queues.send_batches(health_url, messages(5), what="health queue")
    # the others arrived: a retry of the whole sweep sends them again, which its workers take
    assert sorted(b["n"] for b in _drain(health_url)) == [0, 1, 2, 4]


def test_without_refusals_one_request_per_ten(refusals: Any, health_url: str) -> None:
    seen = refusals(lambda send, ids: set())
    assert queues.HealthQueue().send_batch(messages(20)) == 2
    assert [len(ids) for ids in seen.sends] == [10, 10]
    assert len(_drain(health_url)) == 20


def test_the_real_time_nudges_take_the_same_path_and_name_their_queue(refusals: Any, deps: Any) -> None:
    url = queues.queue_url(settings().realtime_queue_name)
    _drain(url)
    seen = refusals(lambda send, ids: {"0"} if send == 0 else set())
    queues.RealtimeQueue().send_batch(messages(3))
    assert seen.sends == [["0", "1", "2"], ["0"]]
    assert sorted(b["n"] for b in _drain(url)) == [0, 1, 2]
    refusals(lambda send, ids: {"1"})
    with pytest.raises(RuntimeError, match="the real-time queue refused 1 messages"):
        queues.RealtimeQueue().send_batch(messages(2))
    _drain(url)
