"""One fake per registered (provider, workflow), for the conformance suite's "each workflow
runs against its fake and is resumable" test (test_provider_conformance.py).

A fake sets up, for one tenant, what a run needs (the provider's resources in its fake or
in moto, profiles and an audience in the store, an authorization and a job created through
the API), and reads back what the run left behind, normalized so that two tenants' runs of
the same data compare equal (ids of accounts, jobs, runs and profiles left out):

* destinations that keep state (a Mailchimp list, S3 objects, a GTM workspace, the
  profile store for imports and enrichments): that state;
* at-least-once event destinations (Kinesis, a standard SQS queue, webhooks): the events,
  duplicates dropped by `event_id` (or batch id) as docs/providers/*.md tell consumers to —
  after checking that every repeat is the very same event.

A provider added to the registry without an entry in WORKFLOW_FAKES fails the suite.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from tests.api.helpers import CANARY, access_key_id, create_auth, make_bucket
from tests.engine.fresh import audience, seed

SIGNING = "whsec-conformance-5e1a9c07d3b2"
FC_KEY = "fc-conformance-7b2e41d9a0"
ENDPOINT_TOKEN = "tok-conformance-31c8"


def profiles_of(deps: Any, account_id: str, rename: Callable[[str], str] = lambda k: k,
                drop_values: frozenset[str] = frozenset()) -> list[str]:
    """The tenant's profiles as sorted JSON texts: identifiers, fields (renamed; the values
    of `drop_values` fields left out) and version (a double write would show)."""
    out = []
    for p in deps.profiles.iterate(account_id, page_size=1000):
        fields = {rename(k): (None if rename(k) in drop_values else v) for k, v in p.fields.items()}
        out.append(json.dumps({"identifiers": p.identifiers, "fields": fields, "version": p.version},
                              sort_keys=True))
    return sorted(out)


def unique_events(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """(dedupe key, event) pairs -> the distinct events as sorted JSON texts without ids.
    A key seen twice must carry the very same event (a repeat, not another event)."""
    seen: dict[str, dict[str, Any]] = {}
    for key, event in events:
        if key in seen:
            assert seen[key] == event, f"{key} was sent with two different contents"
        seen[key] = event
    return sorted(json.dumps({"type": e["type"], "fields": e["fields"]}, sort_keys=True) for e in seen.values())


def people(n: int, plan: str = "pro", prefix: str = "p") -> list[dict[str, Any]]:
    return [{"email": f"{prefix}{i}@example.com", "first_name": f"P{i}", "plan": plan} for i in range(n)]


def job(api: Any, provider: str, job_type: str, workflow: str, auth_id: str, config: dict[str, Any]) -> str:
    r = api.post("/jobs", {"provider": provider, "job_type": job_type, "workflow": workflow,
                           "authorization_id": auth_id, "label": workflow, "config": config})
    assert r.status_code == 201, r.body
    return str(r.json["data"]["id"])


def auth(api: Any, provider: str, method: str, credentials: dict[str, Any]) -> str:
    r = api.post("/authorizations", {"provider": provider, "method": method, "label": provider,
                                     "credentials": credentials})
    assert r.status_code == 201, r.body
    assert r.json["data"]["health"]["status"] in ("healthy", "unknown"), r.json["data"]["health"]
    return str(r.json["data"]["id"])


class WorkflowFake:
    """Base: `start` makes one tenant's data, authorization and job (started at once) and
    returns the job id; `effect` reads back what its run left."""

    fixtures: tuple[str, ...] = ()

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.env = {name: request.getfixturevalue(name) for name in self.fixtures}

    def start(self, api: Any, deps: Any, tenant: Any) -> str:
        raise NotImplementedError

    def effect(self, deps: Any, tenant: Any, job_id: str) -> list[str]:
        raise NotImplementedError


class ExportFake(WorkflowFake):
    """Exports: 5 pro members (one without an email: omitted) and a free profile."""

    def seed_audience(self, api: Any, deps: Any, tenant: Any) -> str:
        seed(deps, tenant.account_id, people(4) + people(1, "free", "f"))
        deps.profiles.upsert_batch(tenant.account_id, [_no_email()], step_tag=f"seed#{secrets.token_hex(3)}")
        return audience(api)


def _no_email() -> Any:
    from chalicelib.domain.profiles import ProfileRecord

    return ProfileRecord(identifiers={"user_id": "no-mail"}, fields={"plan": "pro"}, ref="seed")


# -- Amazon S3 (moto) ------------------------------------------------------------------------------


class S3Import(WorkflowFake):
    def start(self, api: Any, deps: Any, tenant: Any) -> str:
        self.bucket = make_bucket()
        rows = ["email,first_name"] + [f"s{i}@example.com,S{i}" for i in range(5)] + [",nobody"]
        boto3.client("s3", region_name="us-east-1").put_object(
            Bucket=self.bucket, Key="in/people.csv", Body=("\n".join(rows) + "\n").encode())
        return job(api, "amazon_s3", "import", "s3_file_import", create_auth(api)["id"],
                   {"bucket": self.bucket, "prefix": "in/"})

    def effect(self, deps: Any, tenant: Any, job_id: str) -> list[str]:
        return profiles_of(deps, tenant.account_id)


class S3Export(ExportFake):
    def start(self, api: Any, deps: Any, tenant: Any) -> str:
        self.bucket = make_bucket()
        return job(api, "amazon_s3", "export", "s3_audience_export", create_auth(api)["id"],
                   {"audience_id": self.seed_audience(api, deps, tenant), "bucket": self.bucket,
                    "fields": ["email", "first_name"]})

    def effect(self, deps: Any, tenant: Any, job_id: str) -> list[str]:
        s3 = boto3.client("s3", region_name="us-east-1")
        out = []
        for obj in s3.list_objects_v2(Bucket=self.bucket).get("Contents", []):
            body = s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read().decode()
            if obj["Key"].endswith("manifest.json"):
                doc = json.loads(body)
                out.append(json.dumps({k: doc[k] for k in ("parts", "rows", "added", "removed")}))
                continue
            # Part objects have deterministic names: a re-sent part overwrites, never adds.
            out.append("part")
            out += [json.dumps({k: v for k, v in row.items() if k != "_profile_id"}, sort_keys=True)
                    for row in csv.DictReader(io.StringIO(body))]
        return sorted(out)


# -- Amazon Kinesis (moto) -------------------------------------------------------------------------


def _stream() -> str:
    name = f"sy-conf-{uuid.uuid4().hex[:10]}"
    boto3.client("kinesis", region_name="us-east-1").create_stream(StreamName=name, ShardCount=1)
    return name


def _records(name: str) -> list[bytes]:
    kinesis = boto3.client("kinesis", region_name="us-east-1")
    out: list[bytes] = []
    for shard in kinesis.list_shards(StreamName=name)["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while True:
            got = kinesis.get_records(ShardIterator=it, Limit=10_000)
            out += [r["Data"] for r in got["Records"]]
            if not got["Records"]:
                return out
            it = got["NextShardIterator"]
    return out


def _kinesis_auth(api: Any, stream: str) -> str:
    return auth(api, "amazon_kinesis", "access_keys", {"access_key_id": access_key_id(), "secret_access_key": CANARY,
                                                        "stream_name": stream})


class KinesisExport(ExportFake):
    def start(self, api: Any, deps: Any, tenant: Any) -> str:
        self.stream = _stream()
        return job(api, "amazon_kinesis", "export", "kinesis_audience_export", _kinesis_auth(api, self.stream),
                   {"audience_id": self.seed_audience(api, deps, tenant), "stream_name": self.stream,
                    "fields": ["email", "first_name"]})

    def effect(self, deps: Any, tenant: Any, job_id: str) -> list[str]:
        events = [json.loads(data) for data in _records(self.stream)]
        return unique_events([(e["event_id"], e) for e in events])


class KinesisImport(WorkflowFake):
    def start(self, api: Any, deps: Any, tenant: Any) -> str:
        self.stream = _stream()
        items = [{"email": f"k{i}@example.com", "first_name": f"K{i}"} for i in range(5)] + [{"first_name": "x"}]
        boto3.client("kinesis", region_name="us-east-1").put_records(StreamName=self.stream, Records=[
            {"Data": json.dumps(item).encode(), "PartitionKey": str(i)} for i, item in enumerate(items)])
        time.sleep(0.01)  # the run starts after the records arrived
        return job(api, "amazon_kinesis", "import", "kinesis_import", _kinesis_auth(api, self.stream),
                   {"stream_name": self.stream})

    def effect(self, deps: Any, tenant: Any, job_id: str) -> list[str]:
        return profiles_of(deps, tenant.account_id)


# -- Amazon SQS (moto) -----------------------------------------------------------------------------


class SqsExport(ExportFake):
    def start(self, api: Any, deps: Any, tenant: Any) -> str:
        sqs = boto3.client("sqs", region_name="us-east-1")
        self.url = str(sqs.create_queue(QueueName=f"sy-conf-{uuid.uuid4().hex[:10]}")["QueueUrl"])
        auth_id = auth(api, "amazon_sqs", "access_keys", {"access_key_id": access_key_id(),
                                                          "secret_access_key": CANARY, "queue_url": self.url})
        return job(api, "amazon_sqs", "export", "sqs_audience_export", auth_id,
                   {"audience_id": self.seed_audience(api, deps, tenant), "queue_url": self.url,
                    "fields": ["email", "first_name"]})

    def effect(self, deps: Any, tenant: Any, job_id: str) -> list[str]:
        sqs = boto3.client("sqs", region_name="us-east-1")
        events = []
        while True:
            got = sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, VisibilityTimeout=600)
            if not got.get("Messages"):
                break
            events += [json.loads(m["Body"]) for m in got["Messages"]]
        sqs.delete_queue(QueueUrl=self.url)
        return unique_events([(e["event_id"], e) for e in events])


# -- Mailchimp (tests/fakes/mailchimp.py) ----------------------------------------------------------


class _Mailchimp(WorkflowFake):
    fixtures = ("fake_mailchimp",)

    def list_and_key(self) -> tuple[str, str]:
        fake = self.env["fake_mailchimp"]
        self.list_id = f"L{secrets.token_hex(4)}"
        fake.add_list(self.list_id, "Customers", [("FNAME", "First", "text"), ("PLAN", "Plan", "text")])
        return self.list_id, fake.new_api_key()


class MailchimpImport(_Mailchimp):
    def start(self, api: Any, deps: Any, tenant: Any) -> str:
        list_id, key = self.list_and_key()
        for i in range(5):
            self.env["fake_mailchimp"].add_member(list_id, f"m{i}@x.io", merge_fields={"FNAME": f"M{i}"},
                                                  tags=["vip"] if i % 2 else [],
                                                  last_changed="2026-01-01T00:00:00+00:00")
        return job(api, "mailchimp", "import", "mailchimp_import", auth(api, "mailchimp", "api_key", {"api_key": key}),
                   {"list_id": list_id})

    def effect(self, deps: Any, tenant: Any, job_id: str) -> list[str]:
        return profiles_of(deps, tenant.account_id)


class MailchimpExport(_Mailchimp, ExportFake):
    def start(self, api: Any, deps: Any, tenant: Any) -> str:
        list_id, key = self.list_and_key()
        return job(api, "mailchimp", "export", "mailchimp_audience_export",
                   auth(api, "mailchimp", "api_key", {"api_key": key}),
                   {"audience_id": self.seed_audience(api, deps, tenant), "list_id": list_id,
                    "fields": {"first_name": "FNAME", "plan": "PLAN"}})

    def effect(self, deps: Any, tenant: Any, job_id: str) -> list[str]:
        members = self.env["fake_mailchimp"].lists[self.list_id].members.values()
        return sorted(json.dumps({"email": m.email_address, "status": m.status, "merge_fields": m.merge_fields,
                                  "tags": sorted(m.tags)}, sort_keys=True) for m in members)


# -- webhooks (tests/http_receiver.py + tests/webhook_inbox.py) -----------------------------------


@pytest.fixture()
def private_urls(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Endpoints on 127.0.0.1 over http, as on the local stack; settings re-read outside any
    request (chalice's test client swaps the environment during requests)."""
    from chalicelib import config
    from chalicelib.providers import http

    monkeypatch.setenv("SWITCHYARD_ALLOW_PRIVATE_URLS", "1")
    config.reset()
    config.settings()
    http.reset()
    yield
    monkeypatch.undo()
    config.reset()
    config.settings()
    http.reset()


