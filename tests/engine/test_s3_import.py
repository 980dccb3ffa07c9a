"""S3 import end to end: a real CSV/JSONL object in (moto's) S3, a job created through the
API, runs delivered from SQS, profiles in the store, counts in the run."""

from __future__ import annotations

import gzip
import json

import boto3

from tests.api.helpers import create_auth, make_bucket


def _put(bucket: str, key: str, body: bytes) -> None:
    boto3.client("s3", region_name="us-east-1").put_object(Bucket=bucket, Key=key, Body=body)


def _job(api, bucket, **config):
    r = api.post("/jobs", {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
                           "authorization_id": create_auth(api)["id"], "label": "S3 people",
                           "config": {"bucket": bucket, **config}})
    assert r.status_code == 201, r.body
    return r.json["data"]


def test_csv_and_gzip_jsonl_import_with_mapping(api, deps, tenant, drain, options):
    # GIVEN a CSV (quoted comma, a row without email) and a gzipped JSON Lines file
    bucket = make_bucket()
    rows = ["Email,First Name,City", 'ada@example.com,Ada,"London, UK"', ",NoMail,Paris"]
    rows += [f"user{i}@example.com,U{i},Berlin" for i in range(300)]
    _put(bucket, "in/a.csv", ("\n".join(rows) + "\n").encode())
    jsonl = "\n".join(json.dumps({"email": f"j{i}@example.com", "first_name": f"J{i}"}) for i in range(50))
    _put(bucket, "in/b.csv.gz", gzip.compress(jsonl.encode()))
    options.max_records = 100
    job = _job(api, bucket, prefix="in/a", field_mapping={"Email": "email", "First Name": "first_name"})
    # WHEN its runs are delivered
    drain.run()
    # THEN profiles exist with mapped fields, and the run counted exactly
    [run] = api.get(f"/jobs/{job['id']}/runs").json["data"]
    assert run["status"] == "succeeded", run
    assert run["added"] == 301 and run["omitted_reasons"] == {"missing_identifier": 1}
    assert run["progress"]["unit"] == "bytes" and run["progress"]["read"] == run["progress"]["total"]
    ada = deps.profiles.find(tenant.account_id, "email", "ada@example.com")
    assert ada is not None and ada.fields["first_name"] == "Ada" and ada.fields["city"] == "London, UK"
    got = api.get("/profiles?identifier=email:ada@example.com").json["data"]
    assert [p["id"] for p in got] == [ada.id]
    assert api.get(f"/jobs/{job['id']}").json["data"]["status"] == "completed"
    # AND a JSON Lines job on the gzip file works the same way
    job2 = _job(api, bucket, prefix="in/b", format="jsonl")
    drain.run()
    [run2] = api.get(f"/jobs/{job2['id']}/runs").json["data"]
    assert run2["status"] == "succeeded" and run2["added"] == 50


def test_incremental_continuous_import_reads_only_new_files(api, deps, tenant, drain, options):
    bucket = make_bucket()
    _put(bucket, "daily/1.csv", b"email,plan\na@x.io,free\nb@x.io,free\n")
    r = api.post("/jobs", {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
                           "authorization_id": create_auth(api)["id"], "label": "daily drop",
                           "config": {"bucket": bucket, "prefix": "daily/"},
                           "schedule": {"type": "daily", "at": "03:00", "timezone": "Europe/Paris"}})
    job = r.json["data"]
    drain.run()
    assert api.get(f"/jobs/{job['id']}").json["data"]["status"] == "sleeping"
    # WHEN a new file lands (one new person, one changed) and the schedule fires
    _put(bucket, "daily/2.csv", b"email,plan\nb@x.io,pro\nc@x.io,free\n")
    deps.runs_queue.send({"account_id": tenant.account_id, "job_id": job["id"], "trigger": "schedule"})
    drain.run()
    # THEN only the new file was read
    runs = api.get(f"/jobs/{job['id']}/runs").json["data"]
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    assert runs[0]["added"] == 2 and runs[0]["progress"]["processed"] == 2
    assert deps.profiles.find(tenant.account_id, "email", "b@x.io").fields["plan"] == "pro"


def test_missing_bucket_at_run_time_fails_with_the_providers_words(api, tenant, drain):
    bucket = make_bucket()
    job = _job(api, bucket)
    boto3.client("s3", region_name="us-east-1").delete_bucket(Bucket=bucket)
    drain.run()
    final = api.get(f"/jobs/{job['id']}").json["data"]
    assert final["status"] == "failed"
    [line] = api.get(f"/jobs/{job['id']}/logs?level=error").json["data"]
    assert line["code"] == "run.config_error" and "does not exist" in line["message"]


def _writer(deps, account_id):
    from chalicelib.store.profiles import writer_key

    t = deps.profiles_table
    return t.client.get_item(TableName=t.name, Key={k: {"S": v} for k, v in writer_key(account_id).items()},
                             ConsistentRead=True).get("Item")


def test_a_step_whose_source_fails_leaves_the_profile_lease_free(api, deps, tenant, drain):
    # GIVEN an import whose bucket is gone by the time its step reads it (the lease is
    # taken while the source is read, so it was being taken when the read failed)
    bucket = make_bucket()
    job = _job(api, bucket)
    boto3.client("s3", region_name="us-east-1").delete_bucket(Bucket=bucket)
    # WHEN the step runs and fails
    drain.run()
    assert api.get(f"/jobs/{job['id']}").json["data"]["status"] == "failed"
    # THEN no writer item is left: the next import of the account need not wait for it
    assert _writer(deps, tenant.account_id) is None
    # control: the check sees a held lease...
    ticket = deps.profiles.lease_ahead(tenant.account_id, "probe#0")
    ticket.hold(tenant.account_id, "probe#0")
    assert _writer(deps, tenant.account_id)["owner"]["S"] == "probe#0"
    ticket.release()
    # ...and a step that succeeds frees it too
    ok = make_bucket()
    _put(ok, "people.csv", b"email\na@x.io\n")
    done = _job(api, ok)
    drain.run()
    assert api.get(f"/jobs/{done['id']}").json["data"]["status"] == "completed"
    assert deps.profiles.find(tenant.account_id, "email", "a@x.io") is not None
    assert _writer(deps, tenant.account_id) is None
