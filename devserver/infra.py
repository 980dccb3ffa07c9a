"""Create the stateful resources from infra/template.json in moto's CloudFormation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "template.json"


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
    ddb = boto3.client("dynamodb", region_name=region)
    resources = json.loads(TEMPLATE.read_text())["Resources"]
    for logical, output in (("MainTable", "TableName"), ("ProfilesTable", "ProfilesTableName")):
        ttl = resources[logical]["Properties"]["TimeToLiveSpecification"]
        ddb.update_time_to_live(
            TableName=outputs[output],
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
        )
    return outputs
