"""The webhook provider against a real local receiver (tests/http_receiver.py) that checks
credentials and signatures as docs/providers/webhook.md tells receivers to."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from chalicelib.domain.models import HealthStatus
from chalicelib.providers import http as H
from chalicelib.providers.base import ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.events import row_event_id
from chalicelib.providers.registry import Registry
from chalicelib.providers.roles import StepContext
from chalicelib.providers.webhook import (
    SPEC,
    BasicAuth,
    BearerToken,
    HmacSecret,
    NoAuth,
    WebhookProvider,
    batch_id,
    signature,
)
from tests.http_receiver import Answer, Receiver, closed_port
from tests.webhook_inbox import Inbox, verify

TOKEN = "whk-CANARY-tok-93be1f07"
SIGNING = "whsec-CANARY-6a0d2c4e8f1b3957"
FAST = H.RetryPolicy(max_attempts=4, backoff_factor=0.01, backoff_jitter=0.01)


@pytest.fixture(autouse=True)
def private_urls(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The receiver is on 127.0.0.1 over http: allowed as on the local stack."""
    from chalicelib import config

    monkeypatch.setenv("SWITCHYARD_ALLOW_PRIVATE_URLS", "1")
    config.reset()
    H.reset()
    yield
    monkeypatch.undo()
    config.reset()
    H.reset()


@pytest.fixture()
def inbox() -> Iterator[tuple[Receiver, Inbox]]:
    box = Inbox()
    with Receiver(handler=box) as r:
        yield r, box


def provider() -> WebhookProvider:
    return WebhookProvider(policy=FAST, check_policy=H.RetryPolicy(max_attempts=2, backoff_factor=0.01))


def ctx(creds: Any, method: str, *, first_row: int = 0, deadline: float = 30.0,
        counter: CallCounter | None = None, run_id: str = "run_1") -> StepContext:
    return StepContext(account_id="acct_1", job_id="job_1", run_id=run_id, step=1, method=method,
                       credentials=creds, config={}, cursor=None, state={}, max_records=5000,
                       deadline=time.monotonic() + deadline, counter=counter, first_row=first_row)


FROZEN = {"audience_id": "aud_1", "fields": ["email", "plan"], "batch_size": 100, "include_removals": True}


def rows(n: int, start: int = 0, action: str = "add") -> list[tuple[str, str, list[Any]]]:
    return [(action, f"prof_{i:04d}", [f"p{i}@example.com", "pro"]) for i in range(start, start + n)]


# -- credentials ---------------------------------------------------------------------------------


def test_urls_must_be_https_unless_private_urls_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import config

    assert NoAuth(url="http://127.0.0.1:9/in").url == "http://127.0.0.1:9/in"
    monkeypatch.setenv("SWITCHYARD_ALLOW_PRIVATE_URLS", "0")
    config.reset()
    with pytest.raises(ValidationError) as err:
        NoAuth(url="http://hooks.example.com/in")
    assert err.value.errors()[0]["loc"] == ("url",) and "https://" in str(err.value)
    for bad, why in (("https://u:p@hooks.example.com/", "user name or password"),
                     ("https://hooks.example.com:99999/", "port"), ("https:///x", "host"),
                     ("https://hooks.example.com/#top", "fragment")):
        with pytest.raises(ValidationError, match=why):
            NoAuth(url=bad)
    with pytest.raises(ValidationError):
        BasicAuth(url="https://hooks.example.com/", username="a:b", password="pw")
    with pytest.raises(ValidationError):
        HmacSecret(url="https://hooks.example.com/", signing_secret="short")


def test_the_catalog_lists_four_methods_enabling_the_export() -> None:
    assert [m.id for m in SPEC.auth_methods] == ["none", "bearer", "basic", "hmac"]
    [wf] = SPEC.workflows
    assert wf.id == "webhook_audience_export" and wf.job_type.value == "export"
    assert set(wf.auth_methods) == {"none", "bearer", "basic", "hmac"}
    props = wf.config_model.model_json_schema()["properties"]
    assert props["batch_size"]["default"] == 100 and props["batch_size"]["maximum"] == 1000


