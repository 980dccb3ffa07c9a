"""Amazon Kinesis end to end: authorizations and jobs created through the API, runs
delivered from the runs queue, the customer's stream in (moto's) Kinesis, profiles in the
store, counts in the runs. Fresh tables per test (tests/engine/fresh.py)."""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.api.helpers import CANARY, access_key_id
from tests.engine.fresh import (
    Recorder,
    app_items,
    audience,
    forget_moto_copies,
    fresh_deps,
    person,
    profile_ids,
    record_messages,
    seed,
)

HOURLY = {"type": "interval", "every_minutes": 60}


@pytest.fixture()
def deps(aws_endpoint: str) -> Iterator[Any]:
    yield from fresh_deps()


@pytest.fixture(autouse=True)
def _moto_copies() -> Iterator[None]:
    yield from forget_moto_copies()


@pytest.fixture()
def kinesis(aws_endpoint: str) -> Any:
    return boto3.client("kinesis", region_name="us-east-1")


@pytest.fixture()
def stream(kinesis: Any) -> Any:
    made: list[str] = []

    def make(shards: int = 2) -> str:
        name = f"sy-e2e-{uuid.uuid4().hex[:10]}"
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        made.append(name)
        return name

    yield make
    for name in made:
        with contextlib.suppress(kinesis.exceptions.ResourceNotFoundException):  # a test deleted it
            kinesis.delete_stream(StreamName=name)


def _auth(api: Any, stream_name: str) -> dict[str, Any]:
    r = api.post("/authorizations", {"provider": "amazon_kinesis", "method": "access_keys", "label": "stream keys",
                                     "credentials": {"access_key_id": access_key_id(), "secret_access_key": CANARY,
                                                     "stream_name": stream_name}})
    assert r.status_code == 201, r.body
    return dict(r.json["data"])


def _job(api: Any, auth_id: str, workflow: str, config: dict[str, Any], *,
         schedule: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"provider": "amazon_kinesis", "job_type": "export" if "export" in workflow else "import",
                            "workflow": workflow, "authorization_id": auth_id, "label": workflow, "config": config}
    if schedule:
        body["schedule"] = schedule
    r = api.post("/jobs", body)
    assert r.status_code == 201, r.body
    return dict(r.json["data"])


