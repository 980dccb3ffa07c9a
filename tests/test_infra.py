"""infra/ and .chalice/: the template lints, deploys into moto, and each function's policy is least privilege."""

from __future__ import annotations

import json
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

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
        url = sqs.get_queue_url(QueueName=f"switchyard-test-{name}")["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]
        assert json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"].endswith(f"switchyard-test-{name}-dlq")
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


def _policies() -> dict[str, dict[str, dict[str, Any]]]:
    """{stage: {function: policy}} as chalice will attach them (the committed files)."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return {stage: {fn: json.loads((ROOT / ".chalice" / conf["iam_policy_file"]).read_text())
                    for fn, conf in stage_conf["lambda_functions"].items()}
            for stage, stage_conf in config["stages"].items()}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allowed(policy: dict[str, Any], action: str, resource: str) -> bool:
    """Whether an Allow statement (without a condition) matches the action on the resource."""
    return any(st["Effect"] == "Allow" and "Condition" not in st
               and any(fnmatchcase(action, a) for a in _as_list(st["Action"]))
               and any(fnmatchcase(resource, r) for r in _as_list(st["Resource"]))
               for st in policy["Statement"])


def test_every_function_has_its_own_committed_policy_rendered_from_infra_policies():
    import app as chalice_app
    from infra.policies import policy_file, render

    functions = {"api_handler"} | {e.name for e in chalice_app.app.event_sources} | {
        a.name for a in chalice_app.app.builtin_auth_handlers}
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    for stage, conf in config["stages"].items():
        assert conf["autogen_policy"] is False
        assert "iam_policy_file" not in conf  # no stage-wide policy for a function to fall back on
        assert set(conf["lambda_functions"]) == functions, stage
        rendered = render(stage)
        for fn in functions:
            assert conf["lambda_functions"][fn]["iam_policy_file"] == policy_file(stage, fn)
            committed = json.loads((ROOT / ".chalice" / policy_file(stage, fn)).read_text())
            assert committed == rendered[fn], f"run `python infra/policies.py` ({stage} {fn})"


def test_each_policy_is_least_privilege_on_data_and_secrets():
    for stage, policies in _policies().items():
        tables = tuple(f"arn:aws:dynamodb:*:*:table/switchyard-{stage}-{t}" for t in ("main", "profiles"))
        for fn, policy in policies.items():
            for st in policy["Statement"]:
                actions, resources = _as_list(st["Action"]), _as_list(st["Resource"])
                if st["Effect"] == "Deny":  # the one Deny: roles of Switchyard's own account
                    assert st["Sid"] == "NoRolesOfOwnAccount", (fn, st)
                    continue
                assert st["Effect"] == "Allow", (fn, st)
                assert all("*" not in a for a in actions), (fn, st)
                assert "*" not in resources, (fn, st)
                if any(a.startswith("dynamodb:") for a in actions):
                    assert all(r.startswith(tables) for r in resources), (fn, st)
                    assert "dynamodb:Scan" not in actions
                if any(a.startswith("secretsmanager:") for a in actions):
                    # the app's prefix, and narrower: never the whole prefix
                    prefix = f"arn:aws:secretsmanager:*:*:secret:switchyard/{stage}/"
                    assert all(r.startswith(prefix) and r != prefix + "*" for r in resources), (fn, st)


STAGE_ARN = {
    "main": "arn:aws:dynamodb:eu-west-1:111122223333:table/switchyard-prod-main",
    "index": "arn:aws:dynamodb:eu-west-1:111122223333:table/switchyard-prod-main/index/GSI2",
    "profiles": "arn:aws:dynamodb:eu-west-1:111122223333:table/switchyard-prod-profiles",
    "auth_secret": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:switchyard/prod/acct_01x/auth_01y-AbC123",
    "alert_secret": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:switchyard/prod/acct_01x/alerts-AbC123",
    "oauth_app": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:switchyard/prod/oauth/mailchimp-AbC123",
    "other_stage_secret": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:switchyard/dev/acct_01x/auth_01y-AbC123",
    "runs": "arn:aws:sqs:eu-west-1:111122223333:switchyard-prod-runs",
    "health": "arn:aws:sqs:eu-west-1:111122223333:switchyard-prod-health",
    "alerts": "arn:aws:sqs:eu-west-1:111122223333:switchyard-prod-alerts",
    "collect": "arn:aws:sqs:eu-west-1:111122223333:switchyard-prod-collect.fifo",
    "backfill": "arn:aws:sqs:eu-west-1:111122223333:switchyard-prod-backfill",
    "realtime": "arn:aws:sqs:eu-west-1:111122223333:switchyard-prod-realtime",
    "profiles_stream": "arn:aws:dynamodb:eu-west-1:111122223333:table/switchyard-prod-profiles/stream/2026-12-05T10:00:00.000",
    "other_stage_queue": "arn:aws:sqs:eu-west-1:111122223333:switchyard-dev-runs",
    "schedule": "arn:aws:scheduler:eu-west-1:111122223333:schedule/switchyard-prod/job-job_01x",
    "bus": "arn:aws:events:eu-west-1:111122223333:event-bus/switchyard-prod",
    "topic": "arn:aws:sns:eu-west-1:111122223333:switchyard-prod-alerts",
    "customer_role": "arn:aws:iam::444455556666:role/switchyard-reader",
}

# What each entry point sends (read from its code paths and seen in the suite's AWS requests,
# docs/operations.md): every one must be allowed...
NEEDS = {
    "token_authorizer": [],  # its GetItem is conditional on the token key: checked below
    "api_handler": [("dynamodb:TransactWriteItems", None), ("dynamodb:PutItem", "main"),
                    ("dynamodb:Query", "index"), ("dynamodb:UpdateItem", "profiles"),
                    ("secretsmanager:CreateSecret", "auth_secret"), ("secretsmanager:CreateSecret", "alert_secret"),
                    ("secretsmanager:DeleteSecret", "auth_secret"), ("secretsmanager:GetSecretValue", "oauth_app"),
                    ("sqs:SendMessage", "runs"), ("sqs:SendMessage", "collect"), ("sqs:SendMessage", "backfill"),
                    ("sqs:SendMessage", "realtime"), ("scheduler:CreateSchedule", "schedule"),
                    ("events:PutEvents", "bus"), ("sns:Subscribe", "topic"), ("sts:AssumeRole", "customer_role")],
    "run_step": [("dynamodb:UpdateItem", "main"), ("dynamodb:BatchWriteItem", "profiles"),
                 ("dynamodb:Query", "profiles"), ("secretsmanager:GetSecretValue", "auth_secret"),
                 ("secretsmanager:PutSecretValue", "auth_secret"), ("sqs:SendMessage", "runs"),
                 ("sqs:ReceiveMessage", "runs"), ("scheduler:DeleteSchedule", "schedule"),
                 ("events:PutEvents", "bus"), ("sts:AssumeRole", "customer_role")],
    "health_sweep": [("dynamodb:Query", "index"), ("sqs:SendMessage", "health")],
    "profile_changes": [("dynamodb:Query", "main"), ("dynamodb:GetItem", "main"), ("dynamodb:BatchGetItem", "main"),
                        ("dynamodb:PutItem", "main"), ("dynamodb:UpdateItem", "main"),
                        ("dynamodb:GetRecords", "profiles_stream"), ("dynamodb:GetShardIterator", "profiles_stream"),
                        ("dynamodb:DescribeStream", "profiles_stream"), ("sqs:SendMessage", "realtime")],
    "backfill_audience": [("dynamodb:Query", "profiles"), ("dynamodb:BatchGetItem", "main"),
                          ("dynamodb:UpdateItem", "main"), ("dynamodb:PutItem", "main"),
                          ("sqs:SendMessage", "backfill"), ("sqs:ReceiveMessage", "backfill"),
                          ("sqs:DeleteMessage", "backfill"), ("sqs:SendMessage", "realtime")],
    "deliver_realtime": [("dynamodb:GetItem", "main"), ("dynamodb:Query", "main"), ("dynamodb:UpdateItem", "main"),
                         ("dynamodb:DeleteItem", "main"), ("dynamodb:BatchGetItem", "profiles"),
                         ("secretsmanager:GetSecretValue", "auth_secret"), ("sqs:SendMessage", "realtime"),
                         ("sqs:ReceiveMessage", "realtime"), ("sqs:DeleteMessage", "realtime"),
                         ("events:PutEvents", "bus"), ("sts:AssumeRole", "customer_role")],
    "realtime_catch_up": [("dynamodb:Query", "index"), ("dynamodb:BatchGetItem", "main"),
                          ("dynamodb:GetItem", "main"), ("sqs:SendMessage", "realtime")],
    "collect_handoffs": [("dynamodb:BatchGetItem", "main"), ("dynamodb:BatchWriteItem", "main"),
                         ("dynamodb:PutItem", "main"), ("dynamodb:UpdateItem", "main"),
                         ("dynamodb:BatchWriteItem", "profiles"), ("sqs:ReceiveMessage", "collect"),
                         ("sqs:DeleteMessage", "collect")],
    "check_health": [("dynamodb:BatchGetItem", "main"), ("dynamodb:UpdateItem", "main"), ("dynamodb:PutItem", "main"),
                     ("secretsmanager:GetSecretValue", "auth_secret"), ("secretsmanager:GetSecretValue", "oauth_app"),
                     ("secretsmanager:PutSecretValue", "auth_secret"), ("sqs:DeleteMessage", "health"),
                     ("events:PutEvents", "bus"), ("sts:AssumeRole", "customer_role")],
    "deliver_alerts": [("dynamodb:GetItem", "main"), ("secretsmanager:GetSecretValue", "alert_secret"),
                       ("sns:Publish", "topic"), ("sqs:ReceiveMessage", "alerts")],
    "evaluate_alert_rules": [("dynamodb:Query", "main"), ("dynamodb:BatchGetItem", "main"),
                             ("dynamodb:UpdateItem", "main"), ("events:PutEvents", "bus")],
    "purge_jobs": [("dynamodb:Query", "index"), ("dynamodb:DeleteItem", "main"), ("dynamodb:PutItem", "main"),
                   ("dynamodb:UpdateItem", "main"), ("scheduler:DeleteSchedule", "schedule")],
}
# ...and what it has no business doing must not be.
MUST_NOT = {
    "token_authorizer": [("dynamodb:PutItem", "main"), ("dynamodb:Query", "index"),
                         ("secretsmanager:GetSecretValue", "auth_secret")],
    "api_handler": [("secretsmanager:GetSecretValue", "other_stage_secret"), ("sqs:SendMessage", "other_stage_queue"),
                    ("dynamodb:Scan", "main"),
                    ("sqs:ReceiveMessage", "runs"), ("sns:Publish", "topic")],
    "run_step": [("secretsmanager:CreateSecret", "auth_secret"), ("secretsmanager:DeleteSecret", "auth_secret"),
                 ("secretsmanager:GetSecretValue", "alert_secret"), ("scheduler:CreateSchedule", "schedule"),
                 ("sqs:ReceiveMessage", "health"), ("sns:Publish", "topic")],
    "collect_handoffs": [("secretsmanager:GetSecretValue", "auth_secret"), ("sqs:SendMessage", "runs"),
                         ("sqs:SendMessage", "collect"), ("sts:AssumeRole", "customer_role"),
                         ("events:PutEvents", "bus")],
    "profile_changes": [("dynamodb:PutItem", "profiles"), ("dynamodb:Query", "profiles"),
                        ("dynamodb:DeleteItem", "main"), ("secretsmanager:GetSecretValue", "auth_secret"),
                        ("sqs:SendMessage", "runs"), ("sts:AssumeRole", "customer_role")],
    "backfill_audience": [("dynamodb:PutItem", "profiles"), ("dynamodb:DeleteItem", "main"),
                          ("secretsmanager:GetSecretValue", "auth_secret"), ("sqs:SendMessage", "runs"),
                          ("sts:AssumeRole", "customer_role")],
    "deliver_realtime": [("secretsmanager:CreateSecret", "auth_secret"), ("sqs:SendMessage", "runs"),
                         ("scheduler:CreateSchedule", "schedule"), ("sns:Publish", "topic"),
                         ("secretsmanager:GetSecretValue", "alert_secret")],
    "realtime_catch_up": [("dynamodb:PutItem", "main"), ("dynamodb:UpdateItem", "main"), ("dynamodb:Query", "main"),
                          ("dynamodb:Query", "profiles"), ("dynamodb:BatchGetItem", "profiles"),
                          ("secretsmanager:GetSecretValue", "auth_secret"), ("sqs:ReceiveMessage", "realtime"),
                          ("sqs:SendMessage", "runs"), ("sts:AssumeRole", "customer_role")],
    "health_sweep": [("dynamodb:PutItem", "main"), ("dynamodb:GetItem", "profiles"),
                     ("secretsmanager:GetSecretValue", "auth_secret"), ("sqs:SendMessage", "runs")],
    "check_health": [("dynamodb:PutItem", "profiles"), ("dynamodb:GetItem", "profiles"),
                     ("dynamodb:DeleteItem", "main"), ("secretsmanager:CreateSecret", "auth_secret"),
                     ("secretsmanager:DeleteSecret", "auth_secret"), ("secretsmanager:GetSecretValue", "alert_secret"),
                     ("sqs:SendMessage", "runs"), ("scheduler:DeleteSchedule", "schedule")],
    "deliver_alerts": [("dynamodb:Query", "profiles"),
                       ("secretsmanager:GetSecretValue", "auth_secret"), ("events:PutEvents", "bus")],
    "evaluate_alert_rules": [("dynamodb:DeleteItem", "main"), ("dynamodb:Query", "profiles"),
                             ("secretsmanager:GetSecretValue", "auth_secret")],
    "purge_jobs": [("dynamodb:DeleteItem", "profiles"), ("secretsmanager:DeleteSecret", "auth_secret"),
                   ("scheduler:CreateSchedule", "schedule")],
}


def test_each_function_may_do_what_its_code_does_and_nothing_it_does_not():
    policies = _policies()["prod"]
    assert set(NEEDS) == set(MUST_NOT) == set(policies)
    for fn, policy in policies.items():
        for action, target in NEEDS[fn]:
            if action == "dynamodb:TransactWriteItems":
                continue  # authorized per item by PutItem/UpdateItem/DeleteItem/ConditionCheckItem
            assert allowed(policy, action, STAGE_ARN[target]), (fn, action, target)
        for action, target in MUST_NOT[fn]:
            assert not allowed(policy, action, STAGE_ARN[target]), (fn, action, target)
    # the alerts worker may put its dedup items only (store/alerts.py AlertDeliveries)
    [puts] = [s for s in policies["deliver_alerts"]["Statement"] if "dynamodb:PutItem" in s["Action"]]
    assert puts["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["ACCT#*#ALERTSENT"]}}
    # the authorizer reads token items only (dynamodb:LeadingKeys), with nothing else granted
    [logs, tokens] = policies["token_authorizer"]["Statement"]
    assert logs["Sid"] == "Logs"
    assert (tokens["Action"], tokens["Resource"]) == ("dynamodb:GetItem", "arn:aws:dynamodb:*:*:table/switchyard-prod-main")
    assert tokens["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["TOKEN#*"]}}


def test_the_sweep_errors_alarm_watches_the_metric_the_app_emits():
    from chalicelib.store import metrics as M

    template = json.loads((ROOT / "infra" / "template.json").read_text())
    alarm = template["Resources"]["SweepErrorsAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (M.NAMESPACE, M.SWEEP_ERRORS)
    assert {d["Name"] for d in alarm["Dimensions"]} == {"stage", "service"}


def test_alarms_notify_the_operations_topic_not_the_customers_alerts_topic():
    template = json.loads((ROOT / "infra" / "template.json").read_text())
    res = template["Resources"]
    alarms = [r for r in res.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert alarms
    for alarm in alarms:
        # customers' e-mail subscriptions to AlertsTopic are filtered by account: an alarm
        # sent there would reach no one
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "OperationsTopic"}]
    # CloudWatch alarms cannot publish to a topic encrypted with the AWS managed aws/sns key
    assert "KmsMasterKeyId" not in res["OperationsTopic"]["Properties"]


def test_every_dead_letter_queue_has_an_alarm_on_its_depth():
    """A message in any DLQ pages the operators: each queue named as a deadLetterTargetArn has
    one alarm on its visible messages (> 0 over 5 minutes), and no alarm watches a non-DLQ."""
    template = json.loads((ROOT / "infra" / "template.json").read_text())
    res = template["Resources"]
    dlqs = set()
    for r in res.values():
        redrive = r["Properties"].get("RedrivePolicy") if r["Type"] == "AWS::SQS::Queue" else None
        if redrive:
            dlqs.add(redrive["deadLetterTargetArn"]["Fn::GetAtt"][0])
    assert len(dlqs) >= 3, dlqs  # runs, health, alerts
    watched = {}
    for name, r in res.items():
        p = r["Properties"]
        if r["Type"] != "AWS::CloudWatch::Alarm" or p.get("Namespace") != "AWS/SQS":
            continue
        [dim] = p["Dimensions"]
        assert dim["Name"] == "QueueName" and dim["Value"]["Fn::GetAtt"][1] == "QueueName"
        assert (p["MetricName"], p["Threshold"], p["ComparisonOperator"]) == (
            "ApproximateNumberOfMessagesVisible", 0, "GreaterThanThreshold")
        assert p["Period"] * p["EvaluationPeriods"] <= 300 and p["TreatMissingData"] == "notBreaching"
        watched[dim["Value"]["Fn::GetAtt"][0]] = name
    assert set(watched) == dlqs, (watched, dlqs)


def test_cloudfront_sends_the_spas_content_security_policy_on_every_behavior():
    from devserver.gateway import CONTENT_SECURITY_POLICY

    res = json.loads((ROOT / "infra" / "edge.json").read_text())["Resources"]
    # GIVEN the edge's response headers policies
    policies = {name: r["Properties"]["ResponseHeadersPolicyConfig"] for name, r in res.items()
                if r["Type"] == "AWS::CloudFront::ResponseHeadersPolicy"}
    assert list(policies) == ["SiteSecurityHeaders"]
    headers = policies["SiteSecurityHeaders"]["SecurityHeadersConfig"]
    # THEN the CSP is the local server's, and it overrides whatever an origin sends
    assert headers["ContentSecurityPolicy"] == {"ContentSecurityPolicy": CONTENT_SECURITY_POLICY, "Override": True}
    assert CONTENT_SECURITY_POLICY == "default-src 'self'; object-src 'none'; frame-ancestors 'none'"
    # AND the managed SecurityHeadersPolicy's protections are kept (framing now refused outright)
    assert headers["FrameOptions"]["FrameOption"] == "DENY" and headers["ContentTypeOptions"]["Override"]
    assert headers["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000
    assert headers["ReferrerPolicy"]["ReferrerPolicy"] == "strict-origin-when-cross-origin"
    # AND every behavior (the SPA and /api/*) uses it, none the managed policy without a CSP
    [dist] = [r["Properties"]["DistributionConfig"] for r in res.values() if r["Type"] == "AWS::CloudFront::Distribution"]
    behaviors = [dist["DefaultCacheBehavior"], *dist.get("CacheBehaviors", [])]
    assert [b["ResponseHeadersPolicyId"] for b in behaviors] == [{"Ref": "SiteSecurityHeaders"}] * len(behaviors)


def _decide(policy: dict[str, Any], action: str, resource: str, context: dict[str, str]) -> bool:
    """IAM's order for one identity policy: an explicit Deny wins, then any Allow. Conditions
    are StringEquals with ${...} policy variables resolved from `context`."""
    def applies(st: dict[str, Any]) -> bool:
        if not (any(fnmatchcase(action, a) for a in _as_list(st["Action"]))
                and any(fnmatchcase(resource, r) for r in _as_list(st["Resource"]))):
            return False
        for op, tests in st.get("Condition", {}).items():
            assert op == "StringEquals", op  # the only operator these statements use
            for key, want in tests.items():
                for name, value in context.items():
                    want = want.replace("${" + name + "}", value)
                if context.get(key) != want:
                    return False
        return True

    matching = [st for st in policy["Statement"] if applies(st)]
    return bool(matching) and all(st["Effect"] == "Allow" for st in matching)


def test_functions_that_assume_customer_roles_never_assume_one_of_switchyards_own():
    own = "111122223333"
    for stage, policies in _policies().items():
        assuming = {fn: p for fn, p in policies.items() if allowed(p, "sts:AssumeRole", STAGE_ARN["customer_role"])}
        assert set(assuming) == {"api_handler", "run_step", "check_health", "deliver_realtime"}, stage
        for fn, policy in assuming.items():
            # a customer's role (another account): allowed
            ctx = {"aws:PrincipalAccount": own, "aws:ResourceAccount": "444455556666"}
            assert _decide(policy, "sts:AssumeRole", STAGE_ARN["customer_role"], ctx), (stage, fn)
            # a role in Switchyard's own account, e.g. another function's: denied
            ctx = {"aws:PrincipalAccount": own, "aws:ResourceAccount": own}
            assert not _decide(policy, "sts:AssumeRole", f"arn:aws:iam::{own}:role/switchyard-{stage}-api_handler",
                               ctx), (stage, fn)
