"""AWS requests sent per API call, counted on the wire, against an in-process moto server.

Two independent counters run side by side:

* botocore event hooks: a `before-send` handler registered on the app's boto3 session
  (chalicelib.store.aws.session()) before any client exists, so every app client copies
  it. That sees the app layer (DynamoDB, Secrets Manager, SQS).
* an endpoint wrapper: botocore.endpoint.Endpoint._do_get_response is wrapped (here in
  the bench only), which sees every HTTP attempt of every client, including the provider
  layer's own per-call sessions (chalicelib/providers/calls.py: STS, S3 of the customer).
  A request is "app" when its endpoint belongs to a client cached in
  chalicelib.store.aws.cached_clients(), "provider" otherwise.

The two must agree on the app layer; the table shows the wrapper's figures.

The token authorizer reads the token item (DynamoDB GetItem) on a cache miss and keeps
the answer 60 s in-process, like API Gateway's authorizer cache. Each call is measured
cold (token cache emptied just before) and warm (right after); budgets are judged on the
warm figures, the cold ones show the extra GetItem.

The jobs dashboard page is budgeted at one Query plus one BatchGetItem that asks for each
distinct authorization of the page once: its rows warn when their authorization is
unhealthy, and health lives on the authorization items (bench/README.md, "Dashboard page").

Audience sizes are budgeted too: ten audiences sized in one call read the profiles once
(a Query per profile shard), and asked again within the minute a size is kept, the list
costs two BatchGetItems and a preview one (docs/audiences.md, "Sizes: capped and kept").

    .venv/bin/python bench/requests_per_call.py

Exit status 0 when every budget holds and no Scan was sent, 1 otherwise.
"""

from __future__ import annotations

import contextvars
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.awsnet import counting_moto, exit_code  # noqa: E402

STAGE = "bench"
N_JOBS = 60
# The wall-time table is informational (no budget): a few rounds are enough in quick mode.
WALL_ROUNDS = 5 if os.environ.get("BENCH_QUICK", "") not in ("", "0") else 20
BUCKET = "bench-data"
S3_KEYS = {"access_key_id": "AKIABENCHABCDEFGHIJK", "secret_access_key": "benchSECRETbench1234567890"}
APP_SERVICES = ("dynamodb", "secretsmanager", "sqs")
COLUMNS = ("secretsmanager", "sqs", "sts", "s3")
HEAD = {"secretsmanager": "SecMgr", "sqs": "SQS", "sts": "STS", "s3": "S3"}


# ---------------------------------------------------------------------------------------
# Counting


@dataclass
class Sent:
    layer: str  # "app" | "provider"
    service: str  # botocore service name: dynamodb, secretsmanager, sqs, sts, s3
    operation: str
    keys: int = 0  # BatchGetItem: keys asked for (all tables)


# True in the main thread and in the calls it hands to another thread with its context
# (chalicelib.background.in_background: POST /jobs reads the secret beside the
# authorization); other threads start with an empty context and are not counted.
FOR_THE_MAIN_THREAD: contextvars.ContextVar[bool] = contextvars.ContextVar("for_the_main_thread", default=False)