def _records(kinesis: Any, name: str) -> list[tuple[str, dict[str, Any]]]:
    """(partition key, event) of every record in the stream."""
    out = []
    for shard in kinesis.list_shards(StreamName=name)["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while True:
            resp = kinesis.get_records(ShardIterator=it, Limit=10000)
            out += [(r["PartitionKey"], json.loads(r["Data"])) for r in resp["Records"]]
            if not resp["Records"]:
                break
            it = resp["NextShardIterator"]
    return out


def _runs(api: Any, job_id: str) -> list[dict[str, Any]]:
    return list(api.get(f"/jobs/{job_id}/runs").json["data"])


def _fire(deps: Any, tenant: Any, job_id: str) -> None:
    deps.runs_queue.send({"account_id": tenant.account_id, "job_id": job_id, "trigger": "schedule"})


def test_audience_export_sends_enter_events_then_exits_and_enters(api, deps, tenant, drain, kinesis, stream, caplog):
    # The app's loggers at DEBUG, the rest at INFO (botocore's DEBUG prints request bodies,
    # Secrets Manager's included; the app never runs it at that level), as test_secret_canary.
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="switchyard")
    api = Recorder(api)
    messages = record_messages(drain)
    # GIVEN 20 pro and 10 free profiles, an audience of the pro ones, and an hourly export to
    # a 2-shard stream through keys whose secret is a canary
    seed(deps, tenant.account_id, [person(i) for i in range(20)] + [person(i, "free") for i in range(20, 30)])
    name = stream(2)
    auth = _auth(api, name)
    aud = audience(api)
    job = _job(api, auth["id"], "kinesis_audience_export",
               {"audience_id": aud, "stream_name": name, "fields": ["email", "first_name"]}, schedule=HOURLY)
    # WHEN its first run is delivered
    drain.run()
    # THEN the stream holds exactly one enter event per member, keyed by profile
    ids = profile_ids(deps, tenant.account_id)
    [first] = _runs(api, job["id"])
    assert first["status"] == "succeeded" and first["added"] == 20 and first["removed"] == 0, first
    stored = _records(kinesis, name)
    assert Counter((e["type"], e["profile_id"]) for _, e in stored) == Counter(
        {("audience.entered", ids[f"p{i}@example.com"]): 1 for i in range(20)})
    assert all(key == e["profile_id"] and e["run_id"] == first["id"] and e["audience_id"] == aud
               for key, e in stored)
    p7 = next(e for _, e in stored if e["profile_id"] == ids["p7@example.com"])
    assert p7["fields"] == {"email": "p7@example.com", "first_name": "P7"} and p7["job_id"] == job["id"]
    # WHEN 3 members leave and 2 profiles join, and the schedule fires
    seed(deps, tenant.account_id, [person(i, "free") for i in (0, 1, 2)] + [person(i) for i in (20, 21)])
    _fire(deps, tenant, job["id"])
    drain.run()
    # THEN the second run sent exactly 3 exits and 2 enters
    second = _runs(api, job["id"])[0]
    assert second["status"] == "succeeded" and second["added"] == 2 and second["removed"] == 3, second
    new = [e for _, e in _records(kinesis, name) if e["run_id"] == second["id"]]
    assert Counter((e["type"], e["profile_id"]) for e in new) == Counter(
        {("audience.exited", ids[f"p{i}@example.com"]): 1 for i in (0, 1, 2)}
        | {("audience.entered", ids[f"p{i}@example.com"]): 1 for i in (20, 21)})
    assert {e["fields"]["email"] for e in new if e["type"] == "audience.exited"} == {
        "p0@example.com", "p1@example.com", "p2@example.com"}
    # AND the canary secret is nowhere: responses, logs (API and process), the app's DynamoDB
    # items and runs-queue messages, the events in the customer's stream
    api.get(f"/jobs/{job['id']}/logs")
    api.get(f"/authorizations/{auth['id']}")
    api.get(f"/jobs/{job['id']}")
    assert drain.errors == [] and messages and api.bodies

    def leaks(text: str) -> bool:
        return CANARY in text or CANARY[:12] in text

    assert not [b for b in api.bodies if leaks(b)]
    assert not [r.getMessage() for r in caplog.records if leaks(r.getMessage())]
    items = app_items(deps)
    assert any(name in i for i in items) and not [i for i in items if leaks(i)]
    assert not [m for m in messages if leaks(m)]
    assert not [e for _, e in _records(kinesis, name) if leaks(json.dumps(e))]


def test_a_missing_stream_fails_the_export_in_aws_words(api, deps, tenant, drain, kinesis, stream):
    seed(deps, tenant.account_id, [person(1)])
    name = stream(1)
    job = _job(api, _auth(api, name)["id"], "kinesis_audience_export",
               {"audience_id": audience(api), "stream_name": name})
    kinesis.delete_stream(StreamName=name)
    drain.run()
    final = api.get(f"/jobs/{job['id']}").json["data"]
    assert final["status"] == "failed"
    [line] = api.get(f"/jobs/{job['id']}/logs?level=error").json["data"]
    assert line["code"] == "run.config_error" and "ResourceNotFoundException" in line["message"]


class _CrashOnce:
    """Crash the engine once at each (point, nth time the point is reached)."""

    def __init__(self, *plan: tuple[str, int]) -> None:
        self.plan = set(plan)
        self.seen: Counter[str] = Counter()
        self.crashed: list[tuple[str, int]] = []

    def __call__(self, point: str) -> None:
        self.seen[point] += 1
        hit = (point, self.seen[point])
        if hit in self.plan:
            self.plan.discard(hit)
            self.crashed.append(hit)
            raise RuntimeError(f"crash at {point}")


def _put(kinesis: Any, name: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 500):
        kinesis.put_records(StreamName=name, Records=[
            {"Data": json.dumps(item).encode(), "PartitionKey": item["email"]} for item in items[start:start + 500]])


