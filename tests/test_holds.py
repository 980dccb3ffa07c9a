"""Holds (devserver/holds.py): the test-only brake that parks chosen SQS deliveries of the
local event loop until the holder lets them go, and its control API on the devserver's origin.

No test here waits for time to pass: the loop's own state (parked, in flight, delivered) is
waited on, and each "nothing was delivered" check has a message that must be delivered meanwhile.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from chalice import Chalice

from devserver.holds import PREFIX, Hold, Holds, enabled
from tests import test_event_loop as evloop
from tests.test_event_loop import Recorder, wait_until

# The event loop tests' fixtures: a queue of this test's own, and a loop that is stopped after it.
queues, start_loop = evloop.queues, evloop.start_loop

WAIT = 60.0  # a bound for states the loop reaches by itself; a hold's own state never needs it


def message(body: Any, mid: str | None = None) -> dict[str, Any]:
    return {"MessageId": mid or uuid.uuid4().hex, "ReceiptHandle": uuid.uuid4().hex,
            "Body": body if isinstance(body, str) else json.dumps(body)}


def parked(h: Hold) -> bool:
    return h.is_parked()


# -- the registry alone --------------------------------------------------------------------


def test_only_matching_messages_of_the_held_queue_are_parked() -> None:
    holds = Holds()
    hold = holds.add("runs", {"job_id": "job_a"})
    mine, other_job, other_queue, not_json = (message({"job_id": "job_a", "step": 1}), message({"job_id": "job_b"}),
                                              message({"job_id": "job_a"}), message("job_a"))
    deliver, kept = holds.screen("runs", [mine, other_job, not_json])
    assert deliver == [other_job, not_json] and kept == [mine]
    assert holds.screen("alerts", [other_queue]) == ([other_queue], [])
    assert holds.state(hold.id) | {"id": None} == {
        "id": None, "queue": "runs", "match": {"job_id": "job_a"}, "parked": 1, "in_flight": 0,
        "delivered": 0, "allowance": 0, "open": False, "is_parked": True}


def test_release_one_lets_exactly_one_go_and_counts_it_until_handled() -> None:
    holds = Holds()
    hold = holds.add("runs", {"job_id": "j"})
    first, second = message({"job_id": "j", "n": 1}), message({"job_id": "j", "n": 2})
    holds.screen("runs", [first, second])
    state = holds.release(hold.id, 1)
    assert (state["parked"], state["in_flight"], state["is_parked"]) == (1, 1, False)
    assert holds.take_ready("alerts", 10) == []  # another queue's poller does not take it
    assert holds.take_ready("runs", 10) == [first]
    assert holds.take_ready("runs", 10) == []
    holds.finished([first])
    state = holds.state(hold.id)
    assert (state["delivered"], state["in_flight"], state["is_parked"]) == (1, 0, True)


def test_a_release_before_the_message_arrives_lets_the_next_one_through() -> None:
    holds = Holds()
    hold = holds.add(None, {"job_id": "j"})
    assert holds.release(hold.id, 1)["allowance"] == 1
    first, second = message({"job_id": "j"}), message({"job_id": "j"})
    assert holds.screen("runs", [first, second]) == ([first], [second])
    assert holds.state(hold.id)["allowance"] == 0


def test_a_message_handed_out_again_is_parked_once_with_its_new_receipt() -> None:
    holds = Holds()
    hold = holds.add("runs", {"job_id": "j"})
    old = message({"job_id": "j"}, mid="m1")
    again = {**old, "ReceiptHandle": "newer"}
    holds.screen("runs", [old])
    holds.screen("runs", [again])
    assert holds.state(hold.id)["parked"] == 1
    holds.release(hold.id, None)
    assert holds.take_ready("runs", 10) == [again]


def test_release_all_opens_the_hold_and_remove_forgets_it_once_handled() -> None:
    holds = Holds()
    hold = holds.add("runs", {"job_id": "j"})
    waiting = message({"job_id": "j"})
    holds.screen("runs", [waiting])
    holds.remove(hold.id)
    later = message({"job_id": "j"})
    assert holds.screen("runs", [later]) == ([later], [])  # forgotten: nothing matches any more
    assert holds.take_ready("runs", 10) == [waiting]
    with pytest.raises(Exception, match="no hold"):
        holds.state(hold.id)
    holds.finished([waiting])
    assert holds.control("GET", f"{PREFIX}/holds", "", b"") == (200, {"data": []})


def test_a_wait_returns_when_the_state_is_reached_and_reports_what_it_saw_otherwise() -> None:
    holds = Holds()
    hold = holds.add("runs", {"job_id": "j"})
    met, state = holds.wait(hold.id, parked, timeout=0)
    assert not met and state["parked"] == 0
    # A waiter blocked on "parked" wakes when the message arrives (no polling, no sleep).
    got: list[tuple[bool, dict[str, Any]]] = []
    waiter = threading.Thread(target=lambda: got.append(holds.wait(hold.id, parked, timeout=WAIT)))
    waiter.start()
    holds.screen("runs", [message({"job_id": "j"})])
    waiter.join(WAIT)
    assert not waiter.is_alive() and got and got[0][0] and got[0][1]["parked"] == 1


# -- the control API -----------------------------------------------------------------------


def call(holds: Holds, method: str, path: str, body: Any = None, query: str = "") -> tuple[int, Any]:
    raw = json.dumps(body).encode() if body is not None else b""
    return holds.control(method, PREFIX + path, query, raw)


def test_control_api_round_trip() -> None:
    holds = Holds()
    status, out = call(holds, "POST", "/holds", {"queue": "runs", "match": {"job_id": "j"}})
    assert status == 201
    hid = out["data"]["id"]
    holds.screen("runs", [message({"job_id": "j"})])
    status, out = call(holds, "GET", f"/holds/{hid}", query="until=parked&timeout=5")
    assert status == 200 and out["data"]["is_parked"]
    status, out = call(holds, "POST", f"/holds/{hid}/release", {"count": 1})
    assert status == 200 and out["data"]["in_flight"] == 1
    ready = holds.take_ready("runs", 1)
    # Not delivered yet: the wait answers 504 with the state it saw.
    status, out = call(holds, "GET", f"/holds/{hid}", query="until=delivered&count=1&timeout=0")
    assert status == 504 and out["error"]["code"] == "hold.wait_timeout"
    assert out["error"]["details"]["in_flight"] == 1
    holds.finished(ready)
    status, out = call(holds, "GET", f"/holds/{hid}", query="until=delivered&count=1&timeout=5")
    assert status == 200 and out["data"]["delivered"] == 1
    assert call(holds, "GET", "/holds")[1]["data"][0]["id"] == hid
    assert call(holds, "POST", f"/holds/{hid}/release", {"all": True})[1]["data"]["open"] is True
    assert call(holds, "DELETE", f"/holds/{hid}") == (204, None)
    assert call(holds, "GET", f"/holds/{hid}")[0] == 404


@pytest.mark.parametrize(("method", "path", "body", "query", "field"), [
    ("POST", "/holds", {"queue": "runs"}, "", "match"),
    ("POST", "/holds", {"match": {"job_id": 7}}, "", "match"),
    ("POST", "/holds", {"queue": "", "match": {"job_id": "j"}}, "", "queue"),
    ("POST", "/holds/{id}/release", {"count": 0}, "", "count"),
    ("POST", "/holds/{id}/release", {"count": True}, "", "count"),
    ("POST", "/holds/{id}/release", {}, "", "count"),
    ("GET", "/holds/{id}", None, "until=soon", "until"),
    ("GET", "/holds/{id}", None, "until=parked&timeout=forever", "timeout"),
    ("GET", "/holds/{id}", None, "until=parked&timeout=-1", "timeout"),
    ("GET", "/holds/{id}", None, "until=delivered", "count"),
])
def test_bad_control_requests_are_refused_naming_the_field(method, path, body, query, field) -> None:
    holds = Holds()
    hold = holds.add("runs", {"job_id": "j"})
    before = holds.state(hold.id)
    status, out = call(holds, method, path.replace("{id}", hold.id), body, query)
    assert status == 400 and field in out["error"]["fields"], out
    assert holds.state(hold.id) == before  # nothing changed


def test_unknown_control_routes_and_holds_are_404_and_a_bad_body_400() -> None:
    holds = Holds()
    assert call(holds, "GET", "/nothing")[0] == 404
    assert call(holds, "GET", "/holds/hold-nope")[0] == 404
    assert call(holds, "POST", "/holds/hold-nope/release", {"count": 1})[0] == 404
    assert call(holds, "PUT", "/holds")[0] == 405
    assert holds.control("POST", PREFIX + "/holds", "", b"{not json")[0] == 400


def test_the_control_api_is_off_unless_the_flag_is_set() -> None:
    assert not enabled({}) and not enabled({"SWITCHYARD_DEV_CONTROL": "0"})
    assert enabled({"SWITCHYARD_DEV_CONTROL": "1"})


@pytest.fixture()
def gateway() -> Iterator[Any]:
    """devserver's HTTP origin around a tiny app: with the control API, and without it."""
    from chalice.config import Config

    from devserver.gateway import make_server
    from tests.conftest import free_port

    app = Chalice(app_name="holdsgw")
    config = Config.create(chalice_stage="local", app_name="holdsgw", chalice_app=app, api_gateway_stage="api")
    servers = []

    def serve(holds: Holds | None) -> str:
        port = free_port()
        server = make_server(app, config, "127.0.0.1", port, quiet=True, holds=holds)
        threading.Thread(target=server.server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{port}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server.server_close()


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=WAIT) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    return status, json.loads(raw) if raw.startswith(b"{") else raw.decode()


