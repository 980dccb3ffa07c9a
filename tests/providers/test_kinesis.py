"""The Amazon Kinesis provider against moto, in-process (tests/providers/conftest.py).

moto stores what PutRecords sends and serves GetRecords/ListShards like AWS for a stream
that is not resharded. What it never does is injected and said so: per-record failures
(tests/providers/aws_faults.py: the refused records are taken out of the request, so moto
never stores them, and put back into the answer with an ErrorCode), throttling, and
resharding — moto's SplitShard keeps writing to the closed parent and leaves the children
empty, so the reader's parent-before-child order is tested on a small double that follows
the Kinesis API reference (`FakeKinesis`)."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import boto3
import pytest
from moto.core import enable_iam_authentication
from pydantic import ValidationError

from chalicelib.domain.catalog import JobType
from chalicelib.domain.ids import new_id
from chalicelib.domain.models import HealthStatus
from chalicelib.providers.base import ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.event_batches import Retry
from chalicelib.providers.events import event_id
from chalicelib.providers.kinesis import (
    PROVIDER,
    SPEC,
    AccessKeys,
    AssumeRole,
    KinesisExportConfig,
    KinesisImportConfig,
)
from chalicelib.providers.kinesis_export import KinesisAudienceExport, partition_key
from chalicelib.providers.kinesis_import import KinesisReader
from chalicelib.providers.roles import StepContext
from tests.providers.aws_faults import answer_error, refuse_kinesis_records, time_out
from tests.seeds import seeded

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
MOTO_ACCOUNT = "123456789012"


def keys(**kw: Any) -> AccessKeys:
    return AccessKeys(access_key_id=KEY_ID, secret_access_key=SECRET, **kw)


@pytest.fixture
def kinesis(aws: None) -> Any:
    return boto3.client("kinesis", region_name="us-east-1")


@pytest.fixture
def make_stream(kinesis: Any) -> Iterator[Callable[..., str]]:
    made: list[str] = []

    def make(shards: int = 1) -> str:
        name = f"sy-test-{uuid.uuid4().hex[:10]}"
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        made.append(name)
        return name

    yield make
    for name in made:
        kinesis.delete_stream(StreamName=name)


def ctx(config: dict[str, Any], *, cursor: dict[str, Any] | None = None, state: dict[str, Any] | None = None,
        run_id: str | None = None, step: int = 0, max_records: int = 5000, counter: CallCounter | None = None,
        creds: Any = None, deadline: float | None = None) -> StepContext:
    return StepContext(
        account_id="acct_1", job_id="job_1", run_id=run_id or new_id("run"), step=step,
        method="access_keys" if creds is None or isinstance(creds, AccessKeys) else "assume_role",
        credentials=creds or keys(), config=config, cursor=cursor, state=state or {},
        max_records=max_records, deadline=deadline or time.monotonic() + 60, counter=counter)


def rows(n: int, *, start: int = 0, action: str = "add", pad: int = 0) -> list[tuple[str, str, list[Any]]]:
    return [(action, f"prof_{i:06d}", [f"p{i}@example.com", "x" * pad]) for i in range(start, start + n)]


def read_stream(kinesis: Any, name: str) -> list[dict[str, Any]]:
    """Every record of every shard: {"data": parsed JSON, "key": partition key, "shard": id}."""
    out = []
    for shard in kinesis.list_shards(StreamName=name)["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while True:
            resp = kinesis.get_records(ShardIterator=it, Limit=10000)
            out += [{"data": json.loads(r["Data"]), "key": r["PartitionKey"], "shard": shard["ShardId"]}
                    for r in resp["Records"]]
            if not resp["Records"]:
                break
            it = resp["NextShardIterator"]
    return out


def put_json(kinesis: Any, name: str, items: list[Any], key: Callable[[int], str] = str) -> None:
    for start in range(0, len(items), 500):
        chunk = items[start:start + 500]
        kinesis.put_records(StreamName=name, Records=[
            {"Data": item if isinstance(item, bytes) else json.dumps(item).encode(), "PartitionKey": key(start + i)}
            for i, item in enumerate(chunk)])


class Sleeps:
    """Retry.sleep that records instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def exporter(sleeps: Sleeps | None = None, attempts: int = 5, seed: int = 7) -> KinesisAudienceExport:
    return KinesisAudienceExport(Retry(attempts=attempts, sleep=sleeps or Sleeps(), rng=random.Random(seed)))


