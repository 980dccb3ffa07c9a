"""The HTTP client layer of HTTP providers (chalicelib/providers/http.py), against a real
local server (tests/http_receiver.py) that answers scripted responses.

Attempts are counted on both sides: what the server received and what the CallCounter
says, so retries that the server never saw (or saw and we did not count) show up.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest

from chalicelib.providers import http as H
from chalicelib.providers.base import ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.http_transport import Raw
from tests.http_receiver import Answer, Receiver, closed_port, self_signed
from tests.timing import read_timeout

FAST = H.RetryPolicy(max_attempts=4, backoff_factor=0.01, backoff_jitter=0.01)
TOKEN = "tok-CANARY-5e1d7a09c3b24f68"


@pytest.fixture(autouse=True)
def _fresh_layer() -> Iterator[None]:
    H.reset()
    yield
    H.reset()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture()
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Set SWITCHYARD_* variables for one test; the settings are re-read around it."""
    from chalicelib import config

    def set_(**values: str) -> None:
        for k, v in values.items():
            monkeypatch.setenv(k, v)
        config.reset()

    yield set_
    monkeypatch.undo()
    config.reset()


def client(counter: CallCounter | None = None, **kw: Any) -> H.HttpClient:
    kw.setdefault("policy", FAST)
    kw.setdefault("allow_private", True)
    kw.setdefault("limiter", H.RateLimiter())
    return H.HttpClient("acme", label="Acme", counter=counter, **kw)


# -- success, the response object, counting -------------------------------------------------------


def test_a_json_answer_is_returned_and_counted_once(receiver: Receiver) -> None:
    # GIVEN a server answering 200 with JSON and a header
    receiver.then(Answer(200, {"lists": [{"id": "a1"}]}, headers={"X-Request-Id": "r-1"}))
    counter = CallCounter()
    # WHEN the provider gets it
    resp = client(counter).get(receiver.url("/3.0/lists?count=10"), "lists.get")
    # THEN the response has the status, case-insensitive headers and the JSON body
    assert resp.status == 200 and resp.headers["x-request-id"] == "r-1"
    assert resp.json() == {"lists": [{"id": "a1"}]}
    # AND one request was sent (path and query as written) and counted once, no error
    [req] = receiver.requests
    assert (req.method, req.path) == ("GET", "/3.0/lists?count=10")
    assert counter.counts == {"acme.lists.get": 1} and counter.error_total == 0


def test_json_bodies_are_sent_compact_with_their_content_type(receiver: Receiver) -> None:
    client().post(receiver.url("/events"), "events.post", json_body={"a": [1, "é"]})
    [req] = receiver.requests
    assert req.headers["content-type"] == "application/json"
    assert req.body == '{"a":[1,"é"]}'.encode()


# -- retries ----------------------------------------------------------------------------------------


def test_transient_statuses_are_retried_and_every_attempt_counted(receiver: Receiver) -> None:
    # GIVEN a server answering 503, 502, 500, then 200
    receiver.then(Answer(503), Answer(502), Answer(500), Answer(200, {"ok": 1}))
    counter = CallCounter()
    # WHEN one call is made
    resp = client(counter).get(receiver.url("/x"), "x.get")
    # THEN it succeeded on the 4th attempt, and all 4 were received and counted (3 errors)
    assert resp.json() == {"ok": 1}
    assert len(receiver.requests) == 4
    assert counter.counts == {"acme.x.get": 4} and counter.errors == {"acme.x.get": 3}


def test_exhausted_retries_raise_a_transient_error(receiver: Receiver) -> None:
    # GIVEN a server that answers 504 forever
    receiver.default = Answer(504, {"message": "upstream timed out"})
    counter = CallCounter()
    # WHEN a call is made (4 attempts at most)
    with pytest.raises(ProviderError) as err:
        client(counter).get(receiver.url(), "x.get")
    # THEN after exactly 4 attempts, a transient error in the provider's words
    assert err.value.transient is True and isinstance(err.value, H.HttpError)
    assert err.value.reason == "Acme answered 504 Gateway Timeout: upstream timed out"
    assert len(receiver.requests) == 4 and counter.total == 4 and counter.error_total == 4


