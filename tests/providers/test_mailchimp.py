"""The Mailchimp provider against a fake Mailchimp over real HTTP (tests/fakes/mailchimp.py):
check, options, the import reader and the export part writer."""

from __future__ import annotations

import time
from typing import Any

import pytest

from chalicelib.domain.models import HealthStatus
from chalicelib.providers.base import ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.mailchimp import (
    PROVIDER,
    ApiKey,
    MailchimpImportConfig,
    OAuthToken,
    subscriber_hash,
)
from chalicelib.providers.mailchimp_import import MailchimpImport
from chalicelib.providers.registry import Registry
from chalicelib.providers.roles import StepContext
from tests.fakes.mailchimp import FakeMailchimp

OLD = "2026-01-01T00:00:00+00:00"


def _key(fake: FakeMailchimp) -> ApiKey:
    return ApiKey(api_key=fake.new_api_key())


def _ctx(creds: Any, config: dict[str, Any], *, cursor: dict[str, Any] | None = None,
         state: dict[str, Any] | None = None, max_records: int = 1000, method: str = "api_key",
         counter: CallCounter | None = None) -> StepContext:
    return StepContext(account_id="acct_1", job_id="job_1", run_id="run_1", step=0, method=method,
                       credentials=creds, config=config, cursor=cursor, state=state or {},
                       max_records=max_records, deadline=time.monotonic() + 60, counter=counter)


def _import_config(**kw: Any) -> dict[str, Any]:
    return MailchimpImportConfig.model_validate({"list_id": "L1", **kw}).model_dump(mode="json")


# -- credentials and check --------------------------------------------------------------------------


def test_api_key_shape_names_the_data_center():
    # GIVEN a key with its data-center suffix THEN the dc is read from it
    assert ApiKey(api_key="0123456789abcdef0123456789abcdef-us21").dc == "us21"
    # AND a key without a suffix is refused naming the field, never quoting the key
    from chalicelib.domain.errors import Invalid
    from chalicelib.services.validation import validate

    with pytest.raises(Invalid) as err:
        validate(ApiKey, {"api_key": "0123456789abcdef0123456789abcdef"}, prefix="credentials")
    assert list(err.value.fields) == ["credentials.api_key"]
    assert "<key>-<data center>" in err.value.fields["credentials.api_key"]
    assert "0123456789abcdef" not in str(err.value.fields) + err.value.message


def test_check_healthy_reaches_the_account_and_the_list(fake_mailchimp):
    fake = fake_mailchimp
    fake.add_list("L1", "Newsletter")
    counter = CallCounter()
    # WHEN a valid key is checked with a list
    result = PROVIDER.check("api_key", _key(fake), {"list_id": "L1"}, counter)
    # THEN healthy, the provider account is Mailchimp's account id, the list verified
    assert result.status is HealthStatus.HEALTHY
    assert result.provider_account == fake.account_id and result.resources == {"list_id": "L1"}
    assert counter.counts == {"mailchimp.ping": 1, "mailchimp.root": 1, "mailchimp.lists.get": 1}
    # AND it authenticated with HTTP basic (any user name, the key as password)
    assert all(r.headers["authorization"].startswith("Basic ") for r in fake.requests)
    # AND a list that does not exist is unhealthy, with the account still known
    missing = PROVIDER.check("api_key", _key(fake), {"list_id": "nope"})
    assert missing.status is HealthStatus.UNHEALTHY and "'nope' was not found" in (missing.reason or "")


def test_check_with_a_revoked_key_is_unhealthy_in_mailchimps_words(fake_mailchimp):
    # GIVEN a well-formed key Mailchimp does not know
    key = ApiKey(api_key="ffffffffffffffffffffffffffffffff-us21")
    # WHEN checked
    result = PROVIDER.check("api_key", key, {})
    # THEN unhealthy with Mailchimp's detail, and the key is not in the reason
    assert result.status is HealthStatus.UNHEALTHY
    assert "Your API key may be invalid" in (result.reason or "")
    assert "ffffffff" not in (result.reason or "")
    # AND a key of another data center reaches that data center and is refused there
    other = ApiKey(api_key=fake_mailchimp.new_api_key().rsplit("-", 1)[0] + "-us3")
    assert PROVIDER.check("api_key", other, {}).status is HealthStatus.UNHEALTHY
    assert fake_mailchimp.requests[-1].path.startswith("/us3/3.0/")