def test_the_origin_serves_the_control_api_only_when_enabled(gateway) -> None:
    on, off = gateway(Holds()), gateway(None)
    status, out = http("POST", on + PREFIX + "/holds", {"match": {"job_id": "j"}})
    assert status == 201 and out["data"]["match"] == {"job_id": "j"}
    assert http("GET", on + PREFIX + "/holds")[1]["data"][0]["id"] == out["data"]["id"]
    assert http("GET", off + PREFIX + "/holds")[0] == 404
    assert http("POST", off + PREFIX + "/holds", {"match": {"job_id": "j"}})[0] == 404


# -- the event loop with a hold ------------------------------------------------------------


def test_the_loop_parks_held_messages_delivers_the_rest_and_releases_one_at_a_time(queues, start_loop) -> None:
    # GIVEN a hold on job "a"'s messages of the queue, and three messages of "a", one of "b"
    holds = Holds()
    hold = holds.add(queues.name, {"job_id": "a"})
    rec = Recorder(queues.name)
    bodies = [json.dumps({"job_id": "a", "n": n}) for n in (1, 2, 3)]
    queues.send(*bodies, json.dumps({"job_id": "b", "n": 1}))
    # WHEN the loop runs
    start_loop(rec.app, holds=holds)
    # THEN "b" is delivered (the positive control) while all of "a" is parked, invisible
    wait_until(lambda: holds.state(hold.id)["parked"] == 3, timeout=WAIT)
    wait_until(lambda: rec.finished == [json.dumps({"job_id": "b", "n": 1})], timeout=WAIT)
    wait_until(lambda: queues.counts() == (0, 3), timeout=WAIT)
    assert all(b not in rec.bodies() for b in bodies)
    # WHEN one is released THEN exactly one more is delivered and the rest stay parked
    holds.release(hold.id, 1)
    met, state = holds.wait(hold.id, lambda h: h.delivered >= 1 and not h.in_flight, WAIT)
    assert met and state["parked"] == 2 and state["is_parked"], state
    assert sum(b in rec.finished for b in bodies) == 1
    # WHEN all are released THEN the rest are delivered and the queue empties
    holds.remove(hold.id)
    wait_until(lambda: all(b in rec.finished for b in bodies), timeout=WAIT)
    wait_until(queues.empty, timeout=WAIT)
    assert len(rec.finished) == 4 and queues.dlq_bodies() == []


def test_a_failed_delivery_of_a_released_message_comes_back_parked(queues, start_loop) -> None:
    # GIVEN a handler that fails the first delivery of each message, and a hold on job "a"
    def behave(body: str, count: int) -> None:
        if count == 1:
            raise RuntimeError("transient trouble")

    holds = Holds()
    hold = holds.add(queues.name, {"job_id": "a"})
    rec = Recorder(queues.name, behave=behave)
    queues.send(json.dumps({"job_id": "a"}))
    start_loop(rec.app, holds=holds)
    met, _ = holds.wait(hold.id, parked, WAIT)
    assert met
    # WHEN it is released and fails THEN its redelivery is parked again, not run behind the holder's back
    holds.release(hold.id, 1)
    met, state = holds.wait(hold.id, lambda h: h.delivered == 1 and h.is_parked(), WAIT)
    assert met and state["parked"] == 1, state
    assert rec.finished == []
    holds.release(hold.id, 1)
    met, state = holds.wait(hold.id, lambda h: h.delivered == 2 and not h.in_flight, WAIT)
    assert met and rec.finished == [json.dumps({"job_id": "a"})], state
    wait_until(queues.empty, timeout=WAIT)
