"""Enrichment jobs end to end (docs/providers/enrichment.md): profiles in the store, an
authorization and a job created through the API, runs delivered from SQS, lookups sent to
a real local HTTP server (the FullContact fake, or a customer's endpoint), fields merged
into the profiles, counts in the run.

Like the export tests, every test gets tables of its own (moto answers Queries and
transactions in time proportional to the whole table).
"""

from __future__ import annotations

import itertools
import json
import logging
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from chalicelib.domain import enrichment as E
from chalicelib.domain.profiles import Profile, ProfileRecord, profile_id_for
from chalicelib.providers.fullcontact import CHECK_EMAIL
from chalicelib.runs.engine import Delivery, Engine
from tests.engine.test_s3_export import _clone, _forget_moto_models
from tests.fakes.fullcontact import FakeFullContact
from tests.http_receiver import Answer, Received, Receiver
from tests.seeds import replay_hint, seeded
from tests.timing import moved_http_clock

KEY = "fc-key-0123456789abcdef"
CANARY = "FCCANARY-4e1d9b7a2c58"
HOURLY = {"type": "interval", "every_minutes": 60}
_tags = itertools.count()


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture()
def deps(aws_endpoint: str) -> Iterator[Any]:
    """Like tests/conftest.py's, on fresh tables (see tests/engine/test_s3_export.py)."""
    from chalicelib.bootstrap import Deps, use
    from chalicelib.services.accounts import token_cache
    from chalicelib.store.dynamo import Table

    _forget_moto_models()
    base = Deps()
    d = Deps(table=Table(_clone(base.table)), profiles_table=Table(_clone(base.profiles_table)))
    token_cache.clear()
    use(d)
    yield d
    use(None)
    for t in (d.table, d.profiles_table):
        t.client.delete_table(TableName=t.name)
    _forget_moto_models()


def _settle(config: Any) -> None:
    # chalice.test.Client swaps in the "local" stage's variables while it handles a request:
    # read the settings now, outside any request, so they keep the tables' stage.
    config.reset()
    config.settings()


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeFullContact]:
    from chalicelib import config
    from chalicelib.providers import http as H

    with FakeFullContact({KEY, CANARY}) as f:
        monkeypatch.setenv("SWITCHYARD_FULLCONTACT_BASE_URL", f.base_url)
        monkeypatch.setenv("SWITCHYARD_ALLOW_PRIVATE_URLS", "1")
        # FullContact's rate limit (100 a second) waits on a moved clock: 1,000 lookups no
        # longer wait ten seconds of wall time, and every wait is still kept.
        moved_http_clock(monkeypatch)
        _settle(config)
        H.reset()
        yield f
    monkeypatch.undo()
    _settle(config)
    H.reset()


# -- helpers -------------------------------------------------------------------------------------


def _seed(deps: Any, account_id: str, people: list[dict[str, Any]]) -> dict[str, str]:
    """Upsert profiles as an import does; an entry without `email` is identified by its
    `user_id`. Returns the first identifier's value -> profile id."""
    ids: dict[str, str] = {}
    records = []
    for p in people:
        idents = {k: p[k] for k in ("email", "user_id") if p.get(k)}
        fields = {k: v for k, v in p.items() if k not in idents}
        records.append(ProfileRecord(identifiers=idents, fields=fields, ref="seed"))
        kind, value = next(iter(idents.items()))
        ids[value] = profile_id_for(account_id, kind, value)
    for start in range(0, len(records), 1000):
        deps.profiles.upsert_batch(account_id, records[start:start + 1000], step_tag=f"seed#{next(_tags)}")
    return ids


def _people(known: int, unknown: int, no_email: int, plan: str = "pro") -> list[dict[str, Any]]:
    out = [{"email": f"known{i}@example.com", "plan": plan, "title": "Founder"} for i in range(known)]
    out += [{"email": f"nobody{i}@example.com", "plan": plan} for i in range(unknown)]
    out += [{"user_id": f"u{i}", "plan": plan} for i in range(no_email)]
    return out


