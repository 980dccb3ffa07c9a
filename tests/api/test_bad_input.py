"""SPEC rule 13: bad input gets the error envelope naming the field, and changes nothing."""

from __future__ import annotations

import json


def _envelope(r, status: int) -> dict:
    assert r.status_code == status, r.body
    err = r.json["error"]
    assert set(err) == {"code", "message", "fields", "details"}
    assert isinstance(err["message"], str) and err["message"]
    return err


def _snapshot(api, world) -> str:
    return json.dumps([api.get(f"/jobs/{world['job']['id']}").json, api.get("/jobs").json,
                       api.get(f"/authorizations/{world['auth']['id']}").json,
                       api.get("/authorizations").json], sort_keys=True)


def test_malformed_json_is_400(api, world):
    before = _snapshot(api, world)
    for raw in (b"{", b"{'a': 1}", b"\xff\xfe", b'{"label": "x",}', b"", b"[" * 100000):
        for method, path in (("POST", "/jobs"), ("POST", "/authorizations"),
                             ("PATCH", f"/jobs/{world['job']['id']}")):
            err = _envelope(api.call(method, path, raw=raw), 400)
            assert "body" in err["fields"]
    assert _snapshot(api, world) == before


def test_non_object_bodies_and_wrong_types_are_422_naming_fields(api, world):
    before = _snapshot(api, world)
    err = _envelope(api.post("/jobs", [1, 2]), 422)
    assert err["fields"] == {"body": "must be an object"}
    err = _envelope(api.post("/jobs", {"provider": 5, "job_type": None, "workflow": [], "label": "",
                                       "config": "x", "start": "maybe"}), 422)
    assert {"provider", "job_type", "workflow", "label", "config", "start"} <= set(err["fields"])
    err = _envelope(api.post("/authorizations", {"provider": "amazon_s3", "method": "access_keys",
                                                 "label": "l\x00x", "credentials": {}}), 422)
    assert "label" in err["fields"]
    err = _envelope(api.patch(f"/jobs/{world['job']['id']}", {"label": None, "version": 1}), 422)
    assert err["fields"] == {"label": "cannot be null"}
    err = _envelope(api.patch(f"/jobs/{world['job']['id']}", {"label": "x", "version": "1"}), 422)
    assert "version" in err["fields"]
    err = _envelope(api.patch(f"/jobs/{world['job']['id']}", {"label": "x"}, headers={"If-Match": "abc"}), 400)
    assert "If-Match" in err["fields"]
    assert _snapshot(api, world) == before


def test_unknown_fields_are_refused(api, world):
    before = _snapshot(api, world)
    err = _envelope(api.post("/jobs", {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
                                       "authorization_id": world["auth"]["id"], "label": "x",
                                       "config": {"bucket": world["bucket"]}, "priority": 9}), 422)
    assert err["fields"] == {"priority": "unknown field"}
    err = _envelope(api.patch(f"/jobs/{world['job']['id']}", {"status": "running", "version": 1}), 422)
    assert err["fields"] == {"status": "unknown field"}
    assert _snapshot(api, world) == before


def test_oversized_bodies_are_413(api, world):
    before = _snapshot(api, world)
    big = {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import", "label": "x",
           "authorization_id": world["auth"]["id"], "description": "d" * (300 * 1024), "config": {}}
    err = _envelope(api.post("/jobs", big), 413)
    assert err["code"] == "request.too_large" and "body" in err["fields"]
    assert _snapshot(api, world) == before


def test_bad_query_parameters_are_400(api, world):
    for q, field in (("limit=0", "limit"), ("limit=201", "limit"), ("limit=ten", "limit"),
                     ("cursor=%%%", "cursor"), ("cursor=eyJQSyI6IkFDQ1QjeCJ9", "cursor"),
                     ("colour=red", "colour"), ("status=bogus", "status")):
        err = _envelope(api.get(f"/jobs?{q}"), 400)
        assert field in err["fields"], q
    err = _envelope(api.get("/authorizations?health=sick"), 400)
    assert "health" in err["fields"]
    err = _envelope(api.patch(f"/jobs/{world['job']['id']}?dry_run=perhaps", {"version": 1}), 400)
    assert "dry_run" in err["fields"]


def test_hostile_strings_are_stored_verbatim_not_interpreted(api, world):
    label = "Robert'); DROP TABLE jobs;-- <script>alert(1)</script> ✓ 日本"
    r = api.patch(f"/jobs/{world['job']['id']}", {"label": label, "version": 1})
    assert r.status_code == 200 and r.json["data"]["label"] == label
    assert api.get(f"/jobs?provider={label[:10]}").json["data"] == []
    assert api.get(f"/jobs/{world['job']['id']}").json["data"]["label"] == label


def test_unknown_ids_and_routes(api):
    _envelope(api.get("/jobs/job_does_not_exist"), 404)
    _envelope(api.get("/providers/nope"), 404)
    _envelope(api.get("/providers/amazon_s3/workflows/nope/options/bucket"), 404)
    _envelope(api.get("/providers/amazon_s3/workflows/s3_file_import/options/format"), 404)
    err = _envelope(api.get("/providers/amazon_s3/workflows/s3_file_import/options/bucket"), 422)
    assert "authorization_id" in err["fields"]


def test_non_json_content_type_is_415_in_the_envelope(api, world):
    before = _snapshot(api, world)
    r = api.call("POST", "/jobs", raw=b"provider=amazon_s3&label=x",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    err = _envelope(r, 415)
    assert err["code"] == "request.unsupported_media_type" and "Content-Type" in err["fields"]
    # a GET is not concerned by the body's type
    assert api.get("/jobs", headers={"Content-Type": "text/plain"}).status_code == 200
    assert _snapshot(api, world) == before


def test_bad_run_now_bodies_are_refused_naming_the_field(api, world):
    before = _snapshot(api, world)
    run = f"/jobs/{world['job']['id']}/run"
    err = _envelope(api.call("POST", run, raw=b'{"resync": '), 400)
    assert "body" in err["fields"]
    for body, field in (({"resync": "yes"}, "resync"), ({"resync": 1}, "resync"), ({"full": True}, "full"),
                        ([True], "body")):
        assert field in _envelope(api.post(run, body), 422)["fields"], body
    err = _envelope(api.call("POST", run, raw=b"resync=1", headers={"Content-Type": "text/plain"}), 415)
    assert "Content-Type" in err["fields"]
    # A well-formed re-send of an import job: nothing to re-send, said at the field
    err = _envelope(api.post(run, {"resync": True}), 422)
    assert err["code"] == "job.resync_unsupported" and "resync" in err["fields"]
    assert _snapshot(api, world) == before
