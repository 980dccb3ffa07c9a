"""Regressions for the defects the proof suites found: the API fuzzer
(tests/proof/test_fuzz.py) and the bad-input corpus (tests/proof/test_bad_inputs.py).

Each test replays what failed: a 500, an answer the OpenAPI document does not describe, or
a run that crashed on a hostile file.
"""

from __future__ import annotations

import boto3
import jsonschema
import pytest

from tests.api.helpers import create_auth, create_job, make_bucket
from tests.api.test_openapi import _conforms, _doc

# -- found by the fuzzer ------------------------------------------------------------------


def test_test_alert_is_published_not_a_500(api) -> None:
    # The view took a `body` argument that a body-less route never passes: every call was a 500.
    r = api.post("/alerts/test")
    assert r.status_code == 202, r.body
    assert r.json == {"data": {"published": True}}
    _conforms(_doc(api), "POST", "/alerts/test", r)


def test_audit_events_of_every_object_type_conform_to_the_document(api) -> None:
    # GET /audit answered object types (token, user, alert_settings, alert_rule) that the
    # document's enum did not list.
    user = api.post("/users", {"email": "fz@acme.example", "name": "fz", "role": "observer"})
    assert user.status_code == 201, user.body
    assert api.post("/tokens", {"label": "fz"}).status_code == 201
    assert api.put("/alerts", {"emails": ["ops@acme.example"], "version": 0}).status_code == 200
    r = api.get("/audit")
    kinds = {e["object_type"] for e in r.json["data"]}
    assert {"user", "token", "alert_settings"} <= kinds, kinds
    _conforms(_doc(api), "GET", "/audit", r)


def test_an_empty_query_value_means_not_given_and_the_document_says_so(api) -> None:
    # `?job_type=` was accepted (as "not given") while the document's enum refused "".
    doc = _doc(api)
    for path, name in (("/jobs", "job_type"), ("/jobs", "limit"), ("/providers", "job_type")):
        assert api.get(f"{path}?{name}=").status_code == 200
        [param] = [p for p in doc["paths"]["/api/v1" + path]["get"]["parameters"] if p["name"] == name]
        jsonschema.validate("", param["schema"])
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate("bogus", param["schema"])


def test_a_query_parameter_given_twice_is_refused_naming_it(api) -> None:
    # `?limit=<garbage>&limit=` was answered 200 (the last, empty value won silently).
    for query in ("limit=%F1%8C%A3&limit=", "limit=5&limit=6", "job_type=import&job_type=export"):
        r = api.get(f"/authorizations?{query}") if "job_type" not in query else api.get(f"/jobs?{query}")
        assert r.status_code == 400, (query, r.body)
        name = query.split("=")[0]
        assert r.json["error"]["fields"] == {name: "given more than once"}
    assert api.get("/authorizations?limit=5").status_code == 200


# -- found by the bad-input corpus --------------------------------------------------------


def test_deeply_nested_free_form_fields_are_400_not_500(api) -> None:
    job = create_job(api, create_auth(api)["id"], make_bucket())
    deep: dict = {}
    node = deep
    for _ in range(900):  # json.loads takes it; the config's serialiser did not
        node["a"] = {}
        node = node["a"]
    r = api.patch(f"/jobs/{job['id']}", {"config": deep, "version": 1})
    assert r.status_code == 400 and r.json["error"]["code"] == "request.too_deep", r.body
    [field] = r.json["error"]["fields"]
    assert field.startswith("config.a.a")
    assert api.get(f"/jobs/{job['id']}").json["data"]["version"] == 1


def test_unpaired_surrogates_are_422_naming_the_field_not_500(api) -> None:
    r = api.call("POST", "/audiences/preview",
                 raw=b'{"filter": {"all": [{"field": "plan", "op": "equals", "value": "x\\ud800"}]}}')
    assert r.status_code == 422, r.body
    assert r.json["error"]["fields"] == {"filter.all[0].value": "not valid Unicode text"}