@dataclass
class RequestLog:
    """Every HTTP attempt botocore makes for the main thread's work, and a window to read them."""

    everything: list[Sent] = field(default_factory=list)
    window: list[Sent] | None = None
    events_window: list[str] | None = None  # app layer, from the before-send hooks
    events_total: Counter[str] = field(default_factory=Counter)

    def install_endpoint_wrapper(self) -> None:
        from botocore.endpoint import Endpoint

        from chalicelib.store import aws

        original = Endpoint._do_get_response
        log = self

        def counted(endpoint: Any, request: Any, operation_model: Any, context: Any) -> Any:
            if FOR_THE_MAIN_THREAD.get():
                app_endpoints = {id(c._endpoint) for c in aws.cached_clients()}
                sent = Sent(
                    layer="app" if id(endpoint) in app_endpoints else "provider",
                    service=operation_model.service_model.service_name,
                    operation=operation_model.name,
                    keys=batch_keys(operation_model.name, request.body),
                )
                log.everything.append(sent)
                if log.window is not None:
                    log.window.append(sent)
            return original(endpoint, request, operation_model, context)

        Endpoint._do_get_response = counted  # type: ignore[method-assign]

    def install_event_hooks(self) -> None:
        """before-send on the app's session: clients created afterwards copy the handler."""
        from chalicelib.store import aws

        aws.reset()
        assert not aws.cached_clients(), "app clients exist already: they would not see the hook"
        log = self

        def before_send(request: Any, event_name: str = "", **_: Any) -> None:
            op = event_name.rsplit(".", 1)[-1]  # before-send.<service-id>.<Operation>
            log.events_total[op] += 1
            if log.events_window is not None:
                log.events_window.append(op)

        aws.session().events.register("before-send", before_send)

    def measure(self, fn: Callable[[], Any]) -> tuple[Any, list[Sent], list[str]]:
        self.window, self.events_window = [], []
        try:
            result = fn()
        finally:
            window, events = self.window, self.events_window
            self.window = self.events_window = None
        return result, window, events


def batch_keys(operation: str, body: Any) -> int:
    if operation != "BatchGetItem" or not body:
        return 0
    items = json.loads(body if isinstance(body, (str, bytes)) else b"".join(body))["RequestItems"]
    return sum(len(t["Keys"]) for t in items.values())


# ---------------------------------------------------------------------------------------
# The stack




