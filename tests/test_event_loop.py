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


class Ticks:
    """Counts the clock's passes, so a test can wait for one that began after a point in time."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.started = 0
        self.finished = 0

    def wrap(self, tick: Callable[[], None]) -> Callable[[], None]:
        def counted() -> None:
            with self._cond:
                self.started += 1
            try:
                tick()
            finally:
                with self._cond:
                    self.finished += 1
                    self._cond.notify_all()

        return counted

    def pass_one(self, timeout: float = 30.0) -> None:
        """Return once a whole pass that began after this call has ended: what was due at the
        clock's time by now has been sent (the loop sends synchronously within a pass)."""
        with self._cond:
            target = self.started + 1
            if not self._cond.wait_for(lambda: self.finished >= target, timeout):
                raise AssertionError(f"the clock did not complete a pass within {timeout}s")


@dataclass
class Running:
    loop: EventLoop
    stop: threading.Event
    threads: list[threading.Thread]
    ticks: Ticks


@pytest.fixture()
def start_loop(aws_endpoint: str) -> Iterator[Callable[..., Running]]:
    running: list[Running] = []

    def start(app: Chalice, **options: Any) -> Running:
        stop = threading.Event()
        options.setdefault("retry_delay_seconds", 0)
        options.setdefault("tick_seconds", 0.05)
        options.setdefault("schedule_group", f"evloop-none-{uuid.uuid4().hex[:8]}")
        loop = EventLoop(app, stop, **options)
        ticks = Ticks()
        loop.tick = ticks.wrap(loop.tick)  # type: ignore[method-assign]
        run = Running(loop, stop, loop.start(), ticks)
        running.append(run)
        return run

    yield start
    for run in running:
        run.stop.set()
        for t in run.threads:
            t.join(timeout=5)


