"""The local event loop (devserver/events.py) against the session's moto server.

Each test defines a tiny Chalice app of its own and its own queues and schedule group, so
the loop never touches what other tests put on the stage's runs queue. Time for schedules
comes from an injectable clock that the tests move forward.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from chalice import Chalice, Rate

from devserver.events import EventLoop, event_handlers

REGION = "us-east-1"


class Clock:
    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, **delta: float) -> None:
        with self._lock:
            self._now += timedelta(**delta)


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout}s: {predicate}")


@dataclass
class Queues:
    name: str
    url: str
    arn: str
    dlq_url: str

    def counts(self) -> tuple[int, int]:
        attrs = boto3.client("sqs", region_name=REGION).get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def empty(self) -> bool:
        return self.counts() == (0, 0)

    def dlq_bodies(self) -> list[str]:
        sqs = boto3.client("sqs", region_name=REGION)
        got = sqs.receive_message(QueueUrl=self.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        return [m["Body"] for m in got.get("Messages", [])]

    def send(self, *bodies: str, **extra: Any) -> None:
        sqs = boto3.client("sqs", region_name=REGION)
        for body in bodies:
            sqs.send_message(QueueUrl=self.url, MessageBody=body, **extra)


@pytest.fixture()
def queues(aws_endpoint: str) -> Iterator[Queues]:
    sqs = boto3.client("sqs", region_name=REGION)
    name = f"evloop-{uuid.uuid4().hex[:8]}"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": "960",  # like the runs queue: only the loop's own timeouts matter
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"}),
        },
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    yield Queues(name, url, arn, dlq_url)
    sqs.delete_queue(QueueUrl=url)
    sqs.delete_queue(QueueUrl=dlq_url)


@pytest.fixture()
def group(aws_endpoint: str) -> str:
    name = f"evloop-{uuid.uuid4().hex[:8]}"
    boto3.client("scheduler", region_name=REGION).create_schedule_group(Name=name)
    return name


@pytest.fixture()
def start_loop(aws_endpoint: str) -> Iterator[Callable[..., tuple[threading.Event, list[threading.Thread]]]]:
    running: list[tuple[threading.Event, list[threading.Thread]]] = []

    def start(app: Chalice, **options: Any) -> tuple[threading.Event, list[threading.Thread]]:
        stop = threading.Event()
        options.setdefault("retry_delay_seconds", 0)
        options.setdefault("tick_seconds", 0.05)
        options.setdefault("schedule_group", f"evloop-none-{uuid.uuid4().hex[:8]}")
        threads = EventLoop(app, stop, **options).start()
        running.append((stop, threads))
        return stop, threads

    yield start
    for stop, threads in running:
        stop.set()
        for t in threads:
            t.join(timeout=5)


class Recorder:
    """A tiny app whose `run_step` records what it gets and fails on demand."""

    def __init__(self, queue: str, *, batch_size: int = 1,
                 behave: Callable[[str, int], Any] | None = None) -> None:
        self.app = Chalice(app_name="evloop")
        self.lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []  # one per invocation
        self.finished: list[str] = []
        behave = behave or (lambda body, count: None)

        @self.app.on_sqs_message(queue=queue, batch_size=batch_size)
        def run_step(event: Any) -> Any:
            raw = event.to_dict()
            with self.lock:
                self.calls.append({"event": raw, "context": event.context})
            result = None
            for record in raw["Records"]:
                result = behave(record["body"], int(record["attributes"]["ApproximateReceiveCount"])) or result
            with self.lock:
                self.finished.extend(r["body"] for r in raw["Records"])
            return result

    def bodies(self) -> list[str]:
        with self.lock:
            return [r["body"] for c in self.calls for r in c["event"]["Records"]]


# -- SQS ---------------------------------------------------------------------------------


def test_messages_are_delivered_as_lambda_sqs_events_and_deleted(queues, start_loop):
    # GIVEN an app with an SQS handler on a queue holding two messages
    rec = Recorder(queues.name)
    queues.send("one", MessageAttributes={"kind": {"DataType": "String", "StringValue": "test"}})
    queues.send("two")
    # WHEN the loop runs
    start_loop(rec.app)
    # THEN each message reaches the handler once, as Lambda's SQS event, and leaves the queue
    wait_until(lambda: sorted(rec.bodies()) == ["one", "two"])
    wait_until(queues.empty)
    first = next(c for c in rec.calls if c["event"]["Records"][0]["body"] == "one")
    record = first["event"]["Records"][0]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queues.arn
    assert record["awsRegion"] == REGION
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"]["kind"]["stringValue"] == "test"
    assert record["messageId"] and record["receiptHandle"] and record["md5OfBody"]
    # AND the context is Lambda's: a function name and a time budget
    context = first["context"]
    assert context.function_name == "evloop-test-run_step"
    assert 0 < context.get_remaining_time_in_millis() <= 60_000
    assert context.aws_request_id and context.memory_limit_in_mb == 128
    assert event_handlers(rec.app) == [f"run_step (sqs {queues.name})"]


def test_a_failed_message_stays_and_is_redelivered(queues, start_loop, caplog):
    # GIVEN a handler that fails on the first delivery of "flaky"
    def behave(body: str, count: int) -> None:
        if count == 1:
            raise RuntimeError("transient trouble")

    rec = Recorder(queues.name, behave=behave)
    queues.send("flaky")
    # WHEN the loop runs
    with caplog.at_level(logging.ERROR, logger="devserver.events"):
        start_loop(rec.app)
        # THEN SQS redelivers it (receive count 2), the second delivery succeeds and deletes it
        wait_until(lambda: rec.finished == ["flaky"])
        wait_until(queues.empty)
    counts = [c["event"]["Records"][0]["attributes"]["ApproximateReceiveCount"] for c in rec.calls]
    assert counts == ["1", "2"]
    assert queues.dlq_bodies() == []
    # AND the failure was logged with its traceback, not swallowed
    assert any("transient trouble" in (r.exc_text or "") for r in caplog.records)


def test_poison_goes_to_the_dlq_after_max_receive_count_without_holding_others_up(queues, start_loop):
    # GIVEN a poison message first in the queue (maxReceiveCount 3), then three good ones
    def behave(body: str, count: int) -> None:
        if body == "poison":
            raise ValueError("poison")

    rec = Recorder(queues.name, behave=behave)
    queues.send("poison", "good-1", "good-2", "good-3")
    # WHEN the loop runs, failed messages coming back after 1 s
    start_loop(rec.app, retry_delay_seconds=1)
    # THEN SQS's redrive moves the poison to the DLQ after 3 deliveries
    wait_until(lambda: queues.dlq_bodies() == ["poison"], timeout=15)
    assert rec.bodies().count("poison") == 3
    # AND the good messages were each handled once, before the poison came back
    assert sorted(rec.finished) == ["good-1", "good-2", "good-3"]
    # (SQS does not promise order within a receive: only "before it came back" is checked)
    bodies = rec.bodies()
    second_poison = [i for i, b in enumerate(bodies) if b == "poison"][1]
    assert sorted(b for b in bodies[:second_poison] if b != "poison") == ["good-1", "good-2", "good-3"]
    wait_until(queues.empty)


def test_a_slow_step_holds_up_neither_other_messages_nor_is_delivered_twice(queues, start_loop):
    # GIVEN a slow message (longer than the loop's visibility timeout) followed by a quick one
    def behave(body: str, count: int) -> None:
        if body == "slow":
            time.sleep(2.5)

    rec = Recorder(queues.name, behave=behave)
    queues.send("slow")
    queues.send("quick")
    # WHEN the loop runs with 2 workers and a 1 s visibility timeout
    start_loop(rec.app, visibility_seconds=1)
    # THEN the quick one finishes while the slow one is still running
    wait_until(lambda: rec.finished == ["quick"])
    assert "slow" in rec.bodies()
    # AND the slow one, kept invisible by the heartbeat, is delivered once and then deleted
    wait_until(lambda: sorted(rec.finished) == ["quick", "slow"])
    wait_until(queues.empty)
    assert sorted(rec.bodies()) == ["quick", "slow"]


def test_batch_item_failures_delete_only_the_others(queues, start_loop):
    # GIVEN a batching handler that reports "bad" as failed the first time it sees it
    ids: dict[str, str] = {}

    rec = Recorder(queues.name, batch_size=10)
    handler = rec.app.handler_map["run_step"]

    def partial(event: dict[str, Any], context: Any) -> Any:
        handler(event, context)
        for r in event["Records"]:
            ids[r["body"]] = r["messageId"]
            if r["body"] == "bad" and r["attributes"]["ApproximateReceiveCount"] == "1":
                return {"batchItemFailures": [{"itemIdentifier": r["messageId"]}]}
        return None

    rec.app.handler_map["run_step"] = partial
    queues.send("a", "bad", "b")
    # WHEN the loop delivers them (one batch)
    start_loop(rec.app)
    # THEN only "bad" comes back; "a" and "b" were deleted after the first batch
    wait_until(lambda: rec.bodies().count("bad") == 2)
    wait_until(queues.empty)
    assert sorted(rec.calls[0]["event"]["Records"][i]["body"] for i in range(3)) == ["a", "b", "bad"]
    assert sorted(rec.bodies()) == ["a", "b", "bad", "bad"]


def test_the_loop_stops_within_two_seconds(queues, start_loop):
    # GIVEN a running loop long-polling an empty queue
    rec = Recorder(queues.name)
    stop, threads = start_loop(rec.app)
    time.sleep(0.3)
    # WHEN it is told to stop (Ctrl-C in make run)
    began = time.monotonic()
    stop.set()
    for t in threads:
        t.join(timeout=3)
    # THEN every thread has ended within about two seconds
    assert not [t.name for t in threads if t.is_alive()]
    assert time.monotonic() - began < 2.5


# -- EventBridge Scheduler ---------------------------------------------------------------


def test_a_schedule_created_by_the_store_sends_its_run_request_when_due(queues, group, start_loop):
    from chalicelib.store.scheduler import SchedulerStore

    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    # GIVEN a job's 5-minute interval schedule created through SchedulerStore, aimed at our queue
    store = SchedulerStore(group=group, queue_name=queues.name)
    store.sync("acc_1", "job_1", {"type": "interval", "every_minutes": 5, "timezone": "UTC"}, True, now=clock())
    start_date = store.get("job_1")["StartDate"]
    rec = Recorder(queues.name)
    start_loop(rec.app, now=clock, schedule_group=group)
    # WHEN less than an interval has passed THEN nothing is sent
    time.sleep(0.4)
    assert rec.bodies() == []
    # WHEN the clock passes the first occurrence
    clock.advance(minutes=5, seconds=1)
    # THEN the schedule's input reaches the runs handler, with Scheduler's time filled in
    wait_until(lambda: len(rec.bodies()) == 1)
    assert json.loads(rec.bodies()[0]) == {
        "account_id": "acc_1",
        "job_id": "job_1",
        "trigger": "schedule",
        "requested_at": start_date.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    # WHEN an hour goes by at once (twelve occurrences missed)
    clock.advance(hours=1)
    # THEN it fires once, not twelve times
    wait_until(lambda: len(rec.bodies()) == 2)
    time.sleep(0.4)
    assert len(rec.bodies()) == 2
    # WHEN the job is paused (schedule deleted) and time moves on THEN nothing more is sent
    store.sync("acc_1", "job_1", None, False)
    time.sleep(0.2)
    clock.advance(minutes=30)
    time.sleep(0.4)
    assert len(rec.bodies()) == 2


def test_a_one_time_schedule_fires_once_and_is_deleted(queues, group, start_loop):
    from chalicelib.store.scheduler import SchedulerStore

    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    # GIVEN a job to run once, two minutes from now
    store = SchedulerStore(group=group, queue_name=queues.name)
    at = (clock() + timedelta(minutes=2)).isoformat()
    assert store.sync("acc_2", "job_2", {"type": "once", "at": at}, True, now=clock()) == "created"
    rec = Recorder(queues.name)
    start_loop(rec.app, now=clock, schedule_group=group)
    # WHEN its time comes
    clock.advance(minutes=3)
    # THEN the run request is sent once and the schedule deletes itself (ActionAfterCompletion)
    wait_until(lambda: len(rec.bodies()) == 1)
    wait_until(lambda: store.get("job_2") is None)
    clock.advance(days=1)
    time.sleep(0.3)
    assert len(rec.bodies()) == 1


def test_after_a_restart_missed_occurrences_are_not_replayed_but_a_missed_one_time_run_is(
        queues, group, start_loop):
    from chalicelib.store.scheduler import SchedulerStore

    created = datetime.now(UTC).replace(microsecond=0)
    # GIVEN a 5-minute interval schedule and a one-time schedule, both defined a day ago
    store = SchedulerStore(group=group, queue_name=queues.name)
    store.sync("acc_4", "job_every", {"type": "interval", "every_minutes": 5, "timezone": "UTC"}, True,
               now=created)
    store.sync("acc_4", "job_once", {"type": "once", "at": (created + timedelta(minutes=2)).isoformat()}, True,
               now=created)
    # WHEN the loop starts a day later (the stack was down meanwhile: 288 occurrences missed)
    clock = Clock(created + timedelta(days=1, minutes=1))
    rec = Recorder(queues.name)
    start_loop(rec.app, now=clock, schedule_group=group)
    # THEN only the one-time run is sent, once, late
    wait_until(lambda: len(rec.bodies()) == 1)
    time.sleep(0.4)
    assert [json.loads(b)["job_id"] for b in rec.bodies()] == ["job_once"]
    # AND the interval fires at its next occurrence on the rate's grid (created + 1 day + 5 min)
    clock.advance(minutes=3, seconds=59)
    time.sleep(0.3)
    assert len(rec.bodies()) == 1
    clock.advance(seconds=1)
    wait_until(lambda: len(rec.bodies()) == 2)
    assert json.loads(rec.bodies()[1])["job_id"] == "job_every"


def test_a_schedule_of_another_group_is_not_fired(queues, group, start_loop):
    from chalicelib.store.scheduler import SchedulerStore

    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    # GIVEN a due schedule in a group the loop does not watch
    other = SchedulerStore(group=f"{group}-other", queue_name=queues.name)
    boto3.client("scheduler", region_name=REGION).create_schedule_group(Name=other.group)
    other.sync("acc_3", "job_3", {"type": "interval", "every_minutes": 5, "timezone": "UTC"}, True, now=clock())
    rec = Recorder(queues.name)
    start_loop(rec.app, now=clock, schedule_group=group)
    # WHEN its occurrence passes
    clock.advance(minutes=6)
    time.sleep(0.5)
    # THEN nothing is sent
    assert rec.bodies() == []


# -- @app.schedule handlers (EventBridge rules) --------------------------------------------


def test_scheduled_handlers_fire_at_their_rate_and_cron(start_loop):
    # GIVEN an app with an hourly handler and a 06:00 UTC cron handler, at 05:30 UTC
    app = Chalice(app_name="evloop")
    got: dict[str, list[dict[str, Any]]] = {"hourly": [], "morning": []}

    @app.schedule(Rate(1, unit=Rate.HOURS))
    def hourly(event: Any) -> None:
        got["hourly"].append(event.to_dict())

    @app.schedule("cron(0 6 * * ? *)")
    def morning(event: Any) -> None:
        got["morning"].append(event.to_dict())

    clock = Clock(datetime(2026, 5, 4, 5, 30, tzinfo=UTC))
    start_loop(app, now=clock)
    time.sleep(0.3)
    assert got == {"hourly": [], "morning": []}
    # WHEN the clock passes 06:00
    clock.advance(minutes=31)
    # THEN the cron handler gets EventBridge's scheduled event, once
    wait_until(lambda: len(got["morning"]) == 1)
    event = got["morning"][0]
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["time"] == "2026-05-04T06:00:00Z"
    assert event["resources"][0].endswith(":rule/evloop-test-morning")
    assert got["hourly"] == []
    # WHEN an hour after the start has passed THEN the rate handler fires too, once
    clock.advance(minutes=30)
    wait_until(lambda: len(got["hourly"]) == 1)
    time.sleep(0.3)
    assert len(got["hourly"]) == 1 and len(got["morning"]) == 1
