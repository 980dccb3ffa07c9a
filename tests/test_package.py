"""`make package` and `make deploy`: the merged template lints clean and passes
checkov, the deployment zip stays within its budget, and infra/deploy.py deploys the stage
and the SPA into moto, twice (the second time is an update)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests import requires
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ZIP_BUDGET = 15 * 1024 * 1024
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """infra/package.py for the prod stage, once for this module (offline: no AWS account)."""
    out = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    done = subprocess.run([sys.executable, "infra/package.py", "--stage", "prod", str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_the_zip_fits_the_budget_and_holds_the_app_only(packaged: Path) -> None:
    artifact = packaged / "deployment.zip"
    assert artifact.stat().st_size <= ZIP_BUDGET, artifact.stat().st_size
    names = zipfile.ZipFile(artifact).namelist()
    assert "app.py" in names and any(n.startswith("chalicelib/") for n in names)
    # the runtime provides boto3/botocore: packaging them would double the zip
    assert not any(n.startswith(("botocore/", "boto3/")) for n in names)


def test_api_gateway_refuses_any_header_but_bearer_before_the_authorizer(packaged: Path) -> None:
    import re

    from chalicelib.api.auth import AUTHORIZER_TTL_SECONDS
    from chalicelib.domain.tokens import HEADER_PATTERN

    template = json.loads((packaged / "template.json").read_text())
    body = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    authorizers = [d["x-amazon-apigateway-authorizer"] for d in body["securityDefinitions"].values()
                   if "x-amazon-apigateway-authorizer" in d]  # not the api_key definition
    assert authorizers  # the token authorizer is there (not a vacuous pass)
    for authorizer in authorizers:
        # THEN API Gateway validates the header itself and keeps answers for 3 s, not 60
        assert authorizer["identityValidationExpression"] == HEADER_PATTERN
        assert authorizer["authorizerResultTtlInSeconds"] == AUTHORIZER_TTL_SECONDS <= 3
    # AND the expression lets the one spelling through, and no other (one cache key per token)
    token = "tok_01jxyzabcdefghjkmnpqrstvwx.9Jr2w1cXzP0bLq7KfT3nVh8sYd4mGe6uAoWiRjNkCtE"
    assert re.match(HEADER_PATTERN, "Bearer " + token)
    for other in ("bearer " + token, token, "Bearer  " + token, "BEARER " + token, "Bearer " + token + " ",
                  "Bearer garbage", "Basic dXNlcjpwYXNz"):
        assert not re.match(HEADER_PATTERN, other), other


def test_the_merged_template_passes_cfn_lint(packaged: Path) -> None:
    lint = subprocess.run([str(BIN / "cfn-lint"), str(packaged / "template.json")], capture_output=True,
                          text=True, timeout=300)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_the_merged_template_routes_api_to_api_gateway_and_the_rest_to_the_private_bucket(packaged: Path) -> None:
    template = json.loads((packaged / "template.json").read_text())
    res = template["Resources"]
    assert template["Parameters"]["Stage"]["Default"] == "prod"
    dist = res["Distribution"]["Properties"]["DistributionConfig"]
    origins = {o["Id"]: o for o in dist["Origins"]}
    # /api/* goes to chalice's RestAPI, under its stage path, uncached, every viewer header but Host
    assert "${RestAPI}.execute-api." in origins["api"]["DomainName"]["Fn::Sub"]
    assert origins["api"]["OriginPath"] == "/" + res["RestAPI"]["Properties"]["StageName"]
    api = next(b for b in dist["CacheBehaviors"] if b["PathPattern"] == "/api/*")
    assert api["TargetOriginId"] == "api"
    assert api["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"  # managed CachingDisabled
    assert api["OriginRequestPolicyId"] == "b689b0a8-53d0-40ab-baf2-68738e2966ac"  # AllViewerExceptHostHeader
    assert {"POST", "PUT", "PATCH", "DELETE"} <= set(api["AllowedMethods"])
    # the SPA's routes are under /api/v1 on the same origin: the API Gateway paths match
    assert "/api/v1/jobs" in res["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    assert 'const BASE = "/api/v1"' in (ROOT / "web" / "src" / "api.ts").read_text()
    # the bucket is private (OAC only) and encrypted; the fallback never touches /api/*
    assert origins["site"]["OriginAccessControlId"] == {"Fn::GetAtt": ["SiteOriginAccessControl", "Id"]}
    bucket = res["SiteBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert "ServerSideEncryptionConfiguration" in bucket["BucketEncryption"]
    assert dist["DefaultRootObject"] == "index.html"
    assert "FunctionAssociations" in dist["DefaultCacheBehavior"] and "FunctionAssociations" not in api
    assert "CustomErrorResponses" not in dist  # they would turn the API's 403/404 into index.html
    # a regional API: CloudFront in front of an edge-optimized API would be two CloudFront hops
    assert res["RestAPI"]["Properties"]["EndpointConfiguration"] == "REGIONAL"


def test_a_throttled_caller_gets_429_in_the_error_envelope(packaged: Path) -> None:
    """API.md: 429 when the caller is throttled. API Gateway throttles the stage and answers
    the 429 itself, so the body comes from the gateway response, in the API's error envelope."""
    from chalicelib.api.response_schemas import ErrorOut

    res = json.loads((packaged / "template.json").read_text())["Resources"]
    [limit] = res["RestAPI"]["Properties"]["MethodSettings"]
    assert (limit["ResourcePath"], limit["HttpMethod"]) == ("/*", "*")
    assert limit["ThrottlingRateLimit"] > 0 and limit["ThrottlingBurstLimit"] >= limit["ThrottlingRateLimit"]
    throttled = [r["Properties"] for r in res.values() if r["Type"] == "AWS::ApiGateway::GatewayResponse"
                 and r["Properties"]["ResponseType"] == "THROTTLED"]
    assert len(throttled) == 1 and throttled[0]["RestApiId"] == {"Ref": "RestAPI"}
    assert throttled[0]["StatusCode"] == "429"
    from chalicelib.domain.quota import RETRY_AFTER_SECONDS

    assert throttled[0]["ResponseParameters"]["gatewayresponse.header.Retry-After"] == f"'{RETRY_AFTER_SECONDS}'"
    body = ErrorOut.model_validate_json(throttled[0]["ResponseTemplates"]["application/json"])
    assert body.error.code == "api.throttled" and "retry" in body.error.message