def test_check_with_an_oauth_token_uses_bearer(fake_mailchimp):
    fake_mailchimp.tokens.add("tok-1234567890")
    creds = OAuthToken(access_token="tok-1234567890", dc="us21")
    assert PROVIDER.check("oauth", creds, {}).status is HealthStatus.HEALTHY
    assert fake_mailchimp.requests[-1].headers["authorization"] == "Bearer tok-1234567890"


def test_a_server_error_that_persists_is_transient_not_a_verdict(fake_mailchimp):
    # GIVEN Mailchimp answering 503 to every attempt
    fake_mailchimp.fail(503, times=10)
    # WHEN checked THEN nothing is concluded: a transient ProviderError
    with pytest.raises(ProviderError) as err:
        PROVIDER.check("api_key", _key(fake_mailchimp), {})
    assert err.value.transient and not err.value.auth


# -- options ----------------------------------------------------------------------------------------


def test_options_list_lists_merge_fields_and_tags(fake_mailchimp):
    fake = fake_mailchimp
    fake.add_list("L1", "Newsletter", [("FNAME", "First Name", "text"), ("BDAY", "Birthday", "birthday")])
    fake.add_list("L2", "Customers")
    fake.add_member("L1", "a@x.io", tags=["vip", "beta"])
    key = _key(fake)
    # WHEN listing lists, merge fields and tags
    lists = PROVIDER.options("api_key", key, "mailchimp_import", "list_id", {})
    fields = PROVIDER.options("api_key", key, "mailchimp_audience_export", "fields", {"list_id": "L1"})
    tags = PROVIDER.options("api_key", key, "mailchimp_audience_export", "tag", {"list_id": "L1"})
    # THEN
    assert [(o.value, o.label) for o in lists] == [("L1", "Newsletter (L1)"), ("L2", "Customers (L2)")]
    assert [(o.value, o.kind) for o in fields] == [("FNAME", "text"), ("BDAY", "birthday")]
    assert sorted(o.value for o in tags) == ["beta", "vip"]
    # AND merge fields of an unknown list is a config error naming list_id
    with pytest.raises(ProviderError) as err:
        PROVIDER.options("api_key", key, "mailchimp_audience_export", "fields", {"list_id": "nope"})
    assert err.value.field == "list_id" and not err.value.transient


# -- import -----------------------------------------------------------------------------------------


def _read_all(creds: Any, config: dict[str, Any], *, state: dict[str, Any] | None = None,
              max_records: int = 1000, between: Any = None) -> tuple[list[dict[str, Any]], list[Any]]:
    reader = MailchimpImport(PROVIDER)
    cursor = None
    rows: list[dict[str, Any]] = []
    results = []
    for step in range(100):
        res = reader.read(_ctx(creds, config, cursor=cursor, state=state, max_records=max_records))
        results.append(res)
        rows += [r.data for r in res.rows]
        if res.done:
            return rows, results
        if between:
            between(step)
        cursor = res.cursor
    raise AssertionError("never done")


def test_import_pages_members_with_merge_fields_and_tags(fake_mailchimp):
    # GIVEN 2,300 members, one with an address merge field and tags
    fake = fake_mailchimp
    fake.add_list("L1", "Newsletter", [("FNAME", "First", "text"), ("ADDRESS", "Address", "address")])
    for i in range(2300):
        fake.add_member("L1", f"m{i}@x.io", merge_fields={"FNAME": f"M{i}"}, last_changed=OLD)
    fake.add_member("L1", "ada@x.io", merge_fields={"FNAME": "Ada", "ADDRESS": {"city": "London", "zip": ""}},
                    tags=["vip", "beta"], last_changed="2026-01-02T00:00:00+00:00")
    key = _key(fake)
    # WHEN read in steps of at most 1,000 rows
    rows, results = _read_all(key, _import_config(), max_records=1000)
    # THEN every member once, in 3 steps (count <= 1000 a page), with progress
    assert len(rows) == 2301 and len({r["email"] for r in rows}) == 2301
    assert [len(r.rows) for r in results] == [1000, 1000, 301]
    assert results[-1].processed == 2301 and results[-1].total == 2301
    pages = [r for r in fake.requests if r.path.endswith("/members")]
    assert all(int(r.query["count"]) <= 1000 for r in pages) and len(pages) == 3
    assert pages[0].query["sort_field"] == "last_changed" and "since_last_changed" not in pages[0].query
    ada = next(r for r in rows if r["email"] == "ada@x.io")
    assert ada == {"email": "ada@x.io", "status": "subscribed", "tags": ["vip", "beta"], "FNAME": "Ada",
                   "ADDRESS_city": "London", "ADDRESS_zip": ""}
    # AND the state after the run is the watermark the next run starts from
    assert results[-1].state["list_id"] == "L1" and results[-1].state["since_last_changed"]


