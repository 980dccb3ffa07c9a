"""Cold start = import + the first request, in a fresh process, against a bare stack that
sends the same AWS requests.

Against the AWS emulation (bench/awsnet.py: moto in its own process, latency added), each
sample is a fresh interpreter that times, from its first line to the answer:

* app   `from app import app`, then the Lambda entry point called as Lambda calls it: the
        API handler `app(event, context)` with a hand-built API Gateway proxy event (the
        token authorizer is its own Lambda: its answer arrives in
        requestContext.authorizer), or the run worker's SQS handler with a hand-built SQS
        event holding a runs-queue message;
* bare  `import boto3, pydantic`, then the SAME AWS requests the app sent for that first
        request (recorded once from a fresh app process: service, operation, parameters),
        each answer validated by a pydantic model and serialized to JSON.

Kinds, each doing the same work in every sample:

* GET /jobs and GET /authorizations/{id} read an account seeded before the recording (20
  jobs on 2 S3 authorizations: a page of one Query and one BatchGetItem) and never written
  again;
* POST /jobs creates an S3 import job in an account of its own (its credential check reads
  S3 too);
* the run worker's first step (an S3 import of 200 rows: read, map, upsert, commit) runs,
  in every sample, a job made for it just before (a fresh account, authorization and job,
  latency off, outside the window), from the runs-queue message naming that job.

Every app sample records its AWS operations; the bench FAILS, naming the kind and round, if
a sample's (service, operation) multiset differs from the recording the bare stack replays.

Noise: each round runs, for each kind, app, bare, bare, app (bare, app, app, bare in odd
rounds), and the round's ratio is the app's summed wall time over the bare's: a steady rise
or fall of load within the round weighs on both alike. The budget reads the MEDIAN of the
per-round ratios, so a burst of load spoils one round, not the result. Each round's ratios,
the load average and the children's CPU (getrusage user+sys, from the child's first line to
its answer) are printed beside wall time as a cross-check; the budget reads wall time only.

Budget: median over rounds of app / bare <= 1.3, for every kind.

    .venv/bin/python bench/cold_start.py [--runs 11]        (BENCH_QUICK=1: 5 rounds)

Prints `RESULT PASS|FAIL ...`; exit status 1 on FAIL.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.awsnet import Emulation, deployed, quick, result  # noqa: E402

BUDGET = 1.3
STAGE = "benchcold"
BUCKET = "bench-cold-start"
WORKER_KIND = "run worker: first step"
S3_KEYS = {"access_key_id": "AKIABENCHCOLDSTART01", "secret_access_key": "benchSECRETcold1234567890abc"}

# A fresh process: time (wall, and CPU by getrusage user+sys) from its first line to the
# handler's answer, and the AWS operations it sent; with "record", also their parameters for
# the bare stack to replay. Every app sample is recorded the same way, so the recording costs
# each of them alike.
APP = r"""
import time, resource
t0 = time.perf_counter()
r0 = resource.getrusage(resource.RUSAGE_SELF)
import base64, json, pickle, sys
record = sys.argv[2] == "record"
calls = []
from botocore.client import BaseClient
original = BaseClient._make_api_call
def recording(client, op, params):
    calls.append((client.meta.service_model.service_name, op, params if record else None))
    return original(client, op, params)
BaseClient._make_api_call = recording
from app import app
kind, event = json.loads(sys.argv[1])

class Context:
    function_name = "switchyard-bench"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:switchyard-bench"
    memory_limit_in_mb = 1024
    aws_request_id = "bench-request"
    log_group_name = log_stream_name = "bench"
    def get_remaining_time_in_millis(self):
        return 300000

if kind == "worker":
    answer = app.handler_map["run_step"](event, Context())
    status = 200 if not (answer or {}).get("batchItemFailures") else 500
else:
    answer = app(event, Context())
    status = answer["statusCode"]
t1 = time.perf_counter()
r1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
print(json.dumps({"s": t1 - t0, "cpu": cpu, "status": status, "ops": [[s, o] for s, o, _ in calls],
                  "calls": base64.b64encode(pickle.dumps(calls)).decode() if record else None}))