class SqsCalls:
    """The SQS requests the loop's client made and AWS answered, by operation, with their
    parameters: what a test waits for instead of waiting for time to pass."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["evloop_params"] = dict(params)

    def _answered(self, model: Any, context: dict[str, Any], http_response: Any, **_: Any) -> None:
        if http_response.status_code < 300:
            with self._cond:
                self.calls.append((model.name, context.get("evloop_params", {})))
                self._cond.notify_all()

    def of(self, operation: str) -> list[dict[str, Any]]:
        with self._cond:
            return [p for op, p in self.calls if op == operation]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0) -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise AssertionError(f"not seen within {timeout}s: {predicate}")


@pytest.fixture()
def sqs_calls(aws_endpoint: str) -> Iterator[SqsCalls]:
    from chalicelib.store import aws

    seen = SqsCalls()
    events = aws.client("sqs").meta.events  # the loop's client (one per process)
    events.register("provide-client-params.sqs", seen._params, unique_id="evloop-params")
    events.register("after-call.sqs", seen._answered, unique_id="evloop-answered")
    yield seen
    events.unregister("provide-client-params.sqs", unique_id="evloop-params")
    events.unregister("after-call.sqs", unique_id="evloop-answered")


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


def test_poison_goes_to_the_dlq_after_max_receive_count_without_holding_others_up(queues, start_loop, sqs_calls):
    # GIVEN a poison message first in the queue (maxReceiveCount 3), then three good ones
    def behave(body: str, count: int) -> None:
        if body == "poison":
            raise ValueError("poison")

    rec = Recorder(queues.name, behave=behave)
    queues.send("poison", "good-1", "good-2", "good-3")

    def released() -> list[dict[str, Any]]:
        return [p for p in sqs_calls.of("ChangeMessageVisibility") if p["VisibilityTimeout"] == 3600]

    # WHEN the loop runs, a failed message coming back only after an hour
    start_loop(rec.app, retry_delay_seconds=3600)
    # THEN the good messages are each handled once while the poison waits out its delay
    wait_until(lambda: sorted(rec.finished) == ["good-1", "good-2", "good-3"], timeout=30)
    sqs_calls.wait_for(lambda: len(released()) == 1)
    assert rec.bodies().count("poison") == 1
    # AND each time its delay is cut short (as if the hour had passed) it is delivered again,
    # and SQS's redrive moves it to the DLQ after 3 deliveries
    sqs = boto3.client("sqs", region_name=REGION)
    for n in (1, 2, 3):
        sqs.change_message_visibility(QueueUrl=queues.url, ReceiptHandle=released()[-1]["ReceiptHandle"],
                                      VisibilityTimeout=0)
        if n < 3:
            sqs_calls.wait_for(lambda n=n: len(released()) == n + 1)  # type: ignore[misc]
    wait_until(lambda: queues.dlq_bodies() == ["poison"], timeout=30)
    assert rec.bodies().count("poison") == 3
    assert sorted(b for b in rec.bodies() if b != "poison") == ["good-1", "good-2", "good-3"]
    wait_until(queues.empty)


def test_a_slow_step_holds_up_neither_other_messages_nor_is_delivered_twice(queues, start_loop, sqs_calls):
    # GIVEN a slow message, held in its handler until the test lets it go, and a quick one
    entered, go = threading.Event(), threading.Event()

    def behave(body: str, count: int) -> None:
        if body == "slow":
            entered.set()
            if not go.wait(60):
                raise RuntimeError("the test never let the slow step go")

    rec = Recorder(queues.name, behave=behave)
    queues.send("slow")
    queues.send("quick")
    # WHEN the loop runs with 2 workers and a 1 s visibility timeout
    start_loop(rec.app, visibility_seconds=1)
    try:
        # THEN the quick one finishes while the slow one is still running
        assert entered.wait(30), "the slow step was never delivered"
        held_since = time.monotonic()
        wait_until(lambda: rec.finished == ["quick"])
        # AND the heartbeat extends the slow one's visibility while it runs, so once more than
        # its 1 s timeout has passed since it was received, it is still invisible, not redelivered
        [slow] = [c["event"]["Records"][0] for c in rec.calls if c["event"]["Records"][0]["body"] == "slow"]

        def extended() -> bool:
            return any(e["ReceiptHandle"] == slow["receiptHandle"]
                       for p in sqs_calls.of("ChangeMessageVisibilityBatch") for e in p["Entries"])

        sqs_calls.wait_for(extended)
        wait_until(lambda: time.monotonic() - held_since > 1.0)  # at least: past the first timeout
        assert queues.counts() == (0, 1)
        assert rec.bodies().count("slow") == 1
    finally:
        go.set()
    # AND once let go, it is deleted, having been delivered once
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
    # WHEN the loop delivers them (one batch), ReportBatchItemFailures being on for the handler
    start_loop(rec.app, partial_batch={"run_step"})
    # THEN only "bad" comes back; "a" and "b" were deleted after the first batch
    wait_until(lambda: rec.bodies().count("bad") == 2)
    wait_until(queues.empty)
    assert sorted(rec.calls[0]["event"]["Records"][i]["body"] for i in range(3)) == ["a", "b", "bad"]
    assert sorted(rec.bodies()) == ["a", "b", "bad", "bad"]


def test_batch_item_failures_of_a_handler_without_the_setting_are_ignored_like_lambda(queues, start_loop):
    # GIVEN a batching handler reporting "bad" as failed, without ReportBatchItemFailures
    rec = Recorder(queues.name, batch_size=10)
    handler = rec.app.handler_map["run_step"]

    def partial(event: dict[str, Any], context: Any) -> Any:
        handler(event, context)
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]
                                      if r["body"] == "bad"]}

    rec.app.handler_map["run_step"] = partial
    queues.send("a", "bad", "b")
    # WHEN the loop delivers them
    start_loop(rec.app, partial_batch=set())
    # THEN the whole batch was handled once and deleted: Lambda does not read the answer
    wait_until(lambda: len(rec.bodies()) == 3)
    wait_until(queues.empty)
    assert sorted(rec.bodies()) == ["a", "b", "bad"]
    assert len(rec.calls) == 1


def test_a_fifo_queue_is_not_polled_while_its_batch_runs(queues, start_loop, sqs_calls):
    """Lambda polls a FIFO message group again only once its batch is done. Polling meanwhile
    finds the group's next message visible but not deliverable, and moto's long poll then
    spins on it, taking the CPU from the batch it waits for."""
    sqs = boto3.client("sqs", region_name=REGION)
    fifo = f"evloop-{uuid.uuid4().hex[:8]}.fifo"
    url = sqs.create_queue(QueueName=fifo, Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true",
                                                        "VisibilityTimeout": "960"})["QueueUrl"]
    entered, go = threading.Event(), threading.Event()

    def behave(body: str, count: int) -> None:
        if body == "first":
            entered.set()
            if not go.wait(60):
                raise RuntimeError("the test never let the first batch go")

    rec = Recorder(fifo, behave=behave)

    @rec.app.on_sqs_message(queue=queues.name, name="other")
    def other(event: Any) -> None:
        return None

    def polls(name: str) -> int:
        return sum(1 for p in sqs_calls.of("ReceiveMessage") if str(p.get("QueueUrl", "")).endswith("/" + name))

    try:
        # GIVEN two messages of one group, the first held in its handler
        for body in ("first", "second"):
            sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId="job-1")
        start_loop(rec.app)
        assert entered.wait(30), "the first message was never delivered"
        fifo_polls = polls(fifo)
        # WHEN the other queue's poller has long-polled twice more meanwhile (the pollers run)
        others = polls(queues.name)
        sqs_calls.wait_for(lambda: polls(queues.name) >= others + 2)
        # THEN the FIFO queue was not polled while its batch ran
        assert polls(fifo) == fifo_polls
    finally:
        go.set()
    # AND once the batch is done, it is polled again and the second message is delivered
    wait_until(lambda: rec.finished == ["first", "second"])
    sqs.delete_queue(QueueUrl=url)


def test_the_loop_stops_within_about_one_long_poll(queues, start_loop, sqs_calls):
    # GIVEN a running loop long-polling an empty queue
    rec = Recorder(queues.name)
    run = start_loop(rec.app)
    sqs_calls.wait_for(lambda: sqs_calls.of("ReceiveMessage"))
    # WHEN it is told to stop (Ctrl-C in make run), while a thread of the test starts one long
    # poll of the same length: the yardstick, measured at the same time under the same load
    sqs = boto3.client("sqs", region_name=REGION)
    poll: list[float] = []

    def one_long_poll() -> None:
        began = time.monotonic()
        sqs.receive_message(QueueUrl=queues.url, WaitTimeSeconds=run.loop.wait_seconds)
        poll.append(time.monotonic() - began)

    yardstick = threading.Thread(target=one_long_poll)
    began = time.monotonic()
    run.stop.set()
    yardstick.start()
    for t in run.threads:
        t.join(timeout=60)
    stopping = time.monotonic() - began
    yardstick.join(timeout=60)
    # THEN every thread has ended, within two long polls (the one in flight ends first)
    assert not [t.name for t in run.threads if t.is_alive()]
    assert poll and stopping < 2 * poll[0], (stopping, poll)


# -- EventBridge Scheduler ---------------------------------------------------------------


def jobs(rec: Recorder) -> list[str]:
    return [json.loads(b)["job_id"] for b in rec.bodies()]


def control(store: Any, job_id: str, at: datetime) -> None:
    """A one-time schedule due at `at` in the loop's group: the positive control a "nothing
    else was sent" check waits for, proving the clock got past the point in question."""
    store.sync("acc_ctl", job_id, {"type": "once", "at": at.isoformat()}, True, now=at - timedelta(seconds=1))