class WebhookExport(ExportFake):
    fixtures = ("private_urls",)

    def start(self, api: Any, deps: Any, tenant: Any) -> str:
        from tests.http_receiver import Receiver
        from tests.webhook_inbox import Inbox

        self.inbox = Inbox(secret=SIGNING)
        self.receiver = Receiver(handler=self.inbox).__enter__()
        auth_id = auth(api, "webhook", "hmac", {"url": self.receiver.url("/hooks"), "signing_secret": SIGNING})
        return job(api, "webhook", "export", "webhook_audience_export", auth_id,
                   {"audience_id": self.seed_audience(api, deps, tenant), "fields": ["email", "first_name"],
                    "batch_size": 2})

    def effect(self, deps: Any, tenant: Any, job_id: str) -> list[str]:
        self.receiver.__exit__(None, None, None)
        # The inbox keeps a batch once by its id (and asserts a repeat is the same batch).
        return unique_events([(e["event_id"], e) for e in self.inbox.events])


# -- enrichment (tests/fakes/fullcontact.py, a local endpoint) -------------------------------------


def _marker(name: str) -> str:
    # enriched_at_<job id>: the same field whatever the job
    return "enriched_at" if name.startswith("enriched_at_") else name


class _Enrichment(WorkflowFake):
    def seed(self, deps: Any, tenant: Any) -> None:
        seed(deps, tenant.account_id, people(3, prefix="known") + people(2, prefix="nobody"))
        deps.profiles.upsert_batch(tenant.account_id, [_no_email()], step_tag=f"seed#{secrets.token_hex(3)}")

    def effect(self, deps: Any, tenant: Any, job_id: str) -> list[str]:
        return profiles_of(deps, tenant.account_id, rename=_marker, drop_values=frozenset({"enriched_at"}))


