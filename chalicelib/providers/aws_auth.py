"""AWS credentials shared by the AWS providers (S3, Kinesis, SQS).

Two authorization methods, the same for every AWS service:

* `access_keys` — an IAM user's key pair in the account that owns the data;
* `assume_role` — Switchyard's own identity calls sts:AssumeRole on a role in the
  customer's account, with the external id the role's trust policy requires.

Each provider declares its own credentials models, composed from the bases here plus the
resource its health check may verify (S3 `bucket`, Kinesis `stream_name`, SQS `queue_url`):

    class AccessKeys(AccessKeysBase):
        bucket: Bucket | None = Field(None, description=...)

`session()` turns credentials into the identity clients are built with. Assumed-role
credentials are cached per process until `REFRESH_MARGIN` before they expire, so the
steps of a run (and every job using the role) share one AssumeRole; a health check always
assumes again (`fresh=True`), since it must notice a trust policy the customer revoked.

Import-time cost: pydantic models only.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import Field, SecretStr
from pydantic.config import JsonDict

from chalicelib.domain.catalog import AuthMethodSpec
from chalicelib.domain.models import CheckResult, HealthStatus
from chalicelib.providers.base import ProviderError, mask
from chalicelib.providers.calls import AwsIdentity, CallCounter, aws_client
from chalicelib.providers.models import StrictModel

REGION_PATTERN = r"^[a-z]{2}(-[a-z]+)+-\d$"
ROLE_ARN_PATTERN = r"^arn:aws[a-z\-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_\-/]+$"
SECRET: JsonDict = {"x-secret": True}
METHODS = ("access_keys", "assume_role")

SESSION_SECONDS = 3600  # what any role allows (MaxSessionDuration >= 1 h; role chaining caps at 1 h)
REFRESH_MARGIN = 300  # assume again when less than this is left: a step never outlives its session
CACHE_SIZE = 512  # roles remembered per process (least recently used go first)

# The clock assumed-role expiry is compared with (tests move it).
now: Callable[[], float] = time.time


class AccessKeysBase(StrictModel):
    """Long-lived IAM access keys of a user in the account that owns the data."""

    access_key_id: str = Field(
        pattern=r"^(AKIA|ASIA)[A-Z0-9]{16}$", description="Access key ID (AKIA...)"
    )
    secret_access_key: SecretStr = Field(
        min_length=16, max_length=128, description="Secret access key", json_schema_extra=SECRET
    )
    region: str = Field("us-east-1", pattern=REGION_PATTERN, description="AWS region")


class AssumeRoleBase(StrictModel):
    """A role in the customer's account that trusts Switchyard's account, with an external id."""

    role_arn: str = Field(
        pattern=ROLE_ARN_PATTERN, max_length=2048, description="ARN of the role to assume"
    )
    external_id: SecretStr = Field(
        min_length=2,
        max_length=1224,
        description="External ID required by the role's trust policy",
        json_schema_extra=SECRET,
    )
    region: str = Field("us-east-1", pattern=REGION_PATTERN, description="AWS region")


def auth_methods(
    keys: type[AccessKeysBase], role: type[AssumeRoleBase]
) -> tuple[AuthMethodSpec, AuthMethodSpec]:
    """The two AWS methods of a provider, with that provider's credentials models."""
    return (
        AuthMethodSpec(
            id="access_keys",
            name="AWS access keys",
            description="An IAM user's access key pair.",
            credentials_model=keys,
        ),
        AuthMethodSpec(
            id="assume_role",
            name="AWS assume role",
            description="Switchyard assumes a role in your account, with an external id.",
            credentials_model=role,
        ),
    )


def hint(method: str, credentials: Any) -> str:
    """The masked access key id, or the role ARN (not a secret; the external id is)."""
    if method == "access_keys":
        return mask(credentials.access_key_id)
    return str(credentials.role_arn)


# -- errors -------------------------------------------------------------------------------------