class Api:
    def __init__(self, client: Any, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        payload = b"" if body is None else json.dumps(body).encode()
        resp = self.client.http.request(method, path, headers={**self.headers, **(headers or {})},
                                        body=payload)
        return resp

    @staticmethod
    def data(resp: Any) -> Any:
        return json.loads(resp.body)["data"]


# ---------------------------------------------------------------------------------------
# Reporting


@dataclass
class Row:
    name: str
    token: str  # "cold" | "warm"
    status: int
    sent: list[Sent]
    events: list[str]
    note: str = ""

    def count(self, service: str, layer: str | None = None) -> int:
        return sum(1 for s in self.sent if s.service == service and (layer is None or s.layer == layer))

    def layer_total(self, layer: str) -> int:
        return sum(1 for s in self.sent if s.layer == layer)

    @property
    def total(self) -> int:
        return len(self.sent)

    def ddb_ops(self) -> str:
        ops = Counter(s.operation for s in self.sent if s.service == "dynamodb")
        return ", ".join(f"{op}x{n}" for op, n in sorted(ops.items())) or "-"

    def detail(self) -> str:
        parts = []
        for layer in ("app", "provider"):
            ops = [f"{s.service}.{s.operation}" for s in self.sent if s.layer == layer]
            if ops:
                parts.append(f"{layer}: " + ", ".join(ops))
        return "; ".join(parts) or "none"


def print_table(rows: list[Row]) -> None:
    name_w = max(len(r.name) for r in rows) + 1
    ops_w = max(len(r.ddb_ops()) for r in rows) + 1
    head = (f"{'API call':<{name_w}} {'token':<5} {'HTTP':>4}  {'DynamoDB (by operation)':<{ops_w}}"
            f"{'DDB':>4}" + "".join(f"{HEAD[c]:>7}" for c in COLUMNS) + f"{'app':>5}{'prov':>5}{'total':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r.name:<{name_w}} {r.token:<5} {r.status:>4}  {r.ddb_ops():<{ops_w}}{r.count('dynamodb'):>4}"
              + "".join(f"{r.count(c):>7}" for c in COLUMNS)
              + f"{r.layer_total('app'):>5}{r.layer_total('provider'):>5}{r.total:>6}")


# ---------------------------------------------------------------------------------------


def main() -> int:
    os.chdir(ROOT)
    from devserver.infra import deploy_stack, use_local_aws

    with counting_moto() as moto:
        use_local_aws(moto.endpoint, STAGE)
        log = RequestLog()
        FOR_THE_MAIN_THREAD.set(True)
        log.install_endpoint_wrapper()
        deploy_stack(STAGE)
        log.install_event_hooks()
        return run(log, moto.endpoint)


def run(log: RequestLog, endpoint: str) -> int:
    import boto3
    from chalice.test import Client

    from app import app
    from chalicelib.bootstrap import Deps
    from chalicelib.services.accounts import create_account, token_cache
    from chalicelib.store import queues

    t_setup = time.perf_counter()
    account, _, issued = create_account(Deps(), "Bench", "admin@bench.example")
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)

    client = Client(app, stage_name="local", project_dir=str(ROOT))
    api = Api(client, issued.plaintext)

    def new_auth(label: str) -> Any:
        return api.call("POST", "/api/v1/authorizations", {
            "provider": "amazon_s3", "method": "access_keys", "label": label,
            "credentials": S3_KEYS})

    def new_job(i: int) -> Any:
        return api.call("POST", "/api/v1/jobs", {
            "provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
            "authorization_id": auth_id, "label": f"import {i}", "config": {"bucket": BUCKET}})

    auth_ids = []
    for label in ("bench keys", "bench keys 2"):
        r = new_auth(label)
        assert r.status_code == 201, r.body
        auth_ids.append(Api.data(r)["id"])
    auth_id = auth_ids[0]
    job_ids = []
    for i in range(N_JOBS):
        # Jobs alternate between two authorizations: the dashboard must read each once.
        auth_id = auth_ids[i % 2]
        r = new_job(i)
        assert r.status_code == 201, r.body
        job_ids.append(Api.data(r)["id"])
    auth_id = auth_ids[0]
    setup_s = time.perf_counter() - t_setup
    print(f"moto at {endpoint}; stage {STAGE!r}; 1 tenant, bucket {BUCKET!r}, "
          f"{N_JOBS} jobs on 2 S3 authorizations created through the API in {setup_s:.1f} s")
    print()

    rows: list[Row] = []

    def measure(name: str, token: str, fn: Callable[[], Any], expect: int, note: str = "") -> Any:
        if token == "cold":
            token_cache.clear()
        resp, sent, events = log.measure(fn)
        assert resp.status_code == expect, f"{name}: {resp.status_code} {resp.body!r}"
        rows.append(Row(name, token, resp.status_code, sent, events, note))
        return resp

    def both(name: str, fn: Callable[[], Any], expect: int, before: Callable[[], Any] | None = None) -> None:
        for token in ("cold", "warm"):
            if before is not None:
                before()
            measure(name, token, fn, expect)

    # Reads
    page_auths: set[str] = set()

    def dashboard() -> Any:
        resp = api.call("GET", "/api/v1/jobs")
        rows_ = Api.data(resp)
        assert len(rows_) == 50, f"dashboard returned {len(rows_)} rows, not 50"
        page_auths.update(r_["authorization_id"] for r_ in rows_)
        return resp

    both("GET /jobs (50 rows)", dashboard, 200)
    both("GET /authorizations", lambda: api.call("GET", "/api/v1/authorizations"), 200)
    both("GET /jobs/{id}", lambda: api.call("GET", f"/api/v1/jobs/{job_ids[0]}"), 200)
    both("GET /authorizations/{id}", lambda: api.call("GET", f"/api/v1/authorizations/{auth_id}"), 200)

    # Writes
    counter = iter(range(1000, 2000))
    both("POST /jobs (existing auth)", lambda: new_job(next(counter)), 201)
    both("POST /authorizations", lambda: new_auth(f"bench keys {next(counter)}"), 201)

    version: dict[str, int] = {}

    def read_version() -> None:
        version["v"] = Api.data(api.call("GET", f"/api/v1/jobs/{job_ids[1]}"))["version"]

    def patch() -> Any:
        return api.call("PATCH", f"/api/v1/jobs/{job_ids[1]}", {"label": f"renamed {next(counter)}"},
                        headers={"If-Match": str(version["v"])})

    both("PATCH /jobs/{id} (label)", patch, 200, before=read_version)
    to_pause = iter(job_ids[2:4])
    both("POST /jobs/{id}/pause", lambda: api.call("POST", f"/api/v1/jobs/{next(to_pause)}/pause"), 200)
    both("DELETE /authorizations/{id} refused", lambda: api.call("DELETE", f"/api/v1/authorizations/{auth_id}"),
         409)

    # Audience sizes: the list asks for all of them at once; a size is kept a minute, so
    # asking again reads no profile. The kept sizes' clock is held for these calls: the
    # figures do not depend on how fast this machine gets from one call to the next.
    from chalicelib.services import audiences as audiences_svc

    held = time.time()
    audiences_svc.clock = lambda: held
    aud_ids = [Api.data(api.call("POST", "/api/v1/audiences", {"name": f"bench audience {i}", "filter": {
        "all": [{"field": "plan", "op": "equals", "value": f"plan {i}"}]}}))["id"] for i in range(10)]

    def sizes() -> Any:
        return api.call("POST", "/api/v1/audiences/sizes", {"ids": aud_ids})

    def preview() -> Any:
        return api.call("POST", "/api/v1/audiences/preview", {"filter": {"all": []}})

    measure("POST /audiences/sizes (10, counted)", "warm", sizes, 200)
    both("POST /audiences/sizes (10, kept)", sizes, 200)
    measure("POST /audiences/preview (counted)", "warm", preview, 200)
    both("POST /audiences/preview (kept)", preview, 200)

    # Informational: the first run message of a process also looks up the queue URL.
    queues.reset()
    measure("POST /jobs, queue URL not cached", "warm", lambda: new_job(next(counter)), 201)
    measure("GET /jobs?status=paused (filtered)", "warm",
            lambda: api.call("GET", "/api/v1/jobs?status=paused"), 200)

    print_table(rows)
    print()
    print("requests sent, in order (app = chalicelib.store clients, provider = chalicelib.providers.calls):")
    for r in rows:
        print(f"  {r.name} [{r.token}]: {r.detail()}")
    print()

    # Cross-check: event hooks and the endpoint wrapper saw the same app-layer requests.
    mismatches = [
        r.name + f" [{r.token}]"
        for r in rows
        if sorted(r.events) != sorted(s.operation for s in r.sent if s.layer == "app")
    ]
    print("cross-check, before-send hooks vs endpoint wrapper (app layer): "
          + ("agree on every call" if not mismatches else "DIFFER on " + ", ".join(mismatches)))
    print()

    # Wall time, relative to a call that sends no AWS request (same client, same run), and
    # to the same Query sent straight through the app's DynamoDB client (what the app adds
    # on top of its one request). The three alternate so drift hits them alike.
    from chalicelib.config import settings
    from chalicelib.store import aws
    from chalicelib.store import keys as K

    ddb = aws.client("dynamodb")
    query = {
        "TableName": settings().table_name,
        "KeyConditionExpression": "PK = :pk AND begins_with(SK, :p)",
        "ExpressionAttributeValues": {":pk": {"S": K.account_pk(account.id)}, ":p": {"S": "JOB#"}},
        "Limit": 50,
        "ScanIndexForward": False,
    }
    token_cache.clear()
    api.call("GET", "/api/v1/jobs")  # warm the token cache
    times: dict[str, list[float]] = {"healthz": [], "jobs": [], "raw": []}
    for _ in range(WALL_ROUNDS):
        t0 = time.perf_counter()
        rh = api.call("GET", "/api/v1/healthz")
        t1 = time.perf_counter()
        rj = api.call("GET", "/api/v1/jobs")
        t2 = time.perf_counter()
        n = len(ddb.query(**query)["Items"])
        t3 = time.perf_counter()
        assert rh.status_code == 200 and rj.status_code == 200 and n == 50
        times["healthz"].append(t1 - t0)
        times["jobs"].append(t2 - t1)
        times["raw"].append(t3 - t2)
    mh, mj, mr = (statistics.median(times[k]) for k in ("healthz", "jobs", "raw"))
    print(f"wall time, chalice.test.Client, median of {WALL_ROUNDS} alternating (warm token cache):")
    print(f"  GET /healthz          {mh * 1000:7.2f} ms  (no AWS request)")
    print(f"  GET /jobs (50 rows)   {mj * 1000:7.2f} ms  (Query + BatchGetItem)")
    print(f"  raw DynamoDB Query    {mr * 1000:7.2f} ms  (same 50 items, app's client, no app code)")
    print(f"  ratio GET /jobs / GET /healthz = {mj / mh:.1f}")
    print(f"  ratio GET /jobs / raw Query    = {mj / mr:.2f}")
    print()

    def row(name: str, token: str = "warm") -> Row:
        return next(r for r in rows if r.name == name and r.token == token)

    results: list[tuple[str, bool, str]] = []

    def budget(label: str, ok: bool, got: str) -> None:
        results.append((label, ok, got))

    # The page's rows warn when their authorization is unhealthy; health lives on the
    # authorization items, so the page is its Query plus ONE BatchGetItem asking for each
    # distinct authorization once (README: "Dashboard page").
    d = row("GET /jobs (50 rows)")
    d_ops = Counter(s_.operation for s_ in d.sent)
    d_keys = sum(s_.keys for s_ in d.sent)
    budget("dashboard page (50 rows) = 1 Query + 1 BatchGetItem", d_ops == Counter(Query=1, BatchGetItem=1)
           and d.total == 2 and d_keys == len(page_auths),
           f"{d.ddb_ops()}, {d.total} total, {d_keys} keys for {len(page_auths)} distinct authorizations "
           f"(cold: {row('GET /jobs (50 rows)', 'cold').total})")
    a = row("GET /authorizations")
    budget("authorizations dashboard page = 1 DynamoDB request", a.count("dynamodb") == 1 and a.total == 1,
           f"{a.count('dynamodb')} DynamoDB, {a.total} total (cold: {row('GET /authorizations', 'cold').total})")
    j = row("GET /jobs/{id}")
    budget("job summary <= 3 requests", j.total <= 3,
           f"{j.total} (cold: {row('GET /jobs/{id}', 'cold').total})")
    s = row("GET /authorizations/{id}")
    budget("authorization summary <= 3 requests", s.total <= 3,
           f"{s.total} (cold: {row('GET /authorizations/{id}', 'cold').total})")
    c = row("POST /jobs (existing auth)")
    budget("create job <= 4 + credential check", c.layer_total("app") <= 4,
           f"{c.layer_total('app')} app + {c.layer_total('provider')} credential check "
           f"(cold: {row('POST /jobs (existing auth)', 'cold').layer_total('app')} app; "
           f"queue URL not cached: {row('POST /jobs, queue URL not cached').layer_total('app')} app)")
    counted = row("POST /audiences/sizes (10, counted)")
    budget("sizes of 10 audiences, counted = 1 read of the profiles",
           Counter(s_.operation for s_ in counted.sent)["Query"] == 16,
           f"{counted.ddb_ops()}, {counted.total} total (a Query per profile shard, one pass for all 10)")
    kept = row("POST /audiences/sizes (10, kept)")
    budget("sizes of 10 audiences, kept = 2 BatchGetItem", Counter(s_.operation for s_ in kept.sent)
           == Counter(BatchGetItem=2), f"{kept.ddb_ops()}, {kept.total} total "
           f"(cold: {row('POST /audiences/sizes (10, kept)', 'cold').total})")
    p_kept = row("POST /audiences/preview (kept)")
    budget("audience preview, kept = 1 request", p_kept.total == 1,
           f"{p_kept.ddb_ops()} (counted: {row('POST /audiences/preview (counted)').total}; "
           f"cold: {row('POST /audiences/preview (kept)', 'cold').total})")
    scans = sum(1 for s_ in log.everything if s_.operation == "Scan") + log.events_total["Scan"]
    budget("zero Scans (whole run, setup included)", scans == 0,
           f"{scans} Scan of {len(log.everything)} requests seen")

    print("budgets (warm token cache; cold figures in brackets):")
    for label, ok, got in results:
        print(f"  {'PASS' if ok else 'FAIL'}  {label:<52} {got}")
    print()

    failed = [label for label, ok, _ in results if not ok] + (["cross-check"] if mismatches else [])
    print()
    print(f"RESULT {'PASS' if not failed else 'FAIL'} {len(results) - len(failed)}/{len(results)} budgets hold"
          + ("" if not failed else ": " + "; ".join(failed)))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(exit_code(main()))