@pytest.fixture()
def fake_fullcontact(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from chalicelib import config
    from chalicelib.providers import http
    from tests.fakes.fullcontact import FakeFullContact

    with FakeFullContact({FC_KEY}) as fake:
        monkeypatch.setenv("SWITCHYARD_FULLCONTACT_BASE_URL", fake.base_url)
        monkeypatch.setenv("SWITCHYARD_ALLOW_PRIVATE_URLS", "1")
        config.reset()
        config.settings()
        http.reset()
        yield fake
    monkeypatch.undo()
    config.reset()
    config.settings()
    http.reset()


class FullContactEnrich(_Enrichment):
    fixtures = ("fake_fullcontact",)

    def start(self, api: Any, deps: Any, tenant: Any) -> str:
        self.seed(deps, tenant)
        for i in range(3):
            self.env["fake_fullcontact"].know(f"known{i}@example.com", title=f"CTO {i}")
        return job(api, "fullcontact", "enrichment", "fullcontact_person_enrich",
                   auth(api, "fullcontact", "api_key", {"api_key": FC_KEY}), {})


class EndpointEnrich(_Enrichment):
    fixtures = ("private_urls",)

    def start(self, api: Any, deps: Any, tenant: Any) -> str:
        from tests.http_receiver import Answer, Received, Receiver

        def answer(req: Received) -> Answer:
            if req.headers.get("authorization") != f"Bearer {ENDPOINT_TOKEN}":
                return Answer(401, {"error": "bad token"})
            body = req.json()
            if body.get("check"):
                return Answer(200, {"ok": True})
            email = (body["profile"]["identifiers"].get("email") or [""])[0]
            if email.startswith("known"):
                return Answer(200, {"fields": {"segment": "smb", "score": len(email)}})
            return Answer(404, {"error": "no match"})

        self.seed(deps, tenant)
        self.receiver = Receiver(handler=answer).__enter__()
        auth_id = auth(api, "http_enrichment", "bearer", {"url": self.receiver.url("/enrich"),
                                                         "token": ENDPOINT_TOKEN})
        return job(api, "http_enrichment", "enrichment", "http_profile_enrich", auth_id, {"send_fields": ["plan"]})

    def effect(self, deps: Any, tenant: Any, job_id: str) -> list[str]:
        self.receiver.__exit__(None, None, None)
        return super().effect(deps, tenant, job_id)


# -- Google Tag Manager (tests/fakes/google.py) ----------------------------------------------------


class GtmInstall(WorkflowFake):
    fixtures = ("fake_google", "api_for")

    def start(self, api: Any, deps: Any, tenant: Any) -> str:
        from tests.api.test_oauth_google import connect, store_google_app

        fake = self.env["fake_google"]
        store_google_app(fake)
        self.account = "6001"
        self.container = f"9{secrets.randbelow(10**6):06d}"
        if self.account not in fake.accounts:  # both tenants' containers in one Tag Manager account
            fake.add_account(self.account, "Acme")
        fake.add_container(self.account, self.container, "acme.example", workspace_id="3")
        auth_id = connect(api, self.env["api_for"])
        return job(api, "google_tag_manager", "other", "gtm_install_tag", auth_id,
                   {"account_id": self.account, "container_id": self.container, "workspace_id": "3"})

    def effect(self, deps: Any, tenant: Any, job_id: str) -> list[str]:
        c = self.env["fake_google"].container(self.account, self.container)
        tags = [json.dumps({"workspace": "current", "name": t["name"], "type": t.get("type")}, sort_keys=True)
                for ws in c.workspaces.values() for t in ws.tags.values()]
        versions = [json.dumps({"version_tags": sorted(t["name"] for t in v.get("tag", []))})
                    for v in c.versions.values()]
        return sorted(tags + versions)


# (provider, workflow) -> its fake. Every registered workflow must have one.
WORKFLOW_FAKES: dict[tuple[str, str], type[WorkflowFake]] = {
    ("amazon_s3", "s3_file_import"): S3Import,
    ("amazon_s3", "s3_audience_export"): S3Export,
    ("amazon_kinesis", "kinesis_import"): KinesisImport,
    ("amazon_kinesis", "kinesis_audience_export"): KinesisExport,
    ("amazon_sqs", "sqs_audience_export"): SqsExport,
    ("mailchimp", "mailchimp_import"): MailchimpImport,
    ("mailchimp", "mailchimp_audience_export"): MailchimpExport,
    ("webhook", "webhook_audience_export"): WebhookExport,
    ("fullcontact", "fullcontact_person_enrich"): FullContactEnrich,
    ("http_enrichment", "http_profile_enrich"): EndpointEnrich,
    ("google_tag_manager", "gtm_install_tag"): GtmInstall,
}


# -- credentials each provider's fake refuses (or resources it does not have) ----------------------


@pytest.fixture()
def refusing_endpoint(private_urls: None) -> Iterator[Any]:
    """An HTTPS-style endpoint on 127.0.0.1 that refuses every request with 401."""
    from tests.http_receiver import Answer, Receiver

    with Receiver(default=Answer(401, {"error": "invalid token"})) as r:
        yield r


def _missing(kind: str) -> str:
    return f"sy-missing-{kind}-{uuid.uuid4().hex[:8]}"


# provider -> (fixtures, make(env) -> (method, credentials, resources)). Every registered
# provider must have one: its check must answer "unhealthy" with a reason, never raise.
BAD_CHECKS: dict[str, tuple[tuple[str, ...], Callable[[dict[str, Any]], tuple[str, dict[str, Any], dict[str, str]]]]] = {
    "amazon_s3": (("aws_endpoint",), lambda env: (
        "access_keys", {"access_key_id": access_key_id(), "secret_access_key": CANARY,
                        "bucket": _missing("bucket")}, {})),
    "amazon_kinesis": (("aws_endpoint",), lambda env: (
        "access_keys", {"access_key_id": access_key_id(), "secret_access_key": CANARY,
                        "stream_name": _missing("stream")}, {})),
    "amazon_sqs": (("aws_endpoint",), lambda env: (
        "access_keys", {"access_key_id": access_key_id(), "secret_access_key": CANARY,
                        "queue_url": f"https://sqs.us-east-1.amazonaws.com/123456789012/{_missing('queue')}"}, {})),
    "mailchimp": (("fake_mailchimp",), lambda env: (
        "api_key", {"api_key": "0123456789abcdef0123456789abcdef-" + env["fake_mailchimp"].dc}, {})),
    "fullcontact": (("fake_fullcontact",), lambda env: ("api_key", {"api_key": "fc-refused-" + CANARY}, {})),
    "http_enrichment": (("refusing_endpoint",), lambda env: (
        "bearer", {"url": env["refusing_endpoint"].url("/enrich"), "token": "tok-" + CANARY}, {})),
    "webhook": (("refusing_endpoint",), lambda env: (
        "bearer", {"url": env["refusing_endpoint"].url("/hooks"), "token": "tok-" + CANARY}, {})),
    "google_tag_manager": (("fake_google",), lambda env: (
        "oauth", {"access_token": "ya29.refused-" + CANARY, "refresh_token": "1//refused-" + CANARY,
                  "expires_at": int(time.time()) + 3600,
                  "scope": "https://www.googleapis.com/auth/tagmanager.edit.containers"}, {})),
}


# -- live options each provider's fake offers -----------------------------------------------------

Options = tuple[str, dict[str, Any], dict[str, tuple[dict[str, str], str]]]


def _kinesis_options(env: dict[str, Any]) -> Options:
    name = _stream()
    return ("access_keys", {"access_key_id": access_key_id(), "secret_access_key": CANARY},
            {"stream_name": ({}, name)})


def _s3_options(env: dict[str, Any]) -> Options:
    bucket = make_bucket()
    boto3.client("s3", region_name="us-east-1").put_object(Bucket=bucket, Key="in/a.csv", Body=b"email\n")
    return ("access_keys", {"access_key_id": access_key_id(), "secret_access_key": CANARY},
            {"bucket": ({}, bucket), "prefix": ({"bucket": bucket}, "in/")})


def _sqs_options(env: dict[str, Any]) -> Options:
    name = f"sy-opt-{uuid.uuid4().hex[:10]}"
    url = str(boto3.client("sqs", region_name="us-east-1").create_queue(QueueName=name)["QueueUrl"])
    return ("access_keys", {"access_key_id": access_key_id(), "secret_access_key": CANARY},
            {"queue_url": ({"prefix": name}, url)})


def _mailchimp_options(env: dict[str, Any]) -> Options:
    fake = env["fake_mailchimp"]
    fake.add_list("L1", "Customers", [("FNAME", "First", "text")])
    fake.add_member("L1", "a@x.io", tags=["vip"])
    in_list = {"list_id": "L1"}
    return ("api_key", {"api_key": fake.new_api_key()},
            {"list_id": ({}, "L1"), "fields": (in_list, "FNAME"), "field_mapping": (in_list, "FNAME"),
             "tag": (in_list, "vip")})


def _gtm_options(env: dict[str, Any]) -> Options:
    fake = env["fake_google"]
    fake.add_account("6001", "Acme")
    fake.add_container("6001", "9001", "acme.example", workspace_id="3")
    return ("oauth", fake.grant(),
            {"account_id": ({}, "6001"), "container_id": ({"account_id": "6001"}, "9001"),
             "workspace_id": ({"account_id": "6001", "container_id": "9001"}, "3")})


# provider -> (fixtures, make(env) -> (method, credentials, {option field: (params, a value
# it must offer)})). Every provider whose workflows have option fields must have one.
OPTION_FAKES: dict[str, tuple[tuple[str, ...], Callable[[dict[str, Any]], Options]]] = {
    "amazon_kinesis": (("aws_endpoint",), _kinesis_options),
    "amazon_s3": (("aws_endpoint",), _s3_options),
    "amazon_sqs": (("aws_endpoint",), _sqs_options),
    "mailchimp": (("fake_mailchimp",), _mailchimp_options),
    "google_tag_manager": (("fake_google",), _gtm_options),
}