def _fc_auth(api: Any, key: str = KEY) -> dict[str, Any]:
    r = api.post("/authorizations", {"provider": "fullcontact", "method": "api_key", "label": "FullContact",
                                     "credentials": {"api_key": key}})
    assert r.status_code == 201, r.body
    return r.json["data"]


def _job(api: Any, auth_id: str, *, workflow: str = "fullcontact_person_enrich", provider: str = "fullcontact",
         schedule: dict[str, Any] | None = None, **config: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"provider": provider, "job_type": "enrichment", "workflow": workflow,
                            "authorization_id": auth_id, "label": "Enrich", "config": config}
    if schedule:
        body["schedule"] = schedule
    r = api.post("/jobs", body)
    assert r.status_code == 201, r.body
    return r.json["data"]


def _state(api: Any, job_id: str) -> dict[str, Any]:
    return api.get(f"/jobs/{job_id}").json["data"]


def _runs(api: Any, job_id: str) -> list[dict[str, Any]]:
    return api.get(f"/jobs/{job_id}/runs").json["data"]


def _profile(deps: Any, account_id: str, pid: str) -> Profile:
    p = deps.profiles.get(account_id, pid, consistent=True)
    assert p is not None
    return p


def _asked(fake: FakeFullContact) -> list[str]:
    """Emails of the lookups, health checks left out (one at authorization create, one when
    a job is created on it: it must reach the provider)."""
    return [r.json()["email"] for r in fake.lookups() if r.json().get("email") != CHECK_EMAIL]


def _drain_until(api: Any, drain: Any, job_id: str, runs: int) -> None:
    for _ in range(30):
        drain.run(limit=5000)
        done = [r for r in _runs(api, job_id) if r["status"] == "succeeded"]
        if len(done) == runs and _state(api, job_id)["status"] in ("sleeping", "completed"):
            return
    raise AssertionError("the run did not finish")


# -- pure pieces ---------------------------------------------------------------------------------


def test_answers_map_to_flat_fields_by_path():
    # GIVEN a FullContact-like person and a mapping by dotted paths
    doc = {"fullName": " Ada Lovelace ", "ageRange": "30-39", "details": {"name": {"given": "Ada"},
           "emails": [{"value": "a@x.io"}], "interests": ["math", "", None, {"x": 1}]},
           "bio": "", "avatar": None, "location": {"city": "London"}}
    mapping = {"fullName": "full_name", "details.name.given": "first_name", "details.emails.0.value": "email_2",
               "details.interests": "interests", "bio": "bio", "avatar": "avatar", "location": "location",
               "missing.path": "nothing"}
    # WHEN mapped
    fields = E.map_fields(doc, mapping)
    # THEN scalars are stripped, lists keep their scalars, empty values and objects are dropped
    assert fields == {"full_name": "Ada Lovelace", "first_name": "Ada", "email_2": "a@x.io",
                      "interests": ["math"]}


def test_open_fields_keep_normalized_names_and_cannot_forge_a_marker():
    fields = E.map_open_fields({"Job Title": "CTO", "score": 7, "drop_me": "x", "enriched_at_job_x": "2099",
                                "nested": {"a": 1}, "Seg Ment": "smb"},
                               {"drop_me": None, "score": "lead_score", "seg_ment": "tier"})
    assert fields == {"job_title": "CTO", "lead_score": 7, "tier": "smb"}


def test_marker_freshness_and_creating_identifier():
    # GIVEN a profile created by its user_id, with an email linked later
    pid = profile_id_for("acct", "user_id", "u1")
    p = Profile(pid, "acct", {"email": ["a@x.io"], "user_id": ["u1"]},
                {E.marker_field("job_abc"): "2026-11-20T00:00:00Z"}, "t", "t")
    # THEN the creating identifier is the one whose derived id is the profile's
    assert E.creating_identifier(p) == ("user_id", "u1")
    # AND the marker is fresh within the window and stale past it
    now = datetime(2026, 11, 27, tzinfo=UTC)
    marker = E.marker_field("job_abc")
    assert marker == "enriched_at_job_abc"
    assert E.is_fresh(p, marker, E.fresh_since(now, 30))
    assert not E.is_fresh(p, marker, E.fresh_since(now, 5))
    assert not E.is_fresh(p, E.marker_field("job_other"), E.fresh_since(now, 30))


