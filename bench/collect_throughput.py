"""Collector throughput (messages/s): Switchyard's Segment-compatible `POST /api/v1/batch`
against a bare Chalice route that sends the same AWS requests and hands the same items to
the same SQS FIFO queue, on the same AWS emulation (bench/awsnet.py: moto in its own
process, network latency added), in alternating rounds.

Contenders, each a Chalice app called in this process as Lambda calls it (a hand-built API
Gateway proxy event, `app(event, context)`), one request at a time: a Lambda container
serves one request at a time, so a container's throughput is what the route costs; more
load is more containers, the same for both.

* switchyard  app.py's `POST /api/v1/batch` with a real write key and collection job: the
              key (cached per container after the first call), body parsing, per-message
              validation, the job (GetItem), the per-job rate (GetItem + conditional
              UpdateItem), the dedup claims (BatchGetItem), one SendMessageBatch of the
              packed hand-off, logs and metrics as deployed.
* bare        the least a route can do for the same result: Basic auth read from a dict
              (the key item read again once a minute, as the product's cache does),
              `json.loads`, then the same five requests (the job item, the rate item read
              and conditionally moved, the claim keys, the packed messages to the same FIFO
              queue and group), no validation, no middleware.

Each call posts a batch of 100 `track`/`identify` messages (fixed seed, fresh messageIds:
nothing is a duplicate). Each round runs both contenders back to back as A B B A (which one
is A alternates), CALLS calls each in two halves, and gives one ratio: Switchyard's
messages/s over the bare route's. The budget reads the MEDIAN of the per-round ratios
(bench/README.md, "Noise"). Both must send the same AWS requests per call (counted by the
emulation; the median over rounds, as the key's once-a-minute read falls in a different
round for each), else the comparison is void and the bench fails. The queue keeps what both
sent (about 1,300 hand-offs in full mode; SQS allows one purge a minute).

Budget: Switchyard >= 0.8 x the bare route.

    .venv/bin/python bench/collect_throughput.py     (BENCH_QUICK=1: 15 rounds x 10 calls)

Prints `RESULT PASS|FAIL <ratio>`; exit status 1 on FAIL.
"""

from __future__ import annotations

import base64
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.awsnet import Emulation, deployed, exit_code, quick, result  # noqa: E402

STAGE = "benchcollect"
ROUNDS = 15 if quick() else 31
CALLS = 10 if quick() else 20  # per contender and round, in two halves (A B B A)
BATCH = 100
BUDGET = 0.8
SEED = int(os.environ.get("SWITCHYARD_SEED", "16"))
EVENTS = ["Page Viewed", "Signed Up", "Order Completed", "Clicked", "Searched"]
PLANS = ["free", "starter", "pro", "enterprise"]


# What Lambda passes as the context (the app reads its request id and function name).
CONTEXT = SimpleNamespace(function_name="switchyard-bench", function_version="$LATEST", memory_limit_in_mb=1024,
                          invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:switchyard-bench",
                          aws_request_id="bench-request", log_group_name="bench", log_stream_name="bench",
                          get_remaining_time_in_millis=lambda: 300_000)


def batch_event(key: str, body: str) -> dict[str, Any]:
    """What API Gateway (REST, proxy integration) hands the Lambda; no authorizer on this route."""
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    return {
        "resource": "/api/v1/batch", "path": "/api/v1/batch", "httpMethod": "POST",
        "headers": {"Content-Type": "application/json", "Authorization": auth, "Host": "api.example",
                    "User-Agent": "analytics-python/2.4.0"},
        "multiValueHeaders": {}, "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": None, "stageVariables": None, "body": body, "isBase64Encoded": False,
        "requestContext": {"resourcePath": "/api/v1/batch", "httpMethod": "POST", "path": "/api/v1/batch",
                           "stage": "api", "requestId": str(uuid.uuid4()), "accountId": "123456789012",
                           "identity": {"sourceIp": "203.0.113.10", "userAgent": "bench"}},
    }


