"""The local event loop: what AWS delivers to the app, delivered in-process against moto.

`chalice local` only serves HTTP. In AWS three services call the app's other handlers,
and this module plays each of them, with no business logic of its own:

* **Lambda's SQS event source mapping.** For every `@app.on_sqs_message` handler (found in
  `app.event_sources`), a poller long-polls the handler's queue and hands each batch, as the
  Lambda SQS event, to `app.handler_map[name](event, context)` on a small worker pool (two
  threads by default, so one slow step does not hold the others up). A poller long-polls
  without a worker and takes one only for a batch it received (an idle queue's poller held
  one for its whole wait, so every hop of a multi-queue path queued behind idle pollers).
  A batch that returns
  normally is deleted; one whose handler has ReportBatchItemFailures on
  (`chalicelib.workers.PARTIAL_BATCH_RESPONSES`, as packaged) and returns
  `{"batchItemFailures": [...]}` has only the others deleted (any other handler's answer is
  ignored, as Lambda ignores it); one that raises stays on the queue and comes back after
  `retry_delay_seconds`.
  The queue's redrive policy moves it to the DLQ after `maxReceiveCount` receives (moto does
  that on receive, as SQS does). Messages are received with a short visibility timeout that a
  heartbeat extends while the handler runs, so local retries are quick and a long step is
  never delivered twice at once.
* **Lambda's DynamoDB event source mapping.** The profiles table's stream is read and its
  records handed to the `@app.on_dynamodb_record` handlers (devserver/streams.py).
* **EventBridge Scheduler.** Every `tick_seconds` the schedules of the stage's group
  (`switchyard-<stage>`) are listed (ListSchedules; GetSchedule when one is new or changed),
  their next occurrence is computed from their own expression, time zone, StartDate and
  EndDate (`chalicelib.domain.schedules`), and a due schedule sends its target input, with
  the `<aws.scheduler.*>` context attributes filled in, to its target queue. Missed
  occurrences are never replayed in a burst: a schedule fires at most once per tick, and the
  occurrences of recurring schedules that passed before the loop started (the stack was
  down) are skipped; a one-time schedule whose moment passed then fires once, late. One-time
  schedules with ActionAfterCompletion DELETE are deleted after they fire.
* **EventBridge schedule rules.** `@app.schedule` handlers are invoked at their rate/cron
  (UTC) with the "Scheduled Event" event, each in a thread of its own.

Errors are logged (with tracebacks) and the loop carries on. The clock is injectable
(`now`) so tests can move time forward instead of waiting, and with `holds`
(devserver/holds.py, test-only) a test parks chosen SQS messages until it lets them go.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chalice.app import Chalice, ScheduledEventConfig, SQSEventConfig

from chalicelib.config import stage_queue
from devserver.holds import PARK_SECONDS, Holds
from devserver.streams import StreamPoller

log = logging.getLogger("devserver.events")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TIMEOUT_SECONDS = 60  # Chalice's defaults for a Lambda function
DEFAULT_MEMORY_MB = 128
_EPSILON = timedelta(microseconds=1)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


# ---------------------------------------------------------------------------------------
# What the app asks for
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SqsSource:
    handler: str
    queue: str
    batch_size: int


@dataclass(frozen=True)
class RuleSource:
    handler: str
    expression: str  # rate(...) or cron(...), evaluated in UTC like every EventBridge rule


def sqs_sources(app: Chalice) -> list[SqsSource]:
    found = []
    for src in app.event_sources:
        if isinstance(src, SQSEventConfig):
            name = src.queue or (src.queue_arn or "").rsplit(":", 1)[-1]
            found.append(SqsSource(src.name, name, max(1, min(10, int(src.batch_size or 1)))))
    return found


def rule_sources(app: Chalice) -> list[RuleSource]:
    found = []
    for src in app.event_sources:
        if isinstance(src, ScheduledEventConfig):
            expr = src.schedule_expression
            text = expr if isinstance(expr, str) else expr.to_string()
            found.append(RuleSource(src.name, text))
    return found


def event_handlers(app: Chalice) -> list[str]:
    """The app's non-HTTP handlers and what drives each (for the start-up banner)."""
    named = {s.handler: f"{s.handler} (sqs {s.queue})" for s in sqs_sources(app)}
    named.update({r.handler: f"{r.handler} ({r.expression})" for r in rule_sources(app)})
    return sorted(named.get(getattr(src, "name", "?"), getattr(src, "name", "?")) for src in app.event_sources)