"""

BARE = r"""
import time, resource
t0 = time.perf_counter()
r0 = resource.getrusage(resource.RUSAGE_SELF)
import base64, json, pickle, sys
import boto3
import pydantic
from botocore.exceptions import ClientError

class Answer(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    status: int

calls = pickle.loads(base64.b64decode(sys.stdin.read()))
session = boto3.session.Session()
clients = {}
out = []
for service, op, params in calls:
    client = clients.get(service) or clients.setdefault(service, session.client(service))
    try:
        resp = client._make_api_call(op, params)
    except ClientError as exc:  # a replayed conditional write: answered, like the app's
        resp = exc.response
    out.append(Answer.model_validate({"status": resp["ResponseMetadata"]["HTTPStatusCode"], **{
        k: v for k, v in resp.items() if k != "ResponseMetadata" and k != "Body"}}))
    if "Body" in resp:
        resp["Body"].read()
body = json.dumps([a.model_dump(mode="json") for a in out], default=str)
t1 = time.perf_counter()
r1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
print(json.dumps({"s": t1 - t0, "cpu": cpu, "status": 200, "ops": None, "calls": None}))
"""


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_",))}
    env["PYTHONPATH"] = str(ROOT)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_child(code: str, args: list[str], stdin: str | None = None) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=child_env(), input=stdin,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    got: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return got


def api_event(method: str, resource: str, path: str, principal: Any, body: Any = None,
              params: dict[str, str] | None = None) -> dict[str, Any]:
    """What API Gateway (REST, proxy integration) hands the Lambda after the authorizer."""
    return {
        "resource": resource, "path": path, "httpMethod": method,
        "headers": {"Accept": "application/json", "Content-Type": "application/json", "Host": "api.example"},
        "multiValueHeaders": {}, "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": params, "stageVariables": None,
        "body": None if body is None else json.dumps(body), "isBase64Encoded": False,
        "requestContext": {
            "resourcePath": resource, "httpMethod": method, "path": "/api" + path, "stage": "api",
            "requestId": str(uuid.uuid4()), "accountId": "123456789012",
            "identity": {"sourceIp": "203.0.113.10", "userAgent": "bench"},
            "authorizer": {"principalId": principal.user_id, "account_id": principal.account_id,
                           "user_id": principal.user_id, "role": principal.role.value,
                           "token_id": principal.token_id},
        },
    }


def sqs_event(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    return {"Records": [{
        "messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"], "body": message["Body"],
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
        "messageAttributes": {}, "md5OfBody": message["MD5OfBody"], "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn, "awsRegion": "us-east-1"}]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5 if quick() else 11)
    args = parser.parse_args()
    with deployed(STAGE) as aws:
        return measure(aws, args.runs)


def op_counts(ops: list[list[str]] | list[tuple[str, str]]) -> Counter[str]:
    return Counter(f"{s}.{o}" for s, o in ops)


def op_difference(want: Counter[str], got: Counter[str]) -> str:
    """'' when the two multisets are equal, else what one has more of than the other."""
    more, fewer = got - want, want - got
    parts = [f"+{n} {op}" for op, n in sorted(more.items())] + [f"-{n} {op}" for op, n in sorted(fewer.items())]
    return ", ".join(parts)


def round_order(i: int) -> list[str]:
    """A B B A, reversed in odd rounds: a steady rise or fall of load within a round
    weighs on both sides alike."""
    return ["app", "bare", "bare", "app"] if i % 2 == 0 else ["bare", "app", "app", "bare"]


def measure(aws: Emulation, runs: int) -> int:
    import boto3
    from chalice.test import Client

    from app import app
    from chalicelib.bootstrap import deps
    from chalicelib.config import RUNS_QUEUE, stage_queue
    from chalicelib.services.accounts import create_account, resolve_token

    # The setup's own requests through the test client are not the bench's output (the
    # request logger sets its own level, so a parent logger's level does not quiet it).
    logging.disable(logging.INFO)

    def new_account(name: str) -> tuple[Any, dict[str, str]]:
        _, _, issued = create_account(deps(), name, f"admin@{uuid.uuid4().hex[:10]}.example")
        principal = resolve_token(deps(), issued.plaintext)
        assert principal is not None
        return principal, {"Authorization": f"Bearer {issued.plaintext}", "Content-Type": "application/json"}

    def post(client: Any, headers: dict[str, str], path: str, body: Any) -> str:
        r = client.http.post(path, headers=headers, body=json.dumps(body))
        assert r.status_code == 201, r.body
        return str(json.loads(r.body)["data"]["id"])

    def new_auth(client: Any, headers: dict[str, str], label: str) -> str:
        return post(client, headers, "/api/v1/authorizations", {
            "provider": "amazon_s3", "method": "access_keys", "label": label, "credentials": S3_KEYS})

    def job_body(auth_id: str, label: str) -> dict[str, Any]:
        return {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
                "authorization_id": auth_id, "label": label, "config": {"bucket": BUCKET, "prefix": "drops/"}}

    # Setup, latency off and outside every window.
    with aws.no_latency(), Client(app, stage_name="local", project_dir=str(ROOT)) as client:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        rows = "".join(f"p{i}@example.com,Ada{i},pro\n" for i in range(200))
        s3.put_object(Bucket=BUCKET, Key="drops/people.csv", Body=("email,first_name,plan\n" + rows).encode())
        # The reading kinds' account: a full first page (20 jobs on 2 authorizations, so the
        # page reads each authorization's health once), seeded before the recording and
        # never written again.
        reader, reader_headers = new_account("Bench Cold reader")
        reader_auths = [new_auth(client, reader_headers, f"bench {i}") for i in range(2)]
        for i in range(20):
            post(client, reader_headers, "/api/v1/jobs", job_body(reader_auths[i % 2], f"bench page {i}"))
        # POST /jobs' account: each app sample adds a job to it, which its next sample's
        # work does not depend on (the per-sample operations check below would say so).
        writer, writer_headers = new_account("Bench Cold writer")
        writer_auth = new_auth(client, writer_headers, "bench")
        sqs = boto3.client("sqs")
        queue_url = sqs.get_queue_url(QueueName=stage_queue(RUNS_QUEUE))["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def worker_events(n: int) -> list[dict[str, Any]]:
        """n fresh accounts, each with an authorization and a job, and the SQS event of the
        message naming each job's first step (setup: no latency, in this process). Every
        other runs-queue message (POST /jobs' samples, the bare stack's replays) is dropped:
        nothing consumes it, and none may stand in for the round's own job."""
        wanted: dict[str, dict[str, Any] | None] = {}
        with aws.no_latency(), Client(app, stage_name="local", project_dir=str(ROOT)) as client:
            for _ in range(n):
                _, headers = new_account("Bench Cold worker")
                auth_id = new_auth(client, headers, "bench")
                wanted[post(client, headers, "/api/v1/jobs", job_body(auth_id, "bench cold"))] = None
            while any(v is None for v in wanted.values()):
                msgs = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=600,
                                           AttributeNames=["All"]).get("Messages", [])
                for m in msgs:
                    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
                    job_id = json.loads(m["Body"]).get("job_id")
                    if job_id in wanted:
                        wanted[job_id] = sqs_event(m, queue_arn)
        return [e for e in wanted.values() if e is not None]

    kinds: dict[str, Any] = {
        "GET /jobs": lambda: ["api", api_event("GET", "/api/v1/jobs", "/api/v1/jobs", reader)],
        "POST /jobs": lambda: ["api", api_event("POST", "/api/v1/jobs", "/api/v1/jobs", writer,
                                                job_body(writer_auth, "bench cold"))],
        "GET /authorizations/{id}": lambda: ["api", api_event(
            "GET", "/api/v1/authorizations/{auth_id}", f"/api/v1/authorizations/{reader_auths[0]}", reader,
            params={"auth_id": reader_auths[0]})],
        WORKER_KIND: None,  # a fresh account and job per sample: worker_events
    }

    def events(name: str, n: int) -> list[str]:
        if name == WORKER_KIND:
            return [json.dumps(["worker", e]) for e in worker_events(n)]
        return [json.dumps(kinds[name]()) for _ in range(n)]

    print(aws.describe())
    recorded: dict[str, str] = {}
    want: dict[str, Counter[str]] = {}
    for name in kinds:
        got = run_child(APP, [events(name, 1)[0], "record"])
        if not 200 <= got["status"] < 300:
            raise SystemExit(f"{name}: the app answered {got['status']}")
        recorded[name] = got["calls"]
        want[name] = op_counts(got["ops"])
        print(f"  {name}: {len(got['ops'])} AWS calls: " + ", ".join(f"{s}.{o}" for s, o in got["ops"]))
    # The worker's recording must be the step's work (reading the file and writing the
    # profiles), not a trigger ignored: what the budget is about.
    if not want[WORKER_KIND]["s3.GetObject"] or not want[WORKER_KIND]["dynamodb.BatchWriteItem"]:
        return result(False, f"cold start: the worker's recorded step did not import the file ({dict(want[WORKER_KIND])})")

    sides = ("app", "bare")
    wall: dict[str, dict[str, list[float]]] = {k: {w: [] for w in sides} for k in kinds}
    cpu: dict[str, dict[str, list[float]]] = {k: {w: [] for w in sides} for k in kinds}
    ratio: dict[str, list[float]] = {k: [] for k in kinds}
    cpu_ratio: dict[str, list[float]] = {k: [] for k in kinds}
    load = [os.getloadavg()[0]]
    started = time.monotonic()
    print(f"{runs} rounds; each kind: app, bare, bare, app (bare, app, app, bare in odd rounds); "
          "round ratio = sum app / sum bare (wall; CPU = getrusage user+sys, printed, not gated)")
    for i in range(runs):
        parts = []
        for name in kinds:
            app_events = iter(events(name, 2))
            round_wall = {w: 0.0 for w in sides}
            round_cpu = {w: 0.0 for w in sides}
            for who in round_order(i):
                if who == "app":
                    got = run_child(APP, [next(app_events), "plain"])
                else:
                    got = run_child(BARE, [], recorded[name])
                if not 200 <= got["status"] < 300:
                    raise SystemExit(f"{name} ({who}), round {i + 1}: status {got['status']}")
                if who == "app":
                    diff = op_difference(want[name], op_counts(got["ops"]))
                    if diff:
                        return result(False, f"cold start: {name}, round {i + 1}: the app sent other AWS "
                                             f"requests than the recording the bare stack replays ({diff})")
                wall[name][who].append(got["s"])
                cpu[name][who].append(got["cpu"])
                round_wall[who] += got["s"]
                round_cpu[who] += got["cpu"]
            ratio[name].append(round_wall["app"] / round_wall["bare"])
            cpu_ratio[name].append(round_cpu["app"] / round_cpu["bare"])
            parts.append(f"{name.split(':')[0]} {ratio[name][-1]:.2f} (cpu {cpu_ratio[name][-1]:.2f})")
        print(f"  round {i + 1} (load {os.getloadavg()[0]:.1f}): " + "; ".join(parts), flush=True)
    load.append(os.getloadavg()[0])
    print(f"fresh process: import + first request, {runs} rounds x 4 processes per kind "
          f"(load average {load[0]:.2f} -> {load[1]:.2f}; {time.monotonic() - started:.0f} s)")
    ok = True
    figures = []
    for name in kinds:
        r = statistics.median(ratio[name])
        ok = ok and r <= BUDGET
        figures.append(f"{name} {r:.2f}")
        a, b = (statistics.median(wall[name][w]) for w in sides)
        ca, cb = (statistics.median(cpu[name][w]) for w in sides)
        print(f"  {name:<26} ratio {r:.2f} ({min(ratio[name]):.2f}-{max(ratio[name]):.2f}; budget <= {BUDGET}) "
              f"{'PASS' if r <= BUDGET else 'FAIL'}; wall app {a * 1000:.0f} ms, bare {b * 1000:.0f} ms; "
              f"CPU app {ca * 1000:.0f} ms, bare {cb * 1000:.0f} ms, ratio {statistics.median(cpu_ratio[name]):.2f} "
              f"({min(cpu_ratio[name]):.2f}-{max(cpu_ratio[name]):.2f})")
    return result(ok, "cold start app/bare (median of per-round A B B A ratios): " + ", ".join(figures))


if __name__ == "__main__":
    sys.exit(main())
