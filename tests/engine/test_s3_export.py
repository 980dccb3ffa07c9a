"""S3 audience export end to end: profiles in the store, an audience and a job created
through the API, runs delivered from SQS, files in (moto's) S3, counts in the run, the
confirmed membership in the table (docs/export.md).

Every test here gets tables of its own (the `deps` fixture below overrides the shared
ones): moto answers a Query and a TransactWriteItems in time proportional to the items of
the *whole table* (it scans for the partition, and deep-copies the table per transaction
item), so on the session's shared table these tests would slow down with every test that
ran before them. Everything else is the shared stack: API, SQS, S3, the Drain harness.

moto also keeps every model object it ever made for its dashboard, including the full
copy of the table it takes for each item of each TransactWriteItems: the copies are
dropped (moto.core.model_instances.reset_model_data) around each test and before each
delivery of the crash tests, or memory and garbage collection grow with every commit.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import random
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from chalicelib.domain.profiles import ProfileRecord, profile_id_for
from chalicelib.runs.engine import Delivery, Engine
from chalicelib.runs.export import diff
from chalicelib.store.membership import (
    MEMBER_CHUNK_BYTES,
    PlanRef,
    SetRef,
    chunk_plan,
    membership_pk,
    new_set_id,
)
from tests.api.helpers import create_auth, make_bucket
from tests.seeds import replay_hint, seeded

PREFIX = "switchyard/exports/"
PRO = {"all": [{"field": "plan", "op": "equals", "value": "pro"}]}
HOURLY = {"type": "interval", "every_minutes": 60}
_tags = itertools.count()


def _forget_moto_models() -> None:
    from moto.core.model_instances import reset_model_data

    reset_model_data()


@pytest.fixture(autouse=True)
def _moto_copies() -> Iterator[None]:
    _forget_moto_models()
    yield
    _forget_moto_models()


def _clone(table: Any) -> str:
    """A new empty table with `table`'s keys and indexes; returns its name."""
    ddb = table.client
    desc = ddb.describe_table(TableName=table.name)["Table"]
    name = f"{table.name}-{secrets.token_hex(4)}"
    extra: dict[str, Any] = {}
    if desc.get("GlobalSecondaryIndexes"):
        extra["GlobalSecondaryIndexes"] = [{k: g[k] for k in ("IndexName", "KeySchema", "Projection")}
                                           for g in desc["GlobalSecondaryIndexes"]]
    ddb.create_table(TableName=name, KeySchema=desc["KeySchema"], BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=desc["AttributeDefinitions"], **extra)
    return name


@pytest.fixture()
def deps(aws_endpoint: str) -> Iterator[Any]:
    """Like tests/conftest.py's, on fresh tables with the main and profile tables' keys."""
    from chalicelib.bootstrap import Deps, use
    from chalicelib.services.accounts import token_cache
    from chalicelib.store.dynamo import Table

    base = Deps()
    d = Deps(table=Table(_clone(base.table)), profiles_table=Table(_clone(base.profiles_table)))
    token_cache.clear()
    use(d)
    yield d
    use(None)
    for t in (d.table, d.profiles_table):
        t.client.delete_table(TableName=t.name)


# -- helpers ------------------------------------------------------------------------------------


def _person(i: int, plan: str = "pro", **extra: Any) -> dict[str, Any]:
    return {"email": f"p{i}@example.com", "first_name": f"P{i}", "plan": plan, **extra}


def _seed(deps, account_id: str, people: list[dict[str, Any]], ids: dict[str, str] | None = None) -> dict[str, str]:
    """Upsert profiles the way an import step does (email identifies, the rest are fields);
    returns email -> profile id, computed as the store mints them (no read)."""
    ids = {} if ids is None else ids
    for start in range(0, len(people), 1000):
        tag = f"seed#{next(_tags)}"
        records = []
        for p in people[start:start + 1000]:
            idents = {"email": p["email"]}
            if p.get("user_id"):
                idents = {"user_id": p["user_id"], **idents}
            fields = {k: v for k, v in p.items() if k not in ("email", "user_id")}
            records.append(ProfileRecord(identifiers=idents, fields=fields, ref="seed"))
            ids.setdefault(p["email"], profile_id_for(account_id, *next(iter(idents.items()))))
        deps.profiles.upsert_batch(account_id, records, step_tag=tag)
    return ids


def _ids(deps, account_id: str) -> dict[str, str]:
    """email -> profile id, read from the store: each email of every profile."""
    return {e: p.id for p in deps.profiles.iterate(account_id, page_size=1000)
            for e in p.identifiers.get("email", ())}


def _audience(api, flt: dict[str, Any] = PRO, name: str = "Pro customers") -> str:
    r = api.post("/audiences", {"name": name, "filter": flt})
    assert r.status_code == 201, r.body
    return str(r.json["data"]["id"])