def test_every_authorized_route_is_throttled_per_account_by_the_authorizers_key(packaged: Path) -> None:
    """A usage plan keyed by the authorizer: each account spends its own bucket, below the
    stage-wide limit, and API Gateway refuses the rest before any Lambda runs."""
    from chalicelib.domain import quota

    template = json.loads((packaged / "template.json").read_text())
    res = template["Resources"]
    body = res["RestAPI"]["Properties"]["DefinitionBody"]
    assert body["x-amazon-apigateway-api-key-source"] == "AUTHORIZER"
    keyed = public = 0
    for path, methods in body["paths"].items():
        for verb, op in methods.items():
            schemes = {name for entry in op.get("security", []) for name in entry}
            if "token_authorizer" in schemes:
                assert "api_key" in schemes, (verb, path)  # counted against the account's key
                keyed += 1
            else:
                assert "api_key" not in schemes, (verb, path)  # no authorizer names a key there
                public += 1
    assert keyed > 30 and public >= 1, (keyed, public)
    plan = res["AccountUsagePlan"]["Properties"]
    assert plan["ApiStages"] == [{"ApiId": {"Ref": "RestAPI"}, "Stage": {"Ref": "RestAPI.Stage"}}]
    [stage_wide] = res["RestAPI"]["Properties"]["MethodSettings"]
    assert 0 < plan["Throttle"]["RateLimit"] < stage_wide["ThrottlingRateLimit"]
    assert plan["Throttle"]["RateLimit"] <= plan["Throttle"]["BurstLimit"] < stage_wide["ThrottlingBurstLimit"]
    # the shared key of callers without a valid token exists with the stack
    anonymous = res["AnonymousApiKey"]["Properties"]
    assert anonymous["Value"] == {"Fn::Sub": quota.usage_key("${Stage}", None)} == anonymous["Name"]
    assert res["AnonymousUsagePlanKey"]["Properties"]["UsagePlanId"] == {"Ref": "AccountUsagePlan"}
    assert template["Outputs"]["UsagePlanId"] == {"Value": {"Ref": "AccountUsagePlan"}}
    # an account without a key is told so in the envelope, as a 503 (the operator's to fix)
    [no_key] = [r["Properties"] for r in res.values() if r["Type"] == "AWS::ApiGateway::GatewayResponse"
                and r["Properties"]["ResponseType"] == "INVALID_API_KEY"]
    assert no_key["StatusCode"] == "503" and "api.account_not_ready" in no_key["ResponseTemplates"]["application/json"]