def test_bodies_must_be_utf8(api) -> None:
    r = api.call("POST", "/tokens", raw='{"label": "x"}'.encode("utf-16"))
    assert r.status_code == 400 and r.json["error"]["fields"] == {"body": "not UTF-8"}, r.body
    r = api.call("POST", "/tokens", raw=b'{"label": "x"}', headers={"Content-Type": "application/json; charset=utf-16"})
    assert r.status_code == 415 and "Content-Type" in r.json["error"]["fields"], r.body
    # a UTF-8 byte order mark is ignored (RFC 8259 allows it)
    assert api.call("POST", "/tokens", raw=b'\xef\xbb\xbf{"label": "bom"}').status_code == 201
    assert [t["label"] for t in api.get("/tokens").json["data"]].count("bom") == 1


def test_bidi_controls_and_control_characters_in_names_are_refused(api) -> None:
    r = api.post("/tokens", {"label": "invoice\u202efdp.exe"})
    assert r.status_code == 422 and "label" in r.json["error"]["fields"], r.body
    r = api.post("/users", {"email": "bell@acme.example", "name": "ding\x07", "role": "observer"})
    assert r.status_code == 422 and "name" in r.json["error"]["fields"], r.body
    # right-to-left text itself is fine
    r = api.post("/tokens", {"label": "مفتاح API"})
    assert r.status_code == 201 and r.json["data"]["label"] == "مفتاح API"


def _run_import(api, deps, tenant, bucket: str, **config) -> dict:
    from chalicelib.runs.engine import Delivery, Engine, EngineOptions

    job = create_job(api, create_auth(api)["id"], bucket, config={"bucket": bucket, **config})
    Engine(deps, EngineOptions()).handle(Delivery(
        body={"account_id": tenant.account_id, "job_id": job["id"], "trigger": "create",
              "requested_by": tenant.admin_user_id, "requested_at": "2026-01-01T00:00:00Z"},
        message_id="regression"))
    [run] = api.get(f"/jobs/{job['id']}/runs").json["data"]
    run["logs"] = [line["message"] for line in api.get(f"/jobs/{job['id']}/logs").json["data"]]
    return run


def test_an_object_shorter_than_listed_is_skipped_not_a_failed_job(api, deps, tenant) -> None:
    import moto.s3.models as s3_models

    bucket = make_bucket()
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket=bucket, Key="a/liar.csv", Body=b"email\n")
    s3.put_object(Bucket=bucket, Key="a/ok.csv", Body=b"email\nok@example.com\n")
    # S3 (moto, in this process) lists the first object as 5 GB: its ranges past byte 6 fail
    s3_models.s3_backends["123456789012"]["aws"].buckets[bucket].keys["a/liar.csv"].contentsize = 5 * 1024**3
    run = _run_import(api, deps, tenant, bucket, prefix="a/")
    # InvalidRange used to fail the whole job as a configuration error
    assert run["status"] == "succeeded" and run["added"] == 1, run
    assert any("shorter than its listed size" in m for m in run["logs"]), run["logs"]


def test_jsonl_with_unpaired_surrogates_omits_the_record_not_a_crash(api, deps, tenant) -> None:
    bucket = make_bucket()
    boto3.client("s3", region_name="us-east-1").put_object(
        Bucket=bucket, Key="in/a.jsonl",
        Body=b'{"email": "s@example.com", "name": "\\ud800"}\n{"email": "t\\udfff@example.com"}\n'
             b'{"email": "ok@example.com"}\n')
    run = _run_import(api, deps, tenant, bucket, prefix="in/", format="jsonl")
    assert run["status"] == "succeeded", run
    assert (run["added"], run["omitted_reasons"]) == (1, {"invalid": 2}), run


def test_identifiers_with_control_characters_are_invalid() -> None:
    from chalicelib.domain.profiles import normalize_identifier

    for bad in ("n\x00ul@example.com", "a\nb@example.com", "x\x85@example.com"):
        with pytest.raises(ValueError, match="control characters"):
            normalize_identifier("email", bad)
    with pytest.raises(ValueError, match="Unicode"):
        normalize_identifier("customer_id", "id-\ud800")
    assert normalize_identifier("email", " Ada@Example.com ") == "ada@example.com"