def _export_job(api, bucket: str, audience_id: str, *, schedule: dict[str, Any] | None = None,
                **config: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "provider": "amazon_s3", "job_type": "export", "workflow": "s3_audience_export",
        "authorization_id": create_auth(api)["id"], "label": "Pro to S3",
        "config": {"audience_id": audience_id, "bucket": bucket, **config},
    }
    if schedule:
        body["schedule"] = schedule
    r = api.post("/jobs", body)
    assert r.status_code == 201, r.body
    return r.json["data"]



def _runs(api, job_id: str) -> list[dict[str, Any]]:
    return api.get(f"/jobs/{job_id}/runs").json["data"]


def _job(api, job_id: str) -> dict[str, Any]:
    return api.get(f"/jobs/{job_id}").json["data"]


def _schedule_fires(deps, tenant, job_id: str) -> None:
    deps.runs_queue.send({"account_id": tenant.account_id, "job_id": job_id, "trigger": "schedule"})


def _objects(bucket: str, folder: str) -> dict[str, bytes]:
    s3 = boto3.client("s3", region_name="us-east-1")
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder):
        for o in page.get("Contents", []):
            out[o["Key"]] = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
    return out


def _parse(key: str, body: bytes) -> list[dict[str, Any]]:
    if key.endswith(".gz"):
        body = gzip.decompress(body)
        key = key[:-3]
    text = body.decode()
    if key.endswith(".csv"):
        return list(csv.DictReader(io.StringIO(text, newline="")))
    return [json.loads(line) for line in text.splitlines()]