# --- spec and config ---------------------------------------------------------------------------


def test_spec_offers_export_and_import_with_both_aws_methods() -> None:
    assert SPEC.id == "amazon_kinesis"
    assert [(m.id, m.credentials_model) for m in SPEC.auth_methods] == [
        ("access_keys", AccessKeys), ("assume_role", AssumeRole)]
    assert SPEC.job_types == [JobType.EXPORT, JobType.IMPORT]
    for wf in SPEC.workflows:
        assert set(wf.auth_methods) == {"access_keys", "assume_role"}
        assert wf.resource_fields == ("stream_name",) and wf.option_fields == ("stream_name",)


def test_export_config_defaults_and_partition_key_rules() -> None:
    # GIVEN the smallest export config
    cfg = KinesisExportConfig(audience_id="aud_1", stream_name="events")
    # THEN events carry the email, keyed by profile, removals and backfill on
    assert (cfg.fields, cfg.partition_key, cfg.include_removals, cfg.backfill) == (
        ["email"], "profile_id", True, True)
    # AND a partition key must be profile_id or an exported field, and the error names it
    assert KinesisExportConfig(audience_id="a", stream_name="e", fields=["email", "user_id"],
                               partition_key="user_id").partition_key == "user_id"
    with pytest.raises(ValidationError) as caught:
        KinesisExportConfig(audience_id="a", stream_name="e", fields=["email"], partition_key="plan")
    assert [e["loc"] for e in caught.value.errors()] == [("partition_key",)]