def make_batch(rnd: random.Random, tag: str) -> str:
    """A batch as segment-analytics-python sends it (its fields and context)."""
    now = "2026-12-05T10:00:00.000000+00:00"
    ctx = {"library": {"name": "analytics-python", "version": "2.4.0"}}
    msgs: list[dict[str, Any]] = []
    for i in range(BATCH):
        user = f"user-{rnd.randrange(5_000)}"
        if rnd.random() < 0.3:
            msgs.append({"type": "identify", "userId": user, "traits": {"plan": rnd.choice(PLANS),
                         "email": f"{user}@example.com"}, "messageId": f"{tag}-{i}", "timestamp": now,
                         "context": ctx, "integrations": {}})
        else:
            msgs.append({"type": "track", "userId": user, "event": rnd.choice(EVENTS),
                         "properties": {"value": rnd.randrange(100)}, "messageId": f"{tag}-{i}",
                         "timestamp": now, "context": ctx, "integrations": {}})
    return json.dumps({"batch": msgs, "sentAt": now})


def bare_app(keys: dict[str, tuple[str, str]], control_table: str, queue_url: str) -> Any:
    """The floor: the same AWS requests as the product's route, and nothing else."""
    import boto3
    from chalice import Chalice, Response

    from chalicelib.services.collect import KEY_CACHE_SECONDS
    from chalicelib.store.collect import pack

    app = Chalice(app_name="bare", configure_logs=False)
    fetched: dict[str, float] = {}
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")

    @app.route("/api/v1/batch", methods=["POST"])
    def batch() -> Response:
        req = app.current_request
        assert req is not None
        auth = (req.headers.get("authorization") or "").partition(" ")[2]
        raw = base64.b64decode(auth).decode().partition(":")[0]
        account_id, job_id = keys[raw]
        if time.monotonic() - fetched.get(raw, -KEY_CACHE_SECONDS) >= KEY_CACHE_SECONDS:
            # The product's rule: a key is read again once a minute (a revoked key stops).
            ddb.get_item(TableName=control_table, Key={"PK": {"S": f"WKEY#{raw.partition('.')[0]}"},
                                                       "SK": {"S": "META"}})
            fetched[raw] = time.monotonic()
        body = json.loads(req.raw_body)
        msgs = body["batch"]
        ddb.get_item(TableName=control_table, Key={"PK": {"S": f"ACCT#{account_id}"}, "SK": {"S": f"JOB#{job_id}"}})
        rate_key = {"PK": {"S": f"RATE#bare#{job_id}"}, "SK": {"S": "RATE"}}
        seen = ddb.get_item(TableName=control_table, Key=rate_key, ConsistentRead=True).get("Item")
        now_ms = round(time.time() * 1000)
        if seen:
            cond = {"ConditionExpression": "next_ms = :seen",
                    "ExpressionAttributeValues": {":next": {"N": str(now_ms)}, ":seen": seen["next_ms"]}}
        else:
            cond = {"ConditionExpression": "attribute_not_exists(next_ms)",
                    "ExpressionAttributeValues": {":next": {"N": str(now_ms)}}}
        ddb.update_item(TableName=control_table, Key=rate_key, UpdateExpression="SET next_ms = :next", **cond)
        ddb.batch_get_item(RequestItems={control_table: {"Keys": [
            {"PK": {"S": f"ACCT#{account_id}#MSG#{job_id}#{m['messageId']}"}, "SK": {"S": "CLAIM"}} for m in msgs],
            "ConsistentRead": True, "ProjectionExpression": "PK, h, expires_at"}})
        request_id = uuid.uuid4().hex
        entry = {"account_id": account_id, "job_id": job_id, "handoff": f"{request_id}#0",
                 "received_at": "2026-12-05T10:00:00Z", "rejected": {}, "messages": pack(msgs)}
        sqs.send_message_batch(QueueUrl=queue_url, Entries=[{
            "Id": "0", "MessageBody": json.dumps(entry, separators=(",", ":")), "MessageGroupId": job_id,
            "MessageDeduplicationId": f"{request_id}#0"}])
        return Response(body={"success": True, "accepted": len(msgs), "duplicates": 0, "rejected": []})

    return app


def main() -> int:
    with deployed(STAGE) as aws:
        return exit_code(measure(aws))