def _parts(bucket: str, job_id: str, run_id: str) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Rows of every part object of a run, by key, and its manifest (or {})."""
    objs = _objects(bucket, f"{PREFIX}{job_id}/{run_id}/")
    manifest = json.loads(objs.pop(f"{PREFIX}{job_id}/{run_id}/manifest.json", b"{}"))
    return {k: _parse(k, v) for k, v in sorted(objs.items())}, manifest


def _all_rows(parts: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [row for rows in parts.values() for row in rows]


def _pairs(rows: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((r["_action"], r["_profile_id"]) for r in rows)


# -- pure pieces --------------------------------------------------------------------------------


def test_diff_adds_removes_and_what_the_membership_becomes():
    # GIVEN a confirmed membership {a, b, c}; now b stays, d and e join (e has no values), a left
    # and c no longer exists
    kw: dict[str, Any] = {"confirmed": {"a", "b", "c"}, "first": False, "stay": {"b"},
                          "joining": {"d": ["d@x.io"], "e": [None]}, "leaving": {"a": ["a@x.io"]},
                          "n_fields": 1, "backfill": True}
    # WHEN removals are sent
    plan = diff(**kw, include_removals=True)
    # THEN d is added, a and c removed (c without values), e omitted and not recorded
    assert plan.rows == [("add", "d", ["d@x.io"]), ("remove", "a", ["a@x.io"]), ("remove", "c", [None])]
    assert plan.members == {"b", "d"} and plan.omitted == Counter(missing_identifier=1)
    # AND without removals, the leavers stay in the membership (the destination still has them)
    kept = diff(**kw, include_removals=False)
    assert kept.rows == [("add", "d", ["d@x.io"])] and kept.members == {"a", "b", "c", "d"}
    # AND a first run without backfill sends nothing and records every current member
    quiet = diff(**{**kw, "confirmed": set(), "first": True, "stay": set(), "backfill": False},
                 include_removals=True)
    assert quiet.rows == [] and quiet.members == {"d", "e"}


def test_diff_resends_confirmed_members_and_keeps_those_without_values_confirmed():
    # GIVEN confirmed {a, b, c}; a and b stay (b has no values now), d joins, c left
    kw: dict[str, Any] = {"confirmed": {"a", "b", "c"}, "first": False, "stay": {"a", "b"},
                          "joining": {"d": ["d@x.io"]}, "leaving": {"c": ["c@x.io"]},
                          "n_fields": 1, "backfill": True, "include_removals": True}
    # WHEN the run re-sends every member
    plan = diff(**kw, resend={"a": ["a@x.io"], "b": [None]})
    # THEN a and d are adds (in id order), c a remove; b is omitted yet stays in the membership
    assert plan.rows == [("add", "a", ["a@x.io"]), ("add", "d", ["d@x.io"]), ("remove", "c", ["c@x.io"])]
    assert plan.members == {"a", "b", "d"} and plan.omitted == Counter(missing_identifier=1)
    assert (plan.adds, plan.removes) == (2, 1)
    # AND without a re-send (the control) only the change is sent
    assert diff(**kw).rows == [("add", "d", ["d@x.io"]), ("remove", "c", ["c@x.io"])]


@seeded(3)
def test_plan_chunks_fit_an_item_and_keep_row_order(seed):
    # GIVEN 3,000 changes of ~400 bytes of incompressible values
    rng = random.Random(seed)
    rows = [("add", f"prof_{i:026d}", ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=400))])
            for i in range(3000)]
    # WHEN cut into chunks
    chunks = chunk_plan(rows)
    # THEN every chunk fits a DynamoDB item with room to spare, and the counts add up in order
    assert len(chunks) > 3
    assert all(len(blob) <= 300_000 for blob, _ in chunks)
    assert sum(n for _, n in chunks) == 3000


# -- the store ------------------------------------------------------------------------------------


def test_membership_sets_round_trip_in_chunks_and_the_sweep_expires_the_others(deps):
    # GIVEN 25,000 profile ids written as one set, and an older set of the same job
    repo = deps.memberships
    ids = {f"prof_{i:026d}" for i in range(25_000)}
    old = repo.write_set("acct_t", "job_t", 1, new_set_id(), {"prof_" + "0" * 26})
    ref = repo.write_set("acct_t", "job_t", 2, new_set_id(), ids)
    # THEN it is cut into chunks of at most ~300 KB of ids, and reads back whole
    assert ref.chunks == -(-25_000 * 32 // MEMBER_CHUNK_BYTES) and ref.members == 25_000
    assert repo.read_set("acct_t", "job_t", ref) == ids
    # WHEN the sweep keeps the new set
    assert repo.sweep("acct_t", "job_t", keep=ref) == old.chunks == 1
    # THEN only the old set got a TTL
    items = deps.table.client.query(
        TableName=deps.table.name, KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": membership_pk("acct_t", "job_t")}})["Items"]
    expiring = {i["SK"]["S"].split("#C#")[0] for i in items if "expires_at" in i}
    assert expiring == {f"G#00000001#S#{old.set_id}"}
    # AND a plan reads back any slice, across chunk boundaries
    rows = [("add" if i % 3 else "remove", f"prof_{i:026d}", [f"v{i}", i]) for i in range(5000)]
    plan = repo.write_plan("acct_t", "run_t", new_set_id(), rows)
    assert plan.rows == 5000
    assert repo.read_plan("acct_t", "run_t", plan, 0, 5000) == [(a, p, list(v)) for a, p, v in rows]
    assert repo.read_plan("acct_t", "run_t", plan, 4990, 100) == [(a, p, list(v)) for a, p, v in rows[4990:]]
    single = PlanRef(plan.set_id, plan.rows, (0,))
    assert len(repo.read_plan("acct_t", "run_t", single, 10, 5)) == 5
    assert SetRef.from_json(ref.to_json()) == ref


# -- runs ---------------------------------------------------------------------------------------


def test_first_run_backfills_every_member_in_parts(api, deps, tenant, drain, options):
    # GIVEN 20 pro and 10 free profiles, and a one-time CSV export of the pro audience, 8 rows a part
    people = [_person(i) for i in range(20)] + [_person(i, "free") for i in range(20, 30)]
    ids = _seed(deps, tenant.account_id, people)
    assert ids == _ids(deps, tenant.account_id)  # the helper mints ids as the store does
    bucket = make_bucket()
    options.max_records = 8
    job = _export_job(api, bucket, _audience(api), fields=["email", "first_name", "plan"])
    # WHEN its run is delivered
    drain.run()
    # THEN the run wrote 3 parts with a header each, every member once as an add
    [run] = _runs(api, job["id"])
    assert run["status"] == "succeeded", run
    parts, manifest = _parts(bucket, job["id"], run["id"])
    base = f"{PREFIX}{job['id']}/{run['id']}/"
    assert list(parts) == [f"{base}part-00001.csv", f"{base}part-00002.csv", f"{base}part-00003.csv"]
    assert [len(rows) for rows in parts.values()] == [8, 8, 4]
    rows = _all_rows(parts)
    assert list(rows[0]) == ["_action", "_profile_id", "email", "first_name", "plan"]
    assert _pairs(rows) == Counter({("add", ids[f"p{i}@example.com"]): 1 for i in range(20)})
    ada = next(r for r in rows if r["_profile_id"] == ids["p7@example.com"])
    assert ada == {"_action": "add", "_profile_id": ids["p7@example.com"], "email": "p7@example.com",
                   "first_name": "P7", "plan": "pro"}
    # AND the manifest names the parts, the counters match, the job remembers generation 1
    assert manifest["keys"] == list(parts) and manifest["added"] == 20 and manifest["removed"] == 0
    assert run["added"] == 20 and run["removed"] == 0 and run["omitted"] == 0
    assert run["progress"] == {"steps": 4, "processed": 20, "read": 20, "total": 20, "unit": "rows"}
    final = _job(api, job["id"])
    assert final["status"] == "completed" and final["last_run"]["added"] == 20
    assert deps.jobs.get(tenant.account_id, job["id"]).state["membership_generation"] == 1
    codes = [ln["code"] for ln in api.get(f"/jobs/{job['id']}/logs").json["data"]]
    assert codes[:5] == ["run.succeeded", "run.step", "run.step", "run.step", "run.step"]
    assert drain.errors == []


def test_second_run_sends_only_who_joined_and_left(api, deps, tenant, drain, options):
    # GIVEN an hourly export whose first run sent 10 pro members
    _seed(deps, tenant.account_id, [_person(i) for i in range(10)] + [_person(i, "free") for i in range(10, 15)])
    bucket = make_bucket()
    job = _export_job(api, bucket, _audience(api), schedule=HOURLY, fields=["email", "plan"])
    drain.run()
    assert _job(api, job["id"])["status"] == "sleeping"
    # WHEN 3 members leave, 2 free profiles and 2 new ones join, and a member changes a field
    _seed(deps, tenant.account_id, [_person(i, "free") for i in (0, 1, 2)]
          + [_person(i, "pro") for i in (10, 11, 20, 21)] + [_person(5, "pro", first_name="Renamed")])
    ids = _ids(deps, tenant.account_id)
    _schedule_fires(deps, tenant, job["id"])
    drain.run()
    # THEN the second run sent exactly those adds and removes (removes carry current values)
    second, first = _runs(api, job["id"])
    assert second["status"] == "succeeded" and first["added"] == 10
    rows = _all_rows(_parts(bucket, job["id"], second["id"])[0])
    expected = Counter({("add", ids[f"p{i}@example.com"]): 1 for i in (10, 11, 20, 21)})
    expected.update({("remove", ids[f"p{i}@example.com"]): 1 for i in (0, 1, 2)})
    assert _pairs(rows) == expected
    assert {r["plan"] for r in rows if r["_action"] == "remove"} == {"free"}
    assert second["added"] == 4 and second["removed"] == 3 and second["omitted"] == 0
    # AND the confirmed membership is generation 2: the members now, generation 1 has a TTL
    state = deps.jobs.get(tenant.account_id, job["id"]).state
    assert state["membership_generation"] == 2
    ref = SetRef.from_json(state["membership"])
    members = deps.memberships.read_set(tenant.account_id, job["id"], ref)
    assert members == {ids[f"p{i}@example.com"] for i in (3, 4, 5, 6, 7, 8, 9, 10, 11, 20, 21)}
    items = deps.table.client.query(
        TableName=deps.table.name, KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": membership_pk(tenant.account_id, job["id"])}})["Items"]
    live = {i["SK"]["S"][:10] for i in items if "expires_at" not in i}
    assert live == {"G#00000002"} and any(i["SK"]["S"].startswith("G#00000001") for i in items)
    # AND the run's plan is gone (it held exported values)
    plan = deps.table.client.query(
        TableName=deps.table.name, KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": f"ACCT#{tenant.account_id}#RUN#{second['id']}#PLAN"}})
    assert plan["Items"] == []
    # AND a run with no change writes nothing and keeps the generation
    _schedule_fires(deps, tenant, job["id"])
    drain.run()
    third = _runs(api, job["id"])[0]
    assert third["status"] == "succeeded" and third["added"] == third["removed"] == 0
    assert _parts(bucket, job["id"], third["id"]) == ({}, {})
    assert deps.jobs.get(tenant.account_id, job["id"]).state["membership_generation"] == 2
    assert drain.errors == []


def test_without_removals_leavers_are_not_sent_nor_sent_again(api, deps, tenant, drain):
    # GIVEN an hourly export without removals, after its first run (5 members)
    _seed(deps, tenant.account_id, [_person(i) for i in range(5)])
    bucket = make_bucket()
    job = _export_job(api, bucket, _audience(api), schedule=HOURLY, include_removals=False)
    drain.run()
    # WHEN 2 members leave and 1 profile joins
    _seed(deps, tenant.account_id, [_person(0, "free"), _person(1, "free"), _person(9)])
    ids = _ids(deps, tenant.account_id)
    _schedule_fires(deps, tenant, job["id"])
    drain.run()
    # THEN only the add is written
    second = _runs(api, job["id"])[0]
    assert _pairs(_all_rows(_parts(bucket, job["id"], second["id"])[0])) == Counter(
        {("add", ids["p9@example.com"]): 1})
    assert second["added"] == 1 and second["removed"] == 0
    # WHEN a leaver comes back THEN nothing is sent: the destination never lost them
    _seed(deps, tenant.account_id, [_person(0, "pro")])
    _schedule_fires(deps, tenant, job["id"])
    drain.run()
    third = _runs(api, job["id"])[0]
    assert third["status"] == "succeeded" and third["added"] == 0
    assert _parts(bucket, job["id"], third["id"])[0] == {}


def test_without_backfill_the_first_run_only_records_the_membership(api, deps, tenant, drain):
    # GIVEN 6 members and an hourly export with backfill off
    _seed(deps, tenant.account_id, [_person(i) for i in range(6)])
    bucket = make_bucket()
    job = _export_job(api, bucket, _audience(api), schedule=HOURLY, backfill=False)
    # WHEN it runs THEN no object is written and the membership is recorded
    drain.run()
    [first] = _runs(api, job["id"])
    assert first["status"] == "succeeded" and first["added"] == 0
    assert _objects(bucket, PREFIX) == {}
    assert "export.no_backfill" in [ln["code"] for ln in api.get(f"/jobs/{job['id']}/logs").json["data"]]
    assert deps.jobs.get(tenant.account_id, job["id"]).state["membership"]["members"] == 6
    # WHEN one leaves and one joins THEN the next run sends just those two
    _seed(deps, tenant.account_id, [_person(0, "free"), _person(7)])
    ids = _ids(deps, tenant.account_id)
    _schedule_fires(deps, tenant, job["id"])
    drain.run()
    second = _runs(api, job["id"])[0]
    assert _pairs(_all_rows(_parts(bucket, job["id"], second["id"])[0])) == Counter(
        {("add", ids["p7@example.com"]): 1, ("remove", ids["p0@example.com"]): 1})


def test_csv_jsonl_and_gzip_files_hold_the_same_rows(api, deps, tenant, drain):
    # GIVEN members with a list field, a number, a missing field and two linked emails
    _seed(deps, tenant.account_id, [
        _person(1, tags=["vip", "beta"], ltv=12.5),
        _person(2),
        {"email": "p3@example.com", "user_id": "u3", "plan": "pro"},
        {"email": "p3b@example.com", "user_id": "u3"},  # links a second email to p3's profile
    ])
    profiles = {p.identifiers["user_id"][0] if "user_id" in p.identifiers else p.identifiers["email"][0]: p.id
                for p in deps.profiles.iterate(tenant.account_id)}
    audience = _audience(api)
    bucket = make_bucket()
    fields = ["email", "first_name", "tags", "ltv"]
    jobs = {
        (fmt, comp): _export_job(api, bucket, audience, fields=fields, format=fmt, compression=comp)
        for fmt, comp in (("csv", "none"), ("csv", "gzip"), ("jsonl", "none"), ("jsonl", "gzip"))
    }
    # WHEN every job runs
    drain.run()
    # THEN each wrote one part with the format's suffix
    got = {}
    for (fmt, comp), job in jobs.items():
        [run] = _runs(api, job["id"])
        parts, manifest = _parts(bucket, job["id"], run["id"])
        [key] = parts
        assert key.endswith(f"part-00001.{fmt}" + (".gz" if comp == "gzip" else ""))
        assert manifest["format"] == fmt and manifest["compression"] == comp
        got[(fmt, comp)] = {r["_profile_id"]: r for r in parts[key]}
    # AND JSON Lines keeps types: lists, numbers, null for missing, both emails of p3
    jl = got[("jsonl", "none")]
    tags = deps.profiles.get(tenant.account_id, profiles["p1@example.com"]).fields["tags"]
    assert sorted(tags) == ["beta", "vip"]
    assert jl[profiles["p1@example.com"]] == {"_action": "add", "_profile_id": profiles["p1@example.com"],
                                              "email": "p1@example.com", "first_name": "P1",
                                              "tags": tags, "ltv": 12.5}
    assert jl[profiles["u3"]]["email"] == ["p3@example.com", "p3b@example.com"]
    assert jl[profiles["p2@example.com"]]["tags"] is None
    # AND CSV writes the same values as text: JSON for lists and numbers, empty for missing
    cs = got[("csv", "none")]
    assert cs[profiles["p1@example.com"]]["tags"] == json.dumps(tags, separators=(",", ":")) and cs[profiles["p1@example.com"]]["ltv"] == "12.5"
    assert cs[profiles["p2@example.com"]]["tags"] == "" and cs[profiles["u3"]]["first_name"] == ""
    # AND gzip changes the bytes, not the rows
    assert got[("csv", "gzip")] == cs and got[("jsonl", "gzip")] == jl


def test_parts_are_split_by_size(api, deps, tenant, drain, options):
    # GIVEN 1,500 members with ~1 KB each and a 1 MB part limit (rows alone would allow 5,000)
    _seed(deps, tenant.account_id, [_person(i, bio=f"{i:05d}" + "x" * 1000) for i in range(1500)])
    bucket = make_bucket()
    options.max_records = 5000
    job = _export_job(api, bucket, _audience(api), fields=["email", "bio"], max_part_mb=1)
    # WHEN it runs
    drain.run()
    # THEN 2 parts of at most 1 MB hold every member once
    [run] = _runs(api, job["id"])
    objs = _objects(bucket, f"{PREFIX}{job['id']}/{run['id']}/part-")
    assert len(objs) == 2 and all(len(body) <= 1024 * 1024 for body in objs.values())
    rows = [r for k, v in objs.items() for r in _parse(k, v)]
    assert len(rows) == len({r["_profile_id"] for r in rows}) == 1500 == run["added"]


def test_members_without_any_exported_field_are_omitted_then_sent_once_they_have_one(
        api, deps, tenant, drain):
    # GIVEN 3 members, one of which has a phone: the export sends phones only
    _seed(deps, tenant.account_id, [_person(1, phone="+331"), _person(2), _person(3)])
    bucket = make_bucket()
    job = _export_job(api, bucket, _audience(api), schedule=HOURLY, fields=["phone"])
    drain.run()
    [first] = _runs(api, job["id"])
    assert first["added"] == 1 and first["omitted_reasons"] == {"missing_identifier": 2}
    # WHEN one of the others gets a phone THEN the next run adds it (it was never recorded)
    _seed(deps, tenant.account_id, [_person(2, phone="+332")])
    ids = _ids(deps, tenant.account_id)
    _schedule_fires(deps, tenant, job["id"])
    drain.run()
    second = _runs(api, job["id"])[0]
    rows = _all_rows(_parts(bucket, job["id"], second["id"])[0])
    assert [(r["_action"], r["_profile_id"], r["phone"]) for r in rows] == [
        ("add", ids["p2@example.com"], "+332")]
    assert second["omitted_reasons"] == {"missing_identifier": 1}


def test_an_audience_in_use_cannot_be_deleted_and_jobs_need_an_existing_audience(api, deps, tenant):
    # GIVEN two audiences and an export job sending the first
    first, second = _audience(api, name="First"), _audience(api, name="Second")
    job = _export_job(api, make_bucket(), first)
    assert api.get(f"/audiences/{first}").json["data"]["export_jobs"] == 1

    # WHEN the audience is deleted THEN it is refused, naming why, and the audience stays
    r = api.delete(f"/audiences/{first}")
    assert r.status_code == 409 and r.json["error"]["code"] == "audience.in_use", r.body
    assert "1 export job" in r.json["error"]["message"]
    assert api.get(f"/audiences/{first}").status_code == 200

    # WHEN a job names an audience that does not exist THEN 422 names the field, nothing is created
    before = len(api.get("/jobs").json["data"])
    bad = api.post("/jobs", {
        "provider": "amazon_s3", "job_type": "export", "workflow": "s3_audience_export",
        "authorization_id": create_auth(api)["id"], "label": "Nowhere",
        "config": {"audience_id": "aud_missing", "bucket": make_bucket()}})
    assert bad.status_code == 422 and "config.audience_id" in bad.json["error"]["fields"], bad.body
    assert len(api.get("/jobs").json["data"]) == before

    # WHEN the job is pointed at the second audience THEN the counts move with it
    current = _job(api, job["id"])
    moved = api.patch(f"/jobs/{job['id']}", {"config": {**current["config"], "audience_id": second},
                                             "version": current["version"]})
    assert moved.status_code == 200, moved.body
    assert api.get(f"/audiences/{first}").json["data"]["export_jobs"] == 0
    assert api.get(f"/audiences/{second}").json["data"]["export_jobs"] == 1
    assert api.delete(f"/audiences/{first}").status_code == 204

    # AND once the job is deleted the second audience can go too
    assert api.delete(f"/jobs/{job['id']}").status_code == 204
    assert api.delete(f"/audiences/{second}").status_code == 204


def test_an_audience_removed_behind_the_apis_back_fails_the_job_with_a_clear_line(api, deps, tenant, drain):
    # GIVEN an export job whose audience item disappears out of band (e.g. a restore)
    audience = _audience(api)
    job = _export_job(api, make_bucket(), audience)
    deps.table.client.delete_item(TableName=deps.table.name, Key={
        "PK": {"S": f"ACCT#{tenant.account_id}"}, "SK": {"S": f"AUD#{audience}"}})
    # WHEN the run is delivered
    drain.run()
    # THEN the job failed at once, and the error line names the audience and the fix
    final = _job(api, job["id"])
    assert final["status"] == "failed" and final["last_run"]["status"] == "failed"
    [line] = api.get(f"/jobs/{job['id']}/logs?level=error").json["data"]
    assert line["code"] == "run.config_error"
    assert f"audience {audience!r} not found" in line["message"] and "resume" in line["message"]


class _Crashes:
    """Crash injection (EngineOptions.fault) that knows which message is being handled: at
    most 3 failed receives per message, so none reaches the DLQ (maxReceiveCount 5), which
    is the poison-message path, not this test's subject. `first` crashes come before any
    random one, in order. `total` is a ceiling, not a promise: once the run's last message
    has failed 3 times it is let through, so a seed whose draws fall late ends with crashes
    left over (`landed` is what a test asserts)."""

    def __init__(self, total: int, p: float, seed: int, first: tuple[str, ...] = (),
                 at_step_0: frozenset[str] | None = None) -> None:
        self.left, self.p, self.rng = total, p, random.Random(seed)
        self.first = list(first)
        self.planned = len(first)
        self.at_step_0 = at_step_0  # points that may crash while a run's step 0 is handled (None: all)
        self.failed: Counter[str] = Counter()  # failed receives per message id
        self.seen: Counter[str] = Counter()
        self.message = ""
        self.step_0 = False

    def landed(self) -> bool:
        """Every point crashed, and the seed's random crashes fell on top of the planned ones."""
        return set(self.seen) == ALL_POINTS and sum(self.seen.values()) > self.planned

    def engine(self, deps, options) -> Engine:
        crashes = self

        class Tracking(Engine):
            def handle(self, delivery: Delivery) -> None:
                crashes.message = delivery.message_id
                crashes.step_0 = delivery.body.get("trigger") != "continue"
                _forget_moto_models()
                super().handle(delivery)

        return Tracking(deps, options)

    def __call__(self, point: str) -> None:
        if self.left <= 0 or self.failed[self.message] >= 3:
            return
        if self.step_0 and self.at_step_0 is not None and point not in self.at_step_0:
            return
        if self.first:
            hit = point == self.first[0]
            if hit:
                self.first.pop(0)
        else:
            hit = self.rng.random() < self.p
        if hit:
            self.left -= 1
            self.failed[self.message] += 1
            self.seen[point] += 1
            raise RuntimeError(f"crash at {point}")