def test_retry_after_in_seconds_is_honoured(receiver: Receiver) -> None:
    # GIVEN a 429 asking to wait 1 second, then a 200
    receiver.then(Answer(429, {"title": "Too Many Requests"}, headers={"Retry-After": "1"}), Answer(200))
    counter = CallCounter()
    # WHEN the call is made
    client(counter).get(receiver.url(), "x.get")
    # THEN the second attempt came at least a second after the first
    first, second = receiver.requests
    assert second.at - first.at >= 0.95
    assert counter.total == 2 and counter.error_total == 1


def test_retry_after_as_an_http_date_is_honoured(receiver: Receiver, env: Any) -> None:
    # GIVEN a 503 asking to come back at a date a minute from now (1-second resolution)
    env(SWITCHYARD_PROVIDER_CALL_SECONDS="300")
    when = email.utils.formatdate(time.time() + 60, usegmt=True)
    receiver.then(Answer(503, headers={"Retry-After": when}), Answer(200))
    clock = FakeClock()
    # WHEN the call is made by a client allowed to wait that long
    timed_client(clock, policy=H.RetryPolicy(backoff_factor=0.01, max_sleep=120)).get(receiver.url(), "x.get")
    # THEN it waited until about that date (what is left of the minute), then asked again
    assert len(clock.slept) == 1 and 30 < clock.slept[0] <= 60, clock.slept
    assert len(receiver.requests) == 2


def test_a_long_retry_after_ends_the_call_for_the_engine_to_wait(receiver: Receiver) -> None:
    # GIVEN a 429 asking to wait 2 minutes
    receiver.then(Answer(429, {"detail": "slow down"}, headers={"Retry-After": "120"}))
    clock = FakeClock()
    # WHEN the call is made
    with pytest.raises(H.HttpError) as err:
        timed_client(clock).get(receiver.url(), "x.get")
    # THEN it did not sleep (minutes): the error is transient and carries the wait for the engine
    assert clock.slept == []
    assert err.value.transient and err.value.retry_after is not None and 119 <= err.value.retry_after <= 120
    assert err.value.kind == "unavailable" and "slow down" in err.value.reason
    assert len(receiver.requests) == 1


def test_connection_errors_are_retried_then_transient() -> None:
    # GIVEN a port nothing listens on
    counter = CallCounter()
    # WHEN a call is made
    with pytest.raises(H.HttpError) as err:
        client(counter).get(f"http://127.0.0.1:{closed_port()}/", "x.get")
    # THEN each of the 4 attempts was counted, as an error, and the result is transient
    assert err.value.transient and err.value.kind == "unreachable"
    assert err.value.reason == "unreachable: the connection was refused (Acme)"
    assert counter.total == 4 and counter.error_total == 4


def test_slow_answers_time_out_and_are_retried(receiver: Receiver, env: Any) -> None:
    # GIVEN a read timeout no healthy answer reaches on this machine now, and a server whose
    # first answer is held until the test lets it go, then answers at once
    env(SWITCHYARD_PROVIDER_TIMEOUT=str(read_timeout()))
    held = threading.Event()
    receiver.then(Answer(200, hold=held), Answer(200, {"late": False}))
    counter = CallCounter()
    try:
        # WHEN the call is made
        resp = client(counter).get(receiver.url(), "x.get")
    finally:
        held.set()
    # THEN the first attempt timed out, the second answered
    assert resp.json() == {"late": False}
    assert len(receiver.requests) == 2 and counter.total == 2 and counter.error_total == 1


def test_a_call_never_passes_its_deadline(receiver: Receiver, env: Any) -> None:
    # GIVEN a server that answers only when the test lets it, a read timeout of an hour, and a
    # step that must end in 1 s
    env(SWITCHYARD_PROVIDER_TIMEOUT="3600")
    held = threading.Event()
    receiver.default = Answer(200, hold=held)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            client(deadline=time.monotonic() + 1.0).get(receiver.url(), "x.get")
        except BaseException as exc:  # the outcome is checked below
            outcome.append(exc)

    # WHEN the call is made
    caller = threading.Thread(target=call)
    caller.start()
    caller.join(timeout=60)  # neither the answer nor the read timeout would end it this side of an hour
    held.set()
    # THEN it gave up at the deadline, with the answer still held: transient
    assert not caller.is_alive(), "the call waited past its deadline"
    [err] = outcome
    assert isinstance(err, H.HttpError) and err.transient and err.kind in ("unreachable", "deadline")