def settle(run: Running, queues: Queues) -> None:
    """Let a whole pass of the clock run (everything due by now is sent within it), then let the
    handler take every message sent: what the handler got is then all it will get for now."""
    run.ticks.pass_one()
    wait_until(queues.empty)


def test_a_schedule_created_by_the_store_sends_its_run_request_when_due(queues, group, start_loop):
    from chalicelib.store.scheduler import SchedulerStore

    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    # GIVEN a job's 5-minute interval schedule created through SchedulerStore, aimed at our queue
    store = SchedulerStore(group=group, queue_name=queues.name)
    store.sync("acc_1", "job_1", {"type": "interval", "every_minutes": 5, "timezone": "UTC"}, True, now=clock())
    start_date = store.get("job_1")["StartDate"]
    rec = Recorder(queues.name)
    run = start_loop(rec.app, now=clock, schedule_group=group)
    # WHEN less than an interval has passed THEN nothing is sent (a one-time schedule due then is)
    clock.advance(minutes=1)
    control(store, "ctl_1", clock())
    wait_until(lambda: "ctl_1" in jobs(rec))
    settle(run, queues)
    assert jobs(rec) == ["ctl_1"]
    # WHEN the clock passes the first occurrence
    clock.advance(minutes=4, seconds=1)
    # THEN the schedule's input reaches the runs handler, with Scheduler's time filled in
    wait_until(lambda: "job_1" in jobs(rec))
    assert json.loads(rec.bodies()[1]) == {
        "account_id": "acc_1",
        "job_id": "job_1",
        "trigger": "schedule",
        "requested_at": start_date.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    # WHEN an hour goes by at once (twelve occurrences missed)
    clock.advance(hours=1)
    # THEN it fires once, not twelve times (not again in a later pass either)
    wait_until(lambda: jobs(rec).count("job_1") == 2)
    control(store, "ctl_2", clock())
    wait_until(lambda: "ctl_2" in jobs(rec))
    settle(run, queues)
    assert jobs(rec).count("job_1") == 2
    # WHEN the job is paused (schedule deleted) and time moves on THEN nothing more is sent
    store.sync("acc_1", "job_1", None, False)
    clock.advance(minutes=30)
    control(store, "ctl_3", clock())
    wait_until(lambda: "ctl_3" in jobs(rec))
    settle(run, queues)
    assert jobs(rec) == ["ctl_1", "job_1", "job_1", "ctl_2", "ctl_3"]


def test_a_one_time_schedule_fires_once_and_is_deleted(queues, group, start_loop):
    from chalicelib.store.scheduler import SchedulerStore

    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    # GIVEN a job to run once, two minutes from now
    store = SchedulerStore(group=group, queue_name=queues.name)
    at = (clock() + timedelta(minutes=2)).isoformat()
    assert store.sync("acc_2", "job_2", {"type": "once", "at": at}, True, now=clock()) == "created"
    rec = Recorder(queues.name)
    run = start_loop(rec.app, now=clock, schedule_group=group)
    # WHEN its time comes
    clock.advance(minutes=3)
    # THEN the run request is sent once and the schedule deletes itself (ActionAfterCompletion)
    wait_until(lambda: len(rec.bodies()) == 1)
    wait_until(lambda: store.get("job_2") is None)
    # AND a day later it has not fired again (a control due then has)
    clock.advance(days=1)
    control(store, "ctl", clock())
    wait_until(lambda: "ctl" in jobs(rec))
    settle(run, queues)
    assert jobs(rec) == ["job_2", "ctl"]


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
    run = start_loop(rec.app, now=clock, schedule_group=group)
    # THEN only the one-time run is sent, once, late (in the pass that would replay the others)
    wait_until(lambda: "job_once" in jobs(rec))
    settle(run, queues)
    assert jobs(rec) == ["job_once"]
    # AND the interval fires at its next occurrence on the rate's grid (created + 1 day + 5 min),
    # not a second before (a control due a second before fires alone)
    clock.advance(minutes=3, seconds=59)
    control(store, "ctl", clock())
    wait_until(lambda: "ctl" in jobs(rec))
    settle(run, queues)
    assert jobs(rec) == ["job_once", "ctl"]
    clock.advance(seconds=1)
    wait_until(lambda: len(rec.bodies()) == 3)
    assert jobs(rec)[2] == "job_every"


def test_a_schedule_of_another_group_is_not_fired(queues, group, start_loop):
    from chalicelib.store.scheduler import SchedulerStore

    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    # GIVEN a due schedule in a group the loop does not watch
    other = SchedulerStore(group=f"{group}-other", queue_name=queues.name)
    boto3.client("scheduler", region_name=REGION).create_schedule_group(Name=other.group)
    other.sync("acc_3", "job_3", {"type": "interval", "every_minutes": 5, "timezone": "UTC"}, True, now=clock())
    rec = Recorder(queues.name)
    run = start_loop(rec.app, now=clock, schedule_group=group)
    # WHEN its occurrence passes, and a control's in the loop's own group
    clock.advance(minutes=6)
    control(SchedulerStore(group=group, queue_name=queues.name), "ctl", clock())
    # THEN the control is sent, and in that same pass the other group's schedule was not
    wait_until(lambda: "ctl" in jobs(rec))
    settle(run, queues)
    assert jobs(rec) == ["ctl"]


# -- @app.schedule handlers (EventBridge rules) --------------------------------------------


def test_scheduled_handlers_fire_at_their_rate_and_cron(start_loop):
    # GIVEN an app with an hourly handler, a 06:00 UTC cron handler and a control that fires
    # every minute (once per pass of the clock that crosses a minute), at 05:30 UTC
    app = Chalice(app_name="evloop")
    got: dict[str, list[dict[str, Any]]] = {"hourly": [], "morning": [], "ctl": []}

    @app.schedule(Rate(1, unit=Rate.HOURS))
    def hourly(event: Any) -> None:
        got["hourly"].append(event.to_dict())

    @app.schedule("cron(0 6 * * ? *)")
    def morning(event: Any) -> None:
        got["morning"].append(event.to_dict())

    @app.schedule("cron(* * * * ? *)")
    def ctl(event: Any) -> None:
        got["ctl"].append(event.to_dict())

    clock = Clock(datetime(2026, 5, 4, 5, 30, tzinfo=UTC))
    run = start_loop(app, now=clock)
    handlers = {f"events-rule-{name}" for name in got}

    def settle_rules(controls: int) -> None:
        """Wait for the control's n-th call, a whole pass after it, and every handler call
        started by then (each runs in a thread of its own) to have returned."""
        wait_until(lambda: len(got["ctl"]) >= controls)
        run.ticks.pass_one()
        wait_until(lambda: not [t for t in threading.enumerate() if t.name in handlers])
        assert len(got["ctl"]) == controls  # once per pass, missed minutes not replayed

    # WHEN a minute passes THEN only the control fires
    clock.advance(minutes=1)
    settle_rules(1)
    assert (got["hourly"], got["morning"]) == ([], [])
    # WHEN the clock passes 06:00
    clock.advance(minutes=30)
    # THEN the cron handler gets EventBridge's scheduled event, once
    settle_rules(2)
    assert len(got["morning"]) == 1
    event = got["morning"][0]
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["time"] == "2026-05-04T06:00:00Z"
    assert event["resources"][0].endswith(":rule/evloop-test-morning")
    assert got["hourly"] == []
    # WHEN an hour after the start has passed THEN the rate handler fires too, once
    clock.advance(minutes=30)
    settle_rules(3)
    assert len(got["hourly"]) == 1
    clock.advance(minutes=1)
    settle_rules(4)
    assert len(got["hourly"]) == 1 and len(got["morning"]) == 1