# -- FullContact end to end ----------------------------------------------------------------------


def test_matched_profiles_gain_fields_and_unmatched_are_omitted(api, deps, tenant, drain, fake):
    # GIVEN 10 people FullContact knows, 15 it does not, 5 profiles without an email
    ids = _seed(deps, tenant.account_id, _people(10, 15, 5))
    for i in range(10):
        fake.know(f"known{i}@example.com", title=f"CTO {i}")
    auth = _fc_auth(api)
    assert auth["health"]["status"] == "healthy"
    # WHEN a one-time enrichment job runs with the default mapping
    job = _job(api, auth["id"])
    drain.run()
    # THEN the run succeeded: 10 enriched (added), 15 unmatched and 5 missing an email (omitted)
    final = _state(api, job["id"])
    assert final["status"] == "completed", (final, drain.errors)
    [run] = _runs(api, job["id"])
    assert (run["status"], run["added"], run["omitted"]) == ("succeeded", 10, 20), run
    assert run["omitted_reasons"] == {"unmatched": 15, "missing_identifier": 5}
    assert run["cost"]["provider_calls"] == 25
    # AND the known profiles gained FullContact's fields and the job's marker; stored values
    # were overwritten (overwrite defaults to true), other fields kept
    p = _profile(deps, tenant.account_id, ids["known3@example.com"])
    marker = E.marker_field(job["id"])
    assert p.fields["full_name"] == "Known3" and p.fields["title"] == "CTO 3"
    assert p.fields["age_range"] == "30-39" and p.fields["organization"] == "Acme"
    assert p.fields["linkedin"] == "https://www.linkedin.com/in/known3" and p.fields["plan"] == "pro"
    assert p.fields[marker] >= (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "gender" not in p.fields  # not in the default mapping
    # AND the unmatched ones are untouched
    q = _profile(deps, tenant.account_id, ids["nobody0@example.com"])
    assert q.fields == {"plan": "pro"} and q.version == 1
    # AND every lookup was a bearer-authenticated POST naming one email
    lookups = fake.lookups()
    assert len(lookups) == 2 + 25  # two health checks, then one per profile with an email
    assert {r.headers["authorization"] for r in lookups} == {f"Bearer {KEY}"}
    assert lookups[0].json() == {"email": "switchyard-health-check@example.com"}
    assert sorted(_asked(fake)) == sorted(
        [f"known{i}@example.com" for i in range(10)] + [f"nobody{i}@example.com" for i in range(15)])
    # AND the activity chart counts the same
    series = api.get(f"/jobs/{job['id']}/activity?granularity=day").json["data"]["series"]
    assert (sum(x["added"] for x in series), sum(x["omitted"] for x in series)) == (10, 20)


def test_a_second_run_within_the_refresh_window_skips_enriched_profiles(api, deps, tenant, drain, fake):
    # GIVEN an hourly enrichment whose first run enriched 4 of 10 profiles
    _seed(deps, tenant.account_id, _people(4, 6, 0))
    for i in range(4):
        fake.know(f"known{i}@example.com")
    job = _job(api, _fc_auth(api)["id"], schedule=HOURLY, refresh_after_days=7)
    _drain_until(api, drain, job["id"], runs=1)
    before = len(_asked(fake))
    # WHEN its schedule fires again
    deps.runs_queue.send({"account_id": tenant.account_id, "job_id": job["id"], "trigger": "schedule"})
    _drain_until(api, drain, job["id"], runs=2)
    # THEN the enriched profiles were not looked up again (omitted as recently enriched);
    # the unmatched ones were asked again, and still unmatched
    second = _runs(api, job["id"])[0]
    assert second["added"] == 0
    assert second["omitted_reasons"] == {"recently_enriched": 4, "unmatched": 6}
    assert len(_asked(fake)) - before == 6


def test_an_audience_limits_who_is_looked_up(api, deps, tenant, drain, fake):
    # GIVEN 5 pro and 5 free customers, all known to FullContact, and a "pro" audience
    _seed(deps, tenant.account_id, _people(5, 0, 0, plan="pro")
          + [{"email": f"free{i}@example.com", "plan": "free"} for i in range(5)])
    for i in range(5):
        fake.know(f"known{i}@example.com")
        fake.know(f"free{i}@example.com")
    aud = api.post("/audiences", {"name": "Pro", "filter": {"all": [{"field": "plan", "op": "equals",
                                                                      "value": "pro"}]}}).json["data"]["id"]
    # WHEN an enrichment job for that audience runs
    job = _job(api, _fc_auth(api)["id"], audience_id=aud)
    drain.run()
    # THEN only the members were looked up and enriched; non-members are not counted at all
    [run] = _runs(api, job["id"])
    assert (run["added"], run["omitted"]) == (5, 0)
    assert sorted(_asked(fake)) == [f"known{i}@example.com" for i in range(5)]


def test_an_audience_in_use_is_kept_and_one_removed_behind_the_apis_back_fails_the_job(
        api, deps, tenant, drain, fake):
    aud = api.post("/audiences", {"name": "Gone", "filter": {"all": []}}).json["data"]["id"]
    job = _job(api, _fc_auth(api)["id"], audience_id=aud)
    # An enrichment job counts on its audience like an export job: deleting it is refused
    assert api.delete(f"/audiences/{aud}").status_code == 409
    # Removed out of band (e.g. a restore), the run fails with a clear line
    deps.table.client.delete_item(TableName=deps.table.name, Key={
        "PK": {"S": f"ACCT#{tenant.account_id}"}, "SK": {"S": f"AUD#{aud}"}})
    drain.run()
    assert _state(api, job["id"])["status"] == "failed"
    [line] = api.get(f"/jobs/{job['id']}/logs?level=error").json["data"]
    assert f"audience {aud!r} not found" in line["message"]


def test_a_429_then_200_loses_nothing(api, deps, tenant, drain, fake):
    # GIVEN FullContact throttling the first 3 lookups with Retry-After: 1
    _seed(deps, tenant.account_id, _people(6, 4, 0))
    for i in range(6):
        fake.know(f"known{i}@example.com")
    job = _job(api, _fc_auth(api)["id"])
    fake.throttle(3, retry_after=1)
    # WHEN the job runs
    drain.run()
    # THEN the HTTP layer waited and retried: every profile counted once, nothing failed
    [run] = _runs(api, job["id"])
    assert (run["status"], run["added"], run["omitted_reasons"]) == ("succeeded", 6, {"unmatched": 4}), run
    assert run["cost"]["provider_calls"] == 10 + 3  # the throttled attempts are requests too
    assert _state(api, job["id"])["fault_count"] == 0


def test_a_long_retry_after_backs_off_and_the_run_resumes_exactly(api, deps, tenant, drain, fake, options):
    # GIVEN 12 known people, 4 lookups a step, and FullContact asking to wait 120 s in the
    # middle of the second step
    _seed(deps, tenant.account_id, _people(12, 0, 0))
    for i in range(12):
        fake.know(f"known{i}@example.com")
    options.max_records = 4
    job = _job(api, _fc_auth(api)["id"])
    state = {"n": 0}

    def throttle_sixth(req: Received) -> Answer | None:
        state["n"] += 1
        if state["n"] == 6:  # the 6th lookup (the health checks came before this handler)
            return Answer(429, {"status": 429, "message": "Too many requests"}, headers={"Retry-After": "120"})
        return None

    inner = fake.receiver.handler
    fake.receiver.handler = lambda req: throttle_sixth(req) or (inner(req) if inner else None)
    # WHEN the run is delivered
    drain.run()
    # THEN the lookups done before the 429 were committed, and the job sleeps honouring Retry-After
    sleeping = _state(api, job["id"])
    assert sleeping["status"] == "sleeping" and sleeping["fault_count"] == 1, sleeping
    [run] = _runs(api, job["id"])
    assert run["status"] == "retrying" and run["added"] == 5
    wait = datetime.strptime(sleeping["next_run_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) - datetime.now(UTC)
    assert wait >= timedelta(seconds=110)
    # WHEN the retry is delivered later (in another container: no memory of the Retry-After)
    from chalicelib.providers import http as H

    H.LIMITER.reset()
    options.now = lambda: datetime.now(UTC) + timedelta(minutes=5)
    Engine(deps, options).handle(Delivery(body={"account_id": tenant.account_id, "job_id": job["id"],
                                                "trigger": "retry"}, message_id="retry-1"))
    drain.run()
    # THEN the same run finished with every profile enriched exactly once
    [run] = _runs(api, job["id"])
    assert (run["status"], run["added"], run["omitted"]) == ("succeeded", 12, 0), run
    emails = _asked(fake)
    assert len(emails) == 13 and len(set(emails)) == 12  # only the throttled one was asked twice


def test_a_401_fails_the_job_at_once_with_fullcontacts_words(api, deps, tenant, drain, fake):
    # GIVEN a key FullContact accepted, then revoked
    _seed(deps, tenant.account_id, _people(3, 0, 0))
    job = _job(api, _fc_auth(api)["id"])
    fake.keys.discard(KEY)
    # WHEN the job runs
    drain.run()
    # THEN it failed at once (no retry can fix a key), saying what FullContact said
    final = _state(api, job["id"])
    assert final["status"] == "failed" and final["fault_count"] == 1
    [line] = api.get(f"/jobs/{job['id']}/logs?level=error").json["data"]
    assert line["code"] == "run.config_error"
    assert "FullContact answered 401 Unauthorized: Invalid access token" in line["message"]
    assert len(_asked(fake)) == 1  # one refused lookup, no retry


def test_fullcontact_check_names_what_fullcontact_said(api, fake):
    # GIVEN an unknown key WHEN an authorization is created THEN it is refused in FullContact's words
    r = api.post("/authorizations", {"provider": "fullcontact", "method": "api_key", "label": "bad",
                                     "credentials": {"api_key": "not-a-known-key"}})
    assert r.status_code == 422
    assert r.json["error"]["fields"]["credentials"] == "FullContact answered 401 Unauthorized: Invalid access token"
    # AND an over-quota key (403) is unhealthy on a check now
    auth = _fc_auth(api)
    fake.over_quota.add(KEY)
    checked = api.post(f"/authorizations/{auth['id']}/check").json["data"]
    assert checked["status"] == "unhealthy"
    assert checked["reason"] == "FullContact answered 403 Forbidden: Usage limit exceeded for this API key"


class _Crashes:
    """At most 3 failed receives per message (the DLQ is another test's subject). Each point
    crashes the first time it is reached; later reaches crash at random (rate p). `total` is
    a ceiling: the run's last message goes through after 3 failures, so a seed whose draws
    fall late ends with crashes left over."""

    def __init__(self, total: int, p: float, seed: int) -> None:
        self.total, self.left, self.p, self.rng = total, total, p, random.Random(seed)
        self.failed: dict[str, int] = {}
        self.seen: set[str] = set()
        self.message = ""

    def engine(self, deps: Any, options: Any) -> Engine:
        crashes = self

        class Tracking(Engine):
            def handle(self, delivery: Delivery) -> None:
                crashes.message = delivery.message_id
                _forget_moto_models()
                super().handle(delivery)

        return Tracking(deps, options)

    def __call__(self, point: str) -> None:
        if self.left <= 0 or self.failed.get(self.message, 0) >= 3:
            return
        # the first reach of each point always crashes, so every seed covers every point; the
        # seed then decides where the rest fall
        if point in self.seen and self.rng.random() >= self.p:
            return
        self.left -= 1
        self.failed[self.message] = self.failed.get(self.message, 0) + 1
        self.seen.add(point)
        raise RuntimeError(f"crash at {point}")


@seeded(11)
def test_crash_anywhere_never_loses_or_double_counts(api, deps, tenant, drain, options, fake, seed):
    # GIVEN 200 known people, 100 unknown and 20 without an email, 10 lookups a step, and
    # up to 40 crashes at random points of the steps
    ids = _seed(deps, tenant.account_id, _people(200, 100, 20))
    for i in range(200):
        fake.know(f"known{i}@example.com")
    crashes = _Crashes(40, 0.25, seed=seed)
    options.max_records = 10
    options.fault = crashes
    drain.engine = crashes.engine(deps, options)
    job = _job(api, _fc_auth(api)["id"])
    # WHEN the run is delivered, crashing again and again
    _drain_until(api, drain, job["id"], runs=1)
    # THEN crashes fired at every point, and more at random
    assert crashes.total - crashes.left > len(crashes.seen), replay_hint(seed)
    assert crashes.seen == {"after_lease", "before_write", "after_write", "after_commit", "before_enqueue",
                            "after_enqueue"}, (replay_hint(seed), crashes.seen)
    # AND the counters are exact
    [run] = _runs(api, job["id"])
    assert (run["status"], run["added"], run["omitted"]) == ("succeeded", 200, 120), run
    assert run["omitted_reasons"] == {"unmatched": 100, "missing_identifier": 20}
    series = api.get(f"/jobs/{job['id']}/activity?granularity=day").json["data"]["series"]
    assert (sum(x["added"] for x in series), sum(x["omitted"] for x in series)) == (200, 120)
    # AND every known profile was enriched once (one merge: version 2), nobody else was touched
    marker = E.marker_field(job["id"])
    for i in range(200):
        p = _profile(deps, tenant.account_id, ids[f"known{i}@example.com"])
        assert (p.fields["full_name"], p.version) == (f"Known{i}", 2) and marker in p.fields
    for i in range(100):
        assert _profile(deps, tenant.account_id, ids[f"nobody{i}@example.com"]).version == 1
    # AND every known person was asked (those of attempts that crashed before their merge, again)
    assert {e for e in _asked(fake) if e.startswith("known")} == {f"known{i}@example.com" for i in range(200)}


# -- secrets ---------------------------------------------------------------------------------------


def test_the_api_key_never_leaves_secrets_manager(api, deps, tenant, drain, fake, caplog):
    # GIVEN an authorization whose key is a canary, a run, a failing run, a check
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="switchyard")
    bodies: list[str] = []

    def call(method: str, path: str, body: Any = None) -> Any:
        r = api.call(method, path, body)
        bodies.append(r.body.decode())
        return r

    _seed(deps, tenant.account_id, _people(3, 2, 1))
    fake.know("known0@example.com")
    bad = call("POST", "/authorizations", {"provider": "fullcontact", "method": "api_key", "label": "bad",
                                           "credentials": {"api_key": CANARY + "-nope"}})
    assert bad.status_code == 422
    auth = call("POST", "/authorizations", {"provider": "fullcontact", "method": "api_key", "label": "fc",
                                            "credentials": {"api_key": CANARY}}).json["data"]
    job = call("POST", "/jobs", {"provider": "fullcontact", "job_type": "enrichment",
                                 "workflow": "fullcontact_person_enrich", "authorization_id": auth["id"],
                                 "label": "Enrich", "config": {}, "schedule": HOURLY}).json["data"]
    drain.run()
    fake.keys.discard(CANARY)
    call("POST", f"/authorizations/{auth['id']}/check")
    deps.runs_queue.send({"account_id": tenant.account_id, "job_id": job["id"], "trigger": "schedule"})
    drain.run()
    assert _state(api, job["id"])["status"] == "failed"
    for path in ("/authorizations", f"/authorizations/{auth['id']}", f"/jobs/{job['id']}",
                 f"/jobs/{job['id']}/runs", f"/jobs/{job['id']}/logs", "/providers/fullcontact"):
        call("GET", path)
    # AND a message left on the runs queue
    deps.runs_queue.send({"account_id": tenant.account_id, "job_id": job["id"], "trigger": "run"})

    def leaks(text: str) -> bool:
        return CANARY in text

    # THEN the key is in no response, log line, DynamoDB item or SQS message
    assert not [b for b in bodies if leaks(b)]
    assert not [r.getMessage() for r in caplog.records if leaks(r.getMessage())]
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    items = []
    for table in (deps.table.name, deps.profiles_table.name):
        for page in ddb.get_paginator("scan").paginate(TableName=table):
            items += page["Items"]
    assert items and not [i for i in items if leaks(json.dumps(i, default=_unpacked))]
    msgs = [json.dumps(m) for m in drain.pending()]
    assert msgs and not [m for m in msgs if leaks(m)]
    # ...but FullContact did get it, as a bearer token
    assert f"Bearer {CANARY}" in {r.headers.get("authorization") for r in fake.lookups()}


def _unpacked(value: Any) -> str:
    """Binary attributes (zlib-packed plan chunks) as the text they hold."""
    import zlib

    try:
        return zlib.decompress(value).decode("utf-8", "replace")
    except zlib.error:
        return bytes(value).decode("utf-8", "replace")


# -- "call my endpoint" -------------------------------------------------------------------------------


def test_an_endpoint_enriches_by_contract(api, deps, tenant, drain, fake):
    # GIVEN a customer's endpoint behind a bearer token: it knows "known*" people, answers
    # {"fields": {}} for "nobody0" and 404 for the other unknown ones
    ids = _seed(deps, tenant.account_id, _people(3, 3, 1))

    def answer(req: Received) -> Answer:
        if req.headers.get("authorization") != "Bearer tok-12345678":
            return Answer(401, {"error": "bad token"})
        body = req.json()
        if body.get("check"):
            return Answer(200, {"ok": True})
        emails = body["profile"]["identifiers"].get("email", [])
        if emails and emails[0].startswith("known"):
            return Answer(200, {"fields": {"Lead Score": 42, "segment": "smb", "enriched_at_job_x": "no",
                                           "email": "other@example.com"}})
        if emails == ["nobody0@example.com"]:
            return Answer(200, {"fields": {}})
        return Answer(404, {"error": "no match"})

    with Receiver(handler=answer) as endpoint:
        r = api.post("/authorizations", {"provider": "http_enrichment", "method": "bearer", "label": "mine",
                                         "credentials": {"url": endpoint.url("/enrich?k=v"),
                                                         "token": "tok-12345678"}})
        assert r.status_code == 201, r.body
        assert r.json["data"]["credential_hint"] == "http://127.0.0.1/…"
        job = _job(api, r.json["data"]["id"], provider="http_enrichment", workflow="http_profile_enrich",
                   send_fields=["plan"], field_mapping={"segment": "tier"})
        drain.run()
        # THEN known profiles got the returned fields (renamed, normalized), the others are
        # unmatched, and a profile identified by user_id only was asked too
        [run] = _runs(api, job["id"])
        assert (run["status"], run["added"], run["omitted_reasons"]) == ("succeeded", 3, {"unmatched": 4}), run
        p = _profile(deps, tenant.account_id, ids["known1@example.com"])
        assert p.fields["lead_score"] == 42 and p.fields["tier"] == "smb"
        assert "enriched_at_job_x" not in p.fields and E.marker_field(job["id"]) in p.fields
        assert "email" not in p.fields  # a returned field may not shadow an identifier
        assert p.identifiers == {"email": ["known1@example.com"]}
        # AND each request carried one profile: its id, identifiers and only the fields sent
        req = next(x.json() for x in endpoint.requests if "profile" in x.json()
                   and x.json()["profile"]["id"] == ids["known1@example.com"])
        assert req == {"profile": {"id": ids["known1@example.com"],
                                   "identifiers": {"email": ["known1@example.com"]}, "fields": {"plan": "pro"}}}
        assert endpoint.requests[0].path == "/enrich?k=v"


def test_an_endpoint_on_a_private_address_is_refused_when_private_urls_are_off(api, monkeypatch):
    from chalicelib import config

    monkeypatch.setenv("SWITCHYARD_ALLOW_PRIVATE_URLS", "")
    _settle(config)
    try:
        plain = api.post("/authorizations", {"provider": "http_enrichment", "method": "none", "label": "x",
                                             "credentials": {"url": "http://127.0.0.1:9/enrich"}})
        assert plain.status_code == 422 and plain.json["error"]["fields"] == {
            "credentials.url": "must be an https:// URL"}
        private = api.post("/authorizations", {"provider": "http_enrichment", "method": "none", "label": "x",
                                               "credentials": {"url": "https://127.0.0.1:9/enrich"}})
        assert private.status_code == 422
        assert "Switchyard only calls public endpoints" in private.json["error"]["fields"]["credentials"]
    finally:
        monkeypatch.undo()
        _settle(config)


def test_requests_per_1000_profiles(api, deps, tenant, drain, fake, options):
    """The figures docs/providers/enrichment.md quotes: one provider request per profile
    looked up, and the AWS requests of a run (engine, plan, profile reads and writes)."""
    # GIVEN 1,000 profiles, half of them known to FullContact, 1,000 lookups a step
    _seed(deps, tenant.account_id, _people(500, 500, 0))
    for i in range(500):
        fake.know(f"known{i}@example.com")
    options.max_records = 1000
    job = _job(api, _fc_auth(api)["id"])
    # WHEN it runs
    drain.run()
    # THEN FullContact got one request a profile, and AWS a few dozen for the whole run
    [run] = _runs(api, job["id"])
    assert (run["added"], run["omitted"]) == (500, 500)
    aws = sum(v for k, v in run["cost"].items() if k.startswith("aws_"))
    print(f"\nper 1,000 profiles: provider {run['cost']['provider_calls']:.0f}, AWS {aws:.0f} "
          f"({ {k: v for k, v in run['cost'].items() if k.startswith('aws_')} }), steps {run['cost']['steps']:.0f}")
    assert run["cost"]["provider_calls"] == 1000
    assert aws <= 100


def test_a_replay_short_of_time_still_counts_everything_its_first_attempt_merged(api, deps, tenant, drain,
                                                                                  options, fake):
    # GIVEN a step that merged 6 enriched profiles and crashed before its commit
    ids = _seed(deps, tenant.account_id, _people(6, 0, 0))
    for i in range(6):
        fake.know(f"known{i}@example.com")
    options.max_records = 6
    state = {"crashed": False}

    def crash_once(point: str) -> None:
        if point == "after_write" and not state["crashed"] and len(_asked(fake)) == 6:
            state["crashed"] = True
            # ...and its replay has almost no time: it would stop after one profile
            options.step_seconds = 0.01
            raise RuntimeError("crash after the merge")

    options.fault = crash_once
    job = _job(api, _fc_auth(api)["id"])
    # WHEN the run is delivered
    drain.run()
    # THEN the replay did not stop before the last profile already merged: the run counts
    # each once, nobody was asked twice or merged twice
    assert state["crashed"]
    [run] = _runs(api, job["id"])
    assert (run["status"], run["added"], run["omitted"]) == ("succeeded", 6, 0), run
    assert len(_asked(fake)) == 6
    assert {_profile(deps, tenant.account_id, pid).version for pid in ids.values()} == {2}