def test_the_call_deadline_setting_bounds_all_retries(receiver: Receiver, env: Any) -> None:
    # GIVEN calls may take 1 s in all, and a server answering 503, each answer taking 0.5 s
    # of the client's clock
    env(SWITCHYARD_PROVIDER_CALL_SECONDS="1")
    clock = FakeClock()

    def answer(req: Any) -> Answer:
        clock.now += 0.5
        return Answer(503)

    receiver.handler = answer
    with pytest.raises(H.HttpError) as err:
        timed_client(clock, policy=H.RetryPolicy(max_attempts=10, backoff_factor=0.01)).get(receiver.url(), "x.get")
    # THEN the retries stopped at the second: 2 attempts, not 10
    assert err.value.transient and len(receiver.requests) == 2


def test_a_retry_wait_that_would_pass_the_step_deadline_is_not_slept(receiver: Receiver) -> None:
    receiver.then(Answer(503, headers={"Retry-After": "3"}))
    clock = FakeClock()
    with pytest.raises(H.HttpError) as err:
        timed_client(clock, deadline=clock.now + 2, policy=H.RetryPolicy(max_sleep=10)).get(receiver.url(), "x.get")
    assert clock.slept == [] and err.value.retry_after == 3  # not the 3 s wait
    assert len(receiver.requests) == 1


def test_a_post_that_may_have_been_processed_is_not_repeated(receiver: Receiver, env: Any) -> None:
    # GIVEN a server that holds its answer past the read timeout; a plain POST is not idempotent
    env(SWITCHYARD_PROVIDER_TIMEOUT="0.3")
    held = threading.Event()
    receiver.then(Answer(200, hold=held))
    counter = CallCounter()
    try:
        with pytest.raises(H.HttpError) as err:
            client(counter).post(receiver.url(), "things.create", json_body={})
    finally:
        held.set()
    # THEN one attempt only: the server may have created the thing (a second one would have
    # been answered at once, and the call would have succeeded)
    assert err.value.kind == "unreachable" and err.value.transient
    assert counter.total == 1
    assert len(receiver.requests) == 1


def test_a_post_refused_with_503_is_repeated_and_one_with_an_idempotency_key_always(receiver: Receiver) -> None:
    receiver.then(Answer(503), Answer(201))
    assert client().post(receiver.url(), "things.create", json_body={}).status == 201
    receiver.then(Answer(500), Answer(200))
    assert client().post(receiver.url(), "things.put", json_body={}, idempotent=True).status == 200
    receiver.then(Answer(500))
    with pytest.raises(H.HttpError):
        client().post(receiver.url(), "things.create", json_body={})
    assert len(receiver.requests) == 5


def test_prepare_runs_before_every_attempt(receiver: Receiver) -> None:
    # GIVEN a header that must be fresh on each attempt (a signature's timestamp)
    receiver.then(Answer(503), Answer(200))
    seen = iter(range(100))

    def stamp(headers: dict[str, str], body: bytes | None) -> None:
        headers["X-Attempt"] = str(next(seen))

    client().post(receiver.url(), "e.post", json_body={}, idempotent=True, prepare=stamp)
    assert [r.headers["x-attempt"] for r in receiver.requests] == ["0", "1"]


# -- classification ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "words"), [
    ({"detail": "API key has been revoked", "title": "Forbidden"}, "API key has been revoked"),
    ({"message": "token expired"}, "token expired"),
    ({"error": "invalid_grant", "error_description": "refresh token revoked"}, "refresh token revoked"),
    ({"title": "API Key Invalid"}, "API Key Invalid"),
    ({"error": {"code": 401, "message": "Request had invalid credentials."}}, "Request had invalid credentials."),
    ("bad signature", "bad signature"),
    (b"<html><body>Unauthorized</body></html>", ""),
])
def test_401_is_an_auth_error_in_the_providers_words(receiver: Receiver, body: Any, words: str) -> None:
    receiver.then(Answer(401, body, headers={"Content-Type": "text/html"} if isinstance(body, bytes) else {}))
    counter = CallCounter()
    with pytest.raises(H.HttpError) as err:
        client(counter).get(receiver.url(), "me.get")
    assert err.value.kind == "auth" and err.value.transient is False and err.value.status == 401
    assert err.value.reason == "Acme answered 401 Unauthorized" + (f": {words}" if words else "")
    assert counter.total == 1 and len(receiver.requests) == 1