ALL_POINTS = {"after_lease", "before_write", "after_write", "after_commit", "before_enqueue", "after_enqueue"}


def _drain_until(api, drain, job_id: str, runs: int) -> None:
    # A redelivery may be delayed (a busy step is retried later): wait for it, bounded.
    give_up = time.monotonic() + 180
    while time.monotonic() < give_up:
        if not drain.run(limit=5000):
            time.sleep(0.3)
        done = [r for r in _runs(api, job_id) if r["status"] == "succeeded"]
        if len(done) == runs and _job(api, job_id)["status"] in ("sleeping", "completed"):
            return
    raise AssertionError("the run did not finish")


def _check_run(api, bucket: str, job_id: str, run: dict[str, Any], expected: Counter[tuple[str, str]],
               email_of: dict[str, str]) -> None:
    """The union of the run's part objects is the diff exactly (one part per step, values
    of the right profile), and so are the run's counters."""
    parts, manifest = _parts(bucket, job_id, run["id"])
    rows = _all_rows(parts)
    assert _pairs(rows) == expected
    assert len(parts) == run["progress"]["steps"] - 1 and manifest["keys"] == list(parts)
    assert all(r["email"] == email_of[r["_profile_id"]] for r in rows)
    assert all(r["first_name"] == "P" + r["email"][1:].split("@")[0] for r in rows)
    adds = sum(n for (action, _), n in expected.items() if action == "add")
    assert (run["status"], run["added"], run["removed"], run["omitted"]) == (
        "succeeded", adds, sum(expected.values()) - adds, 0), run


