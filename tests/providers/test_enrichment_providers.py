"""The enrichment providers on their own, against real local HTTP servers: what each answer
becomes (fields, unmatched, rejected, an error for the engine), and what is sent."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.domain.models import HealthStatus
from chalicelib.domain.profiles import Profile, profile_id_for
from chalicelib.providers.base import ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.fullcontact import PROVIDER as FULLCONTACT
from chalicelib.providers.fullcontact import ApiKey
from chalicelib.providers.http_enrichment import PROVIDER as ENDPOINT
from chalicelib.providers.http_enrichment import Endpoint, EndpointBearer
from chalicelib.providers.registry import Registry
from chalicelib.providers.roles import StepContext
from tests.fakes.fullcontact import FakeFullContact
from tests.http_receiver import Answer, Receiver

KEY = "fc-unit-key-5b7e21c9"


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from chalicelib import config
    from chalicelib.providers import http as H

    monkeypatch.setenv("SWITCHYARD_ALLOW_PRIVATE_URLS", "1")
    config.reset()
    H.reset()
    yield
    monkeypatch.undo()
    config.reset()
    H.reset()


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeFullContact]:
    from chalicelib import config

    with FakeFullContact({KEY}) as f:
        monkeypatch.setenv("SWITCHYARD_FULLCONTACT_BASE_URL", f.base_url)
        config.reset()
        yield f


def _profile(**identifiers: list[str]) -> Profile:
    kind, values = next(iter(identifiers.items()))
    return Profile(profile_id_for("acct", kind, values[0]), "acct", dict(identifiers), {"plan": "pro", "ltv": 12.5},
                   "t", "t")


def _ctx(method: str, credentials: Any) -> StepContext:
    return StepContext(account_id="acct", job_id="job_x", run_id="run_x", step=1, method=method,
                       credentials=credentials, config={}, cursor=None, state={}, max_records=10,
                       deadline=time.monotonic() + 20, counter=CallCounter(authorization_id="auth_x"))


def test_fullcontact_sends_every_email_and_maps_the_person(fake):
    # GIVEN a person FullContact knows by their second email
    fake.know("ada@work.example", title="CTO")
    step = Registry().enricher("fullcontact", "fullcontact_person_enrich")
    frozen = step.freeze({"field_mapping": {"fullName": "full_name", "details.name.given": "first_name"}})
    ctx = _ctx("api_key", ApiKey(api_key=KEY))
    # WHEN a profile with two emails is looked up
    found = step.lookup(ctx, frozen, _profile(email=["ada@home.example", "ada@work.example"]))
    # THEN one request named both, and the mapped fields came back
    assert fake.lookups()[-1].json() == {"emails": ["ada@home.example", "ada@work.example"]}
    assert found.fields == {"full_name": "Ada", "first_name": "Ada"}
    assert ctx.counter is not None and ctx.counter.counts == {"fullcontact.person.enrich": 1}
    # AND a profile FullContact does not know is unmatched; one without email is not eligible
    assert step.lookup(ctx, frozen, _profile(email=["nobody@x.example"])).fields is None
    assert not step.eligible(_profile(user_id=["u1"]))


def test_fullcontact_refusing_an_identifier_is_per_profile_but_a_key_is_for_the_job(fake):
    step = Registry().enricher("fullcontact", "fullcontact_person_enrich")
    frozen = step.freeze({})
    # GIVEN an email FullContact refuses (422): omitted as rejected, in FullContact's words
    fake.receiver.then(Answer(422, {"status": 422, "message": "Invalid email address"}))
    rejected = step.lookup(_ctx("api_key", ApiKey(api_key=KEY)), frozen, _profile(email=["a@b.example"]))
    assert (rejected.fields, rejected.reason, rejected.words) == (None, "rejected", "Invalid email address")
    # AND a key it does not know raises for the engine (auth: not transient), key redacted
    fake.receiver.then(Answer(401, {"status": 401, "message": f"Invalid access token {KEY}"}))
    with pytest.raises(ProviderError) as err:
        Registry().enricher("fullcontact", "fullcontact_person_enrich").lookup(
            _ctx("api_key", ApiKey(api_key=KEY)), frozen, _profile(email=["a@b.example"]))
    assert not err.value.transient and KEY not in str(err.value)
    assert str(err.value) == "FullContact answered 401 Unauthorized: Invalid access token [redacted]"


def test_fullcontact_202_is_unmatched_now_and_found_when_asked_again(fake):
    # GIVEN a person FullContact has not searched for yet: its first answer is 202 (queued)
    fake.know("grace@work.example", title="Admiral")
    fake.queue("grace@work.example")
    step = Registry().enricher("fullcontact", "fullcontact_person_enrich")
    frozen = step.freeze({"field_mapping": {"fullName": "full_name"}})
    ctx = _ctx("api_key", ApiKey(api_key=KEY))
    # WHEN the profile is looked up THEN nothing is filled, nothing failed, one request sent
    first = step.lookup(ctx, frozen, _profile(email=["grace@work.example"]))
    assert (first.fields, first.reason) == (None, "unmatched")
    assert ctx.counter is not None and ctx.counter.counts == {"fullcontact.person.enrich": 1}
    assert ctx.counter.errors == {}
    # AND the same lookup later (the next run) gets the person
    again = step.lookup(ctx, frozen, _profile(email=["grace@work.example"]))
    assert again.fields == {"full_name": "Grace"}


def test_fullcontact_429_without_retry_after_backs_off_and_lowers_the_rate(fake):
    from chalicelib.providers import http as H

    fake.know("ada@work.example")
    step = Registry().enricher("fullcontact", "fullcontact_person_enrich")
    frozen = step.freeze({"field_mapping": {"fullName": "full_name"}})
    ctx = _ctx("api_key", ApiKey(api_key=KEY))
    step.lookup(ctx, frozen, _profile(email=["ada@work.example"]))
    full = H.LIMITER.rate("fullcontact:auth_x")
    # GIVEN FullContact answers the next lookup 429 with no Retry-After (nor rate headers)
    fake.throttle(1, retry_after=None)
    # WHEN the profile is looked up THEN the layer backed off on its own and sent it again
    found = step.lookup(ctx, frozen, _profile(email=["ada@work.example"]))
    assert found.fields == {"full_name": "Ada"}
    assert ctx.counter is not None and ctx.counter.counts == {"fullcontact.person.enrich": 3}
    assert ctx.counter.errors == {"fullcontact.person.enrich": 1}
    # AND the authorization's rate was lowered (halved, then a success's small recovery)
    lowered = H.LIMITER.rate("fullcontact:auth_x")
    assert full is not None and lowered is not None and lowered < full


def test_fullcontact_check_is_one_unbillable_lookup(fake):
    counter = CallCounter()
    result = FULLCONTACT.check("api_key", ApiKey(api_key=KEY), {}, counter)
    assert result.status is HealthStatus.HEALTHY and counter.total == 1
    assert fake.lookups()[-1].json() == {"email": "switchyard-health-check@example.com"}
    fake.throttle(4, retry_after=0)
    with pytest.raises(ProviderError) as err:  # throttled past the retries: nothing concluded
        FULLCONTACT.check("api_key", ApiKey(api_key=KEY), {}, None)
    assert err.value.transient


def test_the_endpoint_contract():
    # GIVEN an endpoint that answers each way the contract allows, and one way it does not
    answers = [Answer(200, {"fields": {"Score": 7, "tags": ["a", "b"]}}), Answer(204),
               Answer(200, {"fields": {}}), Answer(404, {"error": "no match"}),
               Answer(422, {"message": "bad identifier"}), Answer(200, {"score": 7})]
    with Receiver().then(*answers) as endpoint:
        creds = EndpointBearer(url=endpoint.url("/hook?sig=abc"), token="tok-abcdefgh")
        step = Registry().enricher("http_enrichment", "http_profile_enrich")
        frozen = step.freeze({"send_fields": ["ltv", "missing"], "field_mapping": {"tags": "interests"}})
        ctx = _ctx("bearer", creds)
        profile = _profile(user_id=["u1"])
        results = [step.lookup(ctx, frozen, profile) for _ in range(5)]
        with pytest.raises(ProviderError) as err:
            step.lookup(ctx, frozen, profile)
    # THEN fields are mapped (renamed, normalized); 204, empty fields and 404 are unmatched;
    # 422 is rejected; an answer without "fields" is an error no retry fixes
    assert results[0].fields == {"score": 7, "interests": ["a", "b"]}
    assert [(r.fields, r.reason) for r in results[1:]] == [(None, "unmatched")] * 3 + [(None, "rejected")]
    assert not err.value.transient and "without a \"fields\" object" in str(err.value)
    # AND each request carried the profile's id, identifiers and the chosen fields, with the token
    first = endpoint.requests[0]
    assert first.path == "/hook?sig=abc" and first.headers["authorization"] == "Bearer tok-abcdefgh"
    assert first.json() == {"profile": {"id": profile.id, "identifiers": {"user_id": ["u1"]},
                                        "fields": {"ltv": 12.5}}}


def test_the_endpoint_check_and_its_hint():
    with Receiver(default=Answer(401, {"error": "token expired"})) as endpoint:
        creds = Endpoint(url=endpoint.url("/hook?sig=secret-sig"))
        result = ENDPOINT.check("none", creds, {}, None)
        assert result.status is HealthStatus.UNHEALTHY
        assert result.reason == "the endpoint 127.0.0.1 answered 401 Unauthorized: token expired"
        assert endpoint.requests[0].json() == {"check": True}
        assert ENDPOINT.credential_hint("none", creds) == "http://127.0.0.1/…"


@pytest.mark.parametrize("bad", ["key-1234\r\nX-Injected: 1", "key-1234\x00", "key 1234", "key-1234-é"])
def test_a_key_or_token_sent_in_a_header_refuses_what_a_header_cannot_carry(bad: str) -> None:
    from pydantic import ValidationError

    # GIVEN a positive control: plain printable keys are accepted
    assert ApiKey(api_key="key-1234-plain").api_key.get_secret_value() == "key-1234-plain"
    assert EndpointBearer(url="https://enrich.example.com/x", token="tok-1234-plain")
    # WHEN / THEN a line break, control character, space or non-ASCII character is refused, by field
    with pytest.raises(ValidationError) as fc:
        ApiKey(api_key=bad)
    assert fc.value.errors()[0]["loc"] == ("api_key",)
    with pytest.raises(ValidationError) as ep:
        EndpointBearer(url="https://enrich.example.com/x", token=bad)
    assert ep.value.errors()[0]["loc"] == ("token",)