@pytest.mark.parametrize("status", [400, 404, 409, 410, 422, 405])
def test_client_errors_are_config_errors_not_retried(receiver: Receiver, status: int) -> None:
    receiver.then(Answer(status, {"detail": "list 'x' not found"}))
    with pytest.raises(H.HttpError) as err:
        client().get(receiver.url(), "lists.get")
    assert err.value.kind == "config" and err.value.transient is False and err.value.status == status
    assert "list 'x' not found" in err.value.reason and len(receiver.requests) == 1


def test_403_is_an_auth_error_too(receiver: Receiver) -> None:
    receiver.then(Answer(403, {"message": "missing scope lists:read"}))
    with pytest.raises(H.HttpError) as err:
        client().get(receiver.url(), "lists.get")
    assert err.value.kind == "auth" and not err.value.transient
    assert err.value.reason == "Acme answered 403 Forbidden: missing scope lists:read"


# -- redaction -------------------------------------------------------------------------------------------


def test_secrets_are_redacted_from_errors_and_logs_and_quotes_are_short(
        receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a server that echoes the credentials it got in a long error body
    caplog.set_level(logging.DEBUG)
    basic = H.basic_auth_value("acme", TOKEN)

    def echo(req: Any) -> Answer:
        said = f"bad credentials: {req.headers.get('authorization')} / {req.headers.get('x-api-key')} " + "x" * 500
        return Answer(400, {"detail": said})

    receiver.handler = echo
    c = client(secrets=[TOKEN, basic], headers={"Authorization": basic, "X-Api-Key": TOKEN})
    # WHEN the call fails
    with pytest.raises(H.HttpError) as err:
        c.get(receiver.url(f"/v1?q={TOKEN}"), "x.get")
    text = str(err.value)
    # THEN neither the secret nor the Basic credential is in the error, the log or the words
    basic_b64 = basic.split()[1]
    assert TOKEN not in text and basic_b64 not in text and "[redacted]" in text
    assert "bad credentials: [redacted] / [redacted]" in text
    assert len(err.value.words) <= 300 and err.value.words.endswith("…")
    # (urllib3's own request line included: the query that held the token is dropped)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/v1?[redacted]" in logged
    assert TOKEN not in logged and basic_b64 not in logged


def test_redactor_catches_escaped_forms_and_truncates_after_redacting() -> None:
    r = H.Redactor(["p@ss/w0rd+1", ""])
    assert r("a p%40ss%2Fw0rd%2B1 b p@ss/w0rd+1 c") == "a [redacted] b [redacted] c"
    # a secret straddling the cut is redacted first, so no prefix of it survives
    text = "y" * 295 + "p@ss/w0rd+1"
    assert "p@ss" not in r.quote(text) and len(r.quote(text)) <= 300


# -- the adaptive rate limit ----------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def timed_client(clock: FakeClock, **kw: Any) -> H.HttpClient:
    """A client whose clock is `clock` (rate limiter and retry waits too): sleeping moves it."""
    return client(clock=clock, sleep=clock.sleep, limiter=H.RateLimiter(clock=clock, sleep=clock.sleep), **kw)


def test_the_bucket_allows_a_burst_then_the_rate() -> None:
    # GIVEN 2 requests per second with a burst of 3
    clock = FakeClock()
    limiter = H.RateLimiter(clock=clock, sleep=clock.sleep)
    limit = H.RateLimit(rate=2, burst=3)
    # WHEN 5 tokens are taken at once
    waits = [limiter.acquire("k", limit, deadline=clock.now + 60) for _ in range(5)]
    # THEN 3 came at once, then one every half second
    assert waits == [0, 0, 0, 0.5, 0.5]


def test_a_429_halves_the_rate_and_successes_raise_it_slowly() -> None:
    clock = FakeClock()
    limiter = H.RateLimiter(clock=clock, sleep=clock.sleep)
    limit = H.RateLimit(rate=8, burst=1, recover=0.05)
    limiter.acquire("k", limit, clock.now + 60)
    # WHEN throttled twice
    limiter.throttled("k", limit, None)
    limiter.throttled("k", limit, None)
    # THEN the rate is a quarter, and the next token waits 1/2 s
    assert limiter.rate("k") == 2
    assert limiter.acquire("k", limit, clock.now + 60) == pytest.approx(0.5)
    # AND each success gives back 5% of the full rate, never more than it
    for _ in range(10):
        limiter.succeeded("k", limit)
    assert limiter.rate("k") == pytest.approx(6)
    for _ in range(100):
        limiter.succeeded("k", limit)
    assert limiter.rate("k") == 8


def test_waiting_for_a_token_respects_the_deadline() -> None:
    clock = FakeClock()
    limiter = H.RateLimiter(clock=clock, sleep=clock.sleep)
    limit = H.RateLimit(rate=1, burst=1)
    limiter.acquire("k", limit, clock.now + 60)
    limiter.throttled("k", limit, retry_after=30)  # and the provider asked for 30 s
    with pytest.raises(H.HttpError) as err:
        limiter.acquire("k", limit, deadline=clock.now + 5)
    assert err.value.transient and err.value.retry_after == pytest.approx(30)
    assert clock.slept == []  # nothing slept in vain


def test_a_429_slows_down_that_authorization_only(receiver: Receiver) -> None:
    # GIVEN two authorizations sharing a process, and a 429 for the first one
    limiter = H.RateLimiter()
    limit = H.RateLimit(rate=50, burst=50)
    first, second = CallCounter(authorization_id="auth_1"), CallCounter(authorization_id="auth_2")
    receiver.then(Answer(429), Answer(200))
    client(first, limiter=limiter, rate_limit=limit).get(receiver.url(), "x.get")
    client(second, limiter=limiter, rate_limit=limit).get(receiver.url(), "x.get")
    # THEN only the first one's rate was halved (then raised a little by its success)
    assert limiter.rate("acme:auth_1") == pytest.approx(25 + 2.5)
    assert limiter.rate("acme:auth_2") == 50


# -- the SSRF guard ---------------------------------------------------------------------------------------


def resolver(table: dict[str, list[str]]) -> Any:
    def resolve(host: str, port: int) -> list[str]:
        import socket

        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


PUBLIC = "93.184.215.14"


@pytest.mark.parametrize(("url", "why"), [
    ("http://hooks.example.com/", "must start with https://"),
    ("ftp://hooks.example.com/", "must start with https://"),
    ("https://user:pw@hooks.example.com/", "may not contain a user name or password"),
    ("https:///nohost", "has no host"),
    ("https://127.0.0.1/", "127.0.0.1 is a loopback address"),
    ("https://localhost:8443/", "a loopback address (127.0.0.1)"),
    ("https://[::1]/", "a loopback address"),
    ("https://[::ffff:127.0.0.1]/", "a loopback address"),
    ("https://169.254.169.254/latest/meta-data/", "a link-local address (such as the instance metadata"),
    ("https://metadata.internal/", "a link-local address"),
    ("https://10.1.2.3/", "a private address"),
    ("https://172.16.0.9/", "a private address"),
    ("https://192.168.1.1/", "a private address"),
    ("https://[fd00:ec2::254]/", "a private address"),
    ("https://224.0.0.1/", "a multicast address"),
    ("https://240.0.0.1/", "a reserved address"),
    ("https://0.0.0.0/", "an unspecified address"),
    ("https://100.64.0.1/", "not a public address"),
    ("https://rebind.example.com/", "a private address (10.0.0.5)"),
])
def test_the_guard_refuses_what_is_not_a_public_https_endpoint(url: str, why: str) -> None:
    table = {"localhost": ["127.0.0.1"], "metadata.internal": ["169.254.169.254"],
             "rebind.example.com": [PUBLIC, "10.0.0.5"]}
    with pytest.raises(H.HttpError) as err:
        H.check_url(url, allow_private=False, resolver=resolver(table))
    assert err.value.kind == "blocked" and err.value.transient is False and err.value.field == "url"
    assert why in err.value.reason
    assert "meta-data" not in err.value.reason  # paths (which may hold tokens) are never quoted


@pytest.mark.parametrize(("address", "why"), [
    # tunnels: a relay calls whatever IPv4 address they carry, so they are refused whole
    ("2002:a9fe:a9fe::1", "a 6to4 address"),                     # 169.254.169.254 inside
    ("2002:0808:0808::1", "a 6to4 address"),                     # even a public one (8.8.8.8)
    ("2001:0:4136:e378:8000:63bf:5601:5601", "a Teredo address"),
    ("2001:0:4136:e378:8000:63bf:3f57:fefe", "a Teredo address"),  # client 192.168.1.1
    ("64:ff9b:1::a9fe:a9fe", "a local-use NAT64 address"),
    ("fec0::1", "a site-local address"),
    # translations: judged by the IPv4 address they embed
    ("::ffff:a9fe:a9fe", "a link-local address"),                 # IPv4-mapped
    ("::ffff:0:a9fe:a9fe", "a link-local address"),               # IPv4-translated
    ("64:ff9b::a9fe:a9fe", "a link-local address"),               # NAT64 (well-known prefix)
    ("64:ff9b::a00:5", "a private address"),
    ("64:ff9b::7f00:1", "a loopback address"),
    ("::a9fe:a9fe", "a reserved address"),                        # IPv4-compatible (deprecated)
])
def test_the_guard_refuses_ipv6_transition_addresses_that_reach_past_it(address: str, why: str) -> None:
    # GIVEN a public name that answers with the address (as a hostile DNS server would)
    table = {"hooks.example.com": [address]}
    # WHEN / THEN the guard refuses it, in words that name what it is
    with pytest.raises(H.HttpError) as err:
        H.check_url("https://hooks.example.com/", allow_private=False, resolver=resolver(table))
    assert err.value.kind == "blocked" and why in err.value.reason, err.value.reason
    # AND written literally in the URL too
    with pytest.raises(H.HttpError):
        H.check_url(f"https://[{address}]/", allow_private=False, resolver=resolver({}))


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "::ffff:808:808", "2001:4860:4860::8888",
                                     "2620:fe::fe"])