# ---------------------------------------------------------------------------------------
# What Lambda passes
# ---------------------------------------------------------------------------------------


class LambdaContext:
    """The second argument Lambda passes to a handler (the parts code and Powertools read)."""

    def __init__(self, function_name: str, timeout_seconds: float, memory_mb: int, region: str,
                 account: str) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account}:function:{function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _lambda_attribute(value: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"dataType": value.get("DataType"), "stringListValues": [], "binaryListValues": []}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        raw = value["BinaryValue"]
        out["binaryValue"] = base64.b64encode(raw).decode() if isinstance(raw, bytes) else raw
    return out


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One record of the Lambda SQS event, from a ReceiveMessage message."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": {k: _lambda_attribute(v) for k, v in (message.get("MessageAttributes") or {}).items()},
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def batch_failures(result: Any, message_ids: list[str]) -> set[str]:
    """The ids Lambda would leave on the queue, given what the handler returned.

    Like Lambda with ReportBatchItemFailures: no `batchItemFailures` (or an empty list) is
    success; a malformed list, or an id not in the batch, fails the whole batch.
    """
    if not isinstance(result, dict) or not result.get("batchItemFailures"):
        return set()
    items = result["batchItemFailures"]
    if not isinstance(items, list):
        return set(message_ids)
    failed = set()
    for item in items:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not ident or ident not in message_ids:
            return set(message_ids)
        failed.add(ident)
    return failed


def substitute_context(text: str, *, schedule_arn: str, scheduled_time: datetime) -> str:
    """Fill in EventBridge Scheduler's context attributes, as it does before invoking a target."""
    return (
        text.replace("<aws.scheduler.schedule-arn>", schedule_arn)
        .replace("<aws.scheduler.scheduled-time>", _iso(scheduled_time))
        .replace("<aws.scheduler.execution-id>", uuid.uuid4().hex[:16])
        .replace("<aws.scheduler.attempt-number>", "1")
    )


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------


@dataclass
class _Tracked:
    """A Scheduler schedule as last read, and where it stands."""

    modified: Any
    definition: dict[str, Any]
    cursor: datetime  # occurrences after this one are still to fire
    next_at: datetime | None
    warned: set[str] = field(default_factory=set)


@dataclass
class _Rule:
    source: RuleSource
    next_at: datetime | None


class _Heartbeat:
    """Keeps received messages invisible while their handler runs."""

    def __init__(self, sqs: Any, url: str, messages: list[dict[str, Any]], seconds: int) -> None:
        self._done = threading.Event()
        self._args = (sqs, url, messages, seconds)
        self._thread = threading.Thread(target=self._run, name="sqs-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sqs, url, messages, seconds = self._args
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": seconds}
            for i, m in enumerate(messages)
        ]
        while not self._done.wait(max(0.5, seconds / 2)):
            try:
                sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
            except Exception:
                log.exception("could not extend the visibility of messages in %s", url)

    def stop(self) -> None:
        self._done.set()


class EventLoop:
    """See the module docstring. `start()` returns the threads; setting `stop` ends them."""

    def __init__(
        self,
        app: Chalice,
        stop: threading.Event,
        *,
        stage: str | None = None,
        now: Callable[[], datetime] = _utcnow,
        workers: int = 2,
        visibility_seconds: int = 5,
        retry_delay_seconds: int = 5,
        wait_seconds: int = 1,
        tick_seconds: float = 1.0,
        schedule_group: str | None = None,
        chalice_config: dict[str, Any] | None = None,
        holds: Holds | None = None,
        partial_batch: Iterable[str] | None = None,
    ) -> None:
        from chalicelib.config import settings
        from chalicelib.workers import PARTIAL_BATCH_RESPONSES

        conf = settings()
        self.app = app
        self.stop = stop
        self.stage = stage or conf.stage
        self.region = conf.region
        self.now = now
        self.workers = max(1, workers)
        self.visibility_seconds = visibility_seconds
        self.retry_delay_seconds = retry_delay_seconds
        self.wait_seconds = wait_seconds
        self.tick_seconds = tick_seconds
        self.schedule_group = schedule_group or f"switchyard-{self.stage}"
        self.chalice_config = chalice_config or {}
        self.holds = holds
        # the SQS handlers whose `batchItemFailures` answer counts (ReportBatchItemFailures)
        self.partial_batch = frozenset(PARTIAL_BATCH_RESPONSES if partial_batch is None else partial_batch)
        self._work: queue.Queue[Callable[[], None]] = queue.Queue()
        self._slots = threading.Semaphore(self.workers)
        self._schedules: dict[str, _Tracked] = {}
        self._rules: list[_Rule] = []
        self._queue_urls: dict[str, str] = {}
        self._account: str | None = None
        self.started = now()
        self._warned: set[str] = set()

    # -- plumbing --------------------------------------------------------------------------

    @staticmethod
    def _client(service: str) -> Any:
        from chalicelib.store import aws

        return aws.client(service)

    @property
    def account(self) -> str:
        if self._account is None:
            self._account = str(self._client("sts").get_caller_identity()["Account"])
        return self._account

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def function_settings(self, handler: str) -> tuple[int, int]:
        """(timeout seconds, memory MB) of a handler's Lambda function, from .chalice/config.json."""
        from chalice.config import Config

        conf = Config(chalice_stage=self.stage, function_name=handler, config_from_disk=self.chalice_config)
        return (int(conf.lambda_timeout or DEFAULT_TIMEOUT_SECONDS),
                int(conf.lambda_memory_size or DEFAULT_MEMORY_MB))

    def context_for(self, handler: str) -> LambdaContext:
        timeout, memory = self.function_settings(handler)
        name = f"{self.app.app_name}-{self.stage}-{handler}"
        return LambdaContext(name, timeout, memory, self.region, self.account)

    def queue_url(self, name: str, owner: str | None = None) -> str:
        key = f"{owner or ''}:{name}"
        url = self._queue_urls.get(key)
        if url is None:
            args = {"QueueName": stage_queue(name, self.stage)}
            if owner:
                args["QueueOwnerAWSAccountId"] = owner
            url = str(self._client("sqs").get_queue_url(**args)["QueueUrl"])
            self._queue_urls[key] = url
        return url

    # -- threads ---------------------------------------------------------------------------

    def start(self) -> list[threading.Thread]:
        self.arm_rules()
        threads = [threading.Thread(target=self._clock, name="events-clock", daemon=True)]
        sources = sqs_sources(self.app)
        if sources:
            threads += [
                threading.Thread(target=self._worker, name=f"events-worker-{i}", daemon=True)
                for i in range(self.workers)
            ]
            threads += [
                threading.Thread(target=self._poll, args=(s,), name=f"events-sqs-{s.handler}", daemon=True)
                for s in sources
            ]
        streams = self.stream_poller()
        if streams.sources:
            threads.append(threading.Thread(target=streams.run, name="events-streams", daemon=True))
        for t in threads:
            t.start()
        log.info(
            "event loop: %d SQS handler(s), %d scheduled handler(s), schedules of group %s",
            len(sources), len(self._rules), self.schedule_group,
        )
        return threads

    def arm_rules(self) -> None:
        """Count the schedule rules' occurrences from now (`start` does; a test that drives
        `tick` itself, without the loop's threads, calls it instead)."""
        start = self.started = self.now()
        self._rules = [_Rule(r, self._next_rule(r, start)) for r in rule_sources(self.app)]

    def stream_poller(self) -> StreamPoller:
        """Lambda's DynamoDB event source mappings (devserver/streams.py): the profiles
        table's stream to the handlers that name it."""
        from chalicelib.config import PROFILES_STREAM_ARN, settings
        from chalicelib.workers import STREAM_PARTIAL_BATCH_RESPONSES

        return StreamPoller(self.app, self.stop, {PROFILES_STREAM_ARN: settings().profiles_table_name},
                            context_for=self.context_for, region=self.region,
                            partial=STREAM_PARTIAL_BATCH_RESPONSES, client=self._client)

    def _worker(self) -> None:
        while not self.stop.is_set():
            try:
                job = self._work.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                job()
            except Exception:
                log.exception("event loop worker failed")
            finally:
                self._slots.release()

    def _clock(self) -> None:
        while not self.stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("event loop tick failed")
            self.stop.wait(self.tick_seconds)

    # -- SQS -------------------------------------------------------------------------------

    def _poll(self, source: SqsSource) -> None:
        url = arn = None
        while not self.stop.is_set() and url is None:
            try:
                url = self.queue_url(source.queue)
                arn = str(self._client("sqs").get_queue_attributes(
                    QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])
            except Exception as exc:
                url = None
                self._warn_once(f"queue:{source.queue}", "%s listens to queue %s, which is not there (%s);"
                                " nothing is delivered to it until it is", source.handler, source.queue,
                                _error_code(exc) or exc)
                self.stop.wait(5)
        if url is None or arn is None:
            return
        sqs = self._client("sqs")
        while not self.stop.is_set():
            # Long-poll without a worker slot (Lambda's pollers do not take a function
            # instance while they wait): a slot is taken only for messages to deliver.
            released = self.holds.take_ready(source.queue, source.batch_size) if self.holds else []
            if released:
                self._hand(source, url, arn, released)
                continue
            try:
                messages = sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=source.batch_size,
                    WaitTimeSeconds=self.wait_seconds,
                    VisibilityTimeout=self.visibility_seconds,
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
                if messages and self.holds is not None:
                    messages, parked = self.holds.screen(source.queue, messages)
                    self._release(sqs, url, parked, PARK_SECONDS)
            except Exception:
                log.exception("receiving from %s failed", source.queue)
                self.stop.wait(1)
                continue
            if messages:
                done = self._hand(source, url, arn, messages)
                if done is not None and source.queue.endswith(".fifo"):
                    # Lambda polls a FIFO group again only once its batch is done. Polling
                    # meanwhile finds the group's next messages visible but not deliverable,
                    # and moto's long poll then spins on them for its whole wait, taking the
                    # CPU from the handler it waits for.
                    while not done.wait(0.2) and not self.stop.is_set():
                        pass

    def _hand(self, source: SqsSource, url: str, arn: str,
              messages: list[dict[str, Any]]) -> threading.Event | None:
        """Give received messages to a worker once one is free (the event is set when it is
        done with them); at shutdown, back to the queue (None)."""
        while not self._slots.acquire(timeout=0.2):
            if self.stop.is_set():
                self._release(self._client("sqs"), url, messages, 0)
                return None
        if self.stop.is_set():
            self._slots.release()
            self._release(self._client("sqs"), url, messages, 0)
            return None
        done = threading.Event()
        self._work.put(functools.partial(self._deliver, source, url, arn, messages, done))
        return done

    def _release(self, sqs: Any, url: str, messages: Iterable[dict[str, Any]], delay: int) -> None:
        for m in messages:
            try:
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"],
                                              VisibilityTimeout=delay)
            except Exception:
                log.exception("could not reset the visibility of message %s", m.get("MessageId"))

    def _deliver(self, source: SqsSource, url: str, arn: str, messages: list[dict[str, Any]],
                 done: threading.Event | None = None) -> None:
        try:
            self._deliver_batch(source, url, arn, messages)
        finally:
            if self.holds is not None:
                self.holds.finished(messages)
            if done is not None:
                done.set()

    def _deliver_batch(self, source: SqsSource, url: str, arn: str, messages: list[dict[str, Any]]) -> None:
        sqs = self._client("sqs")
        handler = self.app.handler_map.get(source.handler)
        if handler is None:
            self._warn_once(f"handler:{source.handler}", "no handler %s in the app", source.handler)
            self._release(sqs, url, messages, self.retry_delay_seconds)
            return
        ids = [m["MessageId"] for m in messages]
        event = {"Records": [sqs_record(m, arn, self.region) for m in messages]}
        beat = _Heartbeat(sqs, url, messages, self.visibility_seconds)
        started = time.monotonic()
        try:
            result = handler(event, self.context_for(source.handler))
        except Exception:
            failed = set(ids)
            log.exception(
                "%s raised on %d message(s) from %s; they stay on the queue (receive count %s)",
                source.handler, len(ids), source.queue,
                ",".join(str((m.get("Attributes") or {}).get("ApproximateReceiveCount", "?")) for m in messages),
            )
        else:
            failed = batch_failures(result, ids) if source.handler in self.partial_batch else set()
            if source.handler not in self.partial_batch and isinstance(result, dict) and "batchItemFailures" in result:
                self._warn_once(f"partial:{source.handler}", "%s answered batchItemFailures, but "
                                "ReportBatchItemFailures is off for it: Lambda deletes the whole batch",
                                source.handler)
            if failed:
                log.warning("%s reported %d of %d message(s) from %s as failed", source.handler,
                            len(failed), len(ids), source.queue)
        finally:
            beat.stop()
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            resp = sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
            for f in resp.get("Failed", []):
                log.error("could not delete a delivered message from %s: %s", source.queue, f)
        self._release(sqs, url, [m for m in messages if m["MessageId"] in failed], self.retry_delay_seconds)
        log.info("%s: %d message(s) from %s, %d ok, %d failed (%.0f ms)", source.handler, len(ids),
                 source.queue, len(done), len(failed), (time.monotonic() - started) * 1000)

    # -- the clock: Scheduler schedules and schedule rules ---------------------------------

    def tick(self) -> None:
        """One pass of the clock: fire what is due at `now()`."""
        now = self.now()
        try:
            self._tick_schedules(now)
        except Exception:
            log.exception("reading the schedules of group %s failed", self.schedule_group)
        self._tick_rules(now)

    def _list_schedules(self) -> list[dict[str, Any]]:
        sched = self._client("scheduler")
        found: list[dict[str, Any]] = []
        token = None
        while True:
            args: dict[str, Any] = {"GroupName": self.schedule_group, "MaxResults": 100}
            if token:
                args["NextToken"] = token
            page = sched.list_schedules(**args)
            found += page.get("Schedules", [])
            token = page.get("NextToken")
            if not token:
                return found

    def _next_schedule(self, tracked: _Tracked, name: str) -> datetime | None:
        from chalicelib.domain.schedules import ScheduleError, next_expression_fire

        d = tracked.definition
        expr = str(d.get("ScheduleExpression", ""))
        start = d.get("StartDate")
        if start is None and expr.startswith("rate("):
            # Without a StartDate a rate schedule starts counting when it is defined.
            start = d.get("LastModificationDate") or d.get("CreationDate")
        try:
            return next_expression_fire(expr, d.get("ScheduleExpressionTimezone") or "UTC", tracked.cursor,
                                        start=start, end=d.get("EndDate"))
        except ScheduleError as exc:
            if "expression" not in tracked.warned:
                tracked.warned.add("expression")
                log.error("schedule %s: %s; it will not fire locally", name, exc)
            return None

    def _first_cursor(self, definition: dict[str, Any], now: datetime) -> datetime:
        """Where a newly seen schedule starts counting occurrences.

        From its definition time, so that one defined moments ago does not miss an occurrence
        between two ticks. But occurrences of a recurring schedule that passed before this loop
        started (the stack was down) are not replayed; a one-time schedule whose moment passed
        then fires once, late, rather than never.
        """
        since: datetime = definition.get("LastModificationDate") or now
        if not str(definition.get("ScheduleExpression", "")).startswith("at("):
            since = max(since, self.started)
        return since - _EPSILON

    def _tick_schedules(self, now: datetime) -> None:
        sched = self._client("scheduler")
        seen = set()
        for summary in self._list_schedules():
            name = summary["Name"]
            seen.add(name)
            modified = summary.get("LastModificationDate")
            tracked = self._schedules.get(name)
            if tracked is None or tracked.modified != modified:
                try:
                    definition = sched.get_schedule(Name=name, GroupName=self.schedule_group)
                except Exception as exc:
                    if _error_code(exc) != "ResourceNotFoundException":
                        raise
                    continue  # deleted since the listing
                if tracked is None:
                    tracked = _Tracked(modified, definition, self._first_cursor(definition, now), None)
                else:
                    tracked = _Tracked(modified, definition, tracked.cursor, None)
                tracked.next_at = self._next_schedule(tracked, name)
                self._schedules[name] = tracked
            if tracked.definition.get("State") != "ENABLED" or tracked.next_at is None:
                continue
            if tracked.next_at <= now and self._fire_schedule(name, tracked, tracked.next_at):
                tracked.cursor = max(now, tracked.next_at)
                tracked.next_at = self._next_schedule(tracked, name)
                if tracked.next_at is None and tracked.definition.get("ActionAfterCompletion") == "DELETE":
                    try:
                        sched.delete_schedule(Name=name, GroupName=self.schedule_group)
                    except Exception as exc:
                        if _error_code(exc) != "ResourceNotFoundException":
                            log.exception("could not delete completed schedule %s", name)
                    seen.discard(name)
        for gone in set(self._schedules) - seen:
            del self._schedules[gone]

    def _fire_schedule(self, name: str, tracked: _Tracked, at: datetime) -> bool:
        """Send the schedule's input to its target queue; False to try again on the next tick."""
        target = tracked.definition.get("Target") or {}
        arn = str(target.get("Arn", ""))
        parts = arn.split(":")
        if len(parts) < 6 or parts[2] != "sqs":
            if "target" not in tracked.warned:
                tracked.warned.add("target")
                log.warning("schedule %s targets %s: only SQS targets are delivered locally", name, arn)
            return True
        body = substitute_context(
            str(target.get("Input") or "{}"), schedule_arn=str(tracked.definition.get("Arn", "")),
            scheduled_time=at,
        )
        args: dict[str, Any] = {"MessageBody": body}
        group_id = (target.get("SqsParameters") or {}).get("MessageGroupId")
        if group_id:
            args["MessageGroupId"] = group_id
        try:
            self._client("sqs").send_message(QueueUrl=self.queue_url(parts[5], parts[4]), **args)
        except Exception:
            log.exception("schedule %s: sending to %s failed; trying again", name, parts[5])
            return False
        log.info("schedule %s fired for %s: sent to %s", name, _iso(at), parts[5])
        return True

    def _next_rule(self, rule: RuleSource, after: datetime) -> datetime | None:
        from chalicelib.domain.schedules import ScheduleError, next_expression_fire

        try:
            return next_expression_fire(rule.expression, "UTC", after)
        except ScheduleError as exc:
            log.error("scheduled handler %s: %s; it will not fire locally", rule.handler, exc)
            return None

    def _tick_rules(self, now: datetime) -> None:
        for rule in self._rules:
            if rule.next_at is None or rule.next_at > now:
                continue
            at = rule.next_at
            rule.next_at = self._next_rule(rule.source, now)
            threading.Thread(target=self._invoke_rule, args=(rule.source, at),
                             name=f"events-rule-{rule.source.handler}", daemon=True).start()

    def _invoke_rule(self, rule: RuleSource, at: datetime) -> None:
        handler = self.app.handler_map.get(rule.handler)
        if handler is None:
            self._warn_once(f"handler:{rule.handler}", "no handler %s in the app", rule.handler)
            return
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.account,
            "time": _iso(at),
            "region": self.region,
            "resources": [
                f"arn:aws:events:{self.region}:{self.account}:rule/{self.app.app_name}-{self.stage}-{rule.handler}"
            ],
            "detail": {},
        }
        started = time.monotonic()
        try:
            handler(event, self.context_for(rule.handler))
        except Exception:
            log.exception("scheduled handler %s failed (occurrence %s)", rule.handler, _iso(at))
            return
        log.info("%s: scheduled event for %s (%.0f ms)", rule.handler, _iso(at),
                 (time.monotonic() - started) * 1000)


def _chalice_config() -> dict[str, Any]:
    path = ROOT / ".chalice" / "config.json"
    try:
        loaded: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded


def start_event_loop(app: Chalice, stop: threading.Event, holds: Holds | None = None) -> list[threading.Thread]:
    """Start the local event loop; return its threads (joined on shutdown after `stop` is set)."""
    return EventLoop(app, stop, chalice_config=_chalice_config(), holds=holds).start()
