"""`make redrive` (infra/redrive.py): DLQ messages go back to their queue, none lost."""

from __future__ import annotations

import json

import boto3
import pytest

from infra.redrive import main, redrive
from tests.conftest import STAGE


def _urls(sqs, name: str) -> tuple[str, str]:
    return (sqs.get_queue_url(QueueName=f"switchyard-{STAGE}-{name}")["QueueUrl"],
            sqs.get_queue_url(QueueName=f"switchyard-{STAGE}-{name}-dlq")["QueueUrl"])


def _drain(sqs, url: str) -> list[str]:
    out = []
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            out.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_redrive_moves_every_dead_letter_back_once(aws_endpoint) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    source, dlq = _urls(sqs, "health")
    _drain(sqs, source), _drain(sqs, dlq)
    # GIVEN 23 messages in the health DLQ
    bodies = [json.dumps({"account_id": "acct_x", "authorization_id": f"auth_{i}"}) for i in range(23)]
    for b in bodies:
        sqs.send_message(QueueUrl=dlq, MessageBody=b)
    # WHEN a dry run, then the redrive, run
    assert redrive(sqs, "health", stage=STAGE, limit=100, dry_run=True) == 10
    assert main(["--stage", STAGE, "health"]) == 0
    # THEN each is in the health queue once and the DLQ is empty
    assert sorted(_drain(sqs, source)) == sorted(bodies)
    assert _drain(sqs, dlq) == []


def test_unknown_queue_names_are_refused(aws_endpoint, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["nope"])
    assert exc.value.code == 2
    assert "unknown queue" in capsys.readouterr().err
