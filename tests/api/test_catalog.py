"""SPEC rule 1 (catalog) and the live options of rule 2, through the API."""

from __future__ import annotations

import boto3

from tests.api.helpers import create_auth, make_bucket


def test_catalog_lists_providers_workflows_and_methods(api):
    r = api.get("/providers")
    assert r.status_code == 200 and r.json["next_cursor"] is None
    s3 = next(p for p in r.json["data"] if p["id"] == "amazon_s3")
    assert s3["job_types"] == ["import", "export"]
    methods = {m["id"]: m for m in s3["auth_methods"]}
    assert set(methods) == {"access_keys", "assume_role"}
    keys = methods["access_keys"]
    assert keys["secret_fields"] == ["secret_access_key"]
    secret_schema = keys["credentials_schema"]["properties"]["secret_access_key"]
    assert secret_schema["writeOnly"] is True and secret_schema["x-secret"] is True
    assert methods["assume_role"]["secret_fields"] == ["external_id"]
    workflows = {w["id"]: w for w in s3["workflows"]}
    assert workflows["s3_file_import"]["job_type"] == "import"
    assert workflows["s3_audience_export"]["job_type"] == "export"
    imp = workflows["s3_file_import"]
    assert imp["auth_methods"] == ["access_keys", "assume_role"]
    assert imp["config_schema"]["required"] == ["bucket"]
    assert imp["config_schema"]["additionalProperties"] is False
    assert imp["option_fields"] == ["bucket", "prefix"]
    # by job type, and one provider
    assert [p["id"] for p in api.get("/providers?job_type=enrichment").json["data"]] == [
        "fullcontact", "http_enrichment"]
    assert api.get("/providers/amazon_s3").json["data"] == s3
    assert api.get("/providers/no_such_provider").status_code == 404


def test_options_are_read_through_the_authorization(api):
    # GIVEN a bucket with files under two prefixes
    bucket = make_bucket()
    s3 = boto3.client("s3", region_name="us-east-1")
    for key in ("imports/a.csv", "imports/b.csv", "exports/x.jsonl", "top.csv"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"email\nx@y.z\n")
    auth = create_auth(api)
    base = "/providers/amazon_s3/workflows/s3_file_import/options"
    # WHEN listing buckets and prefixes
    buckets = api.get(f"{base}/bucket?authorization_id={auth['id']}")
    top = api.get(f"{base}/prefix?authorization_id={auth['id']}&bucket={bucket}")
    inner = api.get(f"{base}/prefix?authorization_id={auth['id']}&bucket={bucket}&prefix=imports/")
    # THEN they come from S3
    assert bucket in [o["value"] for o in buckets.json["data"]]
    assert {(o["value"], o["kind"]) for o in top.json["data"]} == {
        ("exports/", "prefix"), ("imports/", "prefix"), ("top.csv", "object")}
    assert [o["value"] for o in inner.json["data"]] == ["imports/a.csv", "imports/b.csv"]
    # AND a missing bucket is the provider's words, naming the field
    r = api.get(f"{base}/prefix?authorization_id={auth['id']}&bucket=nope-not-here")
    assert r.status_code == 422 and "does not exist" in r.json["error"]["message"]
    assert "bucket" in r.json["error"]["fields"]
    r = api.get(f"{base}/prefix?authorization_id={auth['id']}")
    assert r.status_code == 422 and "bucket" in r.json["error"]["fields"]