def test_each_queue_exists_before_the_function_it_triggers(packaged: Path) -> None:
    res = json.loads((packaged / "template.json").read_text())["Resources"]
    expected = {"RunStep": "RunsQueue", "CheckHealth": "HealthQueue", "DeliverAlerts": "AlertsQueue",
                "CollectHandoffs": "CollectQueue", "BackfillAudience": "BackfillQueue"}
    for function, queue in expected.items():
        # the event source names the stage's queue by GetAtt: CloudFormation orders them by it
        [sqs] = [e for e in res[function]["Properties"]["Events"].values() if e["Type"] == "SQS"]
        assert sqs["Properties"]["Queue"] == {"Fn::GetAtt": [queue, "Arn"]}, function
        assert res[queue]["Properties"]["QueueName"]["Fn::Sub"].startswith("switchyard-${Stage}-"), queue
    # The collect handler reports failed hand-offs one by one (the rest of its job's group after them).
    [event] = res["CollectHandoffs"]["Properties"]["Events"].values()
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    [event] = res["RunStep"]["Properties"]["Events"].values()
    assert "FunctionResponseTypes" not in event["Properties"]
    assert "DependsOn" not in res["APIHandler"]


def test_only_the_alerts_and_collect_workers_report_partial_batch_failures(packaged: Path) -> None:
    # The alerts and collect workers answer with batchItemFailures (one failed record is
    # redelivered alone); the run and health workers succeed or fail whole, so Lambda must not
    # read an answer.
    res = json.loads((packaged / "template.json").read_text())["Resources"]

    def response_types(function: str) -> list[str] | None:
        [sqs] = [e for e in res[function]["Properties"]["Events"].values() if e["Type"] == "SQS"]
        return sqs["Properties"].get("FunctionResponseTypes")

    assert response_types("DeliverAlerts") == ["ReportBatchItemFailures"]
    assert response_types("CollectHandoffs") == ["ReportBatchItemFailures"]
    assert response_types("RunStep") is None and response_types("CheckHealth") is None


