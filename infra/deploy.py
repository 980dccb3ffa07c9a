"""`make deploy STAGE=prod`: CloudFormation deploy of dist/ (from `make package`) and the SPA.

    python infra/deploy.py [--stage prod] [--dist dist] [--site web/dist] [--stack-name NAME]

Needs only AWS credentials (boto3's usual chain: environment, profile, SSO...) and a region
(AWS_REGION / AWS_DEFAULT_REGION / the profile's, us-east-1 otherwise). What
`aws cloudformation package && aws cloudformation deploy` would do, with boto3 so that the
AWS CLI is not required:

1. an artifact bucket `switchyard-artifacts-<account>-<region>` (private, encrypted, old
   artifacts expire after 30 days) gets the deployment zip under a content hash, so an
   unchanged build is an unchanged template;
2. the template's functions point at that object, the template goes to the bucket too (it is
   over the 51,200-byte inline limit), and the stack `switchyard-<stage>` is created or
   updated and waited for; "no changes" is a success; the outputs are printed;
3. the SPA (`web/dist`) goes to the stack's SiteBucket: hashed assets first with a year of
   immutable caching, then index.html (and any other file) with `no-cache`, so a browser never
   gets an index that names assets not uploaded yet;
4. a CloudFront invalidation of `/*` so the edge drops the previous index.html.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mimetypes
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
ARTIFACT_DAYS = 30

# Vite names what it fingerprints `name-<hash>.ext` under assets/: those never change.
HASHED = re.compile(r"^assets/.+-[A-Za-z0-9_-]{8,}\.[a-z0-9]+$")
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# mimetypes reads /etc/mime.types when present: fix the few the SPA needs whatever the host.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}


class DeployError(Exception):
    pass


def content_type(path: str) -> str:
    suffix = Path(path).suffix.lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(path)[0] or "application/octet-stream"


def cache_control(key: str) -> str:
    return IMMUTABLE if HASHED.match(key) else REVALIDATE


def site_files(site: Path) -> list[tuple[str, Path]]:
    """(key, file) in upload order: hashed assets, then the rest, index.html last."""
    files = sorted((p.relative_to(site).as_posix(), p) for p in site.rglob("*") if p.is_file())
    return sorted(files, key=lambda kf: (not HASHED.match(kf[0]), kf[0] == "index.html", kf[0]))


def with_code_location(template: dict[str, Any], bucket: str, key: str) -> dict[str, Any]:
    """The template with every function's local CodeUri replaced by the uploaded artifact."""
    out: dict[str, Any] = json.loads(json.dumps(template))
    for resource in out.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            props = resource.setdefault("Properties", {})
            if isinstance(props.get("CodeUri"), str):
                props["CodeUri"] = {"Bucket": bucket, "Key": key}
    return out


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Deployer:
    def __init__(self, session: Any, stage: str, stack_name: str, log: Any = print) -> None:
        self.session = session
        self.stage = stage
        self.stack_name = stack_name
        self.log = log
        self.region = session.region_name or "us-east-1"
        self.s3 = session.client("s3", region_name=self.region)
        self.cfn = session.client("cloudformation", region_name=self.region)

    # -- artifacts ---------------------------------------------------------------------
    def artifact_bucket(self) -> str:
        from botocore.exceptions import ClientError

        account = self.session.client("sts", region_name=self.region).get_caller_identity()["Account"]
        name = f"switchyard-artifacts-{account}-{self.region}"
        try:
            self.s3.head_bucket(Bucket=name)
            return name
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
        self.log(f"creating artifact bucket {name}")
        create: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":
            create["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self.s3.create_bucket(**create)
        self.s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True,
            "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
        self.s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        # Lambda copies the code at deploy time: old zips and templates are only rollback aids.
        self.s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": [{
            "ID": "old-artifacts", "Status": "Enabled", "Filter": {"Prefix": ""},
            "Expiration": {"Days": ARTIFACT_DAYS}}]})
        return name

    def upload_artifact(self, bucket: str, data: bytes, suffix: str) -> str:
        from botocore.exceptions import ClientError

        key = f"{self.stage}/{_sha256(data)}{suffix}"
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
            return key
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
        self.s3.put_object(Bucket=bucket, Key=key, Body=data, ServerSideEncryption="AES256")
        return key

    # -- stack -------------------------------------------------------------------------
    def _stack(self) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            stacks = self.cfn.describe_stacks(StackName=self.stack_name)["Stacks"]
        except ClientError as exc:
            if "does not exist" in str(exc):
                return None
            raise
        return stacks[0] if stacks else None

    def _failure_reasons(self) -> list[str]:
        events = self.cfn.describe_stack_events(StackName=self.stack_name)["StackEvents"]
        return [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}"
                for e in events if e.get("ResourceStatus", "").endswith("FAILED")][:10]

    def deploy_stack(self, template_url: str) -> tuple[str, dict[str, str]]:
        """Create or update the stack; returns ("created" | "updated" | "unchanged", outputs)."""
        from botocore.exceptions import ClientError, WaiterError

        args = {"StackName": self.stack_name, "TemplateURL": template_url,
                "Parameters": [{"ParameterKey": "Stage", "ParameterValue": self.stage}],
                "Capabilities": CAPABILITIES,
                "Tags": [{"Key": "switchyard:stage", "Value": self.stage}]}
        stack = self._stack()
        if stack is not None and stack["StackStatus"] == "ROLLBACK_COMPLETE":
            # A first create that failed: CloudFormation can only delete it. Its tables are
            # retained (DeletionPolicy), so deleting blindly would not be enough either.
            raise DeployError(f"stack {self.stack_name} is ROLLBACK_COMPLETE after a failed first create: "
                              "delete it (and any retained switchyard-<stage>-* tables left behind) and "
                              "deploy again; see docs/operations.md")
        try:
            if stack is None or stack["StackStatus"] == "DELETE_COMPLETE":
                self.log(f"creating stack {self.stack_name}")
                self.cfn.create_stack(**args)
                waiter, outcome = "stack_create_complete", "created"
            else:
                self.log(f"updating stack {self.stack_name}")
                try:
                    self.cfn.update_stack(**args)
                except ClientError as exc:
                    if "No updates are to be performed" not in str(exc):
                        raise
                    return "unchanged", self.outputs()
                waiter, outcome = "stack_update_complete", "updated"
            self.cfn.get_waiter(waiter).wait(StackName=self.stack_name,
                                             WaiterConfig={"Delay": 10, "MaxAttempts": 360})
        except WaiterError as exc:
            raise DeployError(f"stack {self.stack_name} did not complete: {exc}; "
                              + "; ".join(self._failure_reasons())) from exc
        return outcome, self.outputs()

    def outputs(self) -> dict[str, str]:
        stack = self._stack() or {}
        return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    # -- the SPA ----------------------------------------------------------------------
    def upload_site(self, site: Path, bucket: str) -> int:
        count = 0
        for key, path in site_files(site):
            self.s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(),
                               ContentType=content_type(key), CacheControl=cache_control(key))
            count += 1
        return count

    def invalidate(self, distribution_id: str) -> str:
        cloudfront = self.session.client("cloudfront", region_name="us-east-1")
        resp = cloudfront.create_invalidation(DistributionId=distribution_id, InvalidationBatch={
            "Paths": {"Quantity": 1, "Items": ["/*"]},
            "CallerReference": _sha256(f"{self.stack_name}:{_now()}".encode())[:32]})
        return str(resp["Invalidation"]["Id"])

    # -- everything --------------------------------------------------------------------
    def run(self, dist: Path, site: Path) -> dict[str, str]:
        template_path, artifact = dist / "template.json", dist / "deployment.zip"
        for needed in (template_path, artifact, site / "index.html"):
            if not needed.is_file():
                raise DeployError(f"{needed} is missing: run `make package` and `make web` first")
        bucket = self.artifact_bucket()
        code_key = self.upload_artifact(bucket, artifact.read_bytes(), ".zip")
        self.log(f"code: s3://{bucket}/{code_key}")
        template = with_code_location(json.loads(template_path.read_text()), bucket, code_key)
        body = json.dumps(template, indent=1).encode()
        template_key = self.upload_artifact(bucket, body, ".template.json")
        url = f"https://{bucket}.s3.{self.region}.amazonaws.com/{template_key}"
        outcome, outputs = self.deploy_stack(url)
        self.log(f"stack {self.stack_name}: {outcome}")
        for name in sorted(outputs):
            self.log(f"  {name} = {outputs[name]}")
        missing = [k for k in ("SiteBucketName", "DistributionId") if k not in outputs]
        if missing:
            raise DeployError(f"stack outputs {missing} are missing: is infra/edge.json merged?")
        uploaded = self.upload_site(site, outputs["SiteBucketName"])
        self.log(f"SPA: {uploaded} files to s3://{outputs['SiteBucketName']}")
        self.log(f"CloudFront invalidation {self.invalidate(outputs['DistributionId'])} of /*")
        if "SiteUrl" in outputs:
            self.log(f"open {outputs['SiteUrl']}")
        return outputs


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Deploy a Switchyard stage (see the module docstring).")
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--site", type=Path, default=ROOT / "web" / "dist")
    parser.add_argument("--stack-name", default=None)
    args = parser.parse_args(argv)
    import os

    import boto3

    # AWS_REGION (what Lambda and many CI systems set) first, then boto3's own chain.
    session = boto3.session.Session(region_name=os.environ.get("AWS_REGION") or None)
    deployer = Deployer(session, args.stage, args.stack_name or f"switchyard-{args.stage}")
    try:
        deployer.run(args.dist, args.site)
    except DeployError as exc:
        print(f"deploy failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
