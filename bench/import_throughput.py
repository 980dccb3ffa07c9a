"""S3 CSV import throughput, Switchyard against awswrangler, on one moto server in one run.

The issue's budget: an S3 CSV import of 20,000 rows that merges into existing profiles runs
at >= 1.0 x the rows/s of awswrangler (wr.s3.read_csv + wr.dynamodb.put_df) on the same
file and the same moto server, and sends <= 100 AWS requests per 1,000 profiles.

Setup (outside every measured window):

* a moto server in this process, the infra/ stack deployed into it (devserver.infra);
* a 20,000-row CSV of profiles (email, first_name, last_name, city, country, plan,
  signed_up_at; fixed seed; quoted commas and accents included) in a bucket;
* one tenant (accounts.create_account) and an access_keys authorization made through the
  API; 10,000 of the file's emails already exist as profiles with older values (written
  with ProfileRepo.upsert_batch), so the import merges into them.

Measured, alternating, twice:

* A  Switchyard: POST /jobs (chalice.test.Client, stage "local"), then the runs queue is
     delivered to chalicelib.services.engine.Engine as Lambda would (the Drain loop of
     tests/engine/conftest.py, EngineOptions(max_records=5000)) until the job is completed.
     Round 1 merges: 10,000 new profiles, 10,000 existing ones changed (their fields take
     the file's values; where the file's cell is empty the stored value stays). Round 2
     re-imports the same file into the now-existing profiles: every record is unchanged.
* B  awswrangler: wr.s3.read_csv of the same object, then wr.dynamodb.put_df into a fresh
     table keyed by email (its defaults: use_threads=True). put_df does not merge, it
     overwrites whole items; for the same starting state the table is first loaded
     (outside the window) with what Switchyard's store holds before that round: round 1
     the same 10,000 older rows, round 2 all 20,000 rows.

Counting: every HTTP attempt of every botocore client in the process (app clients, the
provider layer's per-step S3 clients, the Drain's SQS client, awswrangler's clients, all
threads) through a wrapper on botocore.endpoint.Endpoint._do_get_response, attributed to a
part by service, operation and table. Time per API call is taken around
BaseClient._make_api_call. Where Switchyard's time goes is measured by wrapping the
engine's parts (S3 reader, mapping, profile upsert, transactions) with exclusive timers.

moto runs in this process: its CPU competes with the client's for one GIL, and it answers a
request in a few ms whatever AWS would take. Compare ratios within this run, and count
requests; absolute times are moto's, not AWS's.

    .venv/bin/python bench/import_throughput.py

Exit status 0 when every budget holds and every check passes, 1 otherwise.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import random
import socket
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STAGE = "benchimport"
N = 20_000
ROUNDS = 2
MAX_RECORDS = 5_000
BUCKET = "bench-import-throughput"
KEY = "drops/people-20k.csv"
PEER_TABLE = "bench-peer-profiles-{round}"
S3_KEYS = {"access_key_id": "AKIABENCHIMPORTTHRU1", "secret_access_key": "benchSECRETimport1234567890"}
BUDGET_RATIO = 1.0
BUDGET_PER_1K = 100
WAIT_LIMIT_S = 240  # a Switchyard run that is not completed by then fails the bench

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Linus",
         "Zoë", "José", "Chloé", "Søren", "Ana", "Mei", "Olu", "Priya", "Jean-Luc", "Anaïs"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
        "Hamilton", "O'Brien", "Núñez", "Smith, Jr.", "van Rossum", "Müller", "Nakamura", "Okafor"]
PLACES = [("FR", "Paris"), ("DE", "Berlin"), ("US", "Boston"), ("GB", "London"), ("JP", "Osaka"),
          ("US", "Washington, D.C."), ("BR", "São Paulo"), ("ES", "A Coruña"), ("NG", "Lagos"),
          ("IN", "Bengaluru"), ("CA", "Montréal"), ("SE", "Malmö")]
PLANS = ["free", "starter", "pro", "enterprise"]
DOMAINS = ["example.com", "mail.example.org", "corp.example.net", "example.io"]
COLUMNS = ["email", "first_name", "last_name", "city", "country", "plan", "signed_up_at"]
JOB_CONFIG = {"bucket": BUCKET, "prefix": KEY}  # merge rule "latest" for every field (the default)


# ---------------------------------------------------------------------------------------
# Data


def make_rows() -> list[dict[str, str]]:
    rnd = random.Random(20_000)
    start = datetime(2019, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(N):
        first, last = rnd.choice(FIRST), rnd.choice(LAST)
        country, city = rnd.choice(PLACES)
        local = "".join(c for c in f"{first}.{last}".lower() if c.isascii() and (c.isalnum() or c == "."))
        rows.append({
            "email": f"{local}.{i:05d}@{rnd.choice(DOMAINS)}",
            "first_name": first,
            "last_name": "" if rnd.random() < 0.02 else last,
            "city": "" if rnd.random() < 0.03 else city,
            "country": country,
            "plan": rnd.choice(PLANS),
            "signed_up_at": (start + timedelta(minutes=rnd.randrange(3_000_000))).strftime("%Y-%m-%dT%H:%M:%SZ"),
        })
    return rows


def seeded(row: dict[str, str]) -> dict[str, str]:
    """What the store held before the file came: an older signup, a trial plan, another city."""
    old = dict(row)
    old["plan"] = "trial"
    old["city"] = "Lyon"
    old["signed_up_at"] = "2018-06-01T12:00:00Z"
    return old


def to_csv(rows: list[dict[str, str]]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


# ---------------------------------------------------------------------------------------
# Counting and timing


@dataclass
class Window:
    name: str
    requests: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (part, service, op)
    items: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    bytes_sent: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    call_s: defaultdict[tuple[str, str, str], float] = field(default_factory=lambda: defaultdict(float))
    # CPU inside API calls: the calling thread's (botocore: serialize, sign, parse) and, for
    # calls of the main thread while no other client thread runs, everything else in the
    # process during the call (moto's server threads).
    call_client_cpu: defaultdict[tuple[str, str, str], float] = field(default_factory=lambda: defaultdict(float))
    call_server_cpu: defaultdict[tuple[str, str, str], float] = field(default_factory=lambda: defaultdict(float))
    section_server_cpu: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    section_call_cpu: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    server_cpu_known: bool = True
    section_s: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    section_req: Counter[str] = field(default_factory=Counter)
    section_req_s: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    section_calls: Counter[str] = field(default_factory=Counter)
    worker_cpu_s: float = 0.0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    main_cpu_s: float = 0.0
    rows: int = N

    def total(self, part: str | None = None) -> int:
        return sum(n for (p, _, _), n in self.requests.items() if part is None or p == part)

    def count(self, part: str, *ops: str) -> int:
        return sum(n for (p, _, o), n in self.requests.items()
                   if p == part and (not ops or any(o == x or o.startswith(x + " ") for x in ops)))

    def service_count(self, part: str, service: str) -> int:
        return sum(n for (p, s, _), n in self.requests.items() if p == part and s == service)

    def per_1k(self, n: int) -> float:
        return n * 1000 / self.rows

    @property
    def rate(self) -> float:
        return self.rows / self.wall_s


class Meter:
    """Counts every botocore HTTP attempt (any thread) into the open window, by part."""

    def __init__(self) -> None:
        self.window: Window | None = None
        self.lock = threading.Lock()
        self.local = threading.local()
        self.main = threading.get_ident()
        self.delivery_clients: set[int] = set()
        self.tables: dict[str, str] = {}  # table name -> part
        self.paused_s = 0.0
        self.stack: list[list[Any]] = []  # [part, resumed at] of the main thread

    # -- which part a call belongs to ---------------------------------------------------

    def part_of(self, client: Any, service: str, op: str, params: dict[str, Any]) -> str:
        if id(client) in self.delivery_clients:
            return "delivery"
        if service in ("s3", "sts"):
            return "s3"
        if service in ("sqs", "secretsmanager"):
            return "control"
        if service == "dynamodb":
            names = [params.get("TableName"), *(params.get("RequestItems") or {})]
            for t in params.get("TransactItems") or []:
                names += [v.get("TableName") for v in t.values() if isinstance(v, dict)]
            for name in names:
                if name in self.tables:
                    return self.tables[name]
                if isinstance(name, str) and name.startswith("bench-peer"):
                    return "peer"
        return "other"

    @staticmethod
    def kind_of(params: dict[str, Any]) -> str:
        """Which items of the profile store a batch touches: identifier items or profiles."""
        for v in (params.get("RequestItems") or {}).values():
            first = v["Keys"][0] if isinstance(v, dict) else v[0]["PutRequest"]["Item"]
            sk = first.get("SK", {}).get("S", "")
            return " (identifiers)" if sk == "ID" else " (profiles)" if sk.startswith("PROF#") else ""
        return ""

    @staticmethod
    def items_of(op: str, params: dict[str, Any]) -> int:
        if op == "BatchWriteItem":
            return sum(len(v) for v in (params.get("RequestItems") or {}).values())
        if op == "BatchGetItem":
            return sum(len(v.get("Keys", [])) for v in (params.get("RequestItems") or {}).values())
        if op == "TransactWriteItems":
            return len(params.get("TransactItems") or [])
        return 1

    # -- wrappers ------------------------------------------------------------------------

    def install(self) -> None:
        from botocore.client import BaseClient
        from botocore.endpoint import Endpoint

        meter = self
        make_call = BaseClient._make_api_call
        do_get = Endpoint._do_get_response

        def timed_call(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            w = meter.window
            if w is None:
                return make_call(client, operation_name, api_params)
            service = client.meta.service_model.service_name
            part = meter.part_of(client, service, operation_name, api_params)
            key = (part, service, operation_name + (meter.kind_of(api_params) if part == "profiles" else ""))
            meter.local.key = key
            main = threading.get_ident() == meter.main
            c0, p0, t0 = time.thread_time(), time.process_time(), time.perf_counter()
            try:
                return make_call(client, operation_name, api_params)
            finally:
                dt = time.perf_counter() - t0
                cpu = time.thread_time() - c0
                server = time.process_time() - p0 - cpu
                meter.local.key = None
                top = meter.top()
                with meter.lock:
                    w.call_s[key] += dt
                    w.call_client_cpu[key] += cpu
                    w.items[key] += meter.items_of(operation_name, api_params)
                    if main:
                        w.call_server_cpu[key] += server
                    else:
                        w.server_cpu_known = False
                    if top is not None:
                        w.section_req_s[top] += dt
                        w.section_call_cpu[top] += cpu
                        if main:
                            w.section_server_cpu[top] += server

        def counted(endpoint: Any, request: Any, operation_model: Any, context: Any) -> Any:
            w = meter.window
            if w is not None:
                key = getattr(meter.local, "key", None) or (
                    "other", operation_model.service_model.service_name, operation_model.name)
                body = request.body
                size = len(body) if isinstance(body, bytes | bytearray | str) else 0
                top = meter.top()
                with meter.lock:
                    w.requests[key] += 1
                    w.bytes_sent[key] += size
                    if top is not None:
                        w.section_req[top] += 1
            return do_get(endpoint, request, operation_model, context)

        BaseClient._make_api_call = timed_call  # type: ignore[method-assign]
        Endpoint._do_get_response = counted  # type: ignore[method-assign]

    # -- exclusive section timers (main thread) ---------------------------------------------

    def _stack(self) -> list[list[Any]]:
        return self.stack

    def top(self) -> str | None:
        """The main thread's innermost part: requests of worker threads it waits for count there."""
        st = self.stack
        return st[-1][0] if st else None

    def in_section(self, name: str) -> bool:
        return any(s[0] == name for s in self._stack())

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        w = self.window
        if w is None or threading.get_ident() != self.main:
            yield
            return
        st = self._stack()
        t = time.perf_counter()
        if st:
            w.section_s[st[-1][0]] += t - st[-1][1]
        st.append([name, t])
        w.section_calls[name] += 1
        try:
            yield
        finally:
            t = time.perf_counter()
            w.section_s[name] += t - st[-1][1]
            st.pop()
            if st:
                st[-1][1] = t

    def wrap(self, owner: Any, attr: str, name: str, *, only_in: str | None = None) -> None:
        original = getattr(owner, attr)
        meter = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            if meter.window is None or (only_in is not None and not meter.in_section(only_in)):
                return original(*args, **kwargs)
            with meter.section(name):
                return original(*args, **kwargs)

        setattr(owner, attr, timed)

    @contextlib.contextmanager
    def measure(self, name: str) -> Iterator[Window]:
        w = Window(name)
        self.window = w
        self.paused_s = 0.0
        self.stack = []
        c0, m0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
        try:
            with self.section("(outside the named parts)"):
                yield w
        finally:
            w.wall_s = time.perf_counter() - t0 - self.paused_s
            w.cpu_s = time.process_time() - c0
            w.main_cpu_s = time.thread_time() - m0
            self.window = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Bench bookkeeping inside a window (is the job done yet?): not counted, not timed."""
        w, self.window = self.window, None
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.paused_s += time.perf_counter() - t0
            self.window = w
            st = self._stack()
            if st:
                st[-1][1] += time.perf_counter() - t0


# ---------------------------------------------------------------------------------------
# The stack, the API, the runs queue


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Api:
    def __init__(self, client: Any, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None) -> Any:
        payload = b"" if body is None else json.dumps(body).encode()
        resp = self.client.http.request(method, "/api/v1" + path, headers=self.headers, body=payload)
        if resp.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.body!r}")
        return json.loads(resp.body)["data"]


class Drain:
    """The runs queue delivered to the engine as Lambda + SQS would (tests/engine/conftest.py):
    delete on success, leave the message (visible again at once) when the handler raises."""

    def __init__(self, deps: Any, options: Any, meter: Meter) -> None:
        import boto3

        from chalicelib.config import RUNS_QUEUE
        from chalicelib.services.engine import Engine

        self.engine = Engine(deps, options)
        self.sqs = boto3.client("sqs", region_name="us-east-1")
        meter.delivery_clients.add(id(self.sqs))
        self.url = self.sqs.get_queue_url(QueueName=RUNS_QUEUE)["QueueUrl"]
        self.errors: list[BaseException] = []

    def run(self, limit: int = 500) -> int:
        from chalicelib.services.engine import Delivery

        handled = 0
        while handled < limit:
            msgs = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=1,
                                            VisibilityTimeout=30).get("Messages", [])
            if not msgs:
                return handled
            m = msgs[0]
            handled += 1
            try:
                self.engine.handle(Delivery(body=json.loads(m["Body"]), message_id=m["MessageId"]))
            except Exception as exc:  # a crash: SQS would redeliver after the visibility timeout
                self.errors.append(exc)
                self.sqs.change_message_visibility(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"],
                                                   VisibilityTimeout=0)
                continue
            self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
        return handled


# ---------------------------------------------------------------------------------------
# The two measured runs


@dataclass
class Outcome:
    window: Window
    checks: list[tuple[str, bool, str]]
    note: str


def instrument_engine(meter: Meter) -> None:
    from chalicelib.domain import profiles as P
    from chalicelib.providers.s3_files import S3FileReader
    from chalicelib.services import credentials as creds_svc
    from chalicelib.services.engine import Engine
    from chalicelib.store.dynamo import Table
    from chalicelib.store.jobs import JobRepo
    from chalicelib.store.profiles import ProfileRepo

    meter.wrap(Drain, "run", "delivery (SQS receive/delete, as Lambda's poller)")
    meter.wrap(Engine, "handle", "engine control (job/run reads, step lease, enqueue next)")
    meter.wrap(S3FileReader, "read", "S3 read + CSV parse (provider)")
    meter.wrap(creds_svc, "load", "credentials (Secrets Manager)")
    meter.wrap(P, "map_record", "map rows to records")
    meter.wrap(ProfileRepo, "upsert_batch", "profile upsert (DynamoDB profile store)")
    engine_part = "engine control (job/run reads, step lease, enqueue next)"
    meter.wrap(JobRepo, "save", "commit (TransactWriteItems: run start, steps, job)", only_in=engine_part)
    meter.wrap(Table, "transact", "commit (TransactWriteItems: run start, steps, job)", only_in=engine_part)


def run_switchyard(rnd: int, meter: Meter, api: Any, auth_id: str, deps: Any, account_id: str,
                   seed_emails: list[str], file_rows: dict[str, dict[str, str]]) -> Outcome:
    from chalicelib.domain.statuses import JobStatus
    from chalicelib.services.engine import EngineOptions

    drain = Drain(deps, EngineOptions(max_records=MAX_RECORDS), meter)
    with meter.measure(f"A{rnd}") as w:
        with meter.section("POST /jobs (API, credential check)"):
            job = api.call("POST", "/jobs", {
                "provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
                "authorization_id": auth_id, "label": f"bench import {rnd}", "config": JOB_CONFIG})
        deadline = time.monotonic() + WAIT_LIMIT_S
        while True:
            drain.run()
            with meter.paused():
                current = deps.jobs.get(account_id, job["id"], consistent=True)
            if current.status is JobStatus.COMPLETED or current.status is JobStatus.FAILED:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job['id']} still {current.status.value} after {WAIT_LIMIT_S} s")
            time.sleep(0.1)  # a delayed message (a retry): wait for it as Lambda would
    checks: list[tuple[str, bool, str]] = []
    final = api.call("GET", f"/jobs/{job['id']}")
    runs = api.call("GET", f"/jobs/{job['id']}/runs")
    run = runs[0]
    checks.append((f"A{rnd}: job completed, one run succeeded",
                   final["status"] == "completed" and len(runs) == 1 and run["status"] == "succeeded",
                   f"job {final['status']}, run {run['status']}, progress {run['progress']}"))
    checks.append((f"A{rnd}: no delivery raised", not drain.errors,
                   "; ".join(repr(e) for e in drain.errors[:3]) or "none"))
    if rnd == 1:
        ok = run["added"] == N and not run["omitted_reasons"]
        checks.append((f"A{rnd}: 20,000 added or updated, none omitted", ok,
                       f"added {run['added']}, omitted {run['omitted_reasons']}"))
    else:
        ok = run["added"] == 0 and run["omitted_reasons"] == {"unchanged": N}
        checks.append((f"A{rnd}: re-import finds 20,000 unchanged", ok,
                       f"added {run['added']}, omitted {run['omitted_reasons']}"))
    # Merged profiles: the file's values, and the stored ones where the file's cell is empty.
    blank = [e for e in seed_emails if not file_rows[e]["city"]][:3]
    sample = blank + [e for e in seed_emails if file_rows[e]["city"]][:3]
    with meter.paused():
        merged = [deps.profiles.find(account_id, "email", e) for e in sample]
    expected = [
        {**{k: v for k, v in seeded(file_rows[e]).items() if k != "email" and v},
         **{k: v for k, v in file_rows[e].items() if k != "email" and v}}
        for e in sample
    ]
    got = [p.fields if p is not None else None for p in merged]
    checks.append((f"A{rnd}: merged profiles = file values + stored ones for empty cells", got == expected,
                   f"e.g. {got[0]}"))
    note = ("merge: 10,000 new + 10,000 existing changed" if rnd == 1
            else "re-import: 20,000 existing, unchanged")
    return Outcome(w, checks, note)


def run_peer(rnd: int, meter: Meter, seed_items: list[dict[str, str]], blank_city: str) -> Outcome:
    import awswrangler as wr
    import boto3
    import pandas as pd

    table = PEER_TABLE.format(round=rnd)
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "email", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "email", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    t_seed = time.perf_counter()
    for start in range(0, len(seed_items), 25):
        pending: dict[str, Any] = {table: [
            {"PutRequest": {"Item": {k: {"S": v} for k, v in item.items() if v != ""}}}
            for item in seed_items[start:start + 25]]}
        while pending:
            pending = ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
    seed_s = time.perf_counter() - t_seed
    worker_cpu: list[float] = []
    from awswrangler.dynamodb import _write

    original = _write._put_df

    def put_df_part(*args: Any, **kwargs: Any) -> Any:  # one per worker thread
        t0 = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            worker_cpu.append(time.thread_time() - t0)

    _write._put_df = put_df_part
    try:
        with meter.measure(f"B{rnd}") as w:
            with meter.section("wr.s3.read_csv"):
                df = wr.s3.read_csv(path=f"s3://{BUCKET}/{KEY}")
            with meter.section("float -> Decimal"):
                floats = [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]
                for c in floats:
                    df[c] = df[c].map(lambda v: None if pd.isna(v) else Decimal(str(v))).astype(object)
            with meter.section("wr.dynamodb.put_df"):
                wr.dynamodb.put_df(df=df, table_name=table)
    finally:
        _write._put_df = original
    w.worker_cpu_s = sum(worker_cpu)
    n_items = ddb.describe_table(TableName=table)["Table"]["ItemCount"]
    checks = [(f"B{rnd}: peer table holds 20,000 items", n_items == N and len(df) == N,
               f"{n_items} items, {len(df)} rows read, float columns made Decimal: {floats or 'none'}")]
    # put_df replaces whole items: what a blank cell held before is gone (Switchyard keeps it).
    before = next(i for i in seed_items if i["email"] == blank_city).get("city") or "(none)"
    after = ddb.get_item(TableName=table, Key={"email": {"S": blank_city}})["Item"].get("city", {}).get("S")
    checks.append((f"B{rnd}: (info) put_df overwrites, it does not merge", True,
                   f"{blank_city}: city {before!r} before, {after or '(gone)'} after (blank in the file)"))
    note = f"overwrite 20,000 ({len(seed_items):,} pre-existing)"
    checks.append((f"B{rnd}: table pre-loaded outside the window", True,
                   f"{len(seed_items):,} items in {seed_s:.1f} s"))
    return Outcome(w, checks, note)


# ---------------------------------------------------------------------------------------
# Report


def fmt(x: float) -> str:
    return f"{x:,.1f}"


def print_runs(outcomes: list[tuple[str, Outcome]]) -> None:
    head = (f"{'run':<4} {'who':<12} {'what':<44} {'wall s':>7} {'rows/s':>8} {'requests':>9} "
            f"{'req/1k':>7} {'CPU s':>6} {'client CPU s':>13} {'wall-CPU s':>11}")
    print(head)
    print("-" * len(head))
    for who, o in outcomes:
        w = o.window
        client_cpu = w.main_cpu_s + w.worker_cpu_s
        print(f"{w.name:<4} {who:<12} {o.note:<44} {w.wall_s:>7.2f} {w.rate:>8,.0f} {w.total():>9,} "
              f"{w.per_1k(w.total()):>7.1f} {w.cpu_s:>6.2f} {client_cpu:>13.2f} {w.wall_s - w.cpu_s:>11.2f}")
    print("  CPU s = the whole process (client + moto's server threads); client CPU s = the threads")
    print("  that ran the client (main thread; for awswrangler also put_df's worker threads);")
    print("  wall-CPU s = time this process did not run (waits, or other processes on the machine's cores).")


def print_split(sw: list[Window], peer: list[Window]) -> None:
    cols = [*sw, *peer]
    rows: list[tuple[str, Callable[[Window], int]]] = [
        ("DynamoDB profile store: BatchGetItem ids", lambda w: w.count("profiles", "BatchGetItem (identifiers)")),
        ("DynamoDB profile store: BatchGetItem profiles", lambda w: w.count("profiles", "BatchGetItem (profiles)")),
        ("DynamoDB profile store: BatchWriteItem ids", lambda w: w.count("profiles", "BatchWriteItem (identifiers)")),
        ("DynamoDB profile store: BatchWriteItem profiles",
         lambda w: w.count("profiles", "BatchWriteItem (profiles)")),
        ("DynamoDB profile store: write lease", lambda w: w.count("profiles", "UpdateItem", "DeleteItem")),
        ("= profile writes and reads (DynamoDB)", lambda w: w.total("profiles")),
        ("S3 reads (S3 + STS)", lambda w: w.total("s3")),
        ("control plane: DynamoDB (jobs/runs/logs)", lambda w: w.service_count("control", "dynamodb")),
        ("control plane: SQS (app sends)", lambda w: w.service_count("control", "sqs")),
        ("control plane: Secrets Manager", lambda w: w.service_count("control", "secretsmanager")),
        ("control plane: runs queue delivery", lambda w: w.total("delivery")),
        ("= control plane", lambda w: w.total("control") + w.total("delivery")),
        ("peer: DynamoDB (put_df)", lambda w: w.total("peer")),
        ("other", lambda w: w.total("other")),
        ("TOTAL", lambda w: w.total()),
    ]
    head = f"{'requests per 1,000 profiles (count)':<44}" + "".join(f"{w.name:>16}" for w in cols)
    print(head)
    print("-" * len(head))
    for label, f in rows:
        if all(f(w) == 0 for w in cols) and label != "TOTAL":
            continue
        print(f"{label:<44}" + "".join(f"{w.per_1k(f(w)):>9.1f} ({f(w):>4})" for w in cols))
    print("  runs queue delivery = the Drain's ReceiveMessage/DeleteMessage: what Lambda's SQS event")
    print("  source sends (and SQS bills); counted in the total.")


def print_ops(w: Window) -> None:
    parts: dict[str, list[str]] = defaultdict(list)
    for (part, service, op), n in sorted(w.requests.items()):
        items = w.items[(part, service, op)]
        k = (part, service, op)
        ms = w.call_s[k] * 1000 / max(1, n)
        cpu = f"client {w.call_client_cpu[k] * 1000 / n:.1f}"
        if w.server_cpu_known:
            cpu += f" + moto {w.call_server_cpu[k] * 1000 / n:.1f}"
        extra = f", {items / n:.0f} items/req" if items != n else ""
        parts[part].append(f"{service}.{op} x{n} ({ms:.1f} ms/call = {cpu} ms CPU{extra})")
    for part in sorted(parts):
        print(f"  {w.name} {part}: " + "; ".join(parts[part]))


def print_sections(w: Window) -> None:
    total = w.wall_s
    threads = not w.server_cpu_known
    head = (f"  {'part of ' + w.name:<58} {'wall s':>7} {'%':>5} {'calls':>6} {'AWS req':>8} "
            f"{'in AWS calls s':>15} {'botocore CPU':>13} {'moto CPU':>9} {'own Python s':>13}")
    print(head)
    for name, sec in sorted(w.section_s.items(), key=lambda kv: -kv[1]):
        req_s = w.section_req_s[name]
        moto = "n/a" if threads else f"{w.section_server_cpu[name]:.2f}"
        own = "n/a" if threads and w.section_req[name] else f"{sec - req_s:.2f}"
        print(f"  {name:<58} {sec:>7.2f} {100 * sec / total:>5.1f} {w.section_calls[name]:>6} "
              f"{w.section_req[name]:>8} {req_s:>15.2f} {w.section_call_cpu[name]:>13.2f} {moto:>9} {own:>13}")
    print(f"  {'(sum)':<58} {sum(w.section_s.values()):>7.2f}   (window wall {total:.2f} s)")
    if threads:
        print("  put_df's requests come from its worker threads: their times add up over threads (more than")
        print(f"  the wall time); moto's CPU for the window = process CPU - client threads' CPU = "
              f"{w.cpu_s - w.main_cpu_s - w.worker_cpu_s:.2f} s")


def _op(w: Window, part: str, op: str) -> tuple[int, int, float, float, float, float]:
    def total(d: Any) -> Any:
        return sum(v for (p, _, o), v in d.items() if p == part and o == op)

    return (total(w.requests), total(w.items), total(w.call_s), total(w.call_client_cpu),
            total(w.call_server_cpu), total(w.bytes_sent))


def explain(a: Window, b: Window) -> list[str]:
    """Why A is slower than B, from the measured figures."""
    lines = []
    a_moto = a.cpu_s - a.main_cpu_s
    b_client = b.main_cpu_s + b.worker_cpu_s
    b_moto = b.cpu_s - b_client
    lines.append(f"wall {a.wall_s:.2f} s vs {b.wall_s:.2f} s: Switchyard must lose {a.wall_s - b.wall_s:.2f} s "
                 f"({100 * (1 - b.wall_s / a.wall_s):.0f}% of its time) to reach 1.0")
    lines.append(f"Switchyard: client CPU {a.main_cpu_s:.2f} s, moto CPU {a_moto:.2f} s; awswrangler: client CPU "
                 f"{b_client:.2f} s, moto CPU {b_moto:.2f} s (one GIL: the two add up to the wall time)")
    up = "profile upsert (DynamoDB profile store)"
    for name in (up, "S3 read + CSV parse (provider)", "commit (TransactWriteItems: run start, steps, job)",
                 "map rows to records"):
        lines.append(f"{name}: {a.section_s[name]:.2f} s ({100 * a.section_s[name] / a.wall_s:.0f}%), "
                     f"{a.section_req[name]} requests; moto CPU {a.section_server_cpu[name]:.2f} s, botocore "
                     f"CPU {a.section_call_cpu[name]:.2f} s, own Python "
                     f"{a.section_s[name] - a.section_req_s[name]:.2f} s")
    for op, what in (("BatchGetItem (identifiers)", "keys"), ("BatchGetItem (profiles)", "keys"),
                     ("BatchWriteItem (identifiers)", "items"), ("BatchWriteItem (profiles)", "items")):
        n, items, secs, cli, srv, size = _op(a, "profiles", op)
        if n:
            lines.append(f"  {op}: {n} requests, {items:,} {what}, {secs:.2f} s = moto {srv:.2f} s "
                         f"({srv * 1e6 / items:.0f} us per {what[:-1]}) + botocore {cli:.2f} s "
                         f"({cli * 1e6 / items:.0f} us per {what[:-1]}); {size / max(1, items):.0f} B sent per "
                         f"{what[:-1]}")
    pn, pitems, _, pcli, _, psize = _op(b, "peer", "BatchWriteItem")
    if pn:
        lines.append(f"  awswrangler BatchWriteItem: {pn} requests, {pitems:,} items; moto CPU for its whole window "
                     f"{b_moto:.2f} s ({b_moto * 1e6 / pitems:.0f} us per item), botocore {pcli:.2f} s "
                     f"({pcli * 1e6 / pitems:.0f} us per item), {psize / pitems:.0f} B sent per item")
    return lines


# ---------------------------------------------------------------------------------------


def main() -> int:
    os.chdir(ROOT)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        from devserver.infra import deploy_stack, use_local_aws

        use_local_aws(endpoint, STAGE)
        deploy_stack(STAGE)
        return run(endpoint)
    finally:
        server.stop()


def run(endpoint: str) -> int:
    t_bench = time.perf_counter()
    phases: dict[str, float] = {}
    t = time.perf_counter()
    import awswrangler as wr
    import boto3
    from chalice.test import Client

    from app import app
    from chalicelib.config import settings
    from chalicelib.domain import profiles as P
    from chalicelib.services.accounts import create_account
    from chalicelib.services.deps import Deps, use

    meter = Meter()
    meter.tables = {settings().profiles_table_name: "profiles", settings().table_name: "control"}
    meter.install()
    instrument_engine(meter)
    phases["imports"], t = time.perf_counter() - t, time.perf_counter()

    rows = make_rows()
    body = to_csv(rows)
    file_rows = {r["email"]: r for r in rows}
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=body)
    s3.put_object(Bucket=BUCKET, Key="warmup/tiny.csv", Body=b"email,plan\na@example.com,free\n")
    phases["CSV made and uploaded"], t = time.perf_counter() - t, time.perf_counter()

    deps = Deps()
    use(deps)
    account, _, issued = create_account(deps, "Bench Import", "admin@bench-import.example")
    phases["tenant"], t = time.perf_counter() - t, time.perf_counter()

    # Half the file's people exist already, with older values (outside the compared windows;
    # measured like them, for context: ProfileRepo.upsert_batch alone, every record new).
    seed_rows = [seeded(r) for r in rows[::2]]
    mapping = P.Mapping.from_config(JOB_CONFIG)
    repo = deps.profiles
    with meter.measure("seed") as seed_w:
        for start in range(0, len(seed_rows), 1000):
            records = []
            for i, r in enumerate(seed_rows[start:start + 1000]):
                rec = P.map_record(r, mapping, f"seed:{start + i}")
                assert isinstance(rec, P.ProfileRecord), rec
                records.append(rec)
            got = repo.upsert_batch(account.id, records, step_tag=f"seed#{start}", rules=mapping.merge_rules)
            assert got == ["added"] * len(records), Counter(got)
    seed_w.rows = len(seed_rows)
    phases["seed profiles"], t = time.perf_counter() - t, time.perf_counter()
    wr.s3.read_csv(path=f"s3://{BUCKET}/warmup/tiny.csv")  # awswrangler's clients, as the app's are
    phases["awswrangler warm-up"], t = time.perf_counter() - t, time.perf_counter()

    outcomes: list[tuple[str, Outcome]] = []
    with Client(app, stage_name="local", project_dir=str(ROOT)) as client:
        api = Api(client, issued.plaintext)
        auth = api.call("POST", "/authorizations", {
            "provider": "amazon_s3", "method": "access_keys", "label": "bench keys", "credentials": S3_KEYS})
        phases["authorization (API)"] = time.perf_counter() - t
        print(f"moto at {endpoint}; stage {STAGE!r}; s3://{BUCKET}/{KEY}: {N:,} rows, {len(body) / 1e6:.2f} MB; "
              f"engine steps of {MAX_RECORDS:,} records")
        print(f"load average at the start {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        print("setup (not compared): " + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()))
        print(f"seed, for context: {seed_w.rows:,} new profiles through ProfileRepo.upsert_batch (1,000 a call) "
              f"in {seed_w.wall_s:.1f} s = {seed_w.rate:,.0f} rows/s, {seed_w.per_1k(seed_w.total()):.1f} "
              f"requests per 1,000 ({seed_w.total():,})")
        print_ops(seed_w)
        print()
        blank_city = next(r["email"] for r in seed_rows if not file_rows[r["email"]]["city"])
        for rnd in range(1, ROUNDS + 1):
            a = run_switchyard(rnd, meter, api, auth["id"], deps, account.id,
                               [r["email"] for r in seed_rows], file_rows)
            outcomes.append(("Switchyard", a))
            peer_seed = seed_rows if rnd == 1 else rows
            b = run_peer(rnd, meter, peer_seed, blank_city)
            outcomes.append(("awswrangler", b))
            print(f"round {rnd}: Switchyard {a.window.rate:,.0f} rows/s, awswrangler {b.window.rate:,.0f} rows/s",
                  flush=True)
    print()

    sw = [o.window for who, o in outcomes if who == "Switchyard"]
    peer = [o.window for who, o in outcomes if who == "awswrangler"]
    print_runs(outcomes)
    print()
    print_split(sw, peer)
    print()
    print("requests by part, service.operation (mean wall time per API call; CPU per call in the calling")
    print("thread (botocore) and, single-threaded runs only, in moto's server threads; items per request):")
    for _, o in outcomes:
        print_ops(o.window)
    print()
    print("where the time goes (exclusive wall time of each part; AWS requests sent inside it):")
    for _, o in outcomes:
        print_sections(o.window)
        print()

    results: list[tuple[str, bool, str]] = []
    for a, b in zip(sw, peer, strict=True):
        ratio = a.rate / b.rate
        results.append((f"throughput {a.name}/{b.name} >= {BUDGET_RATIO:.1f} x awswrangler", ratio >= BUDGET_RATIO,
                        f"{ratio:.2f} ({a.rate:,.0f} vs {b.rate:,.0f} rows/s)"))
    for a in sw:
        per = a.per_1k(a.total())
        results.append((f"{a.name}: <= {BUDGET_PER_1K} requests per 1,000 profiles", per <= BUDGET_PER_1K,
                        f"{per:.1f} ({a.total():,} requests; without queue delivery "
                        f"{a.per_1k(a.total() - a.total('delivery')):.1f})"))
    for _, o in outcomes:
        results += o.checks
    t_count = time.perf_counter()
    count = repo.count(account.id)  # 16 Query (Select=COUNT) pages; slow on moto
    results.append(("the profile store holds exactly 20,000 profiles at the end", count == N,
                    f"{count} (ProfileRepo.count took {time.perf_counter() - t_count:.1f} s on moto)"))

    print("budgets and checks:")
    for label, ok, got in results:
        print(f"  {'PASS' if ok else 'FAIL'}  {label:<62} {got}")
    print()

    slow = [(a, b) for a, b in zip(sw, peer, strict=True) if a.rate < BUDGET_RATIO * b.rate]
    if slow:
        print("why the throughput ratio fails (measured in this run):")
        for a, b in slow:
            print(f"  {a.name} ({a.rate:,.0f} rows/s) vs {b.name} ({b.rate:,.0f} rows/s):")
            for line in explain(a, b):
                print(f"    {line}")
        print()

    failed = [label for label, ok, _ in results if not ok]
    print(f"bench wall time {time.perf_counter() - t_bench:.0f} s (moto started and stack deployed before); "
          f"load average at the end {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print("RESULT: " + ("PASS" if not failed else "FAIL: " + "; ".join(failed)))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
