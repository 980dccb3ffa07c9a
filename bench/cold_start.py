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

Kinds: GET /jobs, POST /jobs (an S3 import job: its credential check reads S3 too), GET
/authorizations/{id}, and the run worker's first step (an S3 import of 200 rows: read,
map, upsert, commit).

Noise: a round runs, for each kind, one app and one bare process back to back (which goes
first alternates each round) and takes their ratio; the budget reads the MEDIAN of those
per-round ratios. A burst of load on the shared machine hits both halves of a pair alike
or spoils one round, not the median; a ratio of medians taken over the whole run let one
slow sample move a kind by 30 %.

Budget: median over rounds of app / bare <= 1.3, for every kind.

    .venv/bin/python bench/cold_start.py [--runs 11]        (BENCH_QUICK=1: 7 rounds)

Prints `RESULT PASS|FAIL ...`; exit status 1 on FAIL.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import pickle
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.awsnet import Emulation, deployed, quick, result  # noqa: E402

BUDGET = 1.3
STAGE = "benchcold"
BUCKET = "bench-cold-start"
S3_KEYS = {"access_key_id": "AKIABENCHCOLDSTART01", "secret_access_key": "benchSECRETcold1234567890abc"}

# A fresh process: time from its first line to the handler's answer; with "record", also
# the AWS calls it made (service, operation, parameters) for the bare stack to replay.
APP = r"""
import time
t0 = time.perf_counter()
import base64, json, pickle, sys
record = sys.argv[2] == "record"
calls = []
if record:
    from botocore.client import BaseClient
    original = BaseClient._make_api_call
    def recording(client, op, params):
        calls.append((client.meta.service_model.service_name, op, params))
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
    status = 200
else:
    answer = app(event, Context())
    status = answer["statusCode"]
t1 = time.perf_counter()
print(json.dumps({"s": t1 - t0, "status": status,
                  "calls": base64.b64encode(pickle.dumps(calls)).decode() if record else None}))
"""

BARE = r"""
import time
t0 = time.perf_counter()
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
print(json.dumps({"s": t1 - t0, "status": 200, "calls": None}))
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
    parser.add_argument("--runs", type=int, default=7 if quick() else 11)
    args = parser.parse_args()
    with deployed(STAGE) as aws:
        return measure(aws, args.runs)


def measure(aws: Emulation, runs: int) -> int:
    import boto3
    from chalice.test import Client

    from app import app
    from chalicelib.bootstrap import deps
    from chalicelib.config import RUNS_QUEUE, stage_queue
    from chalicelib.services.accounts import resolve_token

    with aws.no_latency():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        rows = "".join(f"p{i}@example.com,Ada{i},pro\n" for i in range(200))
        s3.put_object(Bucket=BUCKET, Key="drops/people.csv", Body=("email,first_name,plan\n" + rows).encode())
        from chalicelib.services.accounts import create_account

        _, _, issued = create_account(deps(), "Bench Cold", "admin@bench-cold.example")
        principal = resolve_token(deps(), issued.plaintext)
        assert principal is not None
        with Client(app, stage_name="local", project_dir=str(ROOT)) as client:
            headers = {"Authorization": f"Bearer {issued.plaintext}", "Content-Type": "application/json"}
            r = client.http.post("/api/v1/authorizations", headers=headers, body=json.dumps({
                "provider": "amazon_s3", "method": "access_keys", "label": "bench", "credentials": S3_KEYS}))
            assert r.status_code == 201, r.body
            auth_id = json.loads(r.body)["data"]["id"]
        sqs = boto3.client("sqs")
        queue_url = sqs.get_queue_url(QueueName=stage_queue(RUNS_QUEUE))["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    job_body = {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
                "authorization_id": auth_id, "label": "bench cold", "config": {"bucket": BUCKET, "prefix": "drops/"}}

    def create_job() -> dict[str, Any]:
        """A job and the runs-queue message of its first step (setup: no latency; in this
        process, as it is not measured)."""
        with aws.no_latency(), Client(app, stage_name="local", project_dir=str(ROOT)) as client:
            r = client.http.post("/api/v1/jobs", headers=headers, body=json.dumps(job_body))
            assert r.status_code == 201, r.body
            msgs: list[dict[str, Any]] = []
            while not msgs:
                msgs = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1, VisibilityTimeout=600,
                                           AttributeNames=["All"]).get("Messages", [])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=msgs[0]["ReceiptHandle"])
            return sqs_event(msgs[0], queue_arn)

    kinds: dict[str, Any] = {
        "GET /jobs": lambda: ["api", api_event("GET", "/api/v1/jobs", "/api/v1/jobs", principal)],
        "POST /jobs": lambda: ["api", api_event("POST", "/api/v1/jobs", "/api/v1/jobs", principal, job_body)],
        "GET /authorizations/{id}": lambda: ["api", api_event(
            "GET", "/api/v1/authorizations/{auth_id}", f"/api/v1/authorizations/{auth_id}", principal,
            params={"auth_id": auth_id})],
        "run worker: first step": lambda: ["worker", create_job()],
    }
    print(aws.describe())
    recorded: dict[str, str] = {}
    for name, make in kinds.items():
        got = run_child(APP, [json.dumps(make()), "record"])
        if not 200 <= got["status"] < 300:
            raise SystemExit(f"{name}: the app answered {got['status']}")
        recorded[name] = got["calls"]
        calls = pickle.loads(base64.b64decode(got["calls"]))
        print(f"  {name}: {len(calls)} AWS calls: " + ", ".join(f"{s}.{o}" for s, o, _ in calls))
    samples: dict[str, dict[str, list[float]]] = {k: {"app": [], "bare": [], "ratio": []} for k in kinds}
    load = [os.getloadavg()[0]]
    for i in range(runs):
        for name, make in kinds.items():
            event = json.dumps(make())
            pair = [("app", APP, [event, "plain"], None), ("bare", BARE, [], recorded[name])]
            for who, code, argv, stdin in pair if i % 2 == 0 else pair[::-1]:
                got = run_child(code, argv, stdin)
                if not 200 <= got["status"] < 300:
                    raise SystemExit(f"{name} ({who}): status {got['status']}")
                samples[name][who].append(got["s"])
            samples[name]["ratio"].append(samples[name]["app"][-1] / samples[name]["bare"][-1])
    load.append(os.getloadavg()[0])
    print(f"fresh process: import + first request, {runs} rounds of app/bare pairs, order alternating "
          f"(load average {load[0]:.2f} -> {load[1]:.2f})")
    ok = True
    figures = []
    for name, s in samples.items():
        a, b, ratio = (statistics.median(s[k]) for k in ("app", "bare", "ratio"))
        ok = ok and ratio <= BUDGET
        figures.append(f"{name} {ratio:.2f}")
        print(f"  {name:<26} app {a * 1000:6.0f} ms ({min(s['app']) * 1000:.0f}-{max(s['app']) * 1000:.0f})  "
              f"bare {b * 1000:6.0f} ms ({min(s['bare']) * 1000:.0f}-{max(s['bare']) * 1000:.0f})  "
              f"ratio {ratio:.2f} ({min(s['ratio']):.2f}-{max(s['ratio']):.2f}; budget <= {BUDGET}) "
              f"{'PASS' if ratio <= BUDGET else 'FAIL'}")
    return result(ok, "cold start app/bare (median of per-round ratios): " + ", ".join(figures))


if __name__ == "__main__":
    sys.exit(main())