def test_the_guard_passes_a_translation_of_a_public_ipv4_address_and_public_ipv6(address: str) -> None:
    # A DNS64 resolver answers 64:ff9b::<IPv4> for IPv4-only hosts: those stay reachable.
    t = H.check_url("https://hooks.example.com/", allow_private=False,
                    resolver=resolver({"hooks.example.com": [address]}))
    assert t.addresses == (address,)


def test_the_guard_passes_public_hosts_and_keeps_what_was_checked() -> None:
    t = H.check_url("https://Hooks.Example.com:8443/in?x=1", allow_private=False,
                    resolver=resolver({"hooks.example.com": [PUBLIC]}))
    assert (t.scheme, t.host, t.port, t.path, t.addresses) == ("https", "hooks.example.com", 8443, "/in?x=1", (PUBLIC,))
    assert t.origin == "https://hooks.example.com:8443" and t.host_header == "hooks.example.com:8443"


def test_an_unknown_host_is_unreachable_for_good() -> None:
    with pytest.raises(H.HttpError) as err:
        H.check_url("https://nope.invalid/", allow_private=False, resolver=resolver({}))
    assert err.value.reason == "unreachable: the host nope.invalid was not found" and not err.value.transient


def test_the_client_sends_nothing_to_a_refused_url(receiver: Receiver) -> None:
    # GIVEN the guard on (a deployed stage) and a URL pointing at this machine
    counter = CallCounter()
    with pytest.raises(H.HttpError) as err:
        client(counter, allow_private=False).post(receiver.url().replace("http:", "https:"), "e.post",
                                                  json_body={})
    # THEN nothing was sent, nothing counted
    assert err.value.kind == "blocked" and receiver.requests == [] and counter.total == 0


