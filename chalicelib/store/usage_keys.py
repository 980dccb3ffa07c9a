"""API Gateway usage-plan keys, one per Switchyard account (domain/quota.py)."""

from __future__ import annotations

from chalicelib.config import settings
from chalicelib.store import aws
from chalicelib.store.dynamo import error_code


class UsagePlanMissing(RuntimeError):
    """The stage names no usage plan (SWITCHYARD_USAGE_PLAN_ID): keys cannot be added."""


class UsageKeys:
    def ensure(self, value: str) -> str:
        """Make the API key `value` exist and belong to the stage's usage plan; returns its
        id. Two requests for a new key (create, attach); safe to repeat (a backfill, a
        retried bootstrap): an existing key is found by name and attached again."""
        plan = settings().usage_plan_id
        if not plan:
            raise UsagePlanMissing("SWITCHYARD_USAGE_PLAN_ID is not set: the stage has no usage plan")
        api = aws.client("apigateway")
        try:
            key_id = str(api.create_api_key(name=value, value=value, enabled=True)["id"])
        except Exception as exc:
            if error_code(exc) != "ConflictException":
                raise
            [key_id] = [k["id"] for k in api.get_api_keys(nameQuery=value)["items"] if k["name"] == value]
        try:
            api.create_usage_plan_key(usagePlanId=plan, keyId=key_id, keyType="API_KEY")
        except Exception as exc:
            if error_code(exc) != "ConflictException":  # already in the plan
                raise
        return key_id
