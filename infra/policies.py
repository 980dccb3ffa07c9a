"""Least-privilege IAM policies, one per Lambda function: the source of the committed
.chalice/policy-<stage>-<function>.json files (chalice's per-function `iam_policy_file`).

    python infra/policies.py        # rewrite them for every stage of .chalice/config.json

Each function lists only the actions its code paths send (read from the code, and checked
against the AWS requests each entry point makes in the test suite, see docs/operations.md)
and only the stage's resources. tests/test_infra.py fails when a committed file differs from
what this renders, or when a rule below is broken.

DynamoDB transactions (TransactWriteItems) are authorized per item, by the item's own action
(PutItem, UpdateItem, DeleteItem, ConditionCheckItem): there is no separate action to grant.
STS GetCallerIdentity needs no permission.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHALICE = ROOT / ".chalice"

READ = ["dynamodb:BatchGetItem", "dynamodb:ConditionCheckItem", "dynamodb:GetItem", "dynamodb:Query"]
WRITE = ["dynamodb:BatchWriteItem", "dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
CONSUME = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"]
SEND = ["sqs:GetQueueUrl", "sqs:SendMessage"]


def _arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:*:*:{resource}"


def statements(stage: str) -> dict[str, list[dict[str, Any]]]:
    main = [_arn("dynamodb", f"table/switchyard-{stage}-main"),
            _arn("dynamodb", f"table/switchyard-{stage}-main/index/*")]
    profiles = [_arn("dynamodb", f"table/switchyard-{stage}-profiles")]
    # Secret names: switchyard/<stage>/<account>/<authorization> (one per authorization),
    # .../<account>/alerts (an account's webhook signing secret), .../oauth/<provider> (the
    # app's OAuth clients, put there by the operator). The ARN ends with a random suffix.
    auth_secrets = _arn("secretsmanager", f"secret:switchyard/{stage}/acct_*/auth_*")
    alert_secrets = _arn("secretsmanager", f"secret:switchyard/{stage}/acct_*/alerts-*")
    oauth_apps = _arn("secretsmanager", f"secret:switchyard/{stage}/oauth/*")
    queue = {name: _arn("sqs", f"switchyard-{stage}-{name}") for name in ("runs", "health", "alerts", "backfill", "realtime")}
    queue["collect"] = _arn("sqs", f"switchyard-{stage}-collect.fifo")
    profiles_stream = _arn("dynamodb", f"table/switchyard-{stage}-profiles/stream/*")
    schedules = _arn("scheduler", f"schedule/switchyard-{stage}/*")
    bus = _arn("events", f"event-bus/switchyard-{stage}")
    topic = _arn("sns", f"switchyard-{stage}-alerts")

    def stmt(sid: str, actions: list[str] | str, resources: list[str] | str, **extra: Any) -> dict[str, Any]:
        return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources, **extra}

    logs = stmt("Logs", ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                f"arn:aws:logs:*:*:log-group:/aws/lambda/switchyard-{stage}-*")
    # Switchyard's own identity assumes the customer's role for the assume_role method of
    # the AWS providers (S3, SQS, Kinesis); the customer's trust policy (with its external
    # id) decides, so the resource cannot be narrower than any role.
    assume = stmt("AssumeCustomerRoles", "sts:AssumeRole", "arn:aws:iam::*:role/*")
    # ...but never a role of Switchyard's own account, whatever its trust policy says: a
    # tenant naming one of ours would otherwise borrow Switchyard's own powers.
    no_own_roles = {"Sid": "NoRolesOfOwnAccount", "Effect": "Deny", "Action": "sts:AssumeRole",
                    "Resource": "arn:aws:iam::*:role/*",
                    "Condition": {"StringEquals": {"aws:ResourceAccount": "${aws:PrincipalAccount}"}}}
    alert_events = stmt("AlertEvents", "events:PutEvents", bus)
    read_credentials = stmt("ReadCredentials", "secretsmanager:GetSecretValue", [auth_secrets, oauth_apps])
    # A refreshed OAuth access token is a new version of the authorization's secret.
    refresh_tokens = stmt("RefreshOAuthTokens", "secretsmanager:PutSecretValue", auth_secrets)

    return {
        # Every route: accounts, tokens, authorizations (their secrets), jobs (schedules, run
        # now), profiles, audiences, alerts settings (SNS e-mail subscriptions), OAuth.
        "api_handler": [
            logs,
            stmt("Tables", READ + WRITE, main + profiles),
            stmt("CredentialSecrets", ["secretsmanager:CreateSecret", "secretsmanager:DeleteSecret",
                                       "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue",
                                       "secretsmanager:TagResource"], [auth_secrets, alert_secrets]),
            stmt("OAuthApps", "secretsmanager:GetSecretValue", oauth_apps),
            stmt("RunsQueue", SEND, queue["runs"]),
            # The tracking API hands accepted messages to the engine (SendMessageBatch).
            stmt("CollectQueue", SEND, queue["collect"]),
            # A new or edited audience queues the first page of its membership backfill.
            stmt("BackfillQueue", SEND, queue["backfill"]),
            # A real-time job created, resumed or moved to another audience drains its log.
            stmt("RealtimeQueue", SEND, queue["realtime"]),
            stmt("JobSchedules", ["scheduler:CreateSchedule", "scheduler:DeleteSchedule",
                                  "scheduler:GetSchedule", "scheduler:UpdateSchedule"], schedules),
            stmt("PassSchedulerRole", "iam:PassRole", f"arn:aws:iam::*:role/switchyard-{stage}-scheduler",
                 Condition={"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}),
            alert_events,
            stmt("AlertEmails", ["sns:Subscribe", "sns:Unsubscribe"], topic),
            assume,
            no_own_roles,
        ],
        # The API Gateway authorizer: one GetItem of a token item, nothing else.
        "token_authorizer": [
            logs,
            stmt("Tokens", "dynamodb:GetItem", main[0],
                 Condition={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["TOKEN#*"]}}),
        ],
        # One step of one run: jobs, runs, checkpoints, logs and counters in the main table,
        # profiles in theirs; the next step on the runs queue; a failed job's schedule removed.
        "run_step": [
            logs,
            stmt("Tables", READ + WRITE, main + profiles),
            read_credentials,
            refresh_tokens,
            stmt("RunsQueue", SEND + CONSUME, queue["runs"]),
            stmt("FailedJobSchedules", "scheduler:DeleteSchedule", schedules),
            alert_events,
            assume,
            no_own_roles,
        ],
        # The collect queue's handler: claims, applied markers, window runs, activity and
        # logs in the main table, profiles in theirs.
        "collect_handoffs": [
            logs,
            stmt("Tables", READ + WRITE, main + profiles),
            stmt("CollectQueue", CONSUME, queue["collect"]),
        ],
        # The daily sweep: pages of the sweep index, fanned out to the health queue.
        "health_sweep": [
            logs,
            stmt("SweepIndex", "dynamodb:Query", main[1]),
            stmt("HealthQueue", SEND, queue["health"]),
        ],
        # The profiles table's stream: the account's audiences, member items and change logs
        # in the main table (reads and the change transactions).
        "profile_changes": [
            logs,
            stmt("Memberships", ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem",
                                 "dynamodb:Query", "dynamodb:UpdateItem"], main[0]),
            stmt("ProfilesStream", ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                                    "dynamodb:ListStreams"], profiles_stream),
            # The real-time jobs of audiences whose log grew are nudged.
            stmt("RealtimeQueue", SEND, queue["realtime"]),
        ],
        # The backfill queue's handler: one page of an audience's profiles (a Query), its
        # member items and change log, and the next page's message.
        "backfill_audience": [
            logs,
            stmt("Memberships", ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem",
                                 "dynamodb:Query", "dynamodb:UpdateItem"], main[0]),
            stmt("Profiles", "dynamodb:Query", profiles[0]),
            stmt("BackfillQueue", SEND + CONSUME, queue["backfill"]),
            stmt("RealtimeQueue", SEND, queue["realtime"]),
        ],
        # The real-time queue's handler: the job, its subscription (lease, cursor), the
        # audience's change log and the changed profiles' values; the job's credentials to
        # send; a failed delivery's log line, job state and alert; the next nudge.
        "deliver_realtime": [
            logs,
            stmt("Tables", READ + WRITE, main + profiles),
            read_credentials,
            refresh_tokens,
            stmt("RealtimeQueue", SEND + CONSUME, queue["realtime"]),
            alert_events,
            assume,
            no_own_roles,
        ],
        # Every minute: the sweep index's real-time shards (Queries), the subscriptions and
        # their audiences' heads (BatchGetItem), the jobs behind (GetItem); a nudge each.
        "realtime_catch_up": [
            logs,
            stmt("SweepIndex", "dynamodb:Query", main[1]),
            stmt("Subscriptions", ["dynamodb:BatchGetItem", "dynamodb:GetItem"], main[0]),
            stmt("RealtimeQueue", SEND, queue["realtime"]),
        ],
        # The health queue's handler: reads the authorizations, checks each with its
        # credentials, records a change of health and its history, emits the alert.
        "check_health": [
            logs,
            stmt("Authorizations", ["dynamodb:BatchGetItem", "dynamodb:ConditionCheckItem", "dynamodb:GetItem",
                                    "dynamodb:PutItem", "dynamodb:UpdateItem"], main[0]),
            read_credentials,
            refresh_tokens,
            stmt("HealthQueue", CONSUME, queue["health"]),
            alert_events,
            assume,
            no_own_roles,
        ],
        # The alerts queue's handler: the account's alert settings, its webhook signing
        # secret, and the SNS topic for e-mails.
        "deliver_alerts": [
            logs,
            stmt("AlertSettings", "dynamodb:GetItem", main[0]),
            # One delivery per transition: its dedup items only (store/alerts.py AlertDeliveries).
            stmt("AlertDeliveries", "dynamodb:PutItem", main[0],
                 Condition={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["ACCT#*#ALERTSENT"]}}),
            stmt("SigningSecrets", "secretsmanager:GetSecretValue", alert_secrets),
            stmt("AlertsQueue", CONSUME, queue["alerts"]),
            stmt("AlertEmails", "sns:Publish", topic),
        ],
        # Hourly: metric threshold rules against the activity counters; a breach is an event.
        "evaluate_alert_rules": [
            logs,
            stmt("RulesAndActivity", ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:Query",
                                      "dynamodb:UpdateItem"], main),
            alert_events,
        ],
        # Daily: jobs left paused, failed or completed for 90 days are deleted in one
        # transaction with their alert rules, an audit event and the usage counters of their
        # authorization and audience; then their schedules are removed.
        "purge_jobs": [
            logs,
            stmt("PurgeJobs", ["dynamodb:ConditionCheckItem", "dynamodb:DeleteItem", "dynamodb:GetItem",
                               "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"], main),
            stmt("JobSchedules", "scheduler:DeleteSchedule", schedules),
        ],
    }


def render(stage: str) -> dict[str, dict[str, Any]]:
    return {fn: {"Version": "2012-10-17", "Statement": st} for fn, st in statements(stage).items()}


def policy_file(stage: str, function: str) -> str:
    return f"policy-{stage}-{function}.json"


def main() -> int:
    config = json.loads((CHALICE / "config.json").read_text())
    for stage in config["stages"]:
        for function, policy in render(stage).items():
            (CHALICE / policy_file(stage, function)).write_text(json.dumps(policy, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