def test_the_profiles_stream_handler_reads_the_tables_stream_and_reports_partial_failures(packaged: Path) -> None:
    # The handler names a placeholder ARN (Chalice wants a literal at import); the merge
    # template gives its event source the profiles table's StreamArn.
    res = json.loads((packaged / "template.json").read_text())["Resources"]
    [event] = res["ProfileChanges"]["Properties"]["Events"].values()
    assert event["Type"] == "DynamoDB"
    props = event["Properties"]
    assert props["Stream"] == {"Fn::GetAtt": ["ProfilesTable", "StreamArn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["StartingPosition"] == "TRIM_HORIZON" and props["MaximumRetryAttempts"] > 0
    assert res["ProfilesTable"]["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    # and the backfill queue exists before the function it triggers (its event source names it by GetAtt)
    [sqs] = [e for e in res["BackfillAudience"]["Properties"]["Events"].values() if e["Type"] == "SQS"]
    assert sqs["Properties"]["Queue"] == {"Fn::GetAtt": ["BackfillQueue", "Arn"]}
    # as does the real-time queue; its worker succeeds or fails whole (one nudge per message)
    [event] = res["DeliverRealtime"]["Properties"]["Events"].values()
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["RealtimeQueue", "Arn"]}
    assert "FunctionResponseTypes" not in event["Properties"]


def test_checkov_finds_nothing_unexplained(packaged: Path) -> None:
    requires.path(CHECKOV, "checkov", "run `make checkov` (make test does): it installs it into .venv-checkov")
    # GIVEN the merged template; WHEN checkov runs with the repo's .checkov.yaml
    done = subprocess.run([str(CHECKOV), "--config-file", str(ROOT / ".checkov.yaml"), "-f",
                           str(packaged / "template.json"), "-o", "json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    report = json.loads(done.stdout)
    results = report["results"]
    failed = [f"{r['check_id']} {r['resource']}" for r in results["failed_checks"]]
    # THEN nothing failed, and each skipped finding carries a reason
    assert done.returncode == 0 and not failed, failed
    assert results["passed_checks"], "checkov checked nothing"
    for skipped in results["skipped_checks"]:
        reason = (skipped.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason) > 20, skipped["check_id"]


def test_every_function_points_at_the_uploaded_code(packaged: Path) -> None:
    from infra.deploy import with_code_location

    template = json.loads((packaged / "template.json").read_text())
    moved = with_code_location(template, "bucket", "prod/abc.zip")
    functions = [r for r in moved["Resources"].values() if r["Type"] == "AWS::Serverless::Function"]
    assert len(functions) >= 8
    assert all(f["Properties"]["CodeUri"] == {"Bucket": "bucket", "Key": "prod/abc.zip"} for f in functions)
    assert "./deployment.zip" not in json.dumps(moved)


def test_every_function_enters_through_app_py_so_its_middleware_runs(packaged: Path) -> None:
    # A blueprint handler named by its own module would skip app.py: no middleware (the
    # invocation's log ids, the cold start's collector) in that Lambda.
    import app

    template = json.loads((packaged / "template.json").read_text())
    handlers = sorted(r["Properties"]["Handler"] for r in template["Resources"].values()
                      if r["Type"] == "AWS::Serverless::Function")
    assert "app.app" in handlers and "app.run_step" in handlers and "app.token_authorizer" in handlers
    assert all(h.startswith("app.") for h in handlers), handlers
    for handler in handlers:
        entry = getattr(app, handler.removeprefix("app."))
        assert callable(entry), handler
    # the exported worker handler is the one the app wired its middleware into
    from chalicelib import coldstart, logs

    assert app.run_step is app.app.handler_map["run_step"]
    assert {(coldstart.middleware, "all"), (logs.middleware, "all")} <= set(app.app.middleware_handlers)


# -- make deploy, against moto ----------------------------------------------------------

# moto's CloudFormation has no SAM transform, no Lambda or CloudFront resources, and fails
# on outputs that name them: those resources are left out of the stack it gets, and the
# distribution is created by API beforehand (what CloudFormation would have made).
MOTO_CANNOT = ("AWS::Serverless::", "AWS::Lambda::", "AWS::CloudFront::")


def for_moto(template: dict[str, Any], distribution_id: str) -> dict[str, Any]:
    t = json.loads(json.dumps(template))
    t.pop("Transform", None)
    gone = {k for k, v in t["Resources"].items() if v["Type"].startswith(MOTO_CANNOT)}
    for name in gone:
        del t["Resources"][name]

    def names_gone(value: Any) -> bool:
        """Whether a Ref, GetAtt or Sub in `value` names a resource left out."""
        if isinstance(value, list):
            return any(names_gone(v) for v in value)
        if not isinstance(value, dict):
            return False
        if value.get("Ref") in gone:
            return True
        if "Fn::GetAtt" in value and value["Fn::GetAtt"][0] in gone:
            return True
        sub = value.get("Fn::Sub")
        text = sub if isinstance(sub, str) else (sub[0] if isinstance(sub, list) else "")
        if any("${" + n + "}" in text or "${" + n + "." in text for n in gone):
            return True
        return any(names_gone(v) for v in value.values())

    # the bucket policy names the distribution; the gateway responses and the usage plan name
    # the API, and the plan's key names the plan: left out until nothing names a gone one
    dependents = ("AWS::S3::BucketPolicy", "AWS::ApiGateway::GatewayResponse", "AWS::ApiGateway::UsagePlan",
                  "AWS::ApiGateway::UsagePlanKey")
    while True:
        more = {name for name, resource in t["Resources"].items() if names_gone(resource)}
        if not more:
            break
        for name in more:
            assert t["Resources"][name]["Type"] in dependents, name
            del t["Resources"][name]
        gone |= more
    for name in list(t["Outputs"]):
        if names_gone(t["Outputs"][name]):
            del t["Outputs"][name]
    t["Outputs"]["DistributionId"] = {"Value": distribution_id}
    return t


@pytest.fixture()
def moto_env() -> Iterator[dict[str, str]]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "SWITCHYARD_"))}
    env.update({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "deploy",
                "AWS_SECRET_ACCESS_KEY": "deploy", "AWS_DEFAULT_REGION": "us-east-1"})
    yield env
    server.stop()


def _client(env: dict[str, str], service: str) -> Any:
    return boto3.client(service, endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id="deploy", aws_secret_access_key="deploy")


def test_make_deploy_creates_then_updates_the_stack_and_publishes_the_spa(
        packaged: Path, moto_env: dict[str, str], tmp_path: Path) -> None:
    # GIVEN a distribution (moto's CloudFormation cannot make one) and the packaged stage
    cloudfront = _client(moto_env, "cloudfront")
    distribution_id = cloudfront.create_distribution(DistributionConfig={
        "CallerReference": "test", "Comment": "", "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [{"Id": "site", "DomainName": "site.s3.amazonaws.com",
                                              "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
        "DefaultCacheBehavior": {"TargetOriginId": "site", "ViewerProtocolPolicy": "redirect-to-https",
                                 "CachePolicyId": "658327ea-f89d-4fab-a63d-7e88639e58f6"}})["Distribution"]["Id"]
    dist = tmp_path / "dist"
    dist.mkdir()
    shutil.copy(packaged / "deployment.zip", dist)
    template = json.loads((packaged / "template.json").read_text())
    (dist / "template.json").write_text(json.dumps(for_moto(template, distribution_id)))
    # AND a built SPA (the shape of Vite's output)
    site = tmp_path / "site"
    (site / "assets").mkdir(parents=True)
    (site / "index.html").write_text('<script type="module" src="/assets/index-Bx1_a2C3.js"></script>')
    (site / "assets" / "index-Bx1_a2C3.js").write_text("console.log(1)")
    (site / "assets" / "index-D4e5F6g7.css").write_text("body{}")
    (site / "favicon.svg").write_text("<svg/>")

    def deploy() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "infra/deploy.py", "--stage", "prod", "--dist", str(dist),
                               "--site", str(site)], cwd=ROOT, env=moto_env, capture_output=True,
                              text=True, timeout=300)

    # WHEN make deploy's script runs
    first = deploy()
    assert first.returncode == 0, first.stdout + first.stderr
    # THEN the stack exists with the stateful resources and one role per function
    cfn = _client(moto_env, "cloudformation")
    stack = cfn.describe_stacks(StackName="switchyard-prod")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert "stack switchyard-prod: created" in first.stdout
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs["TableName"] == "switchyard-prod-main"
    _client(moto_env, "dynamodb").describe_table(TableName="switchyard-prod-profiles")
    logical = {r["LogicalResourceId"] for r in cfn.list_stack_resources(StackName="switchyard-prod")
               ["StackResourceSummaries"]}
    assert {"ApiHandlerRole", "RunStepRole", "CheckHealthRole", "HealthSweepRole", "PurgeJobsRole",
            "DeliverAlertsRole", "EvaluateAlertRulesRole", "TokenAuthorizerRole", "SiteBucket"} <= logical
    # AND the code is in the artifact bucket under its hash
    s3 = _client(moto_env, "s3")
    artifacts = [o["Key"] for o in s3.list_objects_v2(Bucket="switchyard-artifacts-123456789012-us-east-1")
                 .get("Contents", [])]
    assert any(k.startswith("prod/") and k.endswith(".zip") for k in artifacts), artifacts
    # AND the SPA is in the site bucket with its content types and cache headers
    bucket = outputs["SiteBucketName"]
    expected = {"index.html": ("text/html; charset=utf-8", "no-cache"),
                "favicon.svg": ("image/svg+xml", "no-cache"),
                "assets/index-Bx1_a2C3.js": ("text/javascript; charset=utf-8", "public, max-age=31536000, immutable"),
                "assets/index-D4e5F6g7.css": ("text/css; charset=utf-8", "public, max-age=31536000, immutable")}
    for key, (ctype, cache) in expected.items():
        head = s3.head_object(Bucket=bucket, Key=key)
        assert (head["ContentType"], head["CacheControl"]) == (ctype, cache), key
    # AND CloudFront was told to drop what it cached
    invalidations = cloudfront.list_invalidations(DistributionId=distribution_id)["InvalidationList"]
    assert invalidations["Quantity"] == 1

    # WHEN it runs again with a changed template and a new build of the SPA
    changed = json.loads((dist / "template.json").read_text())
    changed["Outputs"]["Build"] = {"Value": "2"}
    (dist / "template.json").write_text(json.dumps(changed))
    (site / "index.html").write_text("<p>v2</p>")
    second = deploy()
    # THEN it is an update, not a failure, and the new index is live
    assert second.returncode == 0, second.stdout + second.stderr
    assert "stack switchyard-prod: updated" in second.stdout
    stack = cfn.describe_stacks(StackName="switchyard-prod")["Stacks"][0]
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    assert {"OutputKey": "Build", "OutputValue": "2"} in [
        {k: o[k] for k in ("OutputKey", "OutputValue")} for o in stack["Outputs"]]
    assert s3.get_object(Bucket=bucket, Key="index.html")["Body"].read() == b"<p>v2</p>"
    assert cloudfront.list_invalidations(DistributionId=distribution_id)["InvalidationList"]["Quantity"] == 2
    # AND a third run with nothing changed is "unchanged", still a success
    third = deploy()
    assert third.returncode == 0, third.stdout + third.stderr
    assert "stack switchyard-prod: unchanged" in third.stdout


