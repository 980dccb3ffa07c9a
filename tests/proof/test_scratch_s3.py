import json, codecs
import boto3
from tests.api.helpers import create_auth, create_job, make_bucket

def test_scratch(api_for, new_tenant, deps, aws_endpoint):
    from chalicelib.services.engine import Delivery, Engine, EngineOptions
    from moto.backends import get_backend
    t = new_tenant("Bad")
    api = api_for(t.admin_token)
    auth = create_auth(api)
    s3 = boto3.client("s3", region_name="us-east-1")
    files = {
        "surr.jsonl": b'{"email": "s@example.com", "name": "\\ud800x"}\n{"email": "t\\udfff@example.com"}\n{"email": "u@example.com", "\\ud800": 1}\n',
        "deep.jsonl": b'{"email": "d@example.com", "x": ' + b'[' * 5000 + b']' * 5000 + b'}\n',
        "ctl.csv": b"email,plan\nline\x07@example.com,pro\n",
        "empty.csv": b"",
        "broken.csv": b'email,plan\n"ada@example.com,pro\nbob@example.com,"fr"ee"\n',
        "latin1.csv": "email,name\nzoe@example.com,Zoé\n".encode("latin-1"),
        "utf16.csv": "email,name\nzoe@example.com,Zoe\n".encode("utf-16"),
        "huge.csv": b"email,plan\nhuge@example.com,pro\n",
        "header_only.csv": b"email,plan\n",
        "nul.csv": b"email,plan\nn\x00ul@example.com,pro\n",
        "inject.csv": b"email,plan\n=cmd|' /C calc'!A0@x.com,pro\n'; DROP TABLE x;--@example.com,pro\n",
    }
    for name, body in files.items():
        bucket = make_bucket()
        s3.put_object(Bucket=bucket, Key=f"in/{name}", Body=body)
        if name == "huge.csv":
            # moto in this process: declare 5 GB
            import moto.s3.models as m
            backend = m.s3_backends["123456789012"]["aws"]
            key = backend.buckets[bucket].keys[f"in/{name}"]
            key.contentsize = 5 * 1024**3
        job = create_job(api, auth["id"], bucket, label=name, config={"bucket": bucket, "prefix": "in/", **({"format": "jsonl"} if name.endswith("jsonl") else {})})
        try:
            Engine(deps, EngineOptions()).handle(Delivery(body={"account_id": t.account_id, "job_id": job["id"], "trigger": "create", "requested_by": t.admin_user_id, "requested_at": "2026-01-01T00:00:00Z"}, message_id="x-" + name))
        except Exception as exc:
            print(name, "ENGINE RAISED", type(exc), exc)
        j = api.get(f"/jobs/{job['id']}").json["data"]
        runs = api.get(f"/jobs/{job['id']}/runs").json["data"]
        logs = api.get(f"/jobs/{job['id']}/logs").json["data"]
        print("==", name, j["status"], json.dumps(runs)[:600])
        for l in logs[:6]:
            print("   ", l["level"], l["code"], l["message"][:250], json.dumps(l.get("context"))[:200])
