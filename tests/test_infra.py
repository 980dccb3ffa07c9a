"""infra/ and .chalice/: the template lints, deploys into moto, and the policy is least privilege."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent


def test_template_passes_cfn_lint():
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    out = subprocess.run([str(cfn_lint), str(ROOT / "infra" / "template.json")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_template_deployed_into_moto_has_every_resource(aws_endpoint):
    # GIVEN the stack the session fixture deployed from infra/template.json
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    table = ddb.describe_table(TableName="switchyard-test-main")["Table"]
    # THEN the table has the keys and index the store relies on, and TTL is on
    assert {k["AttributeName"] for k in table["KeySchema"]} == {"PK", "SK"}
    assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == ["GSI1", "GSI2"]
    ttl = ddb.describe_time_to_live(TableName="switchyard-test-main")["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at" and ttl["TimeToLiveStatus"] == "ENABLED"
    # AND the queues redrive to their DLQs
    sqs = boto3.client("sqs", region_name="us-east-1")
    for name in ("runs", "health"):
        url = sqs.get_queue_url(QueueName=f"switchyard-{name}")["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]
        assert json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"].endswith(f"switchyard-{name}-dlq")
    names = [b["Name"] for b in boto3.client("events", region_name="us-east-1").list_event_buses()["EventBuses"]]
    assert "switchyard-test" in names
    # AND the operations dashboard charts the app's EMF metrics (its alarms are lint-checked only)
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    body = json.loads(cw.get_dashboard(DashboardName="switchyard-test")["DashboardBody"])
    charted = json.dumps(body)
    for metric in ("SweepChecked", "SweepUnhealthy", "SweepTimeouts", "SweepErrors", "RunFailed",
                   "RunSucceeded", "ProviderRequests"):
        assert metric in charted, metric
    assert "${" not in charted  # every substitution resolved


def test_committed_policies_are_least_privilege():
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    for stage, conf in config["stages"].items():
        assert conf["autogen_policy"] is False
        policy = json.loads((ROOT / ".chalice" / conf["iam_policy_file"]).read_text())
        for st in policy["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            assert st["Effect"] == "Allow"
            assert all(a != "*" and not a.endswith(":*") for a in actions), st
            assert "*" not in resources, st
            if any(a.startswith("dynamodb:") for a in actions):
                assert all(f"table/switchyard-{stage}-main" in r or f"table/switchyard-{stage}-profiles" in r
                           for r in resources), st
                assert "dynamodb:Scan" not in actions
            if any(a.startswith("secretsmanager:") for a in actions):
                assert resources == [f"arn:aws:secretsmanager:*:*:secret:switchyard/{stage}/*"], st


def test_the_sweep_errors_alarm_watches_the_metric_the_app_emits():
    from chalicelib.store import metrics as M

    template = json.loads((ROOT / "infra" / "template.json").read_text())
    alarm = template["Resources"]["SweepErrorsAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (M.NAMESPACE, M.SWEEP_ERRORS)
    assert {d["Name"] for d in alarm["Dimensions"]} == {"stage", "service"}