def test_deploy_refuses_without_a_package(moto_env: dict[str, str], tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "infra/deploy.py", "--dist", str(tmp_path), "--site", str(tmp_path)],
                          cwd=ROOT, env=moto_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "run `make package` and `make web` first" in done.stderr


def _policy_resources(template: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(role, statement sid, resource) of every statement of every IAM role's inline policies."""
    found = []
    for name, r in template["Resources"].items():
        if r["Type"] != "AWS::IAM::Role":
            continue
        for policy in r["Properties"].get("Policies", []):
            for st in policy["PolicyDocument"]["Statement"]:
                resources = st.get("Resource", [])
                for res in resources if isinstance(resources, list) else [resources]:
                    found.append((name, st.get("Sid", ""), res))
    return found


def test_policy_resources_name_the_stacks_region_and_account(packaged: Path) -> None:
    template = json.loads((packaged / "template.json").read_text())
    found = _policy_resources(template)
    assert len(found) > 20  # the functions' roles are there (not a vacuous pass)
    # THEN no resource is left open to any region or account, except the customers' roles,
    # which live in any account by design (their trust policy and external id decide)
    for role, sid, res in found:
        if isinstance(res, dict) and set(res) <= {"Fn::GetAtt", "Ref"}:
            continue  # a resource of this stack: pinned by construction
        text = res["Fn::Sub"] if isinstance(res, dict) else res
        if sid in ("AssumeCustomerRoles", "NoRolesOfOwnAccount"):
            assert text == "arn:aws:iam::*:role/*"
            continue
        if res == "*":  # actions that take no resource (e.g. cloudwatch:PutMetricData)
            continue
        assert isinstance(res, dict) and set(res) == {"Fn::Sub"}, (role, sid, res)
        assert text.startswith("arn:${AWS::Partition}:"), (role, sid, text)
        service, rest = text.removeprefix("arn:${AWS::Partition}:").split(":", 1)
        if service == "iam":
            assert rest.startswith(":${AWS::AccountId}:"), (role, sid, text)
        else:
            assert rest.startswith("${AWS::Region}:${AWS::AccountId}:"), (role, sid, text)
    # AND the committed per-function files (what the pinning starts from) name the stage
    tables = [res for _, sid, res in found if sid == "Tables"]
    assert all("switchyard-prod-" in r["Fn::Sub"] for r in tables)