@seeded(5)
def test_crash_anywhere_never_loses_or_double_counts_a_2500_member_export(
        api, deps, tenant, drain, options, seed):
    # GIVEN 2,500 members, a gzip CSV export of 100 rows a part (26 steps), and up to 50 crashes to
    # spread over every fault point (step 0 only after its lease: reading every profile again
    # is slow on moto; the next test crashes step 0 everywhere)
    crashes = _Crashes(50, 0.45, seed=seed, first=("after_lease", "before_write", "after_write", "after_commit",
                                                          "before_enqueue", "after_enqueue"),
                       at_step_0=frozenset({"after_lease"}))
    ids = _seed(deps, tenant.account_id, [_person(i) for i in range(2500)])
    bucket = make_bucket()
    options.max_records = 100
    options.fault = crashes
    drain.engine = crashes.engine(deps, options)
    job = _export_job(api, bucket, _audience(api), fields=["email", "first_name"], compression="gzip")
    # WHEN the run is delivered, crashing again and again
    _drain_until(api, drain, job["id"], runs=1)
    # THEN crashes fired at every point, and more at random
    assert crashes.landed(), (replay_hint(seed), crashes.seen)
    # AND the files hold every member once, and the counters say so
    [run] = _runs(api, job["id"])
    email_of = {pid: email for email, pid in ids.items()}
    _check_run(api, bucket, job["id"], run, Counter({("add", pid): 1 for pid in ids.values()}), email_of)
    assert run["progress"]["steps"] == 26 and _job(api, job["id"])["status"] == "completed"
    series = api.get(f"/jobs/{job['id']}/activity?granularity=day").json["data"]["series"]
    assert sum(p["added"] for p in series) == 2500
    # AND the job's confirmed membership is the audience
    ref = SetRef.from_json(deps.jobs.get(tenant.account_id, job["id"]).state["membership"])
    assert ref is not None and deps.memberships.read_set(tenant.account_id, job["id"], ref) == set(ids.values())


