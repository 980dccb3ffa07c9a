"""Amazon SQS audience export end to end: the authorization and job created through the
API, runs delivered from the runs queue, the customer's queue in (moto's) SQS, counts in the
runs. Fresh tables per test (tests/engine/fresh.py)."""

from __future__ import annotations

import json
import logging
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
def sqs(aws_endpoint: str) -> Any:
    return boto3.client("sqs", region_name="us-east-1")


@pytest.fixture()
def queue(sqs: Any) -> Any:
    made: list[str] = []

    def make(fifo: bool = False) -> str:
        name = f"sy-e2e-{uuid.uuid4().hex[:10]}" + (".fifo" if fifo else "")
        url = str(sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"} if fifo else {})["QueueUrl"])
        made.append(url)
        return url

    yield make
    for url in made:
        sqs.delete_queue(QueueUrl=url)


def _messages(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Receive (and delete) everything in the queue: the consumer's view."""
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
        if not got:
            return out
        for m in got:
            out.append(m)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def _runs(api: Any, job_id: str) -> list[dict[str, Any]]:
    return list(api.get(f"/jobs/{job_id}/runs").json["data"])


def _export(api: Any, url: str, aud: str, **config: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    auth = api.post("/authorizations", {"provider": "amazon_sqs", "method": "access_keys", "label": "queue keys",
                                        "credentials": {"access_key_id": access_key_id(), "secret_access_key": CANARY,
                                                        "queue_url": url}})
    assert auth.status_code == 201, auth.body
    r = api.post("/jobs", {"provider": "amazon_sqs", "job_type": "export", "workflow": "sqs_audience_export",
                           "authorization_id": auth.json["data"]["id"], "label": "pro to SQS", "schedule": HOURLY,
                           "config": {"audience_id": aud, "queue_url": url, **config}})
    assert r.status_code == 201, r.body
    return dict(auth.json["data"]), dict(r.json["data"])


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
def test_audience_export_sends_enter_events_then_exits_and_enters(api, deps, tenant, drain, options, sqs, queue,
                                                                   caplog, fifo):
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="switchyard")
    api = Recorder(api)
    messages = record_messages(drain)
    # GIVEN 25 pro and 5 free profiles, an hourly export of the pro audience to a queue,
    # 10 changes a step, through keys whose secret is a canary
    seed(deps, tenant.account_id, [person(i) for i in range(25)] + [person(i, "free") for i in range(25, 30)])
    url = queue(fifo)
    options.max_records = 10
    auth, job = _export(api, url, audience(api), fields=["email", "plan"])
    # WHEN its first run is delivered
    drain.run()
    # THEN the queue holds exactly one enter event per member
    ids = profile_ids(deps, tenant.account_id)
    [first] = _runs(api, job["id"])
    assert first["status"] == "succeeded" and first["added"] == 25 and first["progress"]["steps"] == 4, first
    got = _messages(sqs, url)
    events = [json.loads(m["Body"]) for m in got]
    assert Counter((e["type"], e["profile_id"]) for e in events) == Counter(
        {("audience.entered", ids[f"p{i}@example.com"]): 1 for i in range(25)})
    assert all(e["fields"]["plan"] == "pro" and e["run_id"] == first["id"] for e in events)
    if fifo:  # one group per profile, deduplicated by event id
        assert all(m["Attributes"]["MessageGroupId"] == json.loads(m["Body"])["profile_id"]
                   and m["Attributes"]["MessageDeduplicationId"] == json.loads(m["Body"])["event_id"] for m in got)
    # WHEN 2 members leave and 1 joins, and the schedule fires
    seed(deps, tenant.account_id, [person(0, "free"), person(1, "free"), person(25)])
    deps.runs_queue.send({"account_id": tenant.account_id, "job_id": job["id"], "trigger": "schedule"})
    drain.run()
    # THEN the queue got exactly those changes, removes carrying the current values
    second = _runs(api, job["id"])[0]
    assert second["status"] == "succeeded" and (second["added"], second["removed"]) == (1, 2), second
    events = [json.loads(m["Body"]) for m in _messages(sqs, url)]
    assert sorted((e["type"], e["profile_id"], e["fields"]["plan"]) for e in events) == sorted([
        ("audience.exited", ids["p0@example.com"], "free"), ("audience.exited", ids["p1@example.com"], "free"),
        ("audience.entered", ids["p25@example.com"], "pro")])
    # AND the canary secret is nowhere: responses, logs, the app's items and runs-queue messages
    api.get(f"/jobs/{job['id']}/logs")
    api.get(f"/authorizations/{auth['id']}")
    assert drain.errors == [] and messages

    def leaks(text: str) -> bool:
        return CANARY[:12] in text

    assert not [b for b in api.bodies if leaks(b)]
    assert not [r.getMessage() for r in caplog.records if leaks(r.getMessage())]
    items = app_items(deps)
    assert any(url in i for i in items) and not [i for i in items if leaks(i)]
    assert not [m for m in messages if leaks(m)]


def test_a_crashed_step_resent_to_a_fifo_queue_is_deduplicated(api, deps, tenant, drain, options, sqs, queue):
    # GIVEN a FIFO export whose step 1 crashes after the messages were sent, before its commit
    seed(deps, tenant.account_id, [person(i) for i in range(12)])
    url = queue(True)
    options.max_records = 5
    crashed: list[str] = []

    def fault(point: str) -> None:
        if point == "after_write" and not crashed:
            crashed.append(point)
            raise RuntimeError("crash after the part was sent")

    options.fault = fault
    _, job = _export(api, url, audience(api))
    # WHEN the run is delivered (the crashed step is redelivered and sends its part again)
    drain.run()
    # THEN the queue holds each event once, and the run counted each member once
    [run] = _runs(api, job["id"])
    assert crashed and len(drain.errors) == 1 and run["status"] == "succeeded" and run["added"] == 12
    events = [json.loads(m["Body"]) for m in _messages(sqs, url)]
    assert len(events) == 12 and len({e["event_id"] for e in events}) == 12


def test_an_event_over_256_kib_is_omitted_as_too_large(api, deps, tenant, drain, sqs, queue):
    # GIVEN a member whose exported bio alone is over SQS's 256 KiB
    seed(deps, tenant.account_id, [person(1, bio="b" * 300_000), person(2, bio="short")])
    url = queue()
    _, job = _export(api, url, audience(api), fields=["email", "bio"])
    # WHEN the run is delivered
    drain.run()
    # THEN the other member was sent; the big one is counted omitted `too_large` and logged by id
    [run] = _runs(api, job["id"])
    assert run["status"] == "succeeded" and run["added"] == 1
    assert run["omitted_reasons"] == {"too_large": 1}, run
    ids = profile_ids(deps, tenant.account_id)
    assert [json.loads(m["Body"])["profile_id"] for m in _messages(sqs, url)] == [ids["p2@example.com"]]
    [line] = [ln for ln in api.get(f"/jobs/{job['id']}/logs").json["data"] if ln["code"] == "export.too_large"]
    assert ids["p1@example.com"] in line["message"] and "b" * 50 not in line["message"]


def test_a_missing_queue_fails_the_job_in_aws_words(api, deps, tenant, drain, sqs, queue):
    seed(deps, tenant.account_id, [person(1)])
    url = queue()
    _, job = _export(api, url, audience(api))
    sqs.delete_queue(QueueUrl=url)
    drain.run()
    assert api.get(f"/jobs/{job['id']}").json["data"]["status"] == "failed"
    [line] = api.get(f"/jobs/{job['id']}/logs?level=error").json["data"]
    assert line["code"] == "run.config_error" and "does not exist" in line["message"]
    sqs.create_queue(QueueName=url.rsplit("/", 1)[1])  # for the fixture's clean-up


def test_queue_options_through_the_api(api, sqs, queue):
    # GIVEN a FIFO queue and an authorization
    url = queue(True)
    name = url.rsplit("/", 1)[1]
    auth = api.post("/authorizations", {"provider": "amazon_sqs", "method": "access_keys", "label": "k",
                                        "credentials": {"access_key_id": access_key_id(), "secret_access_key": CANARY}})
    assert auth.status_code == 201, auth.body
    # WHEN the wizard asks for queue_url options by name prefix
    r = api.get(f"/providers/amazon_sqs/workflows/sqs_audience_export/options/queue_url"
                f"?authorization_id={auth.json['data']['id']}&prefix={name[:14]}")
    # THEN the queue is offered by URL, labelled by name, as a FIFO queue
    assert r.status_code == 200, r.body
    assert {"value": url, "label": name, "kind": "fifo"} in r.json["data"]


def test_a_resync_sends_one_enter_per_member_with_new_event_ids(api, deps, tenant, drain, options, sqs, queue):
    # GIVEN 6 members sent to a FIFO queue by a first run
    seed(deps, tenant.account_id, [person(i) for i in range(6)])
    url = queue(True)
    _, job = _export(api, url, audience(api), fields=["email"])
    drain.run()
    first = {json.loads(m["Body"])["event_id"] for m in _messages(sqs, url)}
    assert len(first) == 6
    # WHEN one leaves and the job is asked to re-send everything
    seed(deps, tenant.account_id, [person(0, "free")])
    assert api.post(f"/jobs/{job['id']}/run", {"resync": True}).status_code == 200
    drain.run()
    # THEN the queue got one enter per current member and the leaver's exit, with ids the
    # FIFO queue's deduplication does not drop as repeats of the first run's
    ids = profile_ids(deps, tenant.account_id)
    run = _runs(api, job["id"])[0]
    events = [json.loads(m["Body"]) for m in _messages(sqs, url)]
    assert Counter((e["type"], e["profile_id"]) for e in events) == Counter(
        [("audience.entered", ids[f"p{i}@example.com"]) for i in range(1, 6)] + [("audience.exited", ids["p0@example.com"])])
    assert not first & {e["event_id"] for e in events} and all(e["run_id"] == run["id"] for e in events)
    assert (run["added"], run["removed"], run["resync"]) == (5, 1, True) and drain.errors == []