# botocore error codes -> what a user should read, and whether waiting helps.
AUTH_CODES = {
    "InvalidClientTokenId": "the access key id is not valid",
    "SignatureDoesNotMatch": "the secret access key does not match the access key id",
    "InvalidAccessKeyId": "the access key id is not valid",
    "ExpiredToken": "the credentials have expired",
    "ExpiredTokenException": "the credentials have expired",
    "UnrecognizedClientException": "the credentials were not recognised",
}
_EXPIRED = {"ExpiredToken", "ExpiredTokenException"}
TRANSIENT_CODES = {
    "Throttling",
    "ThrottlingException",
    "SlowDown",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    # Kinesis
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "InternalFailure",
    "InternalFailureException",
    "KMSThrottlingException",
    "ResourceInUseException",  # the stream is being created or updated
    # SQS
    "RequestThrottled",
    "KmsThrottled",
    "AWS.SimpleQueueService.RequestThrottled",
}
DENIED_CODES = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "AccessDeniedException"}
# A secret key, a session token or a signature: never copied from an AWS message.
_TOKENISH = re.compile(r"[A-Za-z0-9/+=]{40,}")
WORDS_MAX = 300
_XML_MESSAGE = re.compile(r"<Message>(.*?)</Message>", re.S)


def error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """One line of AWS's words, without anything that looks like a credential (and without
    the given secrets)."""
    text = " ".join(str(text or "").split())
    for secret in secrets:
        if secret:
            text = text.replace(secret, "…")
    return _TOKENISH.sub("…", text)[:WORDS_MAX]


def aws_words(exc: Exception, secrets: Iterable[str] = ()) -> str:
    """AWS's own message for an error, scrubbed."""
    response = getattr(exc, "response", None) or {}
    text = str(response.get("Error", {}).get("Message", "") or "")
    # An XML error body botocore could not parse (e.g. a query-style answer to a JSON API):
    # its <Message> is the message.
    inner = _XML_MESSAGE.search(text)
    return scrub(inner.group(1) if inner else text, secrets)


def classify(
    exc: Exception,
    what: str,
    *,
    missing: Iterable[str] = (),
    field: str | None = None,
    words: bool = False,
    secrets: Iterable[str] = (),
) -> ProviderError:
    """A botocore error as the reason a user reads.

    `missing`: the codes that mean `what` does not exist (on config field `field`).
    `words`: quote AWS's message for missing and denied resources (never for credential
    errors, whose messages may echo what was signed).
    """
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        said = aws_words(exc, secrets) if words else ""
        tag = f"{code or status}: {said}" if said else f"{code or status}"
        if code in AUTH_CODES:
            return ProviderError(f"{AUTH_CODES[code]} ({code})", auth=True)
        if code in set(missing):
            return ProviderError(f"{what} does not exist ({tag})", field=field)
        if code in DENIED_CODES:
            return ProviderError(f"missing permission: access to {what} was denied ({tag})", auth=True)
        if code in TRANSIENT_CODES or status >= 500 or status == 429:
            return ProviderError(f"AWS is unavailable right now ({code or status})", transient=True)
        return ProviderError(f"{what}: {tag}")
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)):
        return ProviderError("unreachable: AWS did not answer in time", transient=True)
    # Anything else from botocore (no credentials of our own, bad local config) is ours.
    return ProviderError(f"Switchyard could not call AWS ({type(exc).__name__})", transient=True)


# -- sessions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AwsSession:
    """Whose identity a provider's calls use, and how their errors read."""

    method: str
    identity: AwsIdentity
    counter: CallCounter | None = None
    cache_key: str | None = None  # set when the identity came from an assumed role

    def client(self, service: str) -> Any:
        return aws_client(self.identity, service, self.counter)

    def error(self, exc: Exception, what: str, **kw: Any) -> ProviderError:
        """classify(), and forget a cached role session that AWS refused."""
        code = error_code(exc)
        if self.cache_key is not None and code in AUTH_CODES:
            _forget(self.cache_key)
            if code in _EXPIRED:
                # Our cached session, not the customer's role: assume again on the retry.
                return ProviderError(f"the role's session expired ({code}); renewed on retry",
                                     transient=True)
        secrets = [s for s in (self.identity.secret_access_key, self.identity.session_token) if s]
        return classify(exc, what, secrets=[*secrets, *kw.pop("secrets", ())], **kw)


_cache: OrderedDict[str, tuple[float, dict[str, str]]] = OrderedDict()
_cache_lock = threading.Lock()


