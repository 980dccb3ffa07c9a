"""`make package`: the stage's deployable CloudFormation template and code, offline.

    python infra/package.py [--stage prod] [OUT_DIR]      (default: dist)

1. `chalice package --merge-template OUT/merge-template.json` (infra/template.json plus the
   profiles stream's event source: its StreamArn, partial batch responses) writes the Lambda functions, their
   roles, the API (SAM) and the stateful resources of infra/template.json to OUT/sam.json and
   the code to OUT/deployment.zip.
2. infra/edge.json (the SPA bucket and the CloudFront distribution) is added on top: it
   references chalice's `RestAPI`, so it cannot live in infra/template.json, which is also
   deployed alone into moto by the local stack and the tests.
3. The `Stage` parameter defaults to the packaged stage (the functions' environment already
   names it), SQS event sources name their stage's queues by GetAtt, those that answer with
   `batchItemFailures` get ReportBatchItemFailures on their event source, policy resources are pinned
   to the stack's region and account, chalice's resources get the checkov findings accepted for them with their reasons
   (infra/checkov-skips.json), the API is throttled stage-wide (SWITCHYARD_API_RATE_LIMIT
   requests/s, default 100, burst SWITCHYARD_API_BURST_LIMIT, default 200) and per account
   (a usage plan keyed by the authorizer, SWITCHYARD_ACCOUNT_RATE_LIMIT/_BURST_LIMIT, default
   25/50), and the result is OUT/template.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from chalice.utils import to_cfn_resource_name

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the app's own package next to infra/
    sys.path.insert(0, str(ROOT))

from chalicelib.config import account_limits  # noqa: E402
from chalicelib.workers import PARTIAL_BATCH_RESPONSES, STREAM_PARTIAL_BATCH_RESPONSES  # noqa: E402

EDGE = ROOT / "infra" / "edge.json"
CHECKOV_SKIPS = ROOT / "infra" / "checkov-skips.json"


# A stream record that keeps failing blocks its shard: after this many retries Lambda skips it
# (the next backfill of the audience corrects what it missed: docs/audiences.md).
STREAM_MAX_RETRIES = 20


def stream_sources(handlers: Iterable[str]) -> dict[str, Any]:
    """What the merge template adds to each profiles-stream handler's event source: the
    table's real StreamArn (the handler names a placeholder at import, as Chalice needs a
    literal), partial batch responses, bounded retries. `chalice package` deep-merges it."""
    resources: dict[str, Any] = {}
    for handler in handlers:
        fn = to_cfn_resource_name(handler)
        resources[fn] = {"Properties": {"Events": {f"{fn}DynamodbEventSource": {"Properties": {
            "Stream": {"Fn::GetAtt": ["ProfilesTable", "StreamArn"]},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "MaximumRetryAttempts": STREAM_MAX_RETRIES,
        }}}}}
    return resources


def merge_template(base: dict[str, Any], handlers: Iterable[str]) -> dict[str, Any]:
    """infra/template.json (deployed alone into moto locally, so it names no function) plus
    the stream event sources of the packaged functions."""
    merged: dict[str, Any] = json.loads(json.dumps(base))
    clash = sorted(set(merged["Resources"]) & set(sources := stream_sources(handlers)))
    if clash:
        raise SystemExit(f"infra/template.json already defines {clash}")
    merged["Resources"].update(sources)
    return merged


def merge_edge(template: dict[str, Any], edge: dict[str, Any], stage: str) -> dict[str, Any]:
    """Add edge.json's resources and outputs; a name both define is a mistake, not an override."""
    merged: dict[str, Any] = json.loads(json.dumps(template))
    for section in ("Resources", "Outputs"):
        target = merged.setdefault(section, {})
        clash = sorted(set(target) & set(edge.get(section, {})))
        if clash:
            raise SystemExit(f"infra/edge.json redefines {section} {clash} of the packaged template")
        target.update(edge.get(section, {}))
    merged["Parameters"]["Stage"]["Default"] = stage
    return merged


