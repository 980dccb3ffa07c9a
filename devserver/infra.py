"""Create the stateful resources from infra/template.json in moto's CloudFormation."""

from __future__ import annotations

import json
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "template.json"


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
    ddb = boto3.client("dynamodb", region_name=region)
    ttl = json.loads(TEMPLATE.read_text())["Resources"]["MainTable"]["Properties"][
        "TimeToLiveSpecification"
    ]
    ddb.update_time_to_live(
        TableName=outputs["TableName"],
        TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
    )
    return outputs
