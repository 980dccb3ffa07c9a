from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from chalicelib.runs.engine import Delivery, Engine, EngineOptions
from tests.conftest import TEST_ACCOUNTS
from tests.engine.sources import MemorySource


class Drain:
    """Delivers the runs queue to the engine the way Lambda + SQS would: delete on success,
    leave the message (visible again at once) when the handler raises."""

    def __init__(self, deps: Any, options: EngineOptions) -> None:
        self.engine = Engine(deps, options)
        self.sqs = boto3.client("sqs", region_name="us-east-1")
        self.url = self.sqs.get_queue_url(QueueName="switchyard-test-runs")["QueueUrl"]
        self.errors: list[BaseException] = []

    def purge(self) -> None:
        while True:
            msgs = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                return
            for m in msgs:
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])

    def pending(self) -> list[dict[str, Any]]:
        msgs = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10,
                                        VisibilityTimeout=0).get("Messages", [])
        return [json.loads(m["Body"]) for m in msgs]

    def run(self, limit: int = 500) -> int:
        handled = 0
        while handled < limit:
            msgs = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=1,
                                            VisibilityTimeout=30).get("Messages", [])
            if not msgs:
                return handled
            m = msgs[0]
            body = json.loads(m["Body"])
            if TEST_ACCOUNTS and body.get("account_id") not in TEST_ACCOUNTS:
                # an earlier test's message (a delayed retry, say): not this test's to run
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
                continue
            handled += 1
            try:
                self.engine.handle(Delivery(body=body, message_id=m["MessageId"]))
            except Exception as exc:  # a crash: SQS would redeliver after the visibility timeout
                self.errors.append(exc)
                self.sqs.change_message_visibility(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"],
                                                   VisibilityTimeout=0)
                continue
            self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
        return handled


@pytest.fixture()
def source(deps: Any) -> MemorySource:
    from chalicelib.providers.registry import Registry

    src = MemorySource()
    deps.registry = Registry(extra={"test_source": src})
    return src


@pytest.fixture()
def options() -> EngineOptions:
    return EngineOptions(max_records=1000)


@pytest.fixture()
def drain(deps: Any, options: EngineOptions, source: MemorySource) -> Drain:
    d = Drain(deps, options)
    d.purge()
    return d


@pytest.fixture()
def tenant(new_tenant: Any) -> Any:
    return new_tenant("Engine")


@pytest.fixture()
def api(api_for: Any, tenant: Any) -> Any:
    return api_for(tenant.admin_token)


@pytest.fixture()
def make_job(api: Any, source: MemorySource) -> Any:
    def make(rows: list[dict[str, Any]], *, start: bool = True, schedule: dict[str, Any] | None = None,
             name: str = "people") -> dict[str, Any]:
        source.datasets[name] = rows
        auth = api.post("/authorizations", {"provider": "test_source", "method": "api_key", "label": "k",
                                            "credentials": {"api_key": "key-1234"}})
        assert auth.status_code == 201, auth.body
        body = {"provider": "test_source", "job_type": "import", "workflow": "list_import",
                "authorization_id": auth.json["data"]["id"], "label": "Import people",
                "config": {"dataset": name}, "start": start}
        if schedule:
            body["schedule"] = schedule
        r = api.post("/jobs", body)
        assert r.status_code == 201, r.body
        return r.json["data"]

    return make