def _queue_label(name: Any) -> str:
    """`switchyard-runs` for a queue named `switchyard-${Stage}-runs` (the label the app's
    @on_sqs_message uses, chalicelib/config.py)."""
    text = name.get("Fn::Sub", "") if isinstance(name, dict) else str(name or "")
    return text.replace("${Stage}-", "", 1)


def order_event_sources(template: dict[str, Any]) -> None:
    """Point each SQS event source at the stage's queue by GetAtt. Chalice names the queue by
    the app's label (`...:switchyard-runs`, a literal at import); the queue is
    `switchyard-<stage>-runs`, and a Fn::Sub of a name is no dependency CloudFormation can
    see (on a first create the mapping could be made before the queue): a GetAtt is."""
    queues = {_queue_label(r["Properties"].get("QueueName")): name for name, r in template["Resources"].items()
              if r["Type"] == "AWS::SQS::Queue"}
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for event in resource["Properties"].get("Events", {}).values():
            arn = event["Properties"].get("Queue") if event.get("Type") == "SQS" else None
            text = arn.get("Fn::Sub", "") if isinstance(arn, dict) else str(arn or "")
            queue = queues.get(text.rsplit(":", 1)[-1])
            if queue:
                event["Properties"]["Queue"] = {"Fn::GetAtt": [queue, "Arn"]}


def handlers_through_app(template: dict[str, Any]) -> None:
    """Point every function at app.<name>. Chalice names a blueprint's handler after the
    blueprint's module; Lambda would import that module alone, and app.py, with the
    middleware it registers, would never run. app.py exports each handler under its name."""
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            props = resource["Properties"]
            props["Handler"] = "app." + props["Handler"].rpartition(".")[2]


def report_batch_item_failures(template: dict[str, Any], handlers: Iterable[str]) -> None:
    """Enable ReportBatchItemFailures on the SQS event source of each of `handlers` (Chalice
    has no switch for it)."""
    for handler in handlers:
        events = template["Resources"][to_cfn_resource_name(handler)]["Properties"]["Events"]
        [sqs] = [e for e in events.values() if e.get("Type") == "SQS"]
        sqs["Properties"]["FunctionResponseTypes"] = ["ReportBatchItemFailures"]


def throttle_api(template: dict[str, Any], rate: float, burst: int) -> None:
    """Stage-wide API Gateway throttling: past it API Gateway answers 429 itself, in our error
    envelope (edge.json's ApiThrottledResponse), before any Lambda runs or is paid for."""
    api = template["Resources"]["RestAPI"]["Properties"]
    api["MethodSettings"] = [{"ResourcePath": "/*", "HttpMethod": "*",
                              "ThrottlingRateLimit": rate, "ThrottlingBurstLimit": burst}]


def throttle_accounts(template: dict[str, Any], rate: float, burst: int) -> None:
    """Per-account throttling by API Gateway: a usage plan on the stage, keys taken from the
    authorizer's answer (`usageIdentifierKey`), one key per account (created by the account
    bootstrap, services/accounts.py) plus the shared key of callers without a valid token,
    created here. The plan's id is an output: the operator's bootstrap needs it."""
    from chalicelib.domain import quota

    body = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    body["x-amazon-apigateway-api-key-source"] = "AUTHORIZER"
    anonymous = quota.usage_key("${Stage}", None)
    template["Resources"].update({
        "AccountUsagePlan": {
            "Type": "AWS::ApiGateway::UsagePlan",
            "Properties": {
                "UsagePlanName": {"Fn::Sub": "switchyard-${Stage}-accounts"},
                "Description": "Per-account throttling: one API key per Switchyard account",
                "ApiStages": [{"ApiId": {"Ref": "RestAPI"}, "Stage": {"Ref": "RestAPI.Stage"}}],
                "Throttle": {"RateLimit": rate, "BurstLimit": burst},
            },
        },
        "AnonymousApiKey": {
            "Type": "AWS::ApiGateway::ApiKey",
            "Properties": {"Name": {"Fn::Sub": anonymous}, "Value": {"Fn::Sub": anonymous}, "Enabled": True,
                           "Description": "Shared by every request without a valid token"},
        },
        "AnonymousUsagePlanKey": {
            "Type": "AWS::ApiGateway::UsagePlanKey",
            "Properties": {"KeyId": {"Ref": "AnonymousApiKey"}, "KeyType": "API_KEY",
                           "UsagePlanId": {"Ref": "AccountUsagePlan"}},
        },
    })
    template.setdefault("Outputs", {})["UsagePlanId"] = {"Value": {"Ref": "AccountUsagePlan"}}