def test_the_hint_names_the_host_never_the_secret_or_path() -> None:
    p = provider()
    assert p.credential_hint("bearer", BearerToken(url="https://hooks.acme.com/in/s3cr3tpath", token=TOKEN)) \
        == "hooks.acme.com"
    assert p.credential_hint("basic", BasicAuth(url="https://hooks.acme.com/", username="sy", password="pw")) \
        == "sy @ hooks.acme.com"


# -- signing -------------------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"events":[]}'
    mac = hmac.new(b"k" * 16, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("k" * 16, body, 1700000000) == f"t=1700000000,v1={mac}"
    # AND the documented receiver accepts it within 5 minutes, not after
    assert verify("k" * 16, signature("k" * 16, body, 1700000000), body, now=1700000299)
    assert not verify("k" * 16, signature("k" * 16, body, 1700000000), body, now=1700000301)
    assert not verify("k" * 16, signature("k" * 16, body, 1700000000), body + b" ", now=1700000000)


# -- check ---------------------------------------------------------------------------------------------


def test_check_pings_and_is_healthy_on_2xx(inbox: tuple[Receiver, Inbox]) -> None:
    r, box = inbox
    counter = CallCounter()
    # WHEN an endpoint without authentication is checked
    result = provider().check("none", NoAuth(url=r.url("/hooks/in")), {}, counter)
    # THEN it got one switchyard.ping in the batch envelope, and is healthy
    assert result.status is HealthStatus.HEALTHY and result.reason == "the endpoint 127.0.0.1 accepted a ping (200)"
    assert result.provider_account == f"http://127.0.0.1:{r.port}"
    [req] = r.requests
    assert req.path == "/hooks/in" and req.headers["content-type"] == "application/json"
    assert req.headers["switchyard-event-batch-id"].startswith("ping_")
    assert "switchyard-signature" not in req.headers and "authorization" not in req.headers
    [ping] = box.pings
    assert ping["type"] == "switchyard.ping" and ping["event_id"].startswith("evt_") and ping["sent_at"]
    assert counter.counts == {"webhook.ping": 1}


@pytest.mark.parametrize(("method", "model", "good", "bad", "words"), [
    ("bearer", BearerToken, {"token": TOKEN}, {"token": "wrong-token-1"}, "invalid token"),
    ("basic", BasicAuth, {"username": "sy", "password": TOKEN}, {"username": "sy", "password": "nope"},
     "bad user or password"),
    ("hmac", HmacSecret, {"signing_secret": SIGNING}, {"signing_secret": "whsec-another-secret-00"},
     "bad signature"),
])
def test_check_is_healthy_with_the_right_credentials_and_unhealthy_in_the_receivers_words(
        method: str, model: Any, good: dict[str, str], bad: dict[str, str], words: str) -> None:
    # GIVEN a receiver that checks this method's credentials
    box = Inbox(token=TOKEN if method == "bearer" else None, basic=("sy", TOKEN) if method == "basic" else None,
                secret=SIGNING if method == "hmac" else None)
    with Receiver(handler=box) as r:
        # WHEN it is checked with the right credentials, then wrong ones
        ok = provider().check(method, model(url=r.url("/in"), **good), {})
        refused = provider().check(method, model(url=r.url("/in"), **bad), {})
    # THEN healthy, then unhealthy in the receiver's words (a 401 is not retried)
    assert ok.status is HealthStatus.HEALTHY and len(box.pings) == 1
    assert refused.status is HealthStatus.UNHEALTHY
    assert refused.reason == f"the endpoint 127.0.0.1 answered 401 Unauthorized: {words}"
    assert box.refused == 1


@pytest.mark.parametrize(("answer", "reason"), [
    (Answer(410, {"detail": "subscription cancelled"}),
     "endpoint gone: the endpoint 127.0.0.1 answered 410 Gone: subscription cancelled"),
    (Answer(403, "forbidden from this IP"), "the endpoint 127.0.0.1 answered 403 Forbidden: forbidden from this IP"),
    (Answer(404, b"<html>nope</html>", headers={"Content-Type": "text/html"}),
     "the endpoint 127.0.0.1 answered 404 Not Found"),
    (Answer(307, headers={"Location": "https://new.example.com/in"}),
     "the endpoint 127.0.0.1 answered 307 (redirect to new.example.com): Switchyard does not follow "
     "redirects of POST requests; use the final URL"),
])
def test_check_is_unhealthy_with_the_reason(answer: Answer, reason: str) -> None:
    with Receiver() as r:
        r.then(answer)
        result = provider().check("none", NoAuth(url=r.url()), {})
    assert result.status is HealthStatus.UNHEALTHY and result.reason == reason


def test_check_of_an_unreachable_endpoint_is_unhealthy_not_an_error() -> None:
    counter = CallCounter()
    result = provider().check("none", NoAuth(url=f"http://127.0.0.1:{closed_port()}/in"), {}, counter)
    assert result.status is HealthStatus.UNHEALTHY
    assert result.reason == "unreachable: the connection was refused (the endpoint 127.0.0.1)"
    assert counter.total == 2 and counter.error_total == 2  # the check's 2 attempts


def test_check_refuses_a_private_address_in_a_deployed_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import config

    with Receiver() as r:
        monkeypatch.setenv("SWITCHYARD_ALLOW_PRIVATE_URLS", "0")
        config.reset()
        result = provider().check("none", NoAuth(url=f"https://127.0.0.1:{r.port}/in"), {})
        assert r.requests == []
    assert result.status is HealthStatus.UNHEALTHY
    assert result.reason == "127.0.0.1 is a loopback address; Switchyard only calls public endpoints"


def test_a_busy_receiver_is_inconclusive() -> None:
    # GIVEN a receiver answering 503 to both attempts of the check
    with Receiver(default=Answer(503, {"message": "maintenance"})) as r, pytest.raises(ProviderError) as err:
        provider().check("none", NoAuth(url=r.url()), {})
    # THEN nothing is concluded (the API answers 503, the authorization keeps its health)
    assert err.value.transient and "maintenance" in err.value.reason


# -- the export ------------------------------------------------------------------------------------------


def test_a_part_is_posted_in_signed_batches_of_events() -> None:
    box = Inbox(secret=SIGNING)
    export = Registry(extra={"webhook": provider()}).destination("webhook", "webhook_audience_export")
    frozen = export.freeze({"audience_id": "aud_1", "fields": ["email", "plan"], "batch_size": 100})
    assert frozen == FROZEN
    counter = CallCounter()
    with Receiver(handler=box) as r:
        creds = HmacSecret(url=r.url("/in"), signing_secret=SIGNING)
        # WHEN 230 rows (200 adds, 30 removes) are written as part 1 from plan row 0
        part = export.write_part(ctx(creds, "hmac", counter=counter), frozen, 1,
                                 rows(200) + rows(30, 200, "remove"))
    # THEN 3 signed batches of 100, 100, 30 events arrived, in order, and all 230 are delivered
    assert part.rows == 230 and part.key == "3 batches to 127.0.0.1"
    assert [len(json.loads(b)["events"]) for b in box.batches.values()] == [100, 100, 30]
    assert box.refused == 0 and counter.counts == {"webhook.events.post": 3}
    first, last = box.events[0], box.events[-1]
    assert first == {"schema_version": 1, "event_id": row_event_id("run_1", 0), "type": "audience.entered",
                     "account_id": "acct_1", "job_id": "job_1", "run_id": "run_1", "audience_id": "aud_1",
                     "profile_id": "prof_0000", "fields": {"email": "p0@example.com", "plan": "pro"}}
    assert last["type"] == "audience.exited" and last["profile_id"] == "prof_0229"
    assert list(box.batches) == [batch_id("run_1", 0, 100), batch_id("run_1", 100, 100), batch_id("run_1", 200, 30)]


def test_a_replayed_or_resplit_part_sends_the_same_batches() -> None:
    # GIVEN a part of 300 rows sent whole once
    box = Inbox()
    export = Registry(extra={"webhook": provider()}).destination("webhook", "webhook_audience_export")
    with Receiver(handler=box) as r:
        creds = NoAuth(url=r.url())
        export.write_part(ctx(creds, "none"), FROZEN, 1, rows(300))
        whole = dict(box.batches)
        # WHEN the step is replayed but stops after 2 batches (its time is up: the receiver is
        # slow), and the next part sends the rest from row 200
        box.delay = 1.0
        short = export.write_part(ctx(creds, "none", deadline=3.5), FROZEN, 1, rows(300))
        box.delay = 0.0
        rest = export.write_part(ctx(creds, "none", first_row=200), FROZEN, 2, rows(100, 200))
    # THEN the short attempt delivered 2 batches, the rest 1, and every batch was a repeat
    # of the first run's, byte for byte (the receiver would keep nothing twice)
    assert short.rows == 200 and rest.rows == 100
    assert sorted(box.repeats) == sorted(whole) and len(box.events) == 300


def test_410_stops_the_export_with_a_clear_error() -> None:
    export = Registry(extra={"webhook": provider()}).destination("webhook", "webhook_audience_export")
    with Receiver() as r:
        r.then(Answer(410, {"message": "hook deleted"}))
        with pytest.raises(ProviderError) as err:
            export.write_part(ctx(NoAuth(url=r.url()), "none"), FROZEN, 1, rows(10))
        assert len(r.requests) == 1
    assert err.value.transient is False
    assert err.value.reason.startswith("the endpoint 127.0.0.1 answered 410 Gone: hook deleted")


def test_a_failing_receiver_keeps_what_was_delivered_or_fails_transient() -> None:
    export = Registry(extra={"webhook": provider()}).destination("webhook", "webhook_audience_export")
    with Receiver() as r:
        # GIVEN the first batch is taken, then the receiver answers 503 to every retry
        r.then(Answer(200))
        r.default = Answer(503)
        part = export.write_part(ctx(NoAuth(url=r.url()), "none"), FROZEN, 1, rows(250))
        # THEN the part holds the delivered batch only: the next step resumes after it
        assert part.rows == 100 and len(r.requests) == 1 + 4
        # AND when even the first batch cannot be delivered, the step fails, transient
        with pytest.raises(ProviderError) as err:
            export.write_part(ctx(NoAuth(url=r.url()), "none", first_row=100), FROZEN, 2, rows(150, 100))
    assert err.value.transient and "503" in err.value.reason


def test_a_bearer_token_is_never_in_an_error() -> None:
    export = Registry(extra={"webhook": provider()}).destination("webhook", "webhook_audience_export")
    echo = Receiver(handler=lambda req: Answer(422, {"detail": f"rejected {req.headers['authorization']}"}))
    with echo as r, pytest.raises(ProviderError) as err:
        export.write_part(ctx(BearerToken(url=r.url(), token=TOKEN), "bearer"), FROZEN, 1, rows(1))
    assert TOKEN not in str(err.value) and "rejected Bearer [redacted]" in err.value.reason
    assert err.value.transient is True  # retried by the engine with backoff


@pytest.mark.parametrize("status", [401, 403])
def test_a_refusal_of_the_credentials_we_send_is_an_auth_error(status: int) -> None:
    # GIVEN a receiver that refuses our bearer token
    export = Registry(extra={"webhook": provider()}).destination("webhook", "webhook_audience_export")
    with Receiver() as r:
        r.then(Answer(status, "token revoked"))
        with pytest.raises(ProviderError) as err:
            export.write_part(ctx(BearerToken(url=r.url(), token=TOKEN), "bearer"), FROZEN, 1, rows(3))
    # THEN the credentials are bad: not retried, the authorization becomes unhealthy
    assert err.value.auth is True and err.value.transient is False
    assert f"answered {status}" in err.value.reason and "token revoked" in err.value.reason
    assert TOKEN not in str(err.value)


@pytest.mark.parametrize("answer", [
    Answer(400, {"detail": "bad schema"}), Answer(401, "bad signature"), Answer(403, "forbidden"),
    Answer(404, "no such hook"), Answer(422, {"detail": "unprocessable"}),
    Answer(307, headers={"Location": "https://new.example.com/hook"}),
])
def test_any_other_refusal_of_a_batch_is_retried_later_in_the_receivers_words(answer: Answer) -> None:
    # GIVEN a receiver that refuses the first batch (not 2xx, not 410)
    export = Registry(extra={"webhook": provider()}).destination("webhook", "webhook_audience_export")
    with Receiver() as r:
        r.then(answer)
        with pytest.raises(ProviderError) as err:
            export.write_part(ctx(NoAuth(url=r.url()), "none"), FROZEN, 1, rows(10))
        # THEN one request (no hammering inside the step), and a transient error for the
        # engine's backoff, in the receiver's words
        assert len(r.requests) == 1
    assert err.value.transient is True and err.value.auth is False
    assert f"answered {answer.status}" in err.value.reason