@pytest.mark.parametrize("name", ["", "has space", "a/b", "x" * 129])
def test_stream_names_kinesis_refuses_are_refused(name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        KinesisImportConfig(stream_name=name)
    assert {e["loc"][0] for e in caught.value.errors()} == {"stream_name"}


def test_import_config_refuses_unknown_positions_and_fields() -> None:
    with pytest.raises(ValidationError) as caught:
        KinesisImportConfig(stream_name="s", starting_position="AT_TIMESTAMP", shard="x")
    assert {e["loc"][0] for e in caught.value.errors()} == {"starting_position", "shard"}


# --- check -------------------------------------------------------------------------------------


def test_check_without_a_stream_reaches_the_account(aws: None) -> None:
    counter = CallCounter()
    result = PROVIDER.check("access_keys", keys(), {}, counter)
    assert result.status is HealthStatus.HEALTHY and result.provider_account == MOTO_ACCOUNT
    assert counter.counts == {"sts.GetCallerIdentity": 1}


def test_check_verifies_the_stream_of_the_credentials_or_the_job(make_stream: Callable[..., str]) -> None:
    # GIVEN a stream with 2 shards
    name = make_stream(2)
    counter = CallCounter()
    # WHEN credentials naming it are checked, and credentials without one against a job's stream
    own = PROVIDER.check("access_keys", keys(stream_name=name), {}, counter)
    job = PROVIDER.check("access_keys", keys(), {"stream_name": name}, counter)
    # THEN both reach it, with one DescribeStreamSummary each
    for result in (own, job):
        assert result.status is HealthStatus.HEALTHY and result.resources == {"stream_name": name}
        assert f"stream {name!r} (ACTIVE, 2 open shards)" in (result.reason or "")
    assert counter.counts == {"sts.GetCallerIdentity": 2, "kinesis.DescribeStreamSummary": 2}


def test_check_of_a_missing_stream_is_unhealthy_in_aws_words(aws: None) -> None:
    result = PROVIDER.check("access_keys", keys(), {"stream_name": "sy-missing"})
    assert result.status is HealthStatus.UNHEALTHY and result.provider_account == MOTO_ACCOUNT
    assert result.reason == ("stream 'sy-missing' does not exist (ResourceNotFoundException: "
                             f"Stream sy-missing under account {MOTO_ACCOUNT} not found.)")
    assert SECRET not in repr(result)


def test_check_denied_is_unhealthy_in_aws_words(make_stream: Callable[..., str]) -> None:
    # GIVEN a real IAM user with no Kinesis permission, and IAM enforced
    iam = boto3.client("iam", region_name="us-east-1")
    user = f"sy-test-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    name = make_stream()
    try:
        with enable_iam_authentication():
            result = PROVIDER.check("access_keys", AccessKeys(
                access_key_id=key["AccessKeyId"], secret_access_key=key["SecretAccessKey"]), {"stream_name": name})
    finally:
        iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
        iam.delete_user(UserName=user)
    # THEN the identity verifies but the stream is refused, with AWS's own explanation
    assert result.status is HealthStatus.UNHEALTHY and result.provider_account == MOTO_ACCOUNT
    # (moto answers this JSON API with an XML body botocore cannot parse: the code is the status)
    assert (result.reason or "").startswith(f"missing permission: access to stream {name!r} was denied (403: ")
    assert "is not authorized to perform: kinesis:DescribeStreamSummary" in (result.reason or "")
    assert "<" not in (result.reason or "")
    assert key["SecretAccessKey"] not in (result.reason or "")


@pytest.mark.parametrize(("code", "status"), [("LimitExceededException", 400), ("InternalFailure", 500)])
def test_check_throttled_or_failing_is_transient(make_stream: Callable[..., str], code: str, status: int) -> None:
    # GIVEN Kinesis answering DescribeStreamSummary with throttling or a 5xx
    name = make_stream()
    hits = answer_error("kinesis", "DescribeStreamSummary", code, status)
    # WHEN the stream is checked THEN nothing is concluded: a transient error, no verdict
    with pytest.raises(ProviderError) as caught:
        PROVIDER.check("access_keys", keys(), {"stream_name": name})
    assert caught.value.transient is True and hits


def test_check_through_a_role_reaches_the_roles_account(aws: None) -> None:
    role = AssumeRole(role_arn="arn:aws:iam::210987654321:role/SwitchyardKinesis", external_id="ext-1234")
    result = PROVIDER.check("assume_role", role, {})
    assert result.status is HealthStatus.HEALTHY and result.provider_account == "210987654321"


# --- options -------------------------------------------------------------------------------------


def test_stream_options_are_read_page_by_page(make_stream: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN 3 streams, and ListStreams pages of 2 (AWS answers 100)
    names = {make_stream() for _ in range(3)}
    from chalicelib.providers import kinesis as module

    monkeypatch.setattr(module, "STREAM_PAGE_SIZE", 2)
    counter = CallCounter()
    # WHEN the stream_name options are read
    options = PROVIDER.options("access_keys", keys(), "kinesis_import", "stream_name", {}, counter)
    # THEN every stream is offered, read over several pages
    assert names <= {o.value for o in options}
    assert counter.counts["kinesis.ListStreams"] >= 2


def test_only_stream_name_has_options(aws: None) -> None:
    with pytest.raises(ProviderError) as caught:
        PROVIDER.options("access_keys", keys(), "kinesis_import", "starting_position", {})
    assert caught.value.field == "field"


# --- export --------------------------------------------------------------------------------------


def test_1200_events_go_in_3_put_records_calls(kinesis: Any, make_stream: Callable[..., str]) -> None:
    # GIVEN a stream with 2 shards and a part of 1,200 changes
    name = make_stream(2)
    exp = exporter()
    frozen = exp.freeze({"audience_id": "aud_1", "stream_name": name})
    counter = CallCounter()
    context = ctx({}, counter=counter, step=1)
    # WHEN the part is written
    part = exp.write_part(context, frozen, 1, rows(1000) + rows(200, start=1000, action="remove"))
    # THEN 3 PutRecords calls (500 + 500 + 200) stored every event once, keyed by profile
    assert counter.counts == {"kinesis.PutRecords": 3} and part.requests == 3
    assert part.rows == 1200 and part.skipped == ()
    stored = read_stream(kinesis, name)
    assert len(stored) == 1200 and len({r["shard"] for r in stored}) == 2
    by_id = {r["data"]["event_id"]: r for r in stored}
    assert set(by_id) == {event_id(context.run_id, 1, i) for i in range(1200)}
    first = by_id[event_id(context.run_id, 1, 0)]
    assert first["key"] == "prof_000000" and first["data"] == {
        "schema_version": 1, "event_id": event_id(context.run_id, 1, 0), "type": "audience.entered",
        "account_id": "acct_1", "job_id": "job_1", "run_id": context.run_id, "audience_id": "aud_1",
        "profile_id": "prof_000000", "fields": {"email": "p0@example.com"}}
    assert by_id[event_id(context.run_id, 1, 1199)]["data"]["type"] == "audience.exited"


def test_batches_stay_under_5_mib_and_a_record_over_1_mib_is_skipped(
        kinesis: Any, make_stream: Callable[..., str]) -> None:
    # GIVEN 300 events of ~20 KB (6 MB in all: over one request's 5 MiB), and one of ~1.1 MB
    name = make_stream()
    exp = exporter()
    frozen = exp.freeze({"audience_id": "aud_1", "stream_name": name, "fields": ["email", "bio"]})
    big = ("add", "prof_big", ["big@example.com", "y" * 1_100_000])
    counter = CallCounter()
    # WHEN the part is written
    part = exp.write_part(ctx({}, counter=counter), frozen, 1, [*rows(150, pad=20_000), big, *rows(150, start=150, pad=20_000)])
    # THEN 2 requests carried the 300 events, the big one was reported and not sent
    assert counter.counts == {"kinesis.PutRecords": 2}
    assert part.skipped == (150,) and part.rows == 301
    stored = read_stream(kinesis, name)
    assert len(stored) == 300 and "prof_big" not in {r["data"]["profile_id"] for r in stored}


@seeded(7)
def test_refused_records_are_retried_alone_with_backoff(kinesis: Any, make_stream: Callable[..., str],
                                                        seed: int) -> None:
    # GIVEN Kinesis refusing 3 records of the first call and 1 of the first retry (throttling)
    name = make_stream(2)
    seen = refuse_kinesis_records(lambda n, records: {0: {2, 250, 499}, 1: {1}}.get(n, set()))
    sleeps = Sleeps()
    exp = exporter(sleeps, seed=seed)  # the jitter's random source
    frozen = exp.freeze({"audience_id": "aud_1", "stream_name": name})
    counter = CallCounter()
    # WHEN 600 events are written
    exp.write_part(ctx({}, counter=counter), frozen, 1, rows(600))
    # THEN the first batch was re-sent with only the refused records, twice, then the second batch
    assert [len(s) for s in seen.sent] == [500, 3, 1, 100]
    assert seen.sent[1] == seen.refused[0] and seen.sent[2] == seen.refused[1]
    assert counter.counts == {"kinesis.PutRecords": 4}
    # AND it waited a jittered, growing time before each retry
    assert len(sleeps.waits) == 2 and 0 <= sleeps.waits[0] <= 0.2 and 0 <= sleeps.waits[1] <= 0.4
    # AND the stream holds every event exactly once
    stored = [r["data"]["profile_id"] for r in read_stream(kinesis, name)]
    assert sorted(stored) == [f"prof_{i:06d}" for i in range(600)]


def test_records_refused_every_time_fail_the_step_as_transient(make_stream: Callable[..., str]) -> None:
    # GIVEN Kinesis refusing the first record of every call
    name = make_stream()
    seen = refuse_kinesis_records(lambda n, records: {0})
    exp = exporter(attempts=3)
    frozen = exp.freeze({"audience_id": "aud_1", "stream_name": name})
    # WHEN a part is written THEN after 3 attempts the step fails, transient (the engine retries it)
    with pytest.raises(ProviderError) as caught:
        exp.write_part(ctx({}), frozen, 1, rows(10))
    assert caught.value.transient is True and "ProvisionedThroughputExceededException" in caught.value.reason
    assert len(seen.sent) == 3


def test_a_retry_past_the_deadline_fails_at_once(make_stream: Callable[..., str]) -> None:
    name = make_stream()
    refuse_kinesis_records(lambda n, records: {0} if n == 0 else set())
    sleeps = Sleeps()
    exp = KinesisAudienceExport(Retry(sleep=sleeps, rng=random.Random(1), base=10, cap=10,
                                      clock=time.monotonic))
    frozen = exp.freeze({"audience_id": "aud_1", "stream_name": name})
    with pytest.raises(ProviderError) as caught:
        exp.write_part(ctx({}, deadline=time.monotonic() + 0.01), frozen, 1, rows(5))
    assert caught.value.transient is True and "out of time" in caught.value.reason and sleeps.waits == []


def test_a_missing_stream_is_a_config_error_on_its_field(aws: None) -> None:
    exp = exporter()
    frozen = exp.freeze({"audience_id": "aud_1", "stream_name": "sy-gone"})
    with pytest.raises(ProviderError) as caught:
        exp.write_part(ctx({}), frozen, 1, rows(3))
    assert caught.value.transient is False and caught.value.field == "stream_name"
    assert "does not exist (ResourceNotFoundException" in caught.value.reason


def test_partition_key_of_a_field_falls_back_to_the_profile() -> None:
    event = {"profile_id": "prof_1", "fields": {"user_id": "u-7", "email": None, "tags": ["a"], "bio": "z" * 300}}
    assert partition_key(event, "profile_id") == "prof_1"
    assert partition_key(event, "user_id") == "u-7"
    assert partition_key(event, "email") == "prof_1"  # missing: the profile keeps its events together
    assert partition_key(event, "tags") == '["a"]'
    assert len(partition_key(event, "bio")) == 64  # over 256 characters: a digest of the value


def test_a_replayed_part_sends_the_same_events(kinesis: Any, make_stream: Callable[..., str]) -> None:
    # GIVEN a part written once, then again (a redelivered step)
    name = make_stream()
    exp = exporter()
    frozen = exp.freeze({"audience_id": "aud_1", "stream_name": name, "partition_key": "email",
                         "fields": ["email"]})
    context = ctx({})
    exp.write_part(context, frozen, 3, rows(20))
    exp.write_part(context, frozen, 3, rows(20))
    # THEN the stream holds each event twice with the same id and bytes (at least once;
    # consumers drop duplicates by event_id)
    stored = read_stream(kinesis, name)
    ids = [r["data"]["event_id"] for r in stored]
    assert len(ids) == 40 and len(set(ids)) == 20
    assert {r["key"] for r in stored} == {f"p{i}@example.com" for i in range(20)}


# --- import ------------------------------------------------------------------------------------


def _drain(reader: KinesisReader, config: dict[str, Any], *, state: dict[str, Any] | None = None,
           max_records: int = 1000, run_id: str | None = None) -> tuple[list[Any], list[Any], dict[str, Any], int]:
    """Every step of one run: (rows, invalid, final state, steps)."""
    run_id = run_id or new_id("run")
    cursor, got, bad = None, [], []
    for step in range(100):
        result = reader.read(ctx(config, cursor=cursor, state=state, run_id=run_id, step=step,
                                 max_records=max_records))
        got += result.rows
        bad += result.invalid
        cursor = result.cursor
        if result.done:
            return got, bad, result.state, step + 1
    raise AssertionError("the run never ended")


def test_import_reads_every_shard_in_steps_then_only_new_records(
        kinesis: Any, make_stream: Callable[..., str]) -> None:
    # GIVEN 2,500 JSON records over 2 shards
    name = make_stream(2)
    put_json(kinesis, name, [{"email": f"u{i}@example.com", "n": i} for i in range(2500)])
    time.sleep(0.002)  # the run starts after the records arrived
    reader = KinesisReader()
    # WHEN a run reads it, 1,000 records a step
    got, bad, state, steps = _drain(reader, {"stream_name": name})
    # THEN every record was read once, in 3 steps, with its position as ref
    assert sorted(r.data["n"] for r in got) == list(range(2500)) and bad == []
    assert steps == 3
    assert got[0].ref.startswith(f"kinesis://{name}/shardId-") and got[0].ref.count("/") == 4
    assert state["stream"] == name and len(state["checkpoints"]) == 2
    # WHEN 300 more arrive and the next run starts from the job's state
    put_json(kinesis, name, [{"email": f"v{i}@example.com", "n": 10_000 + i} for i in range(300)])
    time.sleep(0.002)
    again, _, state2, _ = _drain(reader, {"stream_name": name}, state=state)
    # THEN only the new records are read
    assert sorted(r.data["n"] for r in again) == [10_000 + i for i in range(300)]
    assert all(int(state2["checkpoints"][s]) >= int(state["checkpoints"][s]) for s in state["checkpoints"])


def test_reading_again_from_a_cursor_returns_the_same_rows(kinesis: Any, make_stream: Callable[..., str]) -> None:
    # GIVEN a run whose first step has been read
    name = make_stream(2)
    put_json(kinesis, name, [{"email": f"u{i}@example.com"} for i in range(1200)])
    time.sleep(0.002)
    reader = KinesisReader()
    run_id = new_id("run")
    first = reader.read(ctx({"stream_name": name}, run_id=run_id, max_records=500))
    # WHEN more records arrive (after the run started), and step 1 is read twice (a redelivery)
    put_json(kinesis, name, [{"email": f"late{i}@example.com"} for i in range(100)])
    once = reader.read(ctx({"stream_name": name}, cursor=first.cursor, run_id=run_id, step=1, max_records=500))
    twice = reader.read(ctx({"stream_name": name}, cursor=first.cursor, run_id=run_id, step=1, max_records=500))
    # THEN both reads return the same rows and the same cursor; late records wait for the next run
    assert [r.ref for r in once.rows] == [r.ref for r in twice.rows] and once.cursor == twice.cursor
    rest = reader.read(ctx({"stream_name": name}, cursor=once.cursor, run_id=run_id, step=2, max_records=500))
    emails = [r.data["email"] for r in first.rows + once.rows + rest.rows]
    assert rest.done and len(emails) == 1200 and not any(e.startswith("late") for e in emails)


def test_records_that_are_not_json_objects_are_invalid_rows(kinesis: Any, make_stream: Callable[..., str]) -> None:
    name = make_stream()
    put_json(kinesis, name, [{"email": "a@x.io"}, b"not json", b"[1, 2]", b"\xff\xfe", b"\xf3\x89\x9a\xc2agg",
                             {"email": "b@x.io"}])
    time.sleep(0.002)
    got, bad, _, _ = _drain(KinesisReader(), {"stream_name": name})
    assert [r.data["email"] for r in got] == ["a@x.io", "b@x.io"]
    assert [why for _, why in bad] == [
        "not valid JSON (Expecting value at column 1)", "not a JSON object (a JSON array)", "not UTF-8 text",
        "a KPL-aggregated record (turn aggregation off in the producer)"]
    assert all(ref.startswith(f"kinesis://{name}/shardId-000000000000/") for ref, _ in bad)


def test_latest_skips_what_the_stream_held_before_the_first_run(kinesis: Any, make_stream: Callable[..., str]) -> None:
    # GIVEN records already in the stream, and a LATEST import's first run
    name = make_stream(2)
    put_json(kinesis, name, [{"email": f"old{i}@x.io"} for i in range(50)])
    time.sleep(0.002)
    config = {"stream_name": name, "starting_position": "LATEST"}
    got, _, state, _ = _drain(KinesisReader(), config)
    # THEN it reads nothing, and remembers since when it reads
    assert got == [] and state["since_ms"] is not None
    # WHEN new records arrive THEN the next run reads exactly those
    time.sleep(0.002)
    put_json(kinesis, name, [{"email": f"new{i}@x.io"} for i in range(40)])
    time.sleep(0.002)
    again, _, _, _ = _drain(KinesisReader(), config, state=state)
    assert sorted(r.data["email"] for r in again) == sorted(f"new{i}@x.io" for i in range(40))


def test_import_of_a_missing_stream_is_a_config_error(aws: None) -> None:
    with pytest.raises(ProviderError) as caught:
        KinesisReader().read(ctx({"stream_name": "sy-gone"}))
    assert caught.value.transient is False and caught.value.field == "stream_name"


def test_import_counts_its_requests(kinesis: Any, make_stream: Callable[..., str]) -> None:
    name = make_stream(2)
    put_json(kinesis, name, [{"email": f"u{i}@x.io"} for i in range(100)])
    time.sleep(0.002)
    counter = CallCounter()
    result = KinesisReader().read(ctx({"stream_name": name}, counter=counter))
    # One ListShards, then per shard one iterator and one GetRecords that reached the tip.
    assert result.done and counter.counts == {
        "kinesis.ListShards": 1, "kinesis.GetShardIterator": 2, "kinesis.GetRecords": 2}


# --- resharding (a double that follows the Kinesis API reference; moto's SplitShard does not) ---


class FakeKinesis:
    """Shards with parents, closed shards whose end answers a null NextShardIterator (as AWS),
    records with sequence numbers and arrival times."""

    def __init__(self, gap: int = 0) -> None:
        self.shards: dict[str, dict[str, Any]] = {}
        self.records: dict[str, list[dict[str, Any]]] = {}
        self.next_seq = 1000
        self.calls: list[tuple[str, str]] = []
        self.gap = gap  # empty answers (behind the tip) before the first record

    def shard(self, sid: str, *, parents: tuple[str, ...] = (), closed: bool = False) -> None:
        entry: dict[str, Any] = {"ShardId": sid, "SequenceNumberRange": {"StartingSequenceNumber": "0"}}
        if parents:
            entry["ParentShardId"] = parents[0]
        if len(parents) > 1:
            entry["AdjacentParentShardId"] = parents[1]
        self.shards[sid] = entry
        self.records[sid] = []
        if closed:
            self.close(sid)

    def close(self, sid: str) -> None:
        last = self.records[sid][-1]["SequenceNumber"] if self.records[sid] else "0"
        self.shards[sid]["SequenceNumberRange"]["EndingSequenceNumber"] = last

    def put(self, sid: str, *items: dict[str, Any]) -> None:
        for item in items:
            self.next_seq += 7
            self.records[sid].append({"SequenceNumber": str(self.next_seq), "Data": json.dumps(item).encode(),
                                      "ApproximateArrivalTimestamp": datetime.fromtimestamp(time.time() - 60)})

    def list_shards(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("ListShards", ""))
        return {"Shards": [dict(s) for s in self.shards.values()]}

    def get_shard_iterator(self, StreamName: str, ShardId: str, ShardIteratorType: str, **kw: Any) -> dict[str, Any]:
        self.calls.append(("GetShardIterator", ShardId))
        after = int(kw["StartingSequenceNumber"]) if ShardIteratorType == "AFTER_SEQUENCE_NUMBER" else -1
        return {"ShardIterator": json.dumps([ShardId, after])}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        sid, after = json.loads(ShardIterator)
        self.calls.append(("GetRecords", sid))
        if self.gap:
            self.gap -= 1
            return {"Records": [], "MillisBehindLatest": 5000, "NextShardIterator": ShardIterator}
        rest = [r for r in self.records[sid] if int(r["SequenceNumber"]) > after]
        batch = rest[:Limit]
        last = int(batch[-1]["SequenceNumber"]) if batch else after
        closed = "EndingSequenceNumber" in self.shards[sid]["SequenceNumberRange"]
        exhausted = len(batch) == len(rest)
        return {"Records": batch, "MillisBehindLatest": 0 if exhausted else 1000,
                "NextShardIterator": None if (closed and exhausted) else json.dumps([sid, last])}


def test_a_split_parent_is_read_to_its_end_before_its_children(aws: None) -> None:
    # GIVEN shard 0 closed by a split into 1 and 2, records in all three
    fake = FakeKinesis()
    fake.shard("shardId-000000000000")
    fake.put("shardId-000000000000", *({"email": f"old{i}@x.io", "v": 1} for i in range(5)))
    fake.close("shardId-000000000000")
    fake.shard("shardId-000000000001", parents=("shardId-000000000000",))
    fake.shard("shardId-000000000002", parents=("shardId-000000000000",))
    fake.put("shardId-000000000001", *({"email": f"old{i}@x.io", "v": 2} for i in range(0, 5, 2)))
    fake.put("shardId-000000000002", *({"email": f"old{i}@x.io", "v": 2} for i in range(1, 5, 2)))
    reader = KinesisReader(client=lambda sess: fake)
    # WHEN a run reads it 3 records a step
    got, _, state, _ = _drain(reader, {"stream_name": "s"}, max_records=3)
    # THEN every parent record comes before any child record (a key's updates stay in order)
    versions = [r.data["v"] for r in got]
    assert versions == [1] * 5 + [2] * 5
    # AND the parent is remembered as finished; the children have checkpoints
    assert state["finished"] == ["shardId-000000000000"]
    assert set(state["checkpoints"]) == {"shardId-000000000001", "shardId-000000000002"}


def test_a_merged_child_waits_for_both_parents(aws: None) -> None:
    # GIVEN shards 0 and 1 merged into 2; shard 1 still has unread records
    fake = FakeKinesis()
    for sid in ("shardId-000000000000", "shardId-000000000001"):
        fake.shard(sid)
        fake.put(sid, {"email": f"{sid}@x.io", "v": 1})
        fake.close(sid)
    fake.shard("shardId-000000000002", parents=("shardId-000000000000", "shardId-000000000001"))
    fake.put("shardId-000000000002", {"email": "m@x.io", "v": 2})
    reader = KinesisReader(client=lambda sess: fake)
    # WHEN step 0 may read only 1 record
    first = reader.read(ctx({"stream_name": "s"}, max_records=1))
    # THEN the child was not touched; it is read once both parents are finished
    assert [r.data["v"] for r in first.rows] == [1] and not first.done
    assert ("GetShardIterator", "shardId-000000000002") not in fake.calls
    got = first.rows
    cursor = first.cursor
    for step in range(1, 10):
        result = reader.read(ctx({"stream_name": "s"}, cursor=cursor, step=step, max_records=1))
        got += result.rows
        cursor = result.cursor
        if result.done:
            break
    assert [r.data["v"] for r in got] == [1, 1, 2] and result.state["finished"] == [
        "shardId-000000000000", "shardId-000000000001"]


def test_a_finished_parent_that_expired_is_forgotten(aws: None) -> None:
    # GIVEN a job state naming a finished parent the stream no longer lists (past retention)
    fake = FakeKinesis()
    fake.shard("shardId-000000000003", parents=("shardId-000000000000",))
    fake.put("shardId-000000000003", {"email": "c@x.io"})
    state = {"v": 1, "stream": "s", "since_ms": None, "checkpoints": {"shardId-000000000000": "5"},
             "finished": ["shardId-000000000000"]}
    # WHEN a run reads THEN the child is read and the state forgets the parent
    got, _, after, _ = _drain(KinesisReader(client=lambda sess: fake), {"stream_name": "s"}, state=state)
    assert [r.data["email"] for r in got] == ["c@x.io"]
    assert after["finished"] == [] and list(after["checkpoints"]) == ["shardId-000000000003"]


def test_a_gap_in_a_shard_is_walked_at_the_pace_kinesis_allows(aws: None) -> None:
    # GIVEN a shard whose first 3 answers are empty while behind the tip (AWS: "it might take
    # multiple calls to get to a portion of the shard that contains records")
    fake = FakeKinesis(gap=3)
    fake.shard("shardId-000000000000")
    fake.put("shardId-000000000000", {"email": "a@x.io"})
    pauses: list[float] = []
    reader = KinesisReader(client=lambda sess: fake, pause=pauses.append)
    # WHEN a step reads it THEN it walks the gap, pausing 0.2 s between calls, and finds the record
    result = reader.read(ctx({"stream_name": "s"}))
    assert [r.data["email"] for r in result.rows] == ["a@x.io"] and result.done
    assert pauses == [0.2, 0.2, 0.2]


def test_a_closed_shard_already_read_to_its_end_costs_no_call(aws: None) -> None:
    fake = FakeKinesis()
    fake.shard("shardId-000000000000")
    fake.put("shardId-000000000000", {"email": "a@x.io"})
    fake.close("shardId-000000000000")
    last = fake.records["shardId-000000000000"][-1]["SequenceNumber"]
    state = {"v": 1, "stream": "s", "since_ms": None, "checkpoints": {"shardId-000000000000": last}, "finished": []}
    result = KinesisReader(client=lambda sess: fake).read(ctx({"stream_name": "s"}, state=state))
    assert result.done and result.rows == [] and result.state["finished"] == ["shardId-000000000000"]
    assert fake.calls == [("ListShards", "")]


def test_a_put_that_times_out_fails_the_step_as_transient(make_stream: Callable[..., str]) -> None:
    # GIVEN PutRecords timing out
    name = make_stream()
    hits = time_out("kinesis", "PutRecords")
    exp = exporter()
    frozen = exp.freeze({"audience_id": "aud_1", "stream_name": name})
    # WHEN a part is written THEN the step fails as transient (the engine retries the part later)
    with pytest.raises(ProviderError) as caught:
        exp.write_part(ctx({}), frozen, 1, rows(5))
    assert caught.value.transient is True and caught.value.auth is False and hits == [1]
    assert "did not answer in time" in caught.value.reason
