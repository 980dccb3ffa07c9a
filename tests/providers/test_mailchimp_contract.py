"""The Mailchimp provider against what the official client can send, and a batch's
per-operation results read from its `response_body_url` (tests/fakes/mailchimp.py,
tests/fakes/mailchimp_client.py)."""

from __future__ import annotations

import base64
import io
import json
import tarfile
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from chalicelib import config
from chalicelib.providers.base import ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.mailchimp import PROVIDER, ApiKey, MailchimpImportConfig
from chalicelib.providers.mailchimp_batches import parse_results, read_results
from chalicelib.providers.mailchimp_import import MailchimpImport
from chalicelib.providers.registry import Registry
from chalicelib.providers.roles import StepContext
from tests.fakes import mailchimp_client
from tests.fakes.mailchimp import FakeMailchimp, results_archive, subscriber_hash


def _ctx(key: ApiKey, cfg: dict[str, Any], counter: CallCounter | None = None,
         state: dict[str, Any] | None = None) -> StepContext:
    return StepContext(account_id="acct_1", job_id="job_1", run_id="run_1", step=0, method="api_key",
                       credentials=key, config=cfg, cursor=None, state=state or {}, max_records=5000,
                       deadline=time.monotonic() + 60, counter=counter)


def _export(key: ApiKey, rows: list[tuple[str, str, list[Any]]], counter: CallCounter | None = None,
            **cfg: Any) -> Any:
    impl = Registry().destination("mailchimp", "mailchimp_audience_export")
    frozen = impl.freeze({"audience_id": "aud_1", "list_id": "L1", **cfg})
    return impl.write_part(_ctx(key, {}, counter), frozen, 1, rows)


