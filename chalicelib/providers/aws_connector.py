"""The base of the AWS connectors (S3, Kinesis, SQS): their credentials models and the health
check they all make. Sessions, error classification and the two authorization methods are
providers/aws_auth.py.

A connector names the one resource its check may reach (S3 `bucket`, Kinesis
`stream_name`, SQS `queue_url`: in the credentials, or the job's config when a replacement
authorization is checked against it) and says how to reach it:

    AccessKeys, AssumeRole = credentials_models(__name__, "bucket", Bucket, "a bucket")

    class S3Provider(AwsConnector):
        resource = "bucket"
        def reach(self, sess, name): ...          # one AWS call; how the reason names it
        def resource_error(self, sess, exc, name): ...
        def list_options(self, sess, field, params): ...
        def options_error(self, sess, exc, field, params): ...

Import-time cost: pydantic models only.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, create_model

from chalicelib.domain.catalog import ProviderSpec
from chalicelib.domain.models import CheckResult, HealthStatus
from chalicelib.providers import aws_auth
from chalicelib.providers.aws_auth import AccessKeysBase, AssumeRoleBase, AwsSession
from chalicelib.providers.base import Option, ProviderError
from chalicelib.providers.calls import AwsIdentity, CallCounter


def credentials_models(module: str, resource: str, annotation: Any,
                       what: str) -> tuple[type[AccessKeysBase], type[AssumeRoleBase]]:
    """A connector's two credentials models: the AWS bases, plus the optional resource
    (`what`: "a bucket") its health check verifies when it is given."""
    field: Any = (annotation | None,
                  Field(None, description=f"Optional: {what} the health check must be able to reach"))
    keys = create_model("AccessKeys", __base__=AccessKeysBase, __module__=module,
                        __doc__=f"IAM access keys (aws_auth), and {what} the health check may verify.",
                        **{resource: field})
    role = create_model("AssumeRole", __base__=AssumeRoleBase, __module__=module,
                        __doc__=f"A role to assume (aws_auth), and {what} the health check may verify.",
                        **{resource: field})
    return keys, role


class AwsConnector:
    """What every AWS connector does the same way: check, options, sessions, the hint."""

    spec: ProviderSpec
    resource: str  # the field naming what the check may reach

    def reach(self, sess: AwsSession, name: str) -> str:
        """Reach the resource with one AWS call; returns how the healthy reason names it.
        Raises botocore's errors, or ProviderError when it is there but unusable."""
        raise NotImplementedError

    def resource_error(self, sess: AwsSession, exc: Exception, name: str) -> ProviderError:
        """A botocore error met reaching the resource, as the user reads it."""
        raise NotImplementedError

    def list_options(self, sess: AwsSession, field: str, params: dict[str, str]) -> list[Option]:
        """The live choices of a config field (one of the spec's option fields). Raises
        botocore's errors, or ProviderError for what the user must choose first."""
        raise NotImplementedError

    def options_error(self, sess: AwsSession, exc: Exception, field: str, params: dict[str, str]) -> ProviderError:
        """A botocore error met listing the choices, as the user reads it."""
        raise NotImplementedError

    def check(
        self,
        method: str,
        credentials: Any,
        resources: dict[str, str],
        counter: CallCounter | None = None,
    ) -> CheckResult:
        from botocore.exceptions import BotoCoreError, ClientError

        name = resources.get(self.resource) or getattr(credentials, self.resource, None)
        # The resource is reached while STS answers: a refused identity still wins (its
        # reason, not the resource's), it only costs that one call.
        verified = aws_auth.verify(method, credentials, counter,
                                   (lambda sess: self.reach(sess, name)) if name else None)
        if isinstance(verified, CheckResult):
            return verified
        sess, account, reached = verified
        if not name or reached is None:
            return CheckResult(HealthStatus.HEALTHY, f"reaches AWS account {account}", provider_account=account)
        blamed: str | None = self.resource  # AWS refused the configured resource: fix it at its field
        try:
            named = reached.result()
        except (ClientError, BotoCoreError) as exc:
            err = self.resource_error(sess, exc, name)
        except ProviderError as exc:
            err, blamed = exc, None  # reached, but not usable as it is (a stream being deleted)
        else:
            return CheckResult(HealthStatus.HEALTHY, f"reaches AWS account {account} and {named}",
                               provider_account=account, resources={self.resource: name})
        if err.transient:
            raise err from None
        return CheckResult(HealthStatus.UNHEALTHY, err.reason, provider_account=account, resource=blamed)

    def options(
        self,
        method: str,
        credentials: Any,
        workflow: str,
        field: str,
        params: dict[str, str],
        counter: CallCounter | None = None,
    ) -> list[Option]:
        from botocore.exceptions import BotoCoreError, ClientError

        if field not in {f for wf in self.spec.workflows for f in wf.option_fields}:
            raise ProviderError(f"field {field!r} has no live options", field="field")
        sess = self.session(method, credentials, counter)
        try:
            return self.list_options(sess, field, params)
        except (ClientError, BotoCoreError) as exc:
            raise self.options_error(sess, exc, field, params) from None

    def session(self, method: str, credentials: Any, counter: CallCounter | None) -> AwsSession:
        """The session calls use (aws_auth.session: assumed roles are cached)."""
        return aws_auth.session(method, credentials, counter)

    def identity(self, method: str, credentials: Any, counter: CallCounter | None) -> AwsIdentity:
        return self.session(method, credentials, counter).identity

    def credential_hint(self, method: str, credentials: Any) -> str | None:
        return aws_auth.hint(method, credentials)


__all__ = ["AwsConnector", "credentials_models"]