def validate_bearer(template: dict[str, Any]) -> None:
    """API Gateway itself refuses an Authorization header that is not `Bearer <token>` (401,
    before the authorizer runs): one cache entry per token, and garbage costs neither a
    Lambda invocation nor a DynamoDB read."""
    from chalicelib.domain.tokens import HEADER_PATTERN

    body = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    for definition in body.get("securityDefinitions", {}).values():
        authorizer = definition.get("x-amazon-apigateway-authorizer")
        if authorizer and authorizer.get("type") == "token":
            authorizer["identityValidationExpression"] = HEADER_PATTERN


def annotate_checkov_skips(template: dict[str, Any], skips: dict[str, Any]) -> None:
    """Give chalice's resources the checkov skips (with their reasons) accepted for their type."""
    for resource in template["Resources"].values():
        accepted = skips.get(resource["Type"])
        if accepted:
            listed = resource.setdefault("Metadata", {}).setdefault("checkov", {}).setdefault("skip", [])
            listed.extend(s for s in accepted if s not in listed)


def pin_policy_resources(template: dict[str, Any]) -> None:
    """The committed policies name resources by the stage (`arn:aws:sqs:*:*:switchyard-runs`)
    because chalice's policy files cannot hold CloudFormation functions; here, where they can,
    the region and account become the stack's own, so a role can never reach a same-named
    resource of another region or account. `arn:aws:iam::*:role/*` (the customers' roles,
    in their accounts) stays open on purpose."""
    def pin(resource: Any) -> Any:
        if not isinstance(resource, str) or not resource.startswith("arn:aws:"):
            return resource
        _, _, service, region, account, rest = resource.split(":", 5)
        if service == "iam":
            if account != "*" or rest == "role/*":
                return resource
            return {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:{rest}"}
        if region != "*" or account != "*":
            return resource
        return {"Fn::Sub": f"arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:{rest}"}

    for r in template["Resources"].values():
        if r["Type"] != "AWS::IAM::Role":
            continue
        for policy in r["Properties"].get("Policies", []):
            for st in policy["PolicyDocument"]["Statement"]:
                if "Resource" in st:
                    res = st["Resource"]
                    st["Resource"] = [pin(x) for x in res] if isinstance(res, list) else pin(res)


def package(stage: str, out: Path) -> Path:
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
    env.pop("AWS_ENDPOINT_URL", None)  # chalice package is offline; never point it anywhere
    chalice = Path(sys.executable).parent / "chalice"
    out.mkdir(parents=True, exist_ok=True)
    merge = out / "merge-template.json"
    merge.write_text(json.dumps(merge_template(json.loads((ROOT / "infra" / "template.json").read_text()),
                                               STREAM_PARTIAL_BATCH_RESPONSES), indent=2) + "\n")
    subprocess.run([str(chalice), "package", "--stage", stage, "--merge-template",
                    str(merge), str(out)], cwd=ROOT, env=env, check=True)
    sam = json.loads((out / "sam.json").read_text())
    merged = merge_edge(sam, json.loads(EDGE.read_text()), stage)
    order_event_sources(merged)
    handlers_through_app(merged)
    report_batch_item_failures(merged, PARTIAL_BATCH_RESPONSES)
    pin_policy_resources(merged)
    validate_bearer(merged)
    throttle_api(merged, float(os.environ.get("SWITCHYARD_API_RATE_LIMIT", "100")),
                 int(os.environ.get("SWITCHYARD_API_BURST_LIMIT", "200")))
    throttle_accounts(merged, *account_limits())
    annotate_checkov_skips(merged, json.loads(CHECKOV_SKIPS.read_text()))
    target = out / "template.json"
    target.write_text(json.dumps(merged, indent=2) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="dist", type=Path)
    parser.add_argument("--stage", default="prod")
    args = parser.parse_args(argv)
    print(package(args.stage, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
