"""Proof suite: crash and redelivery.

The runner is killed at random points (tests/proof/crash.py: the k-th AWS call or provider
HTTP attempt of a delivery, before it left or after it came back, or after the handler
returned but before the message was deleted) across import, export and enrichment runs;
SQS redelivers the message (its visibility timeout, shortened to 0 here) and the runner
resumes, again and again, until every run finished. Then, against a truth computed from
the inputs: no profile lost, nothing counted twice, each destination saw each member
exactly once (or, where delivery is at least once, once per event id).

Exports again on the change-log path (OnTheLog): the audience's backfill completed, a first
run leaving a cursor, profiles joining and leaving, then the run under test killed the same
way: each change reached the destination once (or its copies share an id and bytes), the
run read the log and the changed profiles only (its step-0 log line, no Query of the
profiles table), the cursor ended at the log's head, and a third run sent nothing.

The same for the health sweep: its fan-out and the health handler are killed at random
points and redelivered; every authorization is checked, each status change is recorded
once and alerted at least once, duplicates sharing the transition's id.

Each test runs with fixed seeds and one drawn fresh (tests/seeds.py); the seed is printed,
recorded and named in a failure: SWITCHYARD_SEED=<seed> replays it.
Size: tests/proof/record.py (small in make test, 100 kill points with SWITCHYARD_PROOF=full).
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from chalicelib.runs.engine import Delivery, Engine, EngineOptions, StepBusy
from tests.engine.fresh import forget_moto_models, fresh_deps, seed
from tests.membership.conftest import Stack, stack  # noqa: F401  (stack: the log path's tables)
from tests.proof.crash import Clock, Injector, Killed
from tests.proof.record import record, size
from tests.seeds import params, replay_hint, seeded

ALL_KINDS = ("s3_import", "mailchimp_import", "s3_export", "mailchimp_export", "sqs_export", "webhook_export",
             "enrichment")
# The exports proven again on the change-log path (a second run reading only what changed)
LOG_KINDS = ("s3_export", "mailchimp_export", "kinesis_export", "sqs_export", "webhook_export")
# SWITCHYARD_CRASH_KINDS=s3_import,enrichment narrows a replay to some kinds (all their kill points).
ONLY = {k for k in os.environ.get("SWITCHYARD_CRASH_KINDS", "").split(",") if k}
HOURLY = {"type": "interval", "every_minutes": 60}
RUN_KILLS = size(10, 100)
SWEEP_KILLS = size(4, 40)
ROWS_PER_STEP = 10
RUNS_CAP = 3  # kills per message: the runs queue sends a message to its DLQ at the 5th receive
HEALTH_CAP = 2  # the health queue's DLQ takes a message at its 3rd receive
FC_KEY = "fc-key-0123456789abcdef"


# The fixed seeds every run covers (each test also runs with one drawn fresh).
FIXED_SEEDS = (101, 908264)


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture()
def path(request: pytest.FixtureRequest) -> str:
    """Which way export runs read the audience: "full" (every profile; the audience's log
    is not complete) or "log" (its backfill done: only what changed since the last run)."""
    return str(getattr(request, "param", "full"))


@pytest.fixture()
def deps(request: pytest.FixtureRequest, path: str, aws_endpoint: str) -> Iterator[Any]:
    if path == "log":
        # A profiles table with its stream and the local poller (tests/membership/conftest.py)
        from chalicelib.services.accounts import token_cache

        token_cache.clear()
        yield request.getfixturevalue("stack").deps
        return
    # Fresh tables: moto answers a Query or a transaction in time proportional to the table.
    yield from fresh_deps()


@pytest.fixture(autouse=True)
def _moto_copies() -> Iterator[None]:
    from tests.engine.fresh import forget_moto_copies

    yield from forget_moto_copies()


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    from chalicelib.store import runs

    c = Clock()
    monkeypatch.setattr(runs, "time", c)
    return c


@pytest.fixture()
def fakes(monkeypatch: pytest.MonkeyPatch, fake_mailchimp: Any) -> Iterator[dict[str, Any]]:
    """Fake Mailchimp (the conftest fixture) and FullContact on 127.0.0.1."""
    from chalicelib import config
    from chalicelib.providers import http as H
    from tests.fakes.fullcontact import FakeFullContact

    with FakeFullContact({FC_KEY}) as fc:
        monkeypatch.setenv("SWITCHYARD_FULLCONTACT_BASE_URL", fc.base_url)
        config.reset()
        config.settings()  # read now, outside any chalice.test request
        H.reset()
        yield {"mailchimp": fake_mailchimp, "fullcontact": fc}
    config.reset()
    config.settings()
    H.reset()


# -- the runner and SQS, as Lambda would see them ------------------------------------------------


def _queue(name: str) -> tuple[Any, str]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    return sqs, sqs.get_queue_url(QueueName=name)["QueueUrl"]


def _purge(name: str) -> None:
    sqs, url = _queue(name)
    while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for m in msgs:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


@dataclass
class Tally:
    kills: int = 0
    redeliveries: int = 0
    busy: int = 0
    deliveries: int = 0
    killed_per_message: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


class Runner:
    """Delivers the runs queue to the engine one message at a time. A killed delivery's
    message becomes visible again (its visibility timeout, at once here); a message whose
    run is leased by a dead delivery waits for the lease to lapse (the clock jumps)."""

    def __init__(self, deps: Any, injector: Injector, clock: Clock, rng: random.Random, hint: str) -> None:
        self.engine = Engine(deps, EngineOptions(max_records=ROWS_PER_STEP))
        self.inj, self.clock, self.rng, self.hint = injector, clock, rng, hint
        self.sqs, self.url = _queue("switchyard-test-runs")
        self.tally = Tally()

    def run(self, kind: str, quota: int, finished: Callable[[], bool], limit: int = 3000) -> int:
        """Deliver until the queue is empty; kill up to `quota` deliveries. Returns kills."""
        killed = 0
        for _ in range(limit):
            msgs = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=1, VisibilityTimeout=120,
                                            AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
            if not msgs:
                assert finished(), f"{kind}: the queue is empty but the run did not finish ({self.hint})"
                return killed
            m = msgs[0]
            mid = m["MessageId"]
            forget_moto_models()  # moto keeps a copy of the table per transaction item: slower each step
            kill = (killed < quota and self.tally.killed_per_message[mid] < RUNS_CAP
                    and self.rng.random() < 0.8)
            self.tally.deliveries += 1
            outcome = "ok"
            with self.inj.delivery(kind, kill):
                try:
                    self.engine.handle(Delivery(body=json.loads(m["Body"]), message_id=mid,
                                                receive_count=int(m["Attributes"]["ApproximateReceiveCount"])))
                    self.inj.ack()
                except Killed:
                    outcome = "killed"
                except StepBusy:
                    outcome = "busy"
                except Exception as exc:  # Lambda would retry it too; the proof counts it as a finding
                    outcome = "error"
                    self.tally.errors.append(f"{kind}: {type(exc).__name__}: {exc} (after {self.inj.points[-1:]})")
                if self.inj.dead:
                    outcome = "killed"
            if outcome == "ok":
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
                continue
            if outcome == "killed":
                killed += 1
                self.tally.kills += 1
                self.tally.killed_per_message[mid] += 1
            else:
                self.tally.busy += outcome == "busy"
                self.clock.offset += 600  # the dead delivery's lease lapses meanwhile
            self.tally.redeliveries += 1
            self.sqs.change_message_visibility(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"],
                                               VisibilityTimeout=0)
        raise AssertionError(f"{kind}: still delivering after {limit} messages ({self.hint})")


# -- scenarios: each builds a job and knows the truth ------------------------------------------------


@dataclass
class Outcome:
    finished: bool
    lost: int  # profiles (or members) missing or wrong
    double: int  # counts above the truth, members sent more often than allowed
    receiver: str = ""  # how the destination saw the members
    resent: int = 0  # events a destination got again, harmless by its documented contract


def _run_of(api: Any, job_id: str) -> dict[str, Any]:
    runs = api.get(f"/jobs/{job_id}/runs").json["data"]
    assert len(runs) == 1, f"one run expected, got {len(runs)}: a trigger started a second run"
    return dict(runs[0])


def _activity(api: Any, job_id: str) -> tuple[int, int, int]:
    series = api.get(f"/jobs/{job_id}/activity?granularity=day").json["data"]["series"]
    return (sum(p["added"] for p in series), sum(p["removed"] for p in series),
            sum(p["omitted"] for p in series))


def _counts_off(api: Any, job_id: str, run: dict[str, Any], added: int, omitted: dict[str, int]) -> tuple[int, int]:
    """(lost, double) counts of the run's and the activity's counters against the truth."""
    got = [run["added"], sum(run["omitted_reasons"].values()), *_activity(api, job_id)]
    want = [added, sum(omitted.values()), added, 0, sum(omitted.values())]
    lost = sum(max(0, w - g) for g, w in zip(got, want, strict=True))
    double = sum(max(0, g - w) for g, w in zip(got, want, strict=True))
    if run["omitted_reasons"] != omitted:
        lost += 1
    return lost, double


def _profiles(deps: Any, account_id: str) -> dict[str, Any]:
    return {e: p for p in deps.profiles.iterate(account_id, page_size=1000) for e in p.identifiers.get("email", ())}


def _finished(api: Any, job_id: str, final: str) -> Callable[[], bool]:
    def done() -> bool:
        job = api.get(f"/jobs/{job_id}").json["data"]
        runs = api.get(f"/jobs/{job_id}/runs").json["data"]
        return bool(job["status"] == final and runs and runs[0]["status"] == "succeeded")

    return done


class Scenario:
    kind = ""
    final = "completed"

    def __init__(self, api: Any, deps: Any, tenant: Any, fakes: dict[str, Any], n: int) -> None:
        self.api, self.deps, self.tenant, self.fakes, self.n = api, deps, tenant, fakes, n
        self.job: dict[str, Any] = {}

    def start(self) -> None:
        raise NotImplementedError

    def check(self) -> Outcome:
        raise NotImplementedError

    def finished(self) -> Callable[[], bool]:
        return _finished(self.api, self.job["id"], self.final)


class S3Import(Scenario):
    kind = "s3_import"

    def start(self) -> None:
        from tests.api.helpers import create_auth, make_bucket

        self.bucket = make_bucket()
        lines = ["email,first_name,plan"] + [f"s{i}@x.io,S{i},pro" for i in range(self.n)]
        lines[5:5] = [",NoMail,free"] * 3
        boto3.client("s3", region_name="us-east-1").put_object(
            Bucket=self.bucket, Key="in/people.csv", Body=("\n".join(lines) + "\n").encode())
        r = self.api.post("/jobs", {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
                                    "authorization_id": create_auth(self.api)["id"], "label": "S3 people",
                                    "config": {"bucket": self.bucket, "prefix": "in/"}})
        assert r.status_code == 201, r.body
        self.job = r.json["data"]

    def check(self) -> Outcome:
        run = _run_of(self.api, self.job["id"])
        lost, double = _counts_off(self.api, self.job["id"], run, self.n, {"missing_identifier": 3})
        have = _profiles(self.deps, self.tenant.account_id)
        lost += sum(1 for i in range(self.n)
                    if (p := have.get(f"s{i}@x.io")) is None or p.fields.get("first_name") != f"S{i}")
        double += max(0, self.deps.profiles.count(self.tenant.account_id) - self.n)
        return Outcome(run["status"] == "succeeded", lost, double, "profile store: one profile per row")


class MailchimpImport(Scenario):
    kind = "mailchimp_import"
    final = "sleeping"

    def start(self) -> None:
        mc = self.fakes["mailchimp"]
        self.list_id = f"L{uuid.uuid4().hex[:6]}"
        mc.add_list(self.list_id, "Newsletter", [("FNAME", "First", "text")])
        for i in range(self.n):
            mc.add_member(self.list_id, f"m{i}@x.io", merge_fields={"FNAME": f"M{i}"},
                          last_changed="2026-01-01T00:00:00+00:00")
        auth = self.api.post("/authorizations", {"provider": "mailchimp", "method": "api_key", "label": "MC",
                                                 "credentials": {"api_key": mc.new_api_key()}})
        assert auth.status_code == 201, auth.body
        r = self.api.post("/jobs", {"provider": "mailchimp", "job_type": "import", "workflow": "mailchimp_import",
                                    "authorization_id": auth.json["data"]["id"], "label": "Newsletter in",
                                    "schedule": {"type": "interval", "every_minutes": 60},
                                    "config": {"list_id": self.list_id}})
        assert r.status_code == 201, r.body
        self.job = r.json["data"]

    def check(self) -> Outcome:
        run = _run_of(self.api, self.job["id"])
        lost, double = _counts_off(self.api, self.job["id"], run, self.n, {})
        have = _profiles(self.deps, self.tenant.account_id)
        lost += sum(1 for i in range(self.n)
                    if (p := have.get(f"m{i}@x.io")) is None or p.fields.get("first_name") != f"M{i}")
        double += max(0, self.deps.profiles.count(self.tenant.account_id) - self.n)
        return Outcome(run["status"] == "succeeded", lost, double, "profile store: one profile per member")


# One copy of a change as the destination got it: (its id at the destination, add | remove,
# profile id, its bytes). Two copies with one id are a resend, harmless if the bytes agree.
Copy = tuple[str, str, str, str]
ACTIONS = {"audience.entered": "add", "audience.exited": "remove"}


class _Export(Scenario):
    # The log path's stream and poller (OnTheLog sets it): the audience's backfill is
    # completed before the job is made, so its runs after the first read the change log.
    stack: Stack | None = None

    def seed_people(self) -> str:
        from tests.membership.test_backfill import drain as drain_backfill

        people = [{"email": f"e{i}@x.io", "first_name": f"E{i}", "plan": "pro"} for i in range(self.n)]
        people += [{"email": f"f{i}@x.io", "first_name": f"F{i}", "plan": "free"} for i in range(self.n // 4)]
        seed(self.deps, self.tenant.account_id, people)
        if self.stack is not None:
            self.stack.deliver()
        r = self.api.post("/audiences", {"name": "Pro", "filter": {
            "all": [{"field": "plan", "op": "equals", "value": "pro"}]}})
        assert r.status_code == 201, r.body
        if self.stack is not None:
            drain_backfill(self.stack, self.tenant.account_id)
        return str(r.json["data"]["id"])

    def received(self) -> list[Copy]:
        """Every copy of a change the destination holds so far."""
        raise NotImplementedError

    def members(self) -> dict[str, str]:
        """profile id -> email of the audience's members (the truth)."""
        return {p.id: e for e, p in _profiles(self.deps, self.tenant.account_id).items() if e.startswith("e")}


