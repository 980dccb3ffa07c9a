"""Create the stateful resources from infra/template.json in moto's CloudFormation."""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "template.json"

# Resources of infra/template.json that moto's CloudFormation skips, each with a warning, and
# why that is fine locally. A type missing here still warns: it may matter.
SKIPPED_BY_MOTO = {
    "AWS::Scheduler::ScheduleGroup": "created by API in deploy_stack",
    "AWS::SQS::QueuePolicy": "moto does not enforce queue policies",
    "AWS::CloudWatch::Alarm": "nothing watches alarms locally",
}
_MOTO_SKIP_LOG = "No Moto CloudFormation support for %s"


def _expected_skip(record: logging.LogRecord) -> bool:
    """False (drop the record) for moto's warning about a type in SKIPPED_BY_MOTO."""
    args = record.args if isinstance(record.args, tuple) else ()
    return not (record.msg == _MOTO_SKIP_LOG and args[:1] and args[0] in SKIPPED_BY_MOTO)


def quiet_expected_moto_warnings() -> None:
    """Silence moto's warnings about the resources in SKIPPED_BY_MOTO, and only those: a
    UserWarning from moto.cloudformation.parsing and a warning on the "moto" logger each."""
    types = "|".join(re.escape(t) for t in SKIPPED_BY_MOTO)
    warnings.filterwarnings(
        "ignore", message=rf"Tried to parse ({types}) but it's not supported by moto's CloudFormation",
        category=UserWarning, module=r"moto\.cloudformation\.parsing",
    )
    moto_log = logging.getLogger("moto")
    if _expected_skip not in moto_log.filters:
        moto_log.addFilter(_expected_skip)


def use_local_aws(endpoint: str, stage: str, *, region: str = "us-east-1") -> None:
    """Point every boto3 client of this process at a local moto server, never at a real
    account, and make chalicelib forget settings, clients and queue URLs it cached."""
    for key in list(os.environ):
        if key.startswith("AWS_ENDPOINT_URL_") or key in (
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
        ):
            del os.environ[key]
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            "SWITCHYARD_STAGE": stage,
        }
    )
    from chalicelib import config
    from chalicelib.providers import calls
    from chalicelib.store import aws, queues, scheduler

    config.reset()
    aws.reset()
    calls.reset()
    queues.reset()
    scheduler.reset()
    # Cache the stage now: chalice.test.Client sets the "local" stage's variables during
    # each request, and a first read inside a request would stick.
    assert config.settings().stage == stage


def deploy_stack(stage: str, *, region: str = "us-east-1") -> dict[str, str]:
    """Deploy (or find) the stack for `stage`; returns its outputs.

    moto ignores TimeToLiveSpecification in templates, so TTL is switched on by API.
    """
    cfn = boto3.client("cloudformation", region_name=region)
    name = f"switchyard-{stage}"
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except cfn.exceptions.ClientError:
        stacks = []
    if not stacks or stacks[0]["StackStatus"].startswith("DELETE"):
        cfn.create_stack(
            StackName=name,
            TemplateBody=TEMPLATE.read_text(),
            Parameters=[{"ParameterKey": "Stage", "ParameterValue": stage}],
        )
        cfn.get_waiter("stack_create_complete").wait(
            StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    # moto's CloudFormation skips AWS::Scheduler::ScheduleGroup; create it by API (and only
    # when missing: moto's create_schedule_group replaces an existing group, schedules and all).
    sched = boto3.client("scheduler", region_name=region)
    group = outputs["ScheduleGroupName"]
    if group not in {g["Name"] for g in sched.list_schedule_groups()["ScheduleGroups"]}:
        sched.create_schedule_group(Name=group)
    outputs["UsagePlanId"] = ensure_usage_plan(stage, region=region)
    ddb = boto3.client("dynamodb", region_name=region)
    resources = json.loads(TEMPLATE.read_text())["Resources"]
    for logical, output in (("MainTable", "TableName"), ("ProfilesTable", "ProfilesTableName")):
        ttl = resources[logical]["Properties"]["TimeToLiveSpecification"]
        ddb.update_time_to_live(
            TableName=outputs[output],
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
        )
    return outputs


def ensure_usage_plan(stage: str, *, region: str = "us-east-1") -> str:
    """The per-account usage plan and the shared key of callers without a valid token, as
    infra/package.py adds them to a deployed stage (moto's CloudFormation cannot deploy an
    API, so they are created by API). Sets SWITCHYARD_USAGE_PLAN_ID for the account bootstrap;
    the local gateway throttles by the same plan (devserver/quota.py)."""
    from chalicelib import config
    from chalicelib.domain import quota
    from chalicelib.store.usage_keys import UsageKeys

    api = boto3.client("apigateway", region_name=region)
    name = f"switchyard-{stage}-accounts"
    rate, burst = config.account_limits()
    found = [p for p in api.get_usage_plans()["items"] if p["name"] == name]
    if found:
        plan = str(found[0]["id"])
        api.update_usage_plan(usagePlanId=plan, patchOperations=[
            {"op": "replace", "path": "/throttle/rateLimit", "value": str(rate)},
            {"op": "replace", "path": "/throttle/burstLimit", "value": str(burst)}])
    else:
        plan = str(api.create_usage_plan(name=name, throttle={"rateLimit": rate, "burstLimit": burst})["id"])
    os.environ["SWITCHYARD_USAGE_PLAN_ID"] = plan
    config.reset()
    UsageKeys().ensure(quota.usage_key(stage, None))
    return plan
