"""The run path's JSON logs (chalicelib/logs.py): a real run delivered through the runs
queue's Lambda handler (chalice.test invokes `run_step` with each SQS message, as Lambda
does), every line carrying its account, job, run, step and message ids, and none of them
left behind for the next message handled by the same warm process."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from tests.engine.sources import people
from tests.log_lines import log_lines, with_message

RUNS_ARN = "arn:aws:sqs:us-east-1:123456789012:switchyard-runs"


def _deliver(client: Any, body: str, message_id: str) -> None:
    """One SQS message to the runs Lambda, with the message id SQS gave it."""
    event = client.events.generate_sqs_event(queue_name="switchyard-runs", message_bodies=[body])
    event["Records"][0]["messageId"] = message_id
    event["Records"][0]["eventSourceARN"] = RUNS_ARN
    client.lambda_.invoke("run_step", event)


def _drain_through_handler(client: Any) -> list[str]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.get_queue_url(QueueName="switchyard-test-runs")["QueueUrl"]
    handled: list[str] = []
    for _ in range(20):
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=30).get("Messages", [])
        if not msgs:
            break
        m = msgs[0]
        _deliver(client, m["Body"], m["MessageId"])
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        handled.append(m["MessageId"])
    return handled


def test_runs_log_json_lines_with_their_ids_and_the_next_message_inherits_none(
        api, client, tenant, drain, make_job, source, capsys) -> None:
    # GIVEN two one-time imports queued (one step each: the runner reads 5,000 rows a step)
    first = make_job(people(30), name="first")
    second = make_job(people(20, offset=100), name="second")
    capsys.readouterr()
    # WHEN the runs queue is delivered to the runs Lambda, message by message
    handled = _drain_through_handler(client)
    lines = log_lines(capsys.readouterr().out)
    # THEN each run's step wrote one JSON line naming its account, job, run, step and message
    steps = with_message(lines, "step committed")
    assert len(steps) == 2 and len(handled) == 2, lines
    for job, added in ((first, 30), (second, 20)):
        [run] = api.get(f"/jobs/{job['id']}/runs").json["data"]
        [line] = [s for s in steps if s.get("job_id") == job["id"]]
        assert line["run_id"] == run["id"] and line["step"] == 0 and line["added"] == added
        assert line["account_id"] == tenant.account_id and line["done"] is True
        assert line["message_id"] in handled and line["trigger"] == "create"
        assert line["handler"] == "run_step" and line["queue"] == "switchyard-runs"
        assert line["name"] == "switchyard.engine" and line["provider"] == "test_source"
    # one Lambda request id and one message per delivery
    assert len({s["function_request_id"] for s in steps}) == 2
    assert len({s["message_id"] for s in steps}) == 2

    # WHEN the same warm process next gets a message that names no job
    with pytest.raises(Exception, match="not an object"):
        _deliver(client, "not json", "msg-poison-1")
    [poison] = with_message_prefix(log_lines(capsys.readouterr().out), "poison message")
    # THEN its line has its own message id and none of the previous runs' ids
    assert poison["message_id"] == "msg-poison-1" and poison["level"] == "ERROR"
    assert not {"account_id", "job_id", "run_id", "step", "trigger"} & set(poison), poison
    assert poison["function_request_id"] not in {s["function_request_id"] for s in steps}


def test_a_failed_step_logs_its_provider_reason_with_the_run_ids(
        api, client, tenant, drain, make_job, source, capsys) -> None:
    from chalicelib.providers.base import ProviderError

    # GIVEN a source whose first read is throttled
    source.errors.append(ProviderError("rate limited by the source", transient=True))
    job = make_job(people(10))
    capsys.readouterr()
    # WHEN the first delivery reaches the runs Lambda
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.get_queue_url(QueueName="switchyard-test-runs")["QueueUrl"]
    [m] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=30)["Messages"]
    _deliver(client, m["Body"], m["MessageId"])
    # THEN a warning line says why, with the run's ids
    [failed] = with_message(log_lines(capsys.readouterr().out), "step failed")
    [run] = api.get(f"/jobs/{job['id']}/runs").json["data"]
    assert failed["level"] == "WARNING" and failed["code"] == "run.transient_error"
    assert failed["reason"] == "rate limited by the source" and failed["transient"] is True
    assert (failed["account_id"], failed["job_id"], failed["run_id"], failed["step"]) == (
        tenant.account_id, job["id"], run["id"], 0)
    assert json.loads(m["Body"])["job_id"] == job["id"]


def with_message_prefix(lines: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [line for line in lines if str(line.get("message", "")).startswith(prefix)]
