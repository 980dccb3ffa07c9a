"""Helpers of the collection tests: a write key and its job, requests, and the engine side
(hand-offs received from the collect queue and applied, as the Lambda would)."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

from chalicelib.services.collect import apply_handoff
from chalicelib.store import aws
from chalicelib.store.collect import COLLECT_QUEUE
from chalicelib.store.queues import queue_url


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def write_key_job(api: Any, *, config: dict[str, Any] | None = None, start: bool = True) -> tuple[str, dict[str, Any]]:
    resp = api.post("/authorizations", {"provider": "http_api", "method": "write_key", "label": "site",
                                        "credentials": {}})
    assert resp.status_code == 201, resp.json
    auth = resp.json["data"]
    key = auth["write_key"]
    job = api.post("/jobs", {"provider": "http_api", "job_type": "import", "workflow": "http_collect",
                             "authorization_id": auth["id"], "label": "events", "config": config or {},
                             "start": start})
    assert job.status_code == 201, job.json
    return key, job.json["data"]


def send(client: Any, key: str | None, body: Any, *, path: str = "/batch", gzipped: bool = False,
         headers: dict[str, str] | None = None, raw: bytes | None = None) -> Any:
    payload = raw if raw is not None else json.dumps(body).encode()
    h = {"Content-Type": "application/json"}
    if key is not None:
        h["Authorization"] = basic(key)
    if gzipped:
        payload = gzip.compress(payload)
        h["Content-Encoding"] = "gzip"
    h.update(headers or {})
    resp = client.http.request("POST", "/api/v1" + path, headers=h, body=payload)
    resp.json = resp.json_body
    return resp


def receive(max_rounds: int = 20) -> list[dict[str, Any]]:
    """Every hand-off now on the collect queue, in order, deleted once read."""
    sqs = aws.client("sqs")
    url = queue_url(COLLECT_QUEUE)
    out: list[dict[str, Any]] = []
    for _ in range(max_rounds):
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                  AttributeNames=["All"]).get("Messages", [])
        if not got:
            break
        for m in got:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return out


def drain(deps: Any) -> list[str]:
    return [apply_handoff(deps, entry) for entry in receive()]