def _sent_then_changed(api, deps, tenant, drain, options, *, members: int, leave: int, join: int,
                       ) -> tuple[dict[str, str], str, dict[str, Any]]:
    """An hourly export whose first run sent `members` members, then the first `leave` of
    them leave and `join` more join: email -> profile id, the bucket, the job."""
    ids = _seed(deps, tenant.account_id, [_person(i) for i in range(members)])
    bucket = make_bucket()
    options.max_records = 1000
    job = _export_job(api, bucket, _audience(api), schedule=HOURLY, fields=["email", "first_name"])
    _drain_until(api, drain, job["id"], runs=1)
    _seed(deps, tenant.account_id, [_person(i, "free") for i in range(leave)]
          + [_person(i) for i in range(members, members + join)], ids)
    return ids, bucket, job


def _crashing(deps, drain, options, crashes: _Crashes) -> None:
    """The next runs (20 rows a part) crash as `crashes` says."""
    options.max_records = 20
    options.fault = crashes
    drain.engine = crashes.engine(deps, options)


@seeded(8)
def test_crash_anywhere_never_loses_or_double_counts_adds_and_removes(api, deps, tenant, drain, options, seed):
    # GIVEN an hourly export whose first run sent 400 members; then 150 leave and 200 join
    ids, bucket, job = _sent_then_changed(api, deps, tenant, drain, options, members=400, leave=150, join=200)
    # WHEN the next run (20 rows a part) crashes up to 25 times
    crashes = _Crashes(25, 0.3, seed=seed, first=("before_write", "after_write", "after_commit", "before_enqueue",
                                               "after_enqueue", "after_lease"))
    _crashing(deps, drain, options, crashes)
    _schedule_fires(deps, tenant, job["id"])
    _drain_until(api, drain, job["id"], runs=2)
    # THEN crashes fired at every point and at random, and the run sent exactly who joined and who left
    assert crashes.landed(), (replay_hint(seed), crashes.seen)
    second = _runs(api, job["id"])[0]
    expected = Counter({("add", ids[f"p{i}@example.com"]): 1 for i in range(400, 600)})
    expected.update({("remove", ids[f"p{i}@example.com"]): 1 for i in range(150)})
    _check_run(api, bucket, job["id"], second, expected, {pid: e for e, pid in ids.items()})
    # AND the confirmed membership moved to generation 2, exactly the audience now
    ref = SetRef.from_json(deps.jobs.get(tenant.account_id, job["id"]).state["membership"])
    assert ref is not None and ref.generation == 2
    assert deps.memberships.read_set(tenant.account_id, job["id"], ref) == {
        ids[f"p{i}@example.com"] for i in range(150, 600)}