def test_import_rows_map_to_profiles_with_the_default_mapping():
    from chalicelib.domain import profiles as P
    from chalicelib.providers.mailchimp_import import row_of

    # GIVEN the default config and one member
    config = _import_config(field_mapping={"ADDRESS_city": "city"})
    member = {"email_address": "Ada@X.io", "status": "subscribed", "merge_fields": {"FNAME": "Ada", "LNAME": "L",
              "ADDRESS": {"city": "London"}}, "tags": [{"id": 1, "name": "vip"}]}
    # WHEN mapped the way the engine maps rows
    rec = P.map_record(row_of(member), P.Mapping.from_config(config), "ref")
    # THEN email identifies, merge fields and status are fields, tags append
    assert isinstance(rec, P.ProfileRecord)
    assert rec.identifiers == {"email": "ada@x.io"}
    assert rec.fields == {"mailchimp_status": "subscribed", "mailchimp_tags": ["vip"], "first_name": "Ada",
                          "last_name": "L", "city": "London"}
    assert P.Mapping.from_config(config).rule("mailchimp_tags") == "append"


def test_reading_again_from_a_cursor_returns_the_same_rows(fake_mailchimp):
    fake = fake_mailchimp
    fake.add_list("L1", "N")
    for i in range(30):
        fake.add_member("L1", f"m{i}@x.io", last_changed=f"2026-01-01T00:00:{i:02d}+00:00")
    reader = MailchimpImport(PROVIDER)
    key, config = _key(fake), _import_config()
    first = reader.read(_ctx(key, config, max_records=10))
    # WHEN the second step is read twice from the same cursor (a redelivery)
    a = reader.read(_ctx(key, config, cursor=first.cursor, max_records=10))
    b = reader.read(_ctx(key, config, cursor=first.cursor, max_records=10))
    # THEN the same rows, in the same order (sorted by last_changed)
    assert [r.data["email"] for r in a.rows] == [r.data["email"] for r in b.rows] == [f"m{i}@x.io" for i in range(10, 20)]


def test_incremental_run_reads_only_members_changed_since_the_last_run(fake_mailchimp):
    fake = fake_mailchimp
    fake.add_list("L1", "N")
    for i in range(20):
        fake.add_member("L1", f"m{i}@x.io", last_changed=OLD)
    key, config = _key(fake), _import_config()
    first, results = _read_all(key, config)
    assert len(first) == 20
    state = results[-1].state
    # WHEN a member changes and one joins after the first run (stamped by Mailchimp's clock)
    fake.add_member("L1", "m3@x.io", merge_fields={"FNAME": "Changed"})
    fake.add_member("L1", "new@x.io")
    time.sleep(1.1)  # the next run's window ends at its own start, to the second
    rows, _ = _read_all(key, config, state=state)
    # THEN the second run reads only them, asking Mailchimp with since_last_changed
    assert sorted(r["email"] for r in rows) == ["m3@x.io", "new@x.io"]
    last = [r for r in fake.requests if r.path.endswith("/members")][-1]
    assert last.query["since_last_changed"] == state["since_last_changed"]
    # AND a job that is not incremental reads everything again
    everything, _ = _read_all(key, _import_config(incremental=False), state=state)
    assert len(everything) == 21


def test_a_member_changed_mid_run_does_not_make_the_run_skip_another(fake_mailchimp):
    # GIVEN 30 members, read 10 per step
    fake = fake_mailchimp
    fake.add_list("L1", "N")
    for i in range(30):
        fake.add_member("L1", f"m{i:02d}@x.io", last_changed=f"2026-01-01T00:00:{i:02d}+00:00")
    key, config = _key(fake), _import_config()

    def change_an_early_member(step: int) -> None:
        if step == 0:  # after the first step, a member already read changes: it leaves the window
            fake.member("L1", "m02@x.io").last_changed = "2099-01-01T00:00:00+00:00"

    # WHEN the run goes on
    rows, _ = _read_all(key, config, max_records=10, between=change_an_early_member)
    # THEN no member is missed (one may be read twice: upserts are idempotent)
    assert {r["email"] for r in rows} == {f"m{i:02d}@x.io" for i in range(30)}


