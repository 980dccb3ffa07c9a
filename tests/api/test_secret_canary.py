"""SPEC rule 12: a canary credential goes through the whole life cycle and is found only
in Secrets Manager — never in responses, logs, DynamoDB items or SQS messages."""

from __future__ import annotations

import json
import logging

import boto3

from tests.api.helpers import access_key_id, make_bucket
from tests.log_lines import log_lines, with_message

CANARY = "CANARY-7f3a9c1e5b2d4068"
EXTERNAL_CANARY = "EXTCANARY-91b2c3d4"


def test_canary_never_leaves_secrets_manager(api, tenant, caplog, capsys, aws_endpoint):
    capsys.readouterr()
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="switchyard")
    bodies: list[str] = []

    def call(method, path, body=None):
        r = api.call(method, path, body)
        bodies.append(r.body.decode())
        return r

    bucket = make_bucket()
    creds = {"access_key_id": access_key_id(), "secret_access_key": CANARY, "bucket": bucket}
    # create (and a failing create), check, options, inline, rotate, change, delete
    call("POST", "/authorizations", {"provider": "amazon_s3", "method": "access_keys", "label": "bad",
                                     "credentials": {**creds, "bucket": "missing-canary-bucket"}})
    call("POST", "/authorizations", {"provider": "amazon_s3", "method": "access_keys", "label": "bad2",
                                     "credentials": {**creds, "secret_access_key": CANARY[:5], "zzz": CANARY}})
    auth = call("POST", "/authorizations", {"provider": "amazon_s3", "method": "access_keys",
                                            "label": "keys", "credentials": creds}).json["data"]
    # an external id sent by a client is refused (Switchyard generates it): the refusal
    # must not echo it either
    call("POST", "/authorizations", {"provider": "amazon_s3", "method": "assume_role", "label": "role",
                                     "credentials": {"role_arn": "arn:aws:iam::123456789012:role/R",
                                                     "external_id": EXTERNAL_CANARY}})
    role = call("POST", "/authorizations", {"provider": "amazon_s3", "method": "assume_role", "label": "role",
                                            "credentials": {"role_arn": "arn:aws:iam::123456789012:role/R"}}
                ).json["data"]
    call("POST", f"/authorizations/{auth['id']}/check")
    call("GET", f"/providers/amazon_s3/workflows/s3_file_import/options/bucket?authorization_id={auth['id']}")
    call("GET", f"/providers/amazon_s3/workflows/s3_file_import/options/prefix?authorization_id={auth['id']}&bucket=nope-x")
    inline = call("POST", "/jobs", {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
                                    "label": "inline", "config": {"bucket": bucket},
                                    "authorization": {"method": "access_keys", "label": "inline",
                                                      "credentials": creds}}).json["data"]
    job = call("POST", "/jobs", {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
                                 "label": "j", "config": {"bucket": bucket},
                                 "authorization_id": auth["id"]}).json["data"]
    call("PUT", f"/authorizations/{auth['id']}/credentials", {"credentials": {**creds, "secret_access_key": CANARY + "2"}})
    call("PATCH", f"/jobs/{job['id']}?dry_run=true", {"authorization_id": role["id"], "version": 1})
    call("PATCH", f"/jobs/{job['id']}", {"authorization_id": role["id"], "version": 1})
    for path in ("/authorizations", f"/authorizations/{auth['id']}", "/jobs", f"/jobs/{job['id']}",
                 f"/jobs/{inline['id']}", "/providers"):
        call("GET", path)
    call("POST", f"/jobs/{job['id']}/pause")
    call("DELETE", f"/jobs/{job['id']}")
    call("DELETE", f"/authorizations/{auth['id']}")
    assert len(bodies) > 20

    def leaks(text: str) -> bool:
        return CANARY[:12] in text or EXTERNAL_CANARY in text

    # responses
    assert not [b for b in bodies if leaks(b)]
    # logs: the records, and the JSON lines the Powertools handler printed (message, extra
    # fields and formatted exceptions alike), one per request at least
    assert not [r.getMessage() for r in caplog.records if leaks(r.getMessage())]
    out = capsys.readouterr().out
    assert len(with_message(log_lines(out), "request")) == len(bodies)
    assert not leaks(out)
    # every DynamoDB item (a test may scan; the app never does)
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    items = []
    for table in ("switchyard-test-main", "switchyard-test-profiles"):
        for page in ddb.get_paginator("scan").paginate(TableName=table):
            items += page["Items"]
    assert items and not [i for i in items if leaks(json.dumps(i, default=lambda b: b.decode("latin-1")))]
    # every message on the runs queue
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.get_queue_url(QueueName="switchyard-test-runs")["QueueUrl"]
    msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
    assert msgs and not [m for m in msgs if leaks(m["Body"])]
    # ...and it IS in Secrets Manager, which is the point
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    value = sm.get_secret_value(SecretId=f"switchyard/test/{tenant.account_id}/{inline['authorization_id']}")
    assert CANARY in value["SecretString"]