def _key(creds: Any) -> str:
    # The external id is a secret: the key holds a digest of it, never the value.
    text = f"{creds.role_arn}\x1f{creds.external_id.get_secret_value()}"
    return hashlib.sha256(text.encode()).hexdigest()


def _cached(key: str) -> dict[str, str] | None:
    with _cache_lock:
        found = _cache.get(key)
        if found is None:
            return None
        expires_at, value = found
        if now() >= expires_at - REFRESH_MARGIN:
            del _cache[key]
            return None
        _cache.move_to_end(key)
        return value


def _remember(key: str, expires_at: float, value: dict[str, str]) -> None:
    with _cache_lock:
        _cache[key] = (expires_at, value)
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)


def _forget(key: str) -> None:
    with _cache_lock:
        _cache.pop(key, None)


def forget(credentials: Any) -> None:
    """Drop the cached session of these assume-role credentials (rotation, revocation)."""
    if hasattr(credentials, "role_arn"):
        _forget(_key(credentials))


def reset() -> None:
    """Forget every cached role session (calls.reset() does this when the endpoint moves)."""
    with _cache_lock:
        _cache.clear()


def session(method: str, credentials: Any, counter: CallCounter | None = None, *,
            fresh: bool = False) -> AwsSession:
    """The identity these credentials give. Raises ProviderError when a role cannot be
    assumed (transient when STS refused Switchyard's own identity, not the customer's role)."""
    if method == "access_keys":
        return AwsSession(method, AwsIdentity(
            access_key_id=credentials.access_key_id,
            secret_access_key=credentials.secret_access_key.get_secret_value(),
            region=credentials.region,
        ), counter)
    key = _key(credentials)
    found = None if fresh else _cached(key)
    if found is None:
        expires_at, found = _assume(credentials, counter)
        _remember(key, expires_at, found)
    return AwsSession(method, AwsIdentity(
        access_key_id=found["AccessKeyId"],
        secret_access_key=found["SecretAccessKey"],
        session_token=found["SessionToken"],
        region=credentials.region,
    ), counter, cache_key=key)


def _assume(creds: Any, counter: CallCounter | None) -> tuple[float, dict[str, str]]:
    from botocore.exceptions import BotoCoreError, ClientError

    # Switchyard's own identity (no keys given) asks STS for short-lived credentials.
    sts = aws_client(AwsIdentity(region=creds.region), "sts", counter)
    try:
        resp = sts.assume_role(
            RoleArn=creds.role_arn,
            RoleSessionName="switchyard",
            ExternalId=creds.external_id.get_secret_value(),
            DurationSeconds=SESSION_SECONDS,
        )
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) in AUTH_CODES:
            # STS refused *Switchyard's* identity: our outage, not the customer's fault.
            raise ProviderError(
                f"Switchyard could not authenticate to AWS STS ({error_code(exc)})", transient=True
            ) from None
        raise classify(exc, f"role {creds.role_arn}") from None
    c = resp["Credentials"]
    expiration = c.get("Expiration")
    expires_at = expiration.timestamp() if expiration is not None else now() + SESSION_SECONDS
    return expires_at, {k: str(c[k]) for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}


def verify(method: str, credentials: Any,
           counter: CallCounter | None = None) -> tuple[AwsSession, str] | CheckResult:
    """The first half of every AWS check: the identity answers STS GetCallerIdentity.

    Returns (session, AWS account id), or an unhealthy CheckResult; raises a transient
    ProviderError when nothing can be concluded."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        sess = session(method, credentials, counter, fresh=True)
        identity = sess.client("sts").get_caller_identity()
    except ProviderError as exc:
        if exc.transient:
            raise
        return CheckResult(HealthStatus.UNHEALTHY, exc.reason)
    except (ClientError, BotoCoreError) as exc:
        err = classify(exc, "AWS STS")
        if err.transient:
            raise err from None
        return CheckResult(HealthStatus.UNHEALTHY, err.reason)
    return sess, str(identity["Account"])


__all__ = [
    "METHODS",
    "AccessKeysBase",
    "AssumeRoleBase",
    "AwsSession",
    "auth_methods",
    "classify",
    "forget",
    "hint",
    "reset",
    "session",
    "verify",
]