def test_import_of_3000_records_over_2_shards_is_exact_under_replays_then_reads_only_new(
        api, deps, tenant, drain, options, kinesis, stream):
    # GIVEN 3,000 JSON records over 2 shards (and 2 that are not objects), an hourly import
    # 1,000 records a step, and crashes after a step wrote its profiles and after a commit
    name = stream(2)
    _put(kinesis, name, [{"email": f"k{i}@example.com", "First Name": f"K{i}", "n": i} for i in range(3000)])
    kinesis.put_records(StreamName=name, Records=[{"Data": b"[1]", "PartitionKey": "x"},
                                                  {"Data": b"oops", "PartitionKey": "y"}])
    time.sleep(0.01)  # the first run starts after the records arrived
    options.max_records = 1000
    crashes = _CrashOnce(("after_write", 2), ("after_commit", 1), ("before_write", 3))
    options.fault = crashes
    job = _job(api, _auth(api, name)["id"], "kinesis_import",
               {"stream_name": name, "field_mapping": {"First Name": "first_name"}}, schedule=HOURLY)
    # WHEN the runs queue is drained (every crashed message is redelivered and replayed)
    for _ in range(5):
        drain.run()
        if _runs(api, job["id"])[0]["status"] == "succeeded":
            break
    # THEN every crash happened, and each record made exactly one profile, counted once
    assert len(crashes.crashed) == 3 and len(drain.errors) == 3
    [run] = _runs(api, job["id"])
    assert run["status"] == "succeeded", run
    assert run["added"] == 3000 and run["omitted_reasons"] == {"invalid": 2}, run
    assert run["progress"]["processed"] == 3000
    ids = profile_ids(deps, tenant.account_id)
    assert len(ids) == 3000 and set(ids) == {f"k{i}@example.com" for i in range(3000)}
    k7 = deps.profiles.find(tenant.account_id, "email", "k7@example.com")
    assert k7.fields["first_name"] == "K7" and k7.fields["n"] == 7
    series = api.get(f"/jobs/{job['id']}/activity?granularity=day").json["data"]["series"]
    assert sum(p["added"] for p in series) == 3000
    assert api.get(f"/jobs/{job['id']}").json["data"]["status"] == "sleeping"
    logs = api.get(f"/jobs/{job['id']}/logs?level=warning").json["data"]
    assert any(ln["code"] == "record.invalid" and f"kinesis://{name}/" in ln["message"] for ln in logs)
    # WHEN 200 new people and 100 changes arrive, and the schedule fires
    _put(kinesis, name, [{"email": f"new{i}@example.com"} for i in range(200)]
         + [{"email": f"k{i}@example.com", "n": -i - 1} for i in range(100)])
    time.sleep(0.01)
    options.fault = lambda point: None
    _fire(deps, tenant, job["id"])
    drain.run()
    # THEN the second run read only those 300 records
    second = _runs(api, job["id"])[0]
    assert second["status"] == "succeeded" and second["progress"]["processed"] == 300, second
    assert second["added"] == 300 and second["omitted"] == 0
    assert len(profile_ids(deps, tenant.account_id)) == 3200
    assert deps.profiles.find(tenant.account_id, "email", "k5@example.com").fields["n"] == -6


def test_stream_options_and_a_missing_stream_through_the_api(api, stream):
    # GIVEN a stream and an authorization whose credentials name it
    name = stream(1)
    auth = _auth(api, name)
    # WHEN the wizard lists streams THEN it is offered
    r = api.get(f"/providers/amazon_kinesis/workflows/kinesis_import/options/stream_name?authorization_id={auth['id']}")
    assert r.status_code == 200 and {"value": name, "label": name, "kind": None} in r.json["data"]
    # AND a job on a stream that does not exist is refused, in AWS's words, naming the field
    r = api.post("/jobs", {"provider": "amazon_kinesis", "job_type": "import", "workflow": "kinesis_import",
                           "authorization_id": auth["id"], "label": "x", "config": {"stream_name": "sy-nope"}})
    assert r.status_code == 422, r.body
    assert "ResourceNotFoundException" in r.body.decode() and "config.stream_name" in r.json["error"]["fields"]
