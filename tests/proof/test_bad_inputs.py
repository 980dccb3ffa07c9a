"""Proof suite: a corpus of malformed and hostile inputs, through the API and through
the S3 import, and what each one gets.

Every API probe ends in one of three outcomes, and which one is part of the case:

- refused: a 4xx in the error envelope whose `fields` name the field, and nothing of the
  account changed (its DynamoDB partitions, read with Query; its profiles; its secrets);
- stored verbatim: legitimate text that looks hostile (SQL, templates, script tags, any
  script or emoji) is kept byte for byte and read back the same, never interpreted;
- literal: a filter or query value that looks like an injection matches nothing (it is
  compared as a value) and nothing changed.

Every file probe is an S3 object imported by a job (one step of the real engine): the run
finishes (a bad file never crashes a step or fails the job), the bad object or records are
omitted with a clear reason in the job's log, and no profile is stored.

tests/api/test_bad_input.py holds the basic cases (malformed JSON, wrong types, unknown
fields, bad query values); this corpus adds the hostile ones. Fixed defects it found have
regressions in tests/api/test_proof_findings.py.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from tests.api.helpers import create_auth, create_job, make_bucket, s3_credentials
from tests.proof.record import record, size
from tests.proof.served import no_outside_network

REFUSED, VERBATIM, LITERAL = "refused 4xx naming the field", "stored verbatim", "taken literally (matched nothing)"
FILE_OMITTED, FILE_EMPTY = "run finished, object/records omitted with a reason", "run finished, empty object skipped"

SQL = "Robert'); DROP TABLE jobs;-- ' OR '1'='1"
NOSQL = '{"$gt": ""} {"$where": "sleep(1000)"}'
TEMPLATE = "{{7*7}} ${7*7} <%= 7*7 %> #{7*7} {{constructor.constructor('return 1')()}}"
TRAVERSAL = "../../../../etc/passwd ..\\..\\windows\\win.ini %2e%2e%2f"
SCRIPT = "<script>alert(1)</script><img src=x onerror=alert(1)>"
SCRIPTS = "日本語 ✓ 🚀 مرحبا עברית Ελληνικά 👨‍👩‍👧 Z̷̢a̴l̸g̵o̶"


@dataclass
class Probe:
    category: str
    what: str
    method: str
    path: str
    body: Any = None
    raw: bytes | None = None
    headers: dict[str, str] | None = None
    status: int | None = None  # expected status (refused probes)
    field: str | None = None  # a name the error's `fields` must hold (refused probes)
    outcome: str = REFUSED
    read_back: tuple[str, str] | None = None  # (path, key): where a verbatim value is read back


@dataclass
class Result:
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    by_category: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    server_errors: int = 0
    changed_when_refused: int = 0


def _nest(depth: int, key: str = "a") -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth):
        node[key] = {}
        node = node[key]
    return root


def _groups(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {"all": []}
    node = root
    for _ in range(depth):
        child: dict[str, Any] = {"all": []}
        node["all"].append(child)
        node = child
    return root


def _cond(field_: str, op: str, value: Any) -> dict[str, Any]:
    return {"filter": {"all": [{"field": field_, "op": op, "value": value}]}}


def _corpus(ids: dict[str, str], repeat: int) -> list[Probe]:
    job, auth = f"/jobs/{ids['job_id']}", f"/authorizations/{ids['auth_id']}"
    create = {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
              "authorization_id": ids["auth_id"], "label": "x", "config": {"bucket": ids["bucket"]}}
    new_auth = {"provider": "amazon_s3", "method": "access_keys", "label": "x", "credentials": s3_credentials()}
    probes = [
        # -- huge bodies and values ---------------------------------------------------------
        Probe("huge", "5 MB description", "POST", "/jobs", {**create, "description": "d" * 5_000_000},
              status=413, field="body"),
        Probe("huge", "1 MB credentials blob", "POST", "/authorizations",
              {**new_auth, "credentials": {"access_key_id": "A" * 1_000_000}}, status=413, field="body"),
        Probe("huge", "10 KB label", "PATCH", job, {"label": "L" * 10_000, "version": 1}, status=422, field="label"),
        Probe("huge", "10,000 values in an audience filter", "POST", "/audiences/preview",
              _cond("plan", "in", ["x"] * 10_000), status=422, field="filter.all[0].value"),
        Probe("huge", "201-character token label", "POST", "/tokens", {"label": "t" * 201}, status=422, field="label"),
        Probe("huge", "a thousand alert e-mails", "PUT", "/alerts",
              {"emails": [f"a{i}@acme.example" for i in range(1000)], "version": 0}, status=422, field="emails"),
        # -- deep JSON ----------------------------------------------------------------------
        Probe("deep", "job config nested 900 deep", "PATCH", job, {"config": _nest(900), "version": 1},
              status=400, field="config.a.a"),
        Probe("deep", "credentials nested 100 deep", "POST", "/authorizations",
              {**new_auth, "credentials": _nest(100)}, status=400, field="credentials.a"),
        Probe("deep", "audience filter groups 40 deep", "POST", "/audiences", {"name": "d", "filter": _groups(40)},
              status=400, field="filter.all[0]"),
        Probe("deep", "audience filter groups 6 deep (over the filter's 5)", "POST", "/audiences/preview",
              {"filter": _groups(6)}, status=422, field="filter.all[0]"),
        Probe("deep", "arrays nested 5,000 deep", "POST", "/tokens",
              raw=b'{"label": ' + b"[" * 5000 + b"]" * 5000 + b"}", status=400, field="body"),
        Probe("deep", "unclosed arrays 100,000 deep", "POST", "/jobs", raw=b"[" * 100_000, status=400, field="body"),
        # -- unicode, RTL, NUL ----------------------------------------------------------------
        Probe("unicode", "NUL in a label", "POST", "/tokens", {"label": "a\x00b"}, status=422, field="label"),
        Probe("unicode", "right-to-left override in a label", "POST", "/tokens", {"label": "invoice\u202efdp.exe"},
              status=422, field="label"),
        Probe("unicode", "bidi isolate in an audience name", "POST", "/audiences",
              {"name": "x\u2066y\u2069", "filter": {"all": []}}, status=422, field="name"),
        Probe("unicode", "bell character in a user's name", "POST", "/users",
              {"email": "bell@acme.example", "name": "ding\x07", "role": "observer"}, status=422, field="name"),
        Probe("unicode", "unpaired surrogate in a label", "PATCH", job, raw=b'{"label": "\\ud800", "version": 1}',
              status=422, field="label"),
        Probe("unicode", "unpaired surrogate in a filter value", "POST", "/audiences/preview",
              raw=b'{"filter": {"all": [{"field": "plan", "op": "equals", "value": "\\udfff"}]}}',
              status=422, field="filter.all[0].value"),
        Probe("unicode", "unpaired surrogate in a field name of credentials", "PUT", f"{auth}/credentials",
              raw=b'{"credentials": {"\\ud83d": "x"}}', status=422, field="credentials"),
        Probe("unicode", "scripts, emoji, ZWJ and combining marks in a label", "PATCH", job,
              {"label": SCRIPTS, "version": 1}, outcome=VERBATIM, read_back=(job, "label")),
        Probe("unicode", "right-to-left text (no controls) in an audience name", "POST", "/audiences",
              {"name": "جمهور مرحبا", "filter": {"all": []}}, outcome=VERBATIM, read_back=("", "name")),
        # -- wrong encodings --------------------------------------------------------------------
        Probe("encoding", "UTF-16 body with BOM", "POST", "/tokens", raw='{"label": "x"}'.encode("utf-16"),
              status=400, field="body"),
        Probe("encoding", "UTF-32 body", "POST", "/tokens", raw='{"label": "x"}'.encode("utf-32"),
              status=400, field="body"),
        Probe("encoding", "latin-1 body", "POST", "/tokens", raw='{"label": "Zoé"}'.encode("latin-1"),
              status=400, field="body"),
        Probe("encoding", "charset=utf-16 declared", "POST", "/tokens", raw=b'{"label": "x"}',
              headers={"Content-Type": "application/json; charset=utf-16"}, status=415, field="Content-Type"),
        Probe("encoding", "form-encoded body", "POST", "/audiences", raw=b"name=x&filter=1",
              headers={"Content-Type": "application/x-www-form-urlencoded"}, status=415, field="Content-Type"),
        # -- injection strings in labels: text, kept as sent ----------------------------------
        Probe("injection", "SQL in a token label", "POST", "/tokens", {"label": SQL},
              outcome=VERBATIM, read_back=("", "label")),
        Probe("injection", "NoSQL operators as text in an authorization label", "PATCH", auth, {"label": NOSQL},
              outcome=VERBATIM, read_back=(auth, "label")),
        Probe("injection", "template expressions in a job description", "PATCH", job,
              {"description": TEMPLATE, "version": 2}, outcome=VERBATIM, read_back=(job, "description")),
        Probe("injection", "path traversal in an audience name", "POST", "/audiences",
              {"name": TRAVERSAL, "filter": {"all": []}}, outcome=VERBATIM, read_back=("", "name")),
        Probe("injection", "script tags in an authorization description", "PATCH", auth, {"description": SCRIPT},
              outcome=VERBATIM, read_back=(auth, "description")),
        Probe("injection", "a NoSQL operator object as a label", "POST", "/tokens", {"label": {"$ne": None}},
              status=422, field="label"),
        # -- injection strings in audience filters ------------------------------------------
        Probe("injection", "SQL as a filter value", "POST", "/audiences/preview", _cond("plan", "equals", SQL),
              outcome=LITERAL),
        Probe("injection", "template as a filter value", "POST", "/audiences/preview",
              _cond("plan", "equals", "{{7*7}}"), outcome=LITERAL),
        Probe("injection", "regex-looking contains value", "POST", "/audiences/preview",
              _cond("plan", "contains", ".*"), outcome=LITERAL),
        Probe("injection", "script tag as a filter value", "POST", "/audiences/preview",
              _cond("plan", "equals", SCRIPT), outcome=LITERAL),
        Probe("injection", "$where as a field name", "POST", "/audiences/preview", _cond("$where", "equals", "1"),
              outcome=LITERAL),
        Probe("injection", "NoSQL operator object as a value", "POST", "/audiences/preview",
              _cond("plan", "equals", {"$ne": None}), status=422, field="filter.all[0].value"),
        Probe("injection", "$regex as an operator", "POST", "/audiences/preview", _cond("plan", "$regex", ".*"),
              status=422, field="filter.all[0].op"),
        Probe("injection", "path traversal as a field name", "POST", "/audiences/preview",
              _cond("../../etc/passwd", "equals", "x"), status=422, field="filter.all[0].field"),
        Probe("injection", "a top-level $where instead of a group", "POST", "/audiences",
              {"name": "x", "filter": {"$where": "sleep(1000)"}}, status=422, field="filter"),
        Probe("injection", "__proto__ group", "POST", "/audiences/preview",
              {"filter": {"__proto__": {"admin": True}}}, status=422, field="filter"),
        # -- injection strings in query strings, paths and headers -----------------------------
        Probe("injection", "SQL in a list filter", "GET", "/jobs?provider=%27%20OR%201%3D1%20--", outcome=LITERAL),
        Probe("injection", "NoSQL operator syntax in a query name", "GET", "/jobs?status[$ne]=x",
              status=400, field="status[$ne]"),
        Probe("injection", "script tag as an audit time", "GET", "/audit?since=%3Cscript%3E", status=400, field="since"),
        Probe("injection", "SQL as a profile identifier", "GET", "/profiles?identifier=email:%27%20OR%201%3D1",
              status=400, field="identifier"),
        Probe("injection", "path traversal as a job id", "GET", "/jobs/..%2F..%2Fetc%2Fpasswd", status=404),
        Probe("injection", "header injection in If-Match", "PATCH", job, {"label": "x"},
              headers={"If-Match": "1\r\nX-Injected: yes"}, status=400, field="If-Match"),
        Probe("injection", "a forged cursor", "GET", "/jobs?cursor=eyJQSyI6IkFDQ1QjeCIsIlNLIjoiSk9CI3gifQ",
              status=400, field="cursor"),
        Probe("injection", "a string as run now's resync flag", "POST", f"{job}/run", {"resync": "true"},
              status=422, field="resync"),
        Probe("injection", "an operator as a field of run now's body", "POST", f"{job}/run",
              {"resync": True, "$where": "1"}, status=422, field="$where"),
    ]
    # The make proof size repeats the injection strings in every free-text field it has.
    extra: list[Probe] = []
    for i in range(repeat - 1):
        for text in (SQL, NOSQL, TEMPLATE, TRAVERSAL, SCRIPT, SCRIPTS):
            extra.append(Probe("injection", f"hostile text as a token label #{i}", "POST", "/tokens",
                               {"label": f"{text[:190]} {i}"}, outcome=VERBATIM, read_back=("", "label")))
            extra.append(Probe("injection", f"hostile text as a filter value #{i}", "POST", "/audiences/preview",
                               _cond("plan", "equals", f"{text} {i}"), outcome=LITERAL))
    return probes + extra


# -- what "nothing stored" means -------------------------------------------------------------


def _profiles(deps: Any, account_id: str) -> list[str]:
    return sorted(p.id for p in deps.profiles.iterate(account_id))


def _snapshot(deps: Any, account_id: str) -> str:
    """The account's data as the store holds it: its partitions (Query, not Scan), its
    token index and its secrets. (Its profiles, which only imports write, are compared
    around the whole API corpus and around each file.)"""
    from boto3.dynamodb.conditions import Key

    from chalicelib.config import settings
    from chalicelib.store import keys as K
    from chalicelib.store.audit import audit_pk

    table = boto3.resource("dynamodb", region_name="us-east-1").Table(settings().table_name)
    items: list[dict[str, Any]] = []
    for pk in (K.account_pk(account_id), audit_pk(account_id)):
        kwargs: dict[str, Any] = {"KeyConditionExpression": Key("PK").eq(pk), "ConsistentRead": True}
        while True:
            page = table.query(**kwargs)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    tokens = table.query(IndexName=K.GSI1, KeyConditionExpression=Key("GSI1PK").eq(K.account_tokens_gsi(account_id)))
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    secrets = sorted(s["Name"] for s in sm.list_secrets(Filters=[{"Key": "name", "Values": [
        f"switchyard/{settings().stage}/{account_id}/"]}])["SecretList"])
    # A token's last use moves on every request: not a change made by the probe.
    for t in tokens["Items"]:
        t.pop("last_used_at", None)
    return json.dumps({"items": items, "tokens": tokens["Items"], "secrets": secrets},
                      sort_keys=True, default=str)


def _send(api: Any, p: Probe) -> Any:
    if p.raw is not None:
        return api.call(p.method, p.path, raw=p.raw, headers=p.headers)
    return api.call(p.method, p.path, p.body, headers=p.headers)


def _check(api: Any, deps: Any, account_id: str, p: Probe, res: Result) -> None:
    before = _snapshot(deps, account_id) if p.outcome != VERBATIM else ""
    resp = _send(api, p)
    label = f"[{p.category}] {p.what}: {p.method} {p.path[:60]}"
    if resp.status_code >= 500:
        res.server_errors += 1
        res.failures.append(f"{label} → {resp.status_code} {resp.body[:200]!r}")
        return
    problem = None
    if p.outcome == REFUSED:
        body = resp.json or {}
        err = body.get("error") if isinstance(body, dict) else None
        if resp.status_code != p.status or not err:
            problem = f"expected {p.status} in the envelope, got {resp.status_code} {resp.body[:200]!r}"
        elif set(err) != {"code", "message", "fields", "details"} or not err["message"]:
            problem = f"not the error envelope: {err}"
        elif p.field and not any(p.field in name for name in err["fields"]):
            problem = f"fields {list(err['fields'])} do not name {p.field!r}"
    elif p.outcome == VERBATIM:
        if resp.status_code not in (200, 201):
            problem = f"expected it stored, got {resp.status_code} {resp.body[:200]!r}"
        else:
            path, key = p.read_back or ("", "")
            sent = (p.body or {})[key]
            if path == "":  # created: read it back by its new id
                kind = p.path.strip("/").split("/")[0]
                path = f"/{kind}" if kind == "tokens" else f"/{kind}/{resp.json['data']['id']}"
            got = api.get(path).json["data"]
            if isinstance(got, list):
                got = next((x for x in got if x["id"] == resp.json["data"]["id"]), {})
            if got.get(key) != sent.strip():
                problem = f"read back {got.get(key)!r}, sent {sent!r}"
    elif p.outcome == LITERAL:
        data = resp.json.get("data") if resp.status_code == 200 else None
        matched = data.get("size") if isinstance(data, dict) else (len(data) if isinstance(data, list) else None)
        if matched != 0:
            problem = f"expected 200 matching nothing, got {resp.status_code} {resp.body[:200]!r}"
    if p.outcome != VERBATIM and _snapshot(deps, account_id) != before:
        res.changed_when_refused += 1
        problem = (problem or "") + " (and the account's data changed)"
    if problem:
        res.failures.append(f"{label}: {problem}")
    else:
        res.outcomes[p.outcome] += 1
        res.by_category[p.category] += 1


# -- files ---------------------------------------------------------------------------------------

FIVE_GB = 5 * 1024**3


@dataclass
class FileProbe:
    what: str
    name: str
    body: bytes
    reason: str | None  # what the job's log must say; None: the object is skipped silently
    fmt: str = "csv"
    declared: int | None = None  # the size S3 lists (a lie when it differs from the body)


FILES = [
    FileProbe("CSV with an unbalanced quote", "broken.csv", b'email,plan\n"ada@example.com,pro\n', "malformed CSV"),
    FileProbe("CSV with a quote inside a field", "quote.csv", b'email,plan\nbob@example.com,"fr"ee"\n',
              "malformed CSV"),
    FileProbe("CSV with a wrong field count", "width.csv", b"email,plan\ncid@example.com,pro,extra\n",
              "expected 2 fields"),
    FileProbe("latin-1 CSV", "latin1.csv", "email,name\nzoé@example.com,Zoé\n".encode("latin-1"), "not UTF-8"),
    FileProbe("UTF-16 CSV with BOM", "utf16.csv", "email,name\nzoe@example.com,Zoe\n".encode("utf-16"),
              "header is not UTF-8"),
    FileProbe("CSV header repeating a column", "dupe.csv", b"email,email\na@example.com,b@example.com\n",
              "repeats a column"),
    FileProbe("0-byte file", "empty.csv", b"", None),
    FileProbe("file declared as 5 GB by S3", "huge.csv", b"email,plan\n", "shorter than its listed size",
              declared=FIVE_GB),
    FileProbe("JSON Lines nested 5,000 deep", "deep.jsonl",
              b'{"email": "d@example.com", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}\n", "nested too deeply", "jsonl"),
    FileProbe("JSON Lines that are not JSON", "garbage.jsonl", b"{'email': 'e@example.com'}\nnull\n[1]\n",
              "not valid JSON", "jsonl"),
    FileProbe("gzip that is not gzip", "fake.csv.gz", b"email\nf@example.com\n", "not a valid gzip"),
]
# Records the engine omits as invalid (counted, not logged one by one): none is stored.
RECORDS = [
    FileProbe("unpaired surrogate escapes in JSON Lines", "surrogate.jsonl",
              b'{"email": "s@example.com", "name": "\\ud800"}\n{"email": "t\\udfff@example.com"}\n', "", "jsonl"),
    FileProbe("NUL and control characters in identifiers", "ctl.csv",
              b"email,plan\nn\x00ul@example.com,pro\nbell\x07@example.com,pro\n", ""),
    FileProbe("injection strings as identifiers", "inject.csv",
              b"email,plan\n'; DROP TABLE x;--,pro\n<script>@,pro\n../../etc/passwd,pro\n", ""),
]


def _import(api: Any, deps: Any, tenant: Any, auth_id: str, f: FileProbe) -> tuple[dict[str, Any], list[str]]:
    from chalicelib.runs.engine import Delivery, Engine, EngineOptions

    bucket = make_bucket()
    boto3.client("s3", region_name="us-east-1").put_object(Bucket=bucket, Key=f"in/{f.name}", Body=f.body)
    if f.declared is not None:
        # What S3 lists for the object: moto runs in this process, its metadata is ours to set.
        import moto.s3.models as s3_models

        s3_models.s3_backends["123456789012"]["aws"].buckets[bucket].keys[f"in/{f.name}"].contentsize = f.declared
    job = create_job(api, auth_id, bucket, label=f.what[:100],
                     config={"bucket": bucket, "prefix": "in/", "format": f.fmt})
    # One step of the real engine, as the runs queue would deliver it (and deliver it again,
    # at most twice, if the step did not finish: a busy test machine can starve one).
    for _attempt in range(3):
        Engine(deps, EngineOptions()).handle(Delivery(
            body={"account_id": tenant.account_id, "job_id": job["id"], "trigger": "create",
                  "requested_by": tenant.admin_user_id, "requested_at": "2026-01-01T00:00:00Z"},
            message_id=f"bad-input-{f.name}"))
        runs = api.get(f"/jobs/{job['id']}/runs").json["data"]
        if runs and runs[0]["status"] != "running":
            break
    logs = [line["message"] for line in api.get(f"/jobs/{job['id']}/logs?limit=200").json["data"]]
    return (runs[0] if runs else {}), logs


def _check_file(api: Any, deps: Any, tenant: Any, auth_id: str, f: FileProbe, res: Result) -> None:
    profiles_before = _profiles(deps, tenant.account_id)
    try:
        run, logs = _import(api, deps, tenant, auth_id, f)
    except Exception as exc:  # the step crashed: SQS would redeliver it for ever
        res.server_errors += 1
        res.failures.append(f"[file] {f.what}: the step raised {type(exc).__name__}: {str(exc)[:200]}")
        return
    problems = []
    if run.get("status") != "succeeded":
        problems.append(f"run {run.get('status')} ({run.get('error')})")
    if run.get("added") != 0:
        problems.append(f"{run.get('added')} profiles added")
    if f.reason and not any(f.reason in m for m in logs):
        problems.append(f"no log line says {f.reason!r}: {logs[:4]}")
    if f in RECORDS and not run.get("omitted"):
        problems.append(f"nothing omitted: {run}")
    if _profiles(deps, tenant.account_id) != profiles_before:
        problems.append("profiles were stored")
    if problems:
        res.failures.append(f"[file] {f.what}: " + "; ".join(problems))
    else:
        outcome = FILE_EMPTY if f.reason is None else FILE_OMITTED
        res.outcomes[outcome] += 1
        res.by_category["file"] += 1


@pytest.fixture()
def deps(aws_endpoint: str) -> Iterator[Any]:
    # Fresh tables: "nothing stored" reads the account's profiles after every probe, and
    # moto's Query slows with everything earlier tests left in the session's shared tables.
    from tests.tables import fresh_deps

    yield from fresh_deps()


@pytest.fixture()
def world(deps: Any, new_tenant: Any, api_for: Any) -> Iterator[tuple[Any, Any, dict[str, str]]]:
    from chalicelib.domain.profiles import ProfileRecord

    tenant = new_tenant("Hostile")
    api = api_for(tenant.admin_token)
    bucket = make_bucket()
    auth = create_auth(api)
    job = create_job(api, auth["id"], bucket, start=False)
    # A profile the literal filters must not match (plan "pro"), so "matched nothing" means it.
    deps.profiles.upsert_batch(tenant.account_id, [ProfileRecord({"email": "p@hostile.example"}, {"plan": "pro"},
                                                                 "seed")], step_tag="bad-input-seed#0")
    yield tenant, api, {"job_id": job["id"], "auth_id": auth["id"], "bucket": bucket}


def test_hostile_inputs_get_clear_errors_store_nothing_and_crash_nothing(world, deps) -> None:
    tenant, api, ids = world
    res = Result()
    with no_outside_network():
        corpus = _corpus(ids, size(1, 8))
        profiles = _profiles(deps, tenant.account_id)
        for probe in corpus:
            _check(api, deps, tenant.account_id, probe, res)
        if _profiles(deps, tenant.account_id) != profiles:
            res.failures.append("the API corpus changed the account's profiles")
        for f in FILES + RECORDS:
            _check_file(api, deps, tenant, ids["auth_id"], f, res)
    cases = len(corpus) + len(FILES) + len(RECORDS)
    record("bad_inputs", "Bad and hostile inputs", {
        "cases": cases,
        **{f"outcome: {k}": v for k, v in sorted(res.outcomes.items())},
        "by category": ", ".join(f"{k} {v}" for k, v in sorted(res.by_category.items())),
        "server errors / crashed steps": res.server_errors,
        "refused probes that changed data": res.changed_when_refused,
        "failures": len(res.failures),
    }, summary=("API probes through the app's gateway (chalice.test.Client) with an admin token; file probes "
                "as S3 objects imported by one step of the real engine. 'Nothing stored' compares the "
                "account's DynamoDB partitions (Query), token index, profiles and secrets before and after."),
        order=80)
    assert not res.failures, f"{len(res.failures)} of {cases}:\n" + "\n".join(res.failures)
    assert sum(res.outcomes.values()) == cases