def test_import_of_an_unknown_list_is_a_config_error_and_401_an_auth_error(fake_mailchimp):
    reader = MailchimpImport(PROVIDER)
    with pytest.raises(ProviderError) as err:
        reader.read(_ctx(_key(fake_mailchimp), _import_config(list_id="nope")))
    assert not err.value.transient and err.value.field == "list_id" and "not found" in err.value.reason
    revoked = ApiKey(api_key="ffffffffffffffffffffffffffffffff-us21")
    fake_mailchimp.add_list("L1", "N")
    with pytest.raises(ProviderError) as err:
        reader.read(_ctx(revoked, _import_config()))
    assert err.value.auth and not err.value.transient
    assert "Your API key may be invalid" in err.value.reason and "ffffffff" not in err.value.reason


def test_429_with_retry_after_then_success_loses_nothing(fake_mailchimp):
    fake = fake_mailchimp
    fake.add_list("L1", "N")
    for i in range(5):
        fake.add_member("L1", f"m{i}@x.io", last_changed=OLD)
    # GIVEN Mailchimp throttles the first members request
    fake.fail(429, times=1, retry_after="1", path="/members")
    counter = CallCounter()
    # WHEN read
    res = MailchimpImport(PROVIDER).read(_ctx(_key(fake), _import_config(), counter=counter))
    # THEN the HTTP layer waited and retried: every member, two attempts counted, one error
    assert len(res.rows) == 5 and res.done
    assert counter.counts["mailchimp.members.list"] == 2 and counter.errors["mailchimp.members.list"] == 1


# -- export -----------------------------------------------------------------------------------------


def _export(fake: FakeMailchimp, key: Any, rows: list[tuple[str, str, list[Any]]], counter: CallCounter | None = None,
            **config: Any) -> Any:
    impl = Registry().destination("mailchimp", "mailchimp_audience_export")
    frozen = impl.freeze({"audience_id": "aud_1", "list_id": "L1", **config})
    return impl.write_part(_ctx(key, {}, counter=counter), frozen, 1, rows)


def test_freeze_keeps_the_audience_the_fields_and_requires_an_email():
    impl = Registry().destination("mailchimp", "mailchimp_audience_export")
    frozen = impl.freeze({"audience_id": "aud_1", "list_id": "L1", "fields": {"plan": "PLAN"}})
    assert frozen["audience_id"] == "aud_1" and frozen["fields"] == ["email", "plan"]
    assert frozen["merge_tags"] == ["PLAN"] and frozen["required"] == ["email"]
    assert frozen["tag"] == "switchyard" and frozen["on_remove"] == "remove_tag"


def test_a_large_part_is_batch_subscribed_500_a_call_and_tagged_in_one_batch(fake_mailchimp):
    # GIVEN 1,200 adds (one with a fake-looking address) and a list that has one of them unsubscribed
    fake = fake_mailchimp
    fake.add_list("L1", "N", [("FNAME", "First", "text"), ("PLAN", "Plan", "text")])
    fake.add_member("L1", "p5@x.io", status="unsubscribed")
    rows = [("add", f"prof_{i}", [f"p{i}@x.io", f"P{i}", "pro"]) for i in range(1199)]
    rows.append(("add", "prof_fake", ["someone@nowhere.invalid", None, None]))
    counter = CallCounter()
    # WHEN the part is written
    part = _export(fake, _key(fake), rows, counter, fields={"first_name": "FNAME", "plan": "PLAN"})
    # THEN 3 batch subscribe calls, one /batches with the tag operations, polled until finished
    assert counter.counts == {"mailchimp.lists.batch_subscribe": 3, "mailchimp.batches.create": 1,
                              "mailchimp.batches.get": 1}
    m = fake.member("L1", "p7@x.io")
    assert m.status == "subscribed" and m.merge_fields == {"FNAME": "P7", "PLAN": "pro"} and m.tags == ["switchyard"]
    assert len([x for x in fake.lists["L1"].members.values() if "switchyard" in x.tags]) == 1198
    # AND the fake address and the unsubscribed member were rejected (never resubscribed), without the address
    assert sorted(pid for pid, _ in part.rejected) == ["prof_5", "prof_fake"]
    assert all("@" not in why for _, why in part.rejected)
    assert fake.member("L1", "p5@x.io").status == "unsubscribed" and fake.member("L1", "p5@x.io").tags == []
    assert part.rows == 1200