def _raw(fake: FakeMailchimp, key: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A request as any HTTP client would send it, not through the provider."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(fake.base_url.format(dc=fake.dc) + path, data=data, method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(f"any:{key}".encode()).decode())
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


# -- the official client's description -----------------------------------------------------------


def test_the_clients_modules_describe_the_methods_switchyard_uses():
    # GIVEN the generated API modules of mailchimp-marketing THEN they parse into methods
    methods = {m.id: m for m in mailchimp_client.methods()}
    assert len(methods) > 200  # the whole Marketing API, not a handful
    members = methods["ListsApi.get_list_members_info"]
    assert (members.http_method, members.path) == ("GET", "/lists/{list_id}/members")
    assert {"fields", "count", "offset", "since_last_changed", "before_last_changed", "sort_field",
            "sort_dir"} <= members.params and "list_id" not in members.params
    assert methods["ListsApi.batch_list_members"].body == "MembersToSubscribeUnsubscribeTofromAListInBatch"
    assert methods["BatchesApi.start"].path == "/batches" and methods["BatchesApi.start"].body == "Body"
    assert methods["ListsApi.tag_search"].params == {"name"}
    assert methods["PingApi.get"].params == frozenset() and methods["PingApi.get"].body is None


def test_every_request_the_provider_sends_is_one_the_official_client_can_send(fake_mailchimp):
    # GIVEN a list with members, merge fields and a tag
    fake = fake_mailchimp
    fake.add_list("L1", "Newsletter", [("FNAME", "First", "text"), ("PLAN", "Plan", "text")])
    for i in range(3):
        fake.add_member("L1", f"m{i}@x.io", merge_fields={"FNAME": f"M{i}"}, tags=["vip"],
                        last_changed="2026-01-01T00:00:00+00:00")
    key = ApiKey(api_key=fake.new_api_key())
    fake.fail_operations(400, times=1, path="/tags")  # so the batch's results are read too
    # WHEN the provider does everything it does: check, options, import, small and large exports
    PROVIDER.check("api_key", key, {"list_id": "L1"})
    for field in ("list_id", "fields", "tag"):
        PROVIDER.options("api_key", key, "mailchimp_audience_export", field, {"list_id": "L1"})
    cfg = MailchimpImportConfig.model_validate({"list_id": "L1"}).model_dump(mode="json")
    first = MailchimpImport(PROVIDER).read(_ctx(key, cfg))
    rows = first.rows
    again = MailchimpImport(PROVIDER).read(_ctx(key, cfg, state=first.state))  # incremental: since_last_changed
    _export(key, [("add", "p_a", ["a@x.io", "A"]), ("remove", "p_m0", ["m0@x.io", None])],
            fields={"first_name": "FNAME"})
    large = _export(key, [("add", f"p{i}", [f"n{i}@x.io", f"N{i}"]) for i in range(20)],
                    fields={"first_name": "FNAME"}, on_remove="unsubscribe")
    # THEN every request passed the fake's check against the client (one refused would have
    # failed the call), and these are the client methods Switchyard uses
    assert set(fake.calls) == {"PingApi.get", "RootApi.get_root", "ListsApi.get_list", "ListsApi.get_all_lists",
                               "ListsApi.get_list_merge_fields", "ListsApi.tag_search",
                               "ListsApi.get_list_members_info", "ListsApi.batch_list_members",
                               "ListsApi.update_list_member_tags", "BatchesApi.start", "BatchesApi.status"}
    members_reads = [r.query for r in fake.requests if r.path.endswith("/members") and r.method == "GET"]
    assert "since_last_changed" in members_reads[-1] and again.rows == []
    # AND what the import asked for with `fields` is all it uses: the rows are complete
    by_email = {r.data["email"]: r.data for r in rows}
    assert len(by_email) == 3 and by_email["m0@x.io"] == {"email": "m0@x.io", "status": "subscribed",
                                                         "tags": ["vip"], "FNAME": "M0"}
    assert large.rejected and not any(r.path.endswith(".tar.gz") and "authorization" in r.headers
                                      for r in fake.requests)


@pytest.mark.parametrize("method, path, body, status, words", [
    ("GET", "/lists/L1/subscribers", None, 404, "could not be found"),
    ("DELETE", "/lists/L1/members/" + "0" * 32 + "/tags", None, 405, "not compatible"),
    ("GET", "/lists/L1/members?since_last_chnged=2026-01-01", None, 400, "since_last_chnged"),
    ("GET", "/lists/L1/tag-search?count=10", None, 400, "'count'"),
    ("POST", "/lists/L1", {"members": [{"email_address": "a@x.io", "status": "subscribed", "fname": "A"}]},
     400, "body.members[0].fname"),
    ("POST", "/lists/L1", {"members": [{"email_address": "a@x.io", "status": "active"}]}, 400, "not one of"),
    ("POST", "/lists/L1", {"members": [], "replace": True}, 400, "body.replace"),
    ("POST", "/lists/L1/members/" + "0" * 32 + "/tags", {"tags": [{"name": "t", "status": "on"}]}, 400,
     "not one of"),
    ("POST", "/batches", {"operations": [{"method": "POST", "path": "/x", "id": "1"}]}, 400,
     "body.operations[0].id"),
    ("POST", "/batches", None, 400, "needs a JSON request body"),
    ("GET", "/ping", {"x": 1}, 400, "takes no request body"),
])
def test_the_fake_refuses_what_the_official_client_cannot_send(fake_mailchimp, method, path, body, status, words):
    fake = fake_mailchimp
    fake.add_list("L1", "N")
    key = fake.new_api_key()
    # GIVEN a request the client has no method for WHEN sent THEN Mailchimp's problem document
    got, doc = _raw(fake, key, method, path, body)
    assert got == status and words in doc["detail"] and doc["status"] == status
    # AND nothing changed
    assert fake.lists["L1"].members == {} and fake.batches == {}
    # positive control: the same route with a request the client can send is served
    assert _raw(fake, key, "GET", "/lists/L1/members?count=5")[0] == 200


def test_a_request_the_client_can_send_but_the_fake_does_not_serve_says_so(fake_mailchimp):
    fake = fake_mailchimp
    fake.add_list("L1", "N")
    key = fake.new_api_key()
    # the client has these methods: the fake answers 501 naming the request, never a made-up 404
    for method, path in (("GET", "/lists/L1/members/" + "0" * 32 + "/notes"), ("GET", "/batches"),
                         ("DELETE", "/lists/L1/members/" + "0" * 32)):
        status, doc = _raw(fake, key, method, path)
        assert status == 501 and "does not serve" in doc["detail"], (method, path, doc)


def test_fields_and_exclude_fields_trim_the_answer(fake_mailchimp):
    fake = fake_mailchimp
    fake.add_list("L1", "N")
    fake.add_member("L1", "a@x.io", merge_fields={"FNAME": "A"}, tags=["t"])
    key = fake.new_api_key()
    # WHEN fields names dot paths into the members array THEN only those come back
    status, doc = _raw(fake, key, "GET", "/lists/L1/members?fields=members.email_address,total_items")
    assert status == 200 and doc == {"members": [{"email_address": "a@x.io"}], "total_items": 1}
    # AND exclude_fields removes what it names, keeping the rest
    _, doc = _raw(fake, key, "GET", "/lists/L1/members?exclude_fields=members.merge_fields,members.tags")
    member = doc["members"][0]
    assert "merge_fields" not in member and "tags" not in member and member["email_address"] == "a@x.io"
    assert doc["total_items"] == 1 and fake.member("L1", "a@x.io").merge_fields == {"FNAME": "A"}
    # AND without either, the whole answer
    _, doc = _raw(fake, key, "GET", "/lists/L1/members")
    assert doc["members"][0]["merge_fields"] == {"FNAME": "A"} and doc["list_id"] == "L1"


# -- batch results ----------------------------------------------------------------------------------


def _big_part(n: int = 20) -> list[tuple[str, str, list[Any]]]:
    return [("add", f"prof_{i}", [f"p{i}@x.io", None]) for i in range(n)]


def test_failed_batch_operations_are_read_from_the_results_and_rejected(fake_mailchimp):
    # GIVEN a part large enough for /batches, and Mailchimp failing two of its tag operations
    fake = fake_mailchimp
    fake.add_list("L1", "N")
    fake.results_per_file = 7  # the results come in several files of one archive
    fake.fail_operations(400, times=2, path="/tags")
    counter = CallCounter()
    # WHEN the part is written
    part = _export(ApiKey(api_key=fake.new_api_key()), _big_part(), counter)
    # THEN the two members are rejected with Mailchimp's reason, the others are tagged
    assert sorted(pid for pid, _ in part.rejected) == ["prof_0", "prof_1"]
    assert all(why == "The resource submitted could not be validated." for _, why in part.rejected)
    assert sum("switchyard" in m.tags for m in fake.lists["L1"].members.values()) == 18
    # AND the results were fetched once, from storage, without Mailchimp's credentials
    assert counter.counts["mailchimp.batches.results"] == 1
    fetch = [r for r in fake.requests if r.path.endswith(".tar.gz")]
    assert len(fetch) == 1 and "authorization" not in fetch[0].headers
    assert "2 of 20 tag operations failed, 2 rejected" in part.notes[0]


def test_a_batch_without_failures_is_not_downloaded(fake_mailchimp):
    fake = fake_mailchimp
    fake.add_list("L1", "N")
    counter = CallCounter()
    part = _export(ApiKey(api_key=fake.new_api_key()), _big_part(), counter)
    assert part.rejected == [] and part.notes == [] and "mailchimp.batches.results" not in counter.counts
    # positive control: the batch ran and finished
    assert counter.counts["mailchimp.batches.create"] == 1 and len(fake.batches) == 1


def test_untagging_members_who_left_the_list_is_not_a_rejection(fake_mailchimp):
    # GIVEN removes of members of whom only some are still in the list
    fake = fake_mailchimp
    fake.add_list("L1", "N")
    for i in range(0, 20, 2):
        fake.add_member("L1", f"p{i}@x.io", tags=["switchyard"])
    rows = [("remove", f"prof_{i}", [f"p{i}@x.io", None]) for i in range(20)]
    counter = CallCounter()
    part = _export(ApiKey(api_key=fake.new_api_key()), rows, counter)
    # THEN the 404s of the gone ones were read (not assumed) and are nothing to do
    assert counter.counts["mailchimp.batches.results"] == 1 and part.rejected == []
    assert "10 of 20 tag operations failed, 0 rejected" in part.notes[0]
    assert all(m.tags == [] for m in fake.lists["L1"].members.values())


def test_a_server_error_inside_a_batch_leaves_the_part_to_be_sent_again(fake_mailchimp):
    fake = fake_mailchimp
    fake.add_list("L1", "N")
    fake.fail_operations(500, times=1, path="/tags")
    with pytest.raises(ProviderError) as err:
        _export(ApiKey(api_key=fake.new_api_key()), _big_part())
    assert err.value.transient and not err.value.auth and "(500:" in err.value.reason


def test_an_expired_results_url_is_transient_never_an_auth_error(fake_mailchimp):
    fake = fake_mailchimp
    fake.add_list("L1", "N")
    fake.fail_operations(400, times=1, path="/tags")
    fake.results_expired = True
    with pytest.raises(ProviderError) as err:
        _export(ApiKey(api_key=fake.new_api_key()), _big_part())
    # a 403 from storage says nothing about the key: the authorization stays healthy
    assert err.value.transient and not err.value.auth and "could not be fetched" in err.value.reason
    # positive control: once the URL works again, the same part goes through with its rejection
    fake.results_expired = False
    fake.fail_operations(400, times=1, path="/tags")
    assert len(_export(ApiKey(api_key=fake.new_api_key()), _big_part()).rejected) == 1


def test_the_results_url_goes_through_the_ssrf_guard(monkeypatch):
    # GIVEN production settings (no private addresses, https only)
    monkeypatch.setenv("SWITCHYARD_ALLOW_PRIVATE_URLS", "0")
    config.reset()
    try:
        for url in ("http://mailchimp-api-batch.s3.amazonaws.com/x.tar.gz", "https://127.0.0.1/x.tar.gz",
                    "https://10.1.2.3/x.tar.gz"):
            # WHEN Mailchimp points the results elsewhere THEN refused, not fetched, not retried
            with pytest.raises(ProviderError) as err:
                read_results(url, None, None)
            assert not err.value.transient and "results URL was refused" in err.value.reason
    finally:
        config.reset()


def test_results_archives_parse_and_garbage_is_transient(fake_mailchimp):
    ok = {"status_code": 200, "operation_id": "a", "response": "{}"}
    bad = {"status_code": 400, "operation_id": "b", "response": json.dumps({"title": "Invalid Resource",
                                                                             "detail": "b is wrong"})}
    got = parse_results(results_archive("batch1", [ok, bad, ok], per_file=2))
    assert [(r.operation_id, r.status, r.words) for r in got] == [("a", 200, ""), ("b", 400, "b is wrong"),
                                                                  ("a", 200, "")]
    for archive in (b"not a tar", _tar_gz({"x.json": b'{"not": "an array"}'}),
                    _tar_gz({"x.json": b'[{"operation_id": "no status"}]'})):
        with pytest.raises((tarfile.TarError, ValueError, OSError)):
            parse_results(archive)
    # files that are not JSON results are skipped
    assert parse_results(_tar_gz({"README.txt": b"hello", "r.json": json.dumps([ok]).encode()}))[0].status == 200


def _tar_gz(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_subscriber_hash_is_the_fakes(fake_mailchimp):
    # the fake and the provider address members the same way (the batch paths depend on it)
    from chalicelib.providers.mailchimp import subscriber_hash as provider_hash

    assert provider_hash(" A@X.io ") == subscriber_hash("a@x.io")