class S3Export(_Export):
    kind = "s3_export"

    def start(self) -> None:
        from tests.api.helpers import create_auth, make_bucket

        self.bucket = make_bucket()
        aud = self.seed_people()
        r = self.api.post("/jobs", {"provider": "amazon_s3", "job_type": "export", "workflow": "s3_audience_export",
                                    "authorization_id": create_auth(self.api)["id"], "label": "Pro to S3",
                                    **({"schedule": HOURLY} if self.stack else {}),
                                    "config": {"audience_id": aud, "bucket": self.bucket, "format": "jsonl",
                                               "fields": ["email", "first_name"]}})
        assert r.status_code == 201, r.body
        self.job = r.json["data"]

    def received(self) -> list[Copy]:
        # Parts have fixed names: a resent part overwrites, so S3 holds one copy of each row.
        s3 = boto3.client("s3", region_name="us-east-1")
        out: list[Copy] = []
        for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"switchyard/exports/{self.job['id']}/"):
            for o in page.get("Contents", []):
                if not o["Key"].endswith("manifest.json"):
                    body = s3.get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read().decode()
                    out += [(f"{o['Key']}#{i}", (row := json.loads(line))["_action"], row["_profile_id"], line)
                            for i, line in enumerate(body.splitlines())]
        return out

    def check(self) -> Outcome:
        run = _run_of(self.api, self.job["id"])
        lost, double = _counts_off(self.api, self.job["id"], run, self.n, {})
        s3 = boto3.client("s3", region_name="us-east-1")
        folder = f"switchyard/exports/{self.job['id']}/{run['id']}/"
        rows: list[dict[str, Any]] = []
        manifest: dict[str, Any] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder):
            for o in page.get("Contents", []):
                body = s3.get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read().decode()
                if o["Key"].endswith("manifest.json"):
                    manifest = json.loads(body)
                else:
                    rows += [json.loads(line) for line in body.splitlines()]
        seen = Counter((r["_action"], r["_profile_id"], r["email"]) for r in rows)
        want = Counter({("add", pid, e): 1 for pid, e in self.members().items()})
        lost += sum((want - seen).values()) + (0 if manifest.get("rows") == self.n else 1)
        double += sum((seen - want).values())
        return Outcome(run["status"] == "succeeded", lost, double,
                       "S3: each member in exactly one part (parts have fixed names: a resent part overwrites)")