def test_a_small_part_tags_member_by_member_and_removes_untag(fake_mailchimp):
    fake = fake_mailchimp
    fake.add_list("L1", "N")
    fake.add_member("L1", "old@x.io", tags=["switchyard", "keep"])
    counter = CallCounter()
    rows = [("add", "prof_a", ["a@x.io", "A", None]), ("remove", "prof_old", ["Old@X.io", None, None]),
            ("remove", "prof_never", ["never@x.io", None, None])]
    # WHEN written (double opt-in on)
    part = _export(fake, _key(fake), rows, counter, double_opt_in=True)
    # THEN one batch subscribe, one tag call per member (404 of a never-added member is fine)
    assert counter.counts == {"mailchimp.lists.batch_subscribe": 1, "mailchimp.members.tags": 3}
    assert fake.member("L1", "a@x.io").status == "pending" and fake.member("L1", "a@x.io").tags == ["switchyard"]
    assert fake.member("L1", "old@x.io").tags == ["keep"] and fake.member("L1", "old@x.io").status == "subscribed"
    assert part.rejected == []
    tag_calls = [r for r in fake.requests if r.path.endswith("/tags")]
    assert tag_calls[1].path.endswith(f"/members/{subscriber_hash('old@x.io')}/tags")
    # AND writing the same part again (a redelivery) leaves the same list
    before = {h: (m.status, list(m.tags)) for h, m in fake.lists["L1"].members.items()}
    _export(fake, _key(fake), rows, double_opt_in=True)
    assert {h: (m.status, list(m.tags)) for h, m in fake.lists["L1"].members.items()} == before


def test_on_remove_unsubscribe_unsubscribes_leavers(fake_mailchimp):
    fake = fake_mailchimp
    fake.add_list("L1", "N")
    fake.add_member("L1", "old@x.io", tags=["switchyard"])
    _export(fake, _key(fake), [("remove", "prof_old", ["old@x.io", None, None])], on_remove="unsubscribe")
    m = fake.member("L1", "old@x.io")
    assert m.status == "unsubscribed" and m.tags == []


def test_export_errors_are_classified(fake_mailchimp):
    fake = fake_mailchimp
    rows = [("add", "prof_a", ["a@x.io", None, None])]
    # a list that does not exist: config error naming list_id
    with pytest.raises(ProviderError) as err:
        _export(fake, _key(fake), rows)
    assert err.value.field == "list_id" and not err.value.transient and not err.value.auth
    fake.add_list("L1", "N")
    # a revoked key: auth error in Mailchimp's words
    with pytest.raises(ProviderError) as err:
        _export(fake, ApiKey(api_key="ffffffffffffffffffffffffffffffff-us21"), rows)
    assert err.value.auth and "API key" in err.value.reason
    # 5xx past the retries: transient
    fake.fail(500, times=10)
    with pytest.raises(ProviderError) as err:
        _export(fake, _key(fake), rows)
    assert err.value.transient


def test_requests_per_1000_members(fake_mailchimp):
    """The figures of docs/providers/mailchimp.md (Mailchimp requests, retries excluded)."""
    fake = fake_mailchimp
    fake.add_list("L1", "N", [("FNAME", "First", "text")])
    for i in range(1000):
        fake.add_member("L1", f"m{i}@x.io", merge_fields={"FNAME": f"M{i}"}, last_changed=OLD)
    key = _key(fake)
    # import: one page of 1,000 members
    counter = CallCounter()
    res = MailchimpImport(PROVIDER).read(_ctx(key, _import_config(), max_records=5000, counter=counter))
    assert len(res.rows) == 1000 and res.done and counter.total == 1
    # export, 1,000 adds: 2 batch subscribes (500 each) + 1 /batches + 1 poll
    adds = [("add", f"prof_{i}", [f"n{i}@x.io", f"N{i}"]) for i in range(1000)]
    counter = CallCounter()
    _export(fake, key, adds, counter, fields={"first_name": "FNAME"})
    assert counter.total == 4
    # export, 1,000 removes: untag = 1 /batches + 1 poll; unsubscribe adds 2 batch subscribes
    removes = [("remove", f"prof_{i}", [f"n{i}@x.io", None]) for i in range(1000)]
    counter = CallCounter()
    _export(fake, key, removes, counter, fields={"first_name": "FNAME"})
    assert counter.total == 2 and len(_tagged_in(fake)) == 0
    counter = CallCounter()
    _export(fake, key, removes, counter, fields={"first_name": "FNAME"}, on_remove="unsubscribe")
    assert counter.total == 4


def _tagged_in(fake: FakeMailchimp) -> list[str]:
    return [m.email_address for m in fake.lists["L1"].members.values() if "switchyard" in m.tags]