def test_the_setting_decides_by_default(receiver: Receiver, env: Any) -> None:
    env(SWITCHYARD_ALLOW_PRIVATE_URLS="")
    with pytest.raises(H.HttpError):
        client(allow_private=None).get(receiver.url(), "x.get")
    env(SWITCHYARD_ALLOW_PRIVATE_URLS="1")
    assert client(allow_private=None).get(receiver.url(), "x.get").status == 200


# -- the vetted target, reused per client ----------------------------------------------------------------------


def counting(*answers: list[str]) -> tuple[Any, list[str]]:
    """A resolver that gives `answers` in turn (the last one ever after), and the hosts it was asked."""
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[min(len(asked), len(answers)) - 1]

    return resolve, asked


@pytest.fixture()
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The transport replaced by one that records the address each attempt connects to and
    answers 200: the guard only passes public addresses, which no test can reach."""
    addresses: list[str] = []

    def send_once(target: H.Target, address: str, *args: Any, **kw: Any) -> tuple[Raw | None, Exception | None]:
        addresses.append(address)
        return Raw(200, {}, b"", cast(Any, None)), None

    monkeypatch.setattr(H, "send_once", send_once)
    return addresses


def test_a_client_resolves_a_url_once_and_again_after_an_attempt_without_an_answer(receiver: Receiver) -> None:
    # GIVEN a client whose resolver counts its lookups
    resolve, asked = counting(["127.0.0.1"])
    c = client(resolver=resolve)
    url = f"http://hooks.test:{receiver.port}/in"
    # WHEN it sends three requests to one URL
    for _ in range(3):
        c.post(url, "e.post", json_body={})
    # THEN the host was looked up once, and the three requests arrived
    assert asked == ["hooks.test"] and len(receiver.requests) == 3
    # AND another client looks it up for itself (the reuse is per client)
    client(resolver=resolve).post(url, "e.post", json_body={})
    assert len(asked) == 2 and len(receiver.requests) == 4
    # WHEN an attempt of the first client gets no answer (the server hangs up), then one does
    receiver.then(Answer(hang_up=True), Answer(200))
    assert c.get(url, "x.get").status == 200
    # THEN the retry looked the host up again, and the answer after it was reused again
    assert len(asked) == 3
    c.get(url, "x.get")
    assert len(asked) == 3


def test_a_vetted_address_is_kept_when_the_next_dns_answer_is_private(sent: list[str]) -> None:
    # GIVEN a name that answers a public address, then a private one (DNS rebinding)
    resolve, asked = counting([PUBLIC], ["10.0.0.5"])
    clock = FakeClock()
    c = timed_client(clock, allow_private=False, resolver=resolve)
    # WHEN one client calls it twice
    c.post("https://rebind.example.com/in", "e.post", json_body={})
    c.post("https://rebind.example.com/in", "e.post", json_body={})
    # THEN both requests went to the vetted public address, after one lookup
    assert sent == [PUBLIC, PUBLIC] and asked == ["rebind.example.com"]
    # AND (the control) a client that looks it up now is refused, and sends nothing
    with pytest.raises(H.HttpError) as err:
        timed_client(clock, allow_private=False, resolver=resolve).post("https://rebind.example.com/in",
                                                                        "e.post", json_body={})
    assert err.value.kind == "blocked" and "a private address (10.0.0.5)" in err.value.reason
    assert sent == [PUBLIC, PUBLIC] and len(asked) == 2


def test_a_vetted_url_is_vetted_again_once_its_time_is_up(sent: list[str]) -> None:
    # GIVEN a client that vetted a name answering a public address, which then answers a private one
    resolve, asked = counting([PUBLIC], ["10.0.0.5"])
    clock = FakeClock()
    c = timed_client(clock, allow_private=False, resolver=resolve)
    c.get("https://rebind.example.com/in", "x.get")
    # WHEN it calls again just before VETTED_SECONDS have passed on its clock
    clock.now += H.VETTED_SECONDS - 0.01
    c.get("https://rebind.example.com/in", "x.get")
    # THEN the vetted address was reused without a lookup
    assert sent == [PUBLIC, PUBLIC] and len(asked) == 1
    # WHEN it calls once they have passed
    clock.now += 0.01
    with pytest.raises(H.HttpError) as err:
        c.get("https://rebind.example.com/in", "x.get")
    # THEN the name was looked up again, the private answer refused, and nothing sent
    assert err.value.kind == "blocked" and "a private address (10.0.0.5)" in err.value.reason
    assert len(asked) == 2 and sent == [PUBLIC, PUBLIC]


# -- redirects --------------------------------------------------------------------------------------------


def test_a_post_is_not_redirected(receiver: Receiver) -> None:
    receiver.then(Answer(307, headers={"Location": "https://elsewhere.example.com/in"}))
    with pytest.raises(H.HttpError) as err:
        client().post(receiver.url(), "e.post", json_body={}, idempotent=True)
    assert err.value.kind == "redirect" and not err.value.transient
    assert "redirect to elsewhere.example.com" in err.value.reason and "does not follow" in err.value.reason
    assert len(receiver.requests) == 1


def test_a_get_is_redirected_rechecked_and_loses_its_credentials_on_another_host(receiver: Receiver) -> None:
    # GIVEN a.test redirecting to b.test (both this server), with an Authorization header
    hosts = resolver({"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]})
    receiver.then(Answer(302, headers={"Location": f"http://b.test:{receiver.port}/there"}), Answer(200, {"b": 1}))
    counter = CallCounter()
    c = client(counter, resolver=hosts, headers={"Authorization": "Bearer " + TOKEN}, secrets=[TOKEN])
    # WHEN the GET follows it
    assert c.get(f"http://a.test:{receiver.port}/here", "x.get").json() == {"b": 1}
    # THEN the second request went to b.test without the credentials; both were counted
    first, second = receiver.requests
    assert first.headers["host"] == f"a.test:{receiver.port}" and "authorization" in first.headers
    assert second.headers["host"] == f"b.test:{receiver.port}" and "authorization" not in second.headers
    assert second.path == "/there" and counter.total == 2


def test_every_redirect_hop_goes_through_the_guard_again(receiver: Receiver) -> None:
    # GIVEN a redirect to a host the resolver does not know
    receiver.then(Answer(302, headers={"Location": "http://nope.invalid/x"}))
    with pytest.raises(H.HttpError) as err:
        client(resolver=resolver({})).get(receiver.url(), "x.get")
    # THEN the second hop was resolved and vetted like a first request, and never sent
    assert err.value.reason == "unreachable: the host nope.invalid was not found"
    assert len(receiver.requests) == 1


# -- TLS to a pinned address --------------------------------------------------------------------------------


def test_tls_is_verified_against_the_host_name_while_connecting_to_the_checked_address(tmp_path: Any) -> None:
    # GIVEN an https receiver with a certificate for hooks.test, reached through a resolver
    cert, key = self_signed(tmp_path, "hooks.test")
    hosts = resolver({"hooks.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    with Receiver(tls=(cert, key)) as r:
        # WHEN it is called by its name THEN the certificate matches
        c = client(resolver=hosts, ca_certs=cert)
        assert c.get(f"https://hooks.test:{r.port}/", "x.get").status == 200
        assert r.requests[0].headers["host"] == f"hooks.test:{r.port}"
        # AND under another name the same server is refused, for good (no retry helps)
        with pytest.raises(H.HttpError) as err:
            client(resolver=hosts, ca_certs=cert).get(f"https://other.test:{r.port}/", "x.get")
    assert err.value.kind == "unreachable" and err.value.transient is False
    assert "TLS" in err.value.reason and len(r.requests) == 1


def test_an_https_redirect_to_http_is_refused(tmp_path: Any) -> None:
    cert, key = self_signed(tmp_path, "hooks.test")
    hosts = resolver({"hooks.test": ["127.0.0.1"]})
    with Receiver(tls=(cert, key)) as r:
        r.then(Answer(301, headers={"Location": f"http://hooks.test:{r.port}/plain"}))
        with pytest.raises(H.HttpError) as err:
            client(resolver=hosts, ca_certs=cert).get(f"https://hooks.test:{r.port}/", "x.get")
    assert err.value.kind == "redirect" and "another scheme" in err.value.reason and len(r.requests) == 1
