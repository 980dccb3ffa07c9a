"""Secrets Manager: one secret per authorization, referenced by name, never copied elsewhere."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from chalicelib.config import settings
from chalicelib.store import aws
from chalicelib.store.dynamo import error_code

RECOVERY_WINDOW_DAYS = 7


class SecretMissing(LookupError):
    """No secret of that name."""


class SecretUnreadable(RuntimeError):
    """Secrets Manager refused or failed the read for another reason (the secret marked for
    deletion, access, throttling, an outage): nothing can be concluded about its value."""


class SecretsStore:
    def name_for(self, account_id: str, auth_id: str) -> str:
        return f"{settings().secret_prefix}/{account_id}/{auth_id}"

    @property
    def client(self) -> Any:
        return aws.client("secretsmanager")

    def create(self, name: str, value: dict[str, Any], *, tags: dict[str, str]) -> None:
        self.client.create_secret(
            Name=name,
            SecretString=json.dumps(value),
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )

    def read(self, name: str) -> dict[str, Any]:
        resp = self.client.get_secret_value(SecretId=name)
        value: dict[str, Any] = json.loads(resp["SecretString"])
        return value

    def read_known(self, name: str) -> dict[str, Any]:
        """`read`, with Secrets Manager's refusals as this module's two errors, so a caller
        tells "not configured" from "not readable now" without botocore."""
        from botocore.exceptions import ClientError

        try:
            return self.read(name)
        except ClientError as exc:
            code = error_code(exc)
            if code == "ResourceNotFoundException":
                raise SecretMissing(name) from None
            raise SecretUnreadable(f"{name}: {code}") from None

    def put_version(self, name: str, value: dict[str, Any]) -> str:
        """Rotation: new credentials become the current version; the old one stays as AWSPREVIOUS."""
        resp = self.client.put_secret_value(SecretId=name, SecretString=json.dumps(value))
        return str(resp["VersionId"])

    def schedule_deletion(self, name: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.delete_secret(SecretId=name, RecoveryWindowInDays=RECOVERY_WINDOW_DAYS)
        except ClientError as exc:
            # Already gone or already scheduled: the goal is reached.
            if error_code(exc) not in ("ResourceNotFoundException", "InvalidRequestException"):
                raise

    def delete_now(self, name: str) -> None:
        """Undo a secret created for an authorization whose item could not be written."""
        from botocore.exceptions import ClientError

        with contextlib.suppress(ClientError):
            self.client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