class MailchimpExport(_Export):
    kind = "mailchimp_export"
    final = "sleeping"

    def start(self) -> None:
        mc = self.fakes["mailchimp"]
        self.list_id = f"X{uuid.uuid4().hex[:6]}"
        mc.add_list(self.list_id, "Customers", [("FNAME", "First", "text")])
        aud = self.seed_people()
        auth = self.api.post("/authorizations", {"provider": "mailchimp", "method": "api_key", "label": "MC",
                                                 "credentials": {"api_key": mc.new_api_key()}})
        assert auth.status_code == 201, auth.body
        r = self.api.post("/jobs", {"provider": "mailchimp", "job_type": "export",
                                    "workflow": "mailchimp_audience_export",
                                    "authorization_id": auth.json["data"]["id"], "label": "Pro to Mailchimp",
                                    "schedule": {"type": "interval", "every_minutes": 60},
                                    "config": {"audience_id": aud, "list_id": self.list_id,
                                               "fields": {"first_name": "FNAME"}}})
        assert r.status_code == 201, r.body
        self.job = r.json["data"]

    def check(self) -> Outcome:
        mc = self.fakes["mailchimp"]
        run = _run_of(self.api, self.job["id"])
        lost, double = _counts_off(self.api, self.job["id"], run, self.n, {})
        members = mc.lists[self.list_id].members.values()
        tagged = Counter(m.email_address for m in members if "switchyard" in m.tags)
        want = {f"e{i}@x.io" for i in range(self.n)}
        lost += len(want - set(tagged))
        lost += sum(1 for m in members if m.merge_fields.get("FNAME") != "E" + m.email_address[1:].split("@")[0])
        double += sum(c - 1 for c in tagged.values()) + len(set(tagged) - want) + max(0, len(members) - self.n)
        posts = [r for r in mc.requests if r.method == "POST" and r.path.endswith(f"/lists/{self.list_id}")]
        parts = -(-self.n // ROWS_PER_STEP)
        return Outcome(run["status"] == "succeeded", lost, double,
                       "Mailchimp: idempotent (a resent part upserts the same members by address)",
                       resent=max(0, len(posts) - parts))

    def received(self) -> list[Copy]:
        # The membership tag's changes (active: joined, inactive: left), one call per member
        # or a batch of them; its id is the member (the address's hash) and the state.
        from chalicelib.providers.mailchimp import subscriber_hash

        pid = {subscriber_hash(e): p.id for e, p in _profiles(self.deps, self.tenant.account_id).items()}
        ops: list[tuple[str, bytes]] = []
        for r in self.fakes["mailchimp"].requests:
            if r.method == "POST" and f"/lists/{self.list_id}/members/" in r.path:
                ops.append((r.path, r.body))
            elif r.method == "POST" and r.path.endswith("/batches"):
                ops += [(o["path"], o["body"].encode()) for o in json.loads(r.body)["operations"]]
        out: list[Copy] = []
        for path_, body in ops:
            member = path_.split("/")[-2]
            [tag] = json.loads(body)["tags"]
            out.append((f"{member}:{tag['status']}", "add" if tag["status"] == "active" else "remove",
                        pid[member], body.decode()))
        return out


class SqsExport(_Export):
    kind = "sqs_export"
    final = "sleeping"

    def start(self) -> None:
        from tests.api.helpers import access_key_id

        aud = self.seed_people()
        sqs = boto3.client("sqs", region_name="us-east-1")
        self.url = sqs.create_queue(QueueName=f"proof-crash-{uuid.uuid4().hex[:10]}")["QueueUrl"]
        auth = self.api.post("/authorizations", {
            "provider": "amazon_sqs", "method": "access_keys", "label": "queue keys",
            "credentials": {"access_key_id": access_key_id(), "secret_access_key": "s3cr3t-proof-crash",
                            "queue_url": self.url}})
        assert auth.status_code == 201, auth.body
        r = self.api.post("/jobs", {"provider": "amazon_sqs", "job_type": "export", "workflow": "sqs_audience_export",
                                    "authorization_id": auth.json["data"]["id"], "label": "Pro to SQS",
                                    "schedule": {"type": "interval", "every_minutes": 60},
                                    "config": {"audience_id": aud, "queue_url": self.url,
                                               "fields": ["email", "first_name"]}})
        assert r.status_code == 201, r.body
        self.job = r.json["data"]

    def check(self) -> Outcome:
        run = _run_of(self.api, self.job["id"])
        lost, double = _counts_off(self.api, self.job["id"], run, self.n, {})
        sqs = boto3.client("sqs", region_name="us-east-1")
        bodies: list[str] = []
        while msgs := sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", []):
            for m in msgs:
                bodies.append(m["Body"])
                sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
        sqs.delete_queue(QueueUrl=self.url)
        by_id: dict[str, set[str]] = {}
        for b in bodies:
            by_id.setdefault(json.loads(b)["event_id"], set()).add(b)
        # A duplicate carries the same event id and the same bytes: consumers drop it by id.
        double += sum(len(v) - 1 for v in by_id.values())
        events = [json.loads(next(iter(v))) for v in by_id.values()]
        seen = Counter((e["type"], e["profile_id"], e["fields"]["email"]) for e in events)
        want = Counter({("audience.entered", pid, e): 1 for pid, e in self.members().items()})
        lost += sum((want - seen).values())
        double += sum((seen - want).values())
        return Outcome(run["status"] == "succeeded", lost, double,
                       "SQS (standard): at least once; once per event_id (a resent part repeats its ids)",
                       resent=len(bodies) - len(by_id))

    def received(self) -> list[Copy]:
        sqs = boto3.client("sqs", region_name="us-east-1")
        self.got: list[Copy] = getattr(self, "got", [])
        while msgs := sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", []):
            for m in msgs:
                e = json.loads(m["Body"])
                self.got.append((e["event_id"], ACTIONS[e["type"]], e["profile_id"], m["Body"]))
                sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
        return list(self.got)


class WebhookExport(_Export):
    kind = "webhook_export"
    final = "sleeping"
    SIGNING = "whsec-proof-crash-5b0e7c1d"

    def start(self) -> None:
        from tests.http_receiver import Receiver
        from tests.webhook_inbox import Inbox

        aud = self.seed_people()
        self.box = Inbox(secret=self.SIGNING)
        self.receiver = Receiver(handler=self.box)
        self.receiver.start()
        auth = self.api.post("/authorizations", {
            "provider": "webhook", "method": "hmac", "label": "Hook",
            "credentials": {"url": self.receiver.url("/hooks/switchyard"), "signing_secret": self.SIGNING}})
        assert auth.status_code == 201, auth.body
        r = self.api.post("/jobs", {"provider": "webhook", "job_type": "export", "workflow": "webhook_audience_export",
                                    "authorization_id": auth.json["data"]["id"], "label": "Pro to webhook",
                                    "schedule": {"type": "interval", "every_minutes": 60},
                                    "config": {"audience_id": aud, "fields": ["email", "first_name"],
                                               "batch_size": 5}})
        assert r.status_code == 201, r.body
        self.job = r.json["data"]

    def check(self) -> Outcome:
        self.receiver.stop()
        run = _run_of(self.api, self.job["id"])
        lost, double = _counts_off(self.api, self.job["id"], run, self.n, {})
        # The receiver keeps each batch once by its id (a repeat must be byte-identical).
        seen = Counter((e["type"], e["profile_id"], e["fields"]["email"]) for e in self.box.events)
        want = Counter({("audience.entered", pid, e): 1 for pid, e in self.members().items()})
        lost += sum((want - seen).values()) + self.box.refused
        double += sum((seen - want).values())
        return Outcome(run["status"] == "succeeded", lost, double,
                       "webhook: at least once; once per batch id (a resent batch repeats id and bytes)",
                       resent=len(self.box.repeats))

    def received(self) -> list[Copy]:
        # The inbox keeps a batch once (a repeat must be byte-identical); a repeat's events
        # are copies too.
        assert self.box.refused == 0, "the receiver refused a batch"
        batches = list(self.box.batches.values()) + [self.box.batches[b] for b in self.box.repeats]
        return [(e["event_id"], ACTIONS[e["type"]], e["profile_id"], json.dumps(e, sort_keys=True))
                for body in batches for e in json.loads(body)["events"] if e["type"] in ACTIONS]


class KinesisExport(_Export):
    """Kinesis keeps every record it accepted: a resent part shows twice, with the same
    partition key and bytes (event id). On the log path only."""

    kind = "kinesis_export"
    final = "sleeping"

    def start(self) -> None:
        from tests.api.helpers import access_key_id

        aud = self.seed_people()
        self.stream = f"proof-crash-{uuid.uuid4().hex[:10]}"
        boto3.client("kinesis", region_name="us-east-1").create_stream(StreamName=self.stream, ShardCount=1)
        auth = self.api.post("/authorizations", {
            "provider": "amazon_kinesis", "method": "access_keys", "label": "stream keys",
            "credentials": {"access_key_id": access_key_id(), "secret_access_key": "s3cr3t-proof-crash",
                            "stream_name": self.stream}})
        assert auth.status_code == 201, auth.body
        r = self.api.post("/jobs", {"provider": "amazon_kinesis", "job_type": "export",
                                    "workflow": "kinesis_audience_export", "authorization_id": auth.json["data"]["id"],
                                    "label": "Pro to Kinesis", "schedule": HOURLY,
                                    "config": {"audience_id": aud, "stream_name": self.stream,
                                               "fields": ["email", "first_name"]}})
        assert r.status_code == 201, r.body
        self.job = r.json["data"]

    def received(self) -> list[Copy]:
        from tests.membership.test_realtime_kinesis_crash import stream_records

        out: list[Copy] = []
        for key, data in stream_records(self.stream):
            e = json.loads(data)
            assert key == e["profile_id"], (key, e)  # keyed by profile: its changes stay in order
            out.append((e["event_id"], ACTIONS[e["type"]], e["profile_id"], data.decode()))
        return out


class Enrichment(Scenario):
    kind = "enrichment"

    def start(self) -> None:
        fc = self.fakes["fullcontact"]
        self.known = self.n * 3 // 4
        people = [{"email": f"k{i}@x.io", "plan": "pro"} for i in range(self.known)]
        people += [{"email": f"u{i}@x.io", "plan": "pro"} for i in range(self.n - self.known)]
        for i in range(self.known):
            fc.know(f"k{i}@x.io")
        seed(self.deps, self.tenant.account_id, people)
        auth = self.api.post("/authorizations", {"provider": "fullcontact", "method": "api_key",
                                                 "label": "FullContact", "credentials": {"api_key": FC_KEY}})
        assert auth.status_code == 201, auth.body
        r = self.api.post("/jobs", {"provider": "fullcontact", "job_type": "enrichment",
                                    "workflow": "fullcontact_person_enrich",
                                    "authorization_id": auth.json["data"]["id"], "label": "Enrich", "config": {}})
        assert r.status_code == 201, r.body
        self.job = r.json["data"]

    def check(self) -> Outcome:
        from chalicelib.domain import enrichment as E

        run = _run_of(self.api, self.job["id"])
        unknown = self.n - self.known
        lost, double = _counts_off(self.api, self.job["id"], run, self.known, {"unmatched": unknown} if unknown else {})
        marker = E.marker_field(self.job["id"])
        have = _profiles(self.deps, self.tenant.account_id)
        for e, p in have.items():
            if e.startswith("k"):
                # enriched exactly once: one merge on top of the seed (version 2)
                lost += 0 if (marker in p.fields and p.fields.get("full_name")) else 1
                double += max(0, p.version - 2)
            else:
                double += max(0, p.version - 1)
        lost += self.n - len(have)
        return Outcome(run["status"] == "succeeded", lost, double,
                       "profile store: each known profile merged exactly once (version 2)")


SCENARIOS: dict[str, type[Scenario]] = {s.kind: s for s in (S3Import, MailchimpImport, S3Export, MailchimpExport,
                                                             SqsExport, WebhookExport, Enrichment, KinesisExport)}


class OnTheLog(Scenario):
    """An export scenario on the change-log path. start(): the audience backfilled, a first
    run (clean) that leaves a cursor, then profiles join, leave and change a field the
    audience ignores, and a second run asked for: the run under test. check(): that run sent
    each change once (or its copies share one id and bytes), read the change log and not
    every profile, left the cursor at the log's head as a clean run does; a third run finds
    nothing to send."""

    def __init__(self, inner: _Export, streams: Stack, runner: Runner, joiners: int) -> None:
        super().__init__(inner.api, inner.deps, inner.tenant, inner.fakes, inner.n)
        inner.stack = streams
        self.inner, self.stack, self.runner, self.joiners = inner, streams, runner, joiners
        self.kind = inner.kind
        self.queries = 0  # Query requests on the profiles table: reading every profile takes them

    def ran(self, count: int) -> Callable[[], bool]:
        def done() -> bool:
            runs = self.api.get(f"/jobs/{self.job['id']}/runs").json["data"]
            return len(runs) == count and runs[0]["status"] == "succeeded"

        return done

    def run_again(self) -> None:
        r = self.api.post(f"/jobs/{self.job['id']}/run", {})
        assert r.status_code in (200, 202), r.body

    def cursor(self) -> dict[str, Any]:
        job = self.deps.jobs.get(self.tenant.account_id, self.job["id"], consistent=True)
        return dict(job.state.get("changes") or {})

    def step0(self, run_id: str) -> dict[str, Any]:
        lines = self.api.get(f"/jobs/{self.job['id']}/logs").json["data"]
        [line] = [ln for ln in lines if ln.get("run_id") == run_id and ln["message"].startswith("step 0")]
        return dict(line.get("context") or {})

    def count_query(self, params: Any = None, **_: Any) -> None:
        if params.get("TableName") == self.deps.profiles_table.name:
            self.queries += 1

    def start(self) -> None:
        from chalicelib.store import aws

        inner, acct, n = self.inner, self.tenant.account_id, self.n
        inner.start()
        self.job = inner.job
        # (under another name: the injector draws its kill points over the calls a delivery of
        # the run under test makes, and the first run's step 0 reads every profile)
        self.runner.run(f"{self.kind}, first run", 0, self.ran(1))
        assert self.cursor(), f"{self.kind}: the first run left no change-log cursor"
        self.before = inner.received()
        # Between two runs: joiners (new profiles, and f0, free until now), 2 members leave,
        # 2 change a field the audience ignores
        assert n >= 4
        seed(self.deps, acct, [{"email": f"j{i}@x.io", "first_name": f"J{i}", "plan": "pro"}
                               for i in range(self.joiners - 1)]
             + [{"email": "f0@x.io", "first_name": "F0", "plan": "pro"}]
             + [{"email": f"e{i}@x.io", "first_name": f"E{i}", "plan": "free"} for i in (0, 1)]
             + [{"email": f"e{i}@x.io", "first_name": f"E{i}", "plan": "pro", "city": "Lyon"} for i in (2, 3)])
        self.stack.deliver()
        ids = {e: p.id for e, p in _profiles(self.deps, acct).items()}
        self.want = Counter([("add", ids[e]) for e in ids if e[0] == "j" or e == "f0@x.io"]
                            + [("remove", ids[f"e{i}@x.io"]) for i in (0, 1)])
        assert sum(self.want.values()) == self.joiners + 2
        aws.session().events.register("provide-client-params.dynamodb.Query", self.count_query)
        self.run_again()

    def finished(self) -> Callable[[], bool]:
        return self.ran(2)

    def check(self) -> Outcome:
        from chalicelib.store import aws

        aws.session().events.unregister("provide-client-params.dynamodb.Query", self.count_query)
        runs = self.api.get(f"/jobs/{self.job['id']}/runs").json["data"]
        run = runs[0]
        lost = double = 0
        # the run sent each change once: copies of one id carry the same bytes
        copies = list((Counter(self.inner.received()) - Counter(self.before)).elements())
        by_id: dict[str, set[tuple[str, str, str]]] = {}
        for id_, action, pid, payload in copies:
            by_id.setdefault(id_, set()).add((action, pid, payload))
        double += sum(len(v) - 1 for v in by_id.values())
        seen = Counter((a, p) for v in by_id.values() for a, p, _ in list(v)[:1])
        lost += sum((self.want - seen).values())
        double += sum((seen - self.want).values())
        adds = sum(1 for a, _ in self.want if a == "add")
        removes = len(self.want) - adds
        got = (run["added"], run["removed"], sum(run["omitted_reasons"].values()))
        lost += sum(max(0, w - g) for g, w in zip(got, (adds, removes, 0), strict=True))
        double += sum(max(0, g - w) for g, w in zip(got, (adds, removes, 0), strict=True))
        # (the positive control) it read the change log and the changed profiles by key, no page
        ctx = self.step0(run["id"])
        assert (ctx["full"], ctx["changes_read"], ctx["profiles_read"], self.queries) == (
            False, len(self.want), len(self.want), 0), (self.kind, ctx, self.queries)
        # the cursor stands where a clean run leaves it: at the log's head, nobody waiting
        head = self.deps.audience_members.head(self.tenant.account_id, self.job["config"]["audience_id"])
        lost += 0 if self.cursor() == {"audience_id": self.job["config"]["audience_id"], "n": head,
                                       "pending": []} else 1
        # AND the next run has nothing to send
        after = self.inner.received()
        self.run_again()
        self.runner.run(f"{self.kind}, third run", 0, self.ran(3))
        third = self.api.get(f"/jobs/{self.job['id']}/runs").json["data"][0]
        double += len(list((Counter(self.inner.received()) - Counter(after)).elements()))
        double += third["added"] + third["removed"]
        assert self.step0(third["id"])["changes_read"] == 0, self.kind
        return Outcome(run["status"] == "succeeded", lost, double, HOW_SEEN[self.kind],
                       resent=len(copies) - len(by_id))


HOW_SEEN = {
    "s3_export": "S3: each change in exactly one part (a resent part overwrites its fixed name)",
    "mailchimp_export": "Mailchimp: each member's tag change once per member and state (resends idempotent)",
    "kinesis_export": "Kinesis: at least once; once per event id, a copy with the same key and bytes",
    "sqs_export": "SQS (standard): at least once; once per event_id",
    "webhook_export": "webhook: at least once; once per batch id (a resent batch repeats id and bytes)",
}


# -- the seed ------------------------------------------------------------------------------------


def _draws(seed: int) -> tuple[random.Random, Injector]:
    """The test's random source and its injector's, both from the seed."""
    rng = random.Random(seed)
    return rng, Injector(random.Random(rng.random()))


def _kill_points(seed: int) -> list[tuple[str, str, str]]:
    """Where the injector kills, over 30 deliveries of 6 calls each."""
    rng, injector = _draws(seed)
    for _ in range(30):
        with injector.delivery("s3_import", kill=rng.random() < 0.8):
            try:
                for c in range(6):
                    injector.hit(f"dynamodb.Call{c}", "before")
                    injector.hit(f"dynamodb.Call{c}", "after")
                injector.ack()
            except Killed:
                pass
    return [(p.kind, p.call, p.phase) for p in injector.points]


def test_the_same_seed_kills_at_the_same_points() -> None:
    first = _kill_points(101)
    # the same seed: the same deliveries killed, at the same call and phase
    assert len(first) > 10 and _kill_points(101) == first
    # and the seed matters (else replaying it would prove nothing)
    assert _kill_points(102) != first


# -- the runs ------------------------------------------------------------------------------------


# The full path with every fixed seed; the change-log path (slower: a backfill and three runs
# a scenario) with the first, and each with one drawn fresh.
# A path whose kinds SWITCHYARD_CRASH_KINDS leaves out is not collected (never a skip).
PATH_SEEDS = [pytest.param(path, p.values[0], id=f"{path}-{p.id}")
              for path, fixed in (("full", FIXED_SEEDS), ("log", FIXED_SEEDS[:1]))
              if not ONLY or ONLY & set(LOG_KINDS if path == "log" else ALL_KINDS)
              for p in params(*fixed)]


@pytest.mark.parametrize(("path", "seed"), PATH_SEEDS, indirect=True)
def test_runs_killed_at_random_points_lose_nothing_and_count_nothing_twice(
        path: str, deps: Any, new_tenant: Any, api_for: Any, fakes: Any, clock: Clock,
        request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    from chalicelib.providers import http as H
    from chalicelib.providers.registry import Registry
    from chalicelib.providers.webhook import WebhookProvider

    hint = replay_hint(seed)
    # the webhook provider with quick retries (tests/engine/test_webhook_export.py does the same)
    monkeypatch.setattr(deps, "registry", Registry(extra={"webhook": WebhookProvider(
        policy=H.RetryPolicy(max_attempts=4, backoff_factor=0.01, backoff_jitter=0.01),
        check_policy=H.RetryPolicy(max_attempts=2, backoff_factor=0.01))}))
    rng, injector = _draws(seed)
    _purge("switchyard-test-runs")
    _purge("switchyard-test-runs-dlq")
    # On the log path: exports only, each a run after a first one, reading the change log
    on_log = path == "log"
    kinds = tuple(k for k in (LOG_KINDS if on_log else ALL_KINDS) if not ONLY or k in ONLY)
    assert kinds, f"SWITCHYARD_CRASH_KINDS names no kind of the {path} path"
    per_kind: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    results: dict[str, list[Outcome]] = {k: [] for k in kinds}
    # each kind its share of the kill points, the remainder to the first kinds
    quotas = {k: RUN_KILLS // len(kinds) + (i < RUN_KILLS % len(kinds)) for i, k in enumerate(kinds)}
    started = time.monotonic()
    with injector.installed(monkeypatch):
        runner = Runner(deps, injector, clock, random.Random(rng.random()), hint)
        rounds = 0
        while sum(per_kind.values()) < RUN_KILLS:
            rounds += 1
            assert rounds <= 6, f"the kill points were not reached: {dict(per_kind)} ({hint})"
            for kind in kinds:
                # each kind its share; a run that finished before its share was reached leaves
                # the rest to another run of that kind in the next round
                left = quotas[kind] - per_kind[kind]
                if left <= 0:
                    continue
                # a tenant of its own per run: the truth is that run's alone
                t = new_tenant(f"Crash{kind.title().replace('_', '')}{rounds}")
                n = ROWS_PER_STEP * (left + 1) - 3
                scenario = SCENARIOS[kind](api_for(t.admin_token), deps, t, fakes, n=6 if on_log else n)
                if on_log:
                    assert isinstance(scenario, _Export)
                    # the second run's changes: the joiners and 2 leavers fill left + 1 parts
                    scenario = OnTheLog(scenario, request.getfixturevalue("stack"), runner, joiners=n + 1)
                t0 = time.monotonic()
                scenario.start()
                t1 = time.monotonic()
                per_kind[kind] += runner.run(kind, left, scenario.finished())
                t2 = time.monotonic()
                results[kind].append(scenario.check())
                seconds[kind] += time.monotonic() - t0
                print(f"{kind}: start {t1 - t0:.1f} s, run {t2 - t1:.1f} s, check {time.monotonic() - t2:.1f} s")
    elapsed = time.monotonic() - started
    # the DLQ got nothing: no message needed more receives than the queue allows
    sqs, dlq = _queue("switchyard-test-runs-dlq")
    assert not sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages"), hint

    outcomes = [o for os_ in results.values() for o in os_]
    lost = sum(o.lost for o in outcomes)
    double = sum(o.double for o in outcomes)
    runs_finished = sum(1 for o in outcomes if o.finished)
    phases = Counter(p.phase for p in injector.points)
    services = Counter(p.call.split(".")[0] for p in injector.points)
    table = "| run kind | runs | kill points | lost | double-counted | destination saw each member | resent (harmless) |\n"
    table += "|---|---|---|---|---|---|---|\n"
    for kind in kinds:
        os_ = results[kind]
        table += (f"| {kind} | {len(os_)} | {per_kind[kind]} | {sum(o.lost for o in os_)} | "
                  f"{sum(o.double for o in os_)} | {os_[0].receiver if os_ else ''} | "
                  f"{sum(o.resent for o in os_)} |\n")
    record("crash_redelivery_log_runs" if on_log else "crash_redelivery_runs",
           "Crash and redelivery: export runs on the change log" if on_log else "Crash and redelivery: runs", {
        "kill points": sum(per_kind.values()),
        "runs finished": f"{runs_finished} of {len(outcomes)}",
        "profiles lost": lost, "double counts": double,
        "seed": seed,
        **{f"kill points, {k}": per_kind[k] for k in kinds},
        "kill points before a call / after a call / before the ack":
            f"{phases['before']} / {phases['after']} / {phases['ack']}",
        "kill points by service": ", ".join(f"{k} {v}" for k, v in sorted(services.items())),
        "distinct calls killed at": len({(p.call, p.phase) for p in injector.points}),
        "deliveries": runner.tally.deliveries, "redeliveries": runner.tally.redeliveries,
        "redeliveries waiting out a dead delivery's lease": runner.tally.busy,
        "handler errors after a kill (each a finding)": len(runner.tally.errors),
        "seconds": round(elapsed, 1),
    }, table=table, summary=(
        "The runner killed at random AWS calls and provider HTTP calls (before the call or after it took "
        "effect) and between a finished handler and the message's deletion, across import, export and "
        "enrichment runs; each killed message redelivered until the run finished. Truth from the inputs."
        if not on_log else
        "The same kill points, in export runs that read the change log: the audience backfilled, a first "
        "run leaving a cursor, profiles joining and leaving, then the run under test killed and redelivered; "
        "each change reached the destination once (or with one id), the cursor ended at the log's head and "
        "a third run sent nothing."),
        order=42 if on_log else 40)
    print(table)
    assert sum(per_kind.values()) >= RUN_KILLS, hint
    assert runner.tally.errors == [], (hint, runner.tally.errors)
    assert runs_finished == len(outcomes), (hint, [o for o in outcomes if not o.finished])
    assert (lost, double) == (0, 0), (hint, {k: [(o.lost, o.double) for o in v] for k, v in results.items()})


# -- the health sweep ------------------------------------------------------------------------------


class KillableProbe:
    """The health tests' Probe (tests/api/test_health.py), its check being a provider call
    the runner can die in (before it was asked, or after it answered)."""

    def __init__(self, injector: Injector) -> None:
        from tests.api.test_health import Probe

        self.inner = Probe()
        self.spec = self.inner.spec
        self.inj = injector

    def check(self, method: str, credentials: Any, resources: dict[str, str], counter: Any = None) -> Any:
        self.inj.hit("provider.test_probe.check", "before")
        result = self.inner.check(method, credentials, resources, counter)
        self.inj.hit("provider.test_probe.check", "after")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _alert_events(account_id: str) -> list[dict[str, Any]]:
    sqs, url = _queue("switchyard-test-alerts")
    out = []
    while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for m in msgs:
            event = json.loads(m["Body"])
            if event.get("detail", {}).get("account_id") == account_id:
                out.append(event)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return out


@seeded(*FIXED_SEEDS)
def test_the_health_sweep_killed_at_random_points_checks_everyone_and_records_each_change_once(
        deps: Any, new_tenant: Any, api_for: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch,
        seed: int) -> None:
    from chalicelib.domain.models import HealthStatus
    from chalicelib.providers.registry import Registry
    from chalicelib.services import health
    from chalicelib.store.dynamo import now_iso

    hint = replay_hint(seed)
    rng, injector = _draws(seed)
    probe = KillableProbe(injector)
    monkeypatch.setattr(deps, "registry", Registry(extra={"test_probe": probe}))
    t_setup = time.monotonic()
    tenant = new_tenant("CrashSweep")
    api = api_for(tenant.admin_token)
    n = size(12, 120)
    # GIVEN authorizations: a third whose key gets revoked, a third that was unhealthy and
    # works again, a third that stays fine
    keys = {f"key-{g}-{i}-{uuid.uuid4().hex[:8]}": g for i in range(n) for g in ("revoked", "recovers", "fine")
            if i % 3 == ("revoked", "recovers", "fine").index(g)}
    ids: dict[str, str] = {}
    for key in keys:
        r = api.post("/authorizations", {"provider": "test_probe", "method": "api_key", "label": key[:20],
                                         "credentials": {"api_key": key}})
        assert r.status_code == 201, r.body
        ids[key] = r.json["data"]["id"]
    recovering = [k for k, g in keys.items() if g == "recovers"]
    probe.inner.modes.update({k: "bad" for k in recovering})
    health.check_many(deps, [(tenant.account_id, ids[k]) for k in recovering], timeout=5)
    probe.inner.modes.clear()
    probe.inner.modes.update({k: "bad" for k, g in keys.items() if g == "revoked"})
    before = {k: len(api.get(f"/authorizations/{ids[k]}/health").json["data"]) for k in keys}
    for name in ("switchyard-test-health", "switchyard-test-health-dlq"):
        _purge(name)
    _alert_events(tenant.account_id)
    time.sleep(1.1)  # checked_at has whole seconds: every check of the sweep is after `start`
    start = now_iso()
    monkeypatch.setattr(deps, "health_check_timeout", 5.0)
    print(f"sweep set-up {time.monotonic() - t_setup:.1f} s")

    tally = Tally()
    kills: Counter[str] = Counter()
    started = time.monotonic()
    sqs, url = _queue("switchyard-test-health")
    per_message: Counter[str] = Counter()
    with injector.installed(monkeypatch):
        sweeps = 0
        while sweeps < 8:  # another day's sweep when the kill points were not reached yet
            if sweeps and sum(kills.values()) >= SWEEP_KILLS:
                break
            sweeps += 1
            # WHEN the daily sweep is killed and retried (the schedule's invocation is retried twice)
            for attempt in range(3):
                with injector.delivery("sweep", kill=attempt < 2 and rng.random() < 0.6):
                    try:
                        health.sweep(deps)
                        injector.ack()
                    except Killed:
                        pass
                if not injector.dead:
                    break
                kills["sweep"] += 1
                tally.redeliveries += 1
            assert not injector.dead, f"the sweep never finished ({hint})"
            # AND the health handler is killed at random points, its batch redelivered each time
            for _ in range(500):
                msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=rng.randint(2, 10),
                                           VisibilityTimeout=120).get("Messages", [])
                if not msgs:
                    break
                forget_moto_models()
                targets = [(json.loads(m["Body"])["account_id"], json.loads(m["Body"])["authorization_id"])
                           for m in msgs]
                kill = (sum(kills.values()) < SWEEP_KILLS and rng.random() < 0.8
                        and all(per_message[m["MessageId"]] < HEALTH_CAP for m in msgs))
                tally.deliveries += 1
                # about 3 calls an authorization (secret, check, write) + the batch read + the ack
                with injector.delivery("health_check", kill, horizon=2 + 3 * len(msgs)):
                    try:
                        health.check_many(deps, targets)
                        injector.ack()
                    except Killed:
                        pass
                if injector.dead:
                    kills["health_check"] += 1
                    tally.redeliveries += 1
                    for m in msgs:
                        per_message[m["MessageId"]] += 1
                        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"],
                                                      VisibilityTimeout=0)
                else:
                    sqs.delete_message_batch(QueueUrl=url, Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
    elapsed = time.monotonic() - started

    # THEN every authorization was checked, and holds the status its key deserves
    dlq, dlq_url = _queue("switchyard-test-health-dlq")
    assert not dlq.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10).get("Messages"), hint
    unchecked = wrong = 0
    for key, group in keys.items():
        auth = deps.auths.get(tenant.account_id, ids[key], consistent=True)
        unchecked += 0 if (auth.health.checked_at or "") >= start else 1
        want = HealthStatus.UNHEALTHY if group == "revoked" else HealthStatus.HEALTHY
        wrong += 0 if auth.health.status == want else 1
    # AND each change of status was recorded once
    transitions = {k: len(api.get(f"/authorizations/{ids[k]}/health").json["data"]) - before[k] for k in keys}
    want_transitions = {k: 0 if g == "fine" else 1 for k, g in keys.items()}
    missing_transitions = sum(max(0, want_transitions[k] - transitions[k]) for k in keys)
    double_transitions = sum(max(0, transitions[k] - want_transitions[k]) for k in keys)
    # AND alerted: at least once per change, never for no change; a repeat is the same
    # transition (same transition id), which consumers drop
    events = _alert_events(tenant.account_id)
    by_auth: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_auth.setdefault(e["detail"]["authorization_id"], []).append(e)
    kind = {"revoked": "Authorization Unhealthy", "recovers": "Authorization Healthy Again"}
    lost_alerts = sum(1 for k, g in keys.items() if g != "fine" and not by_auth.get(ids[k]))
    wrong_alerts = sum(1 for k, g in keys.items() for e in by_auth.get(ids[k], [])
                       if g == "fine" or e["detail-type"] != kind[g])
    distinct = {(e["detail"]["authorization_id"], e["detail"].get("transition_id")) for e in events}
    repeated_alerts = len(events) - len(distinct)
    double_alerts = sum(1 for a, es in by_auth.items()
                        if len({e["detail"].get("transition_id") for e in es}) > 1)
    phases = Counter(p.phase for p in injector.points)
    record("crash_redelivery_sweep", "Crash and redelivery: the health sweep", {
        "kill points": sum(kills.values()),
        "authorizations checked": f"{len(keys) - unchecked} of {len(keys)}",
        "transitions recorded": f"{sum(transitions.values())} of {sum(want_transitions.values())} (twice: "
                                f"{double_transitions})",
        "alerts lost": lost_alerts,
        "seed": seed,
        "authorizations": len(keys),
        "daily sweeps": sweeps,
        "kill points, sweep fan-out": kills["sweep"],
        "kill points, health handler": kills["health_check"],
        "kill points before a call / after a call / before the ack":
            f"{phases['before']} / {phases['after']} / {phases['ack']}",
        "redeliveries": tally.redeliveries,
        "authorizations not checked": unchecked,
        "wrong statuses": wrong,
        "transitions expected": sum(want_transitions.values()),
        "transitions missing": missing_transitions, "transitions recorded twice": double_transitions,
        "alerts of the wrong kind": wrong_alerts,
        "alerts for a second transition that did not happen": double_alerts,
        "alerts repeated (same transition id)": repeated_alerts,
        "kills between a recorded transition and its alert": sum(
            1 for p in injector.points if (p.call, p.phase) in (("dynamodb.TransactWriteItems", "after"),
                                                               ("eventbridge.PutEvents", "before"))),
        "seconds": round(elapsed, 1),
    }, summary=("The sweep's fan-out and the health handler killed at random AWS calls and provider checks, "
                "each killed invocation retried / batch redelivered."), order=41)
    assert sum(kills.values()) >= SWEEP_KILLS, (hint, kills)
    assert (unchecked, wrong) == (0, 0), hint
    assert (missing_transitions, double_transitions) == (0, 0), hint
    assert (lost_alerts, wrong_alerts, double_alerts) == (0, 0, 0), (hint, by_auth)