@seeded(11)
def test_crash_anywhere_in_a_resync_sends_every_member_once(api, deps, tenant, drain, options, seed):
    # GIVEN an hourly export whose first run sent 120 members, then 20 leave and 30 join
    ids, bucket, job = _sent_then_changed(api, deps, tenant, drain, options, members=120, leave=20, join=30)
    # WHEN the job is asked to re-send everything, and that run (20 rows a part) crashes up to 15 times
    _crashing(deps, drain, options, crashes := _Crashes(
        15, 0.3, seed=seed, first=("before_write", "after_write", "after_commit", "before_enqueue", "after_enqueue",
                                   "after_lease")))
    r = api.post(f"/jobs/{job['id']}/run", {"resync": True})
    assert r.status_code == 200, r.body
    _drain_until(api, drain, job["id"], runs=2)
    # THEN crashes fired at every point and at random, and the run sent every current member once
    # as an add and every leaver once as a remove
    assert crashes.landed(), (replay_hint(seed), crashes.seen)
    second = _runs(api, job["id"])[0]
    expected = Counter({("add", ids[f"p{i}@example.com"]): 1 for i in range(20, 150)})
    expected.update({("remove", ids[f"p{i}@example.com"]): 1 for i in range(20)})
    _check_run(api, bucket, job["id"], second, expected, {pid: e for e, pid in ids.items()})
    assert second["resync"] is True
    assert _parts(bucket, job["id"], second["id"])[1]["resync"] is True
    # AND the marker left with the run's last commit, with the confirmed membership: the
    # current members, so the next run sends only what changes after
    state = deps.jobs.get(tenant.account_id, job["id"]).state
    assert "resync" not in state
    ref = SetRef.from_json(state["membership"])
    current = {ids[f"p{i}@example.com"] for i in range(20, 150)}
    assert ref is not None and deps.memberships.read_set(tenant.account_id, job["id"], ref) == current