def measure(aws: Emulation) -> int:
    import boto3
    from chalice.test import Client

    from app import app
    from chalicelib.bootstrap import deps
    from chalicelib.config import settings, stage_queue
    from chalicelib.services.accounts import create_account
    from chalicelib.store.collect import COLLECT_QUEUE

    print(f"seed {SEED} (replay with SWITCHYARD_SEED={SEED})", flush=True)
    rnd = random.Random(SEED)
    sqs = boto3.client("sqs", region_name="us-east-1")
    with aws.no_latency():
        account, _, issued = create_account(deps(), "Bench Collect", "admin@bench-collect.example")
        headers = {"Authorization": f"Bearer {issued.plaintext}", "Content-Type": "application/json"}
        with Client(app, stage_name="local", project_dir=str(ROOT)) as client:
            r = client.http.post("/api/v1/authorizations", headers=headers, body=json.dumps({
                "provider": "http_api", "method": "write_key", "label": "bench", "credentials": {}}))
            assert r.status_code == 201, r.body
            auth = json.loads(r.body)["data"]
            r = client.http.post("/api/v1/jobs", headers=headers, body=json.dumps({
                "provider": "http_api", "job_type": "import", "workflow": "http_collect",
                "authorization_id": auth["id"], "label": "bench events",
                "config": {"max_messages_per_second": 10_000}, "start": True}))
            assert r.status_code == 201, r.body
            job = json.loads(r.body)["data"]
        queue_url = sqs.get_queue_url(QueueName=stage_queue(COLLECT_QUEUE))["QueueUrl"]
        key = auth["write_key"]
        bare = bare_app({key: (account.id, job["id"])},
                        settings().table_name, queue_url)

    def caller(target: Any) -> Callable[[str], None]:
        def call(body: str) -> None:
            answer = target(batch_event(key, body), CONTEXT)
            if answer["statusCode"] != 200 or json.loads(answer["body"])["accepted"] != BATCH:
                raise SystemExit(f"refused: {answer['statusCode']} {answer['body'][:300]}")
        return call

    contenders = {"switchyard": caller(app), "bare": caller(bare)}
    # Warm both (the key's cache, clients, queue URL): not measured.
    for name, call in contenders.items():
        call(make_batch(rnd, f"warm-{name}"))

    print(aws.describe())
    print(f"{ROUNDS} rounds x {CALLS} calls of {BATCH} messages per contender, one request at a time; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    rates: dict[str, list[float]] = {n: [] for n in contenders}
    per_call: dict[str, list[float]] = {n: [] for n in contenders}
    ratios: list[float] = []
    for r_no in range(1, ROUNDS + 1):
        first, second = list(contenders) if r_no % 2 else list(reversed(contenders))
        half = CALLS // 2
        bodies = {n: [make_batch(rnd, f"r{r_no}-{n}-{c}") for c in range(2 * half)] for n in contenders}
        wall = dict.fromkeys(contenders, 0.0)
        sent = dict.fromkeys(contenders, 0)
        # A B B A: a steady rise or fall of the machine's load within the round cancels.
        for n, name in enumerate((first, second, second, first)):
            part = bodies[name][:half] if n < 2 else bodies[name][half:]
            s0 = aws.stats()
            t0 = time.perf_counter()
            for body in part:
                contenders[name](body)
            wall[name] += time.perf_counter() - t0
            sent[name] += aws.stats()["requests"] - s0["requests"]
        got = {n: 2 * half * BATCH / wall[n] for n in contenders}
        for name in contenders:
            rates[name].append(got[name])
            per_call[name].append(sent[name] / (2 * half))
        ratios.append(got["switchyard"] / got["bare"])
        print(f"round {r_no}: " + ", ".join(f"{n} {got[n]:,.0f} msg/s" for n in (first, second))
              + f", ratio {ratios[-1]:.2f}", flush=True)

    for name in contenders:
        print(f"{name}: median {statistics.median(rates[name]):,.0f} msg/s "
              f"(min {min(rates[name]):,.0f}, max {max(rates[name]):,.0f}); "
              f"AWS requests per call: median {statistics.median(per_call[name]):g}, "
              f"{sum(per_call[name]) * 2 * (CALLS // 2):g} in all")
    ratio = statistics.median(ratios)
    # Per round, not per call: each side reads its key again once a minute, in whichever round.
    same = statistics.median(per_call["switchyard"]) == statistics.median(per_call["bare"])
    summary = (f"{ratio:.2f} switchyard/bare messages/s (median of {ROUNDS} per-round ratios, "
               f"{min(ratios):.2f}-{max(ratios):.2f}; budget >= {BUDGET})")
    if not same:
        summary += (f" | AWS requests per call differ: {statistics.median(per_call['switchyard']):g} vs "
                    f"{statistics.median(per_call['bare']):g}: the comparison is void")
    return result(ratio >= BUDGET and same, summary)


if __name__ == "__main__":
    sys.exit(main())
