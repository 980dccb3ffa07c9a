"""Mailchimp (Marketing API 3.0): import list members as profiles, export audiences to a
list as tagged members. Docs: docs/providers/mailchimp.md.

Every request goes through the one HTTP layer (providers/http.py): retries, Retry-After,
the per-authorization rate limit, error classification, redaction and counting. The base
URL is the setting `mailchimp_base_url` with the account's data center in place of
`{dc}` (the local stack and tests point it at a fake). Import-time cost: pydantic models.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.config import JsonDict

from chalicelib.config import settings
from chalicelib.domain.catalog import AuthMethodSpec, JobType, ProviderSpec, Role, StepRef, WorkflowSpec
from chalicelib.domain.models import CheckResult, HealthStatus
from chalicelib.providers.base import Option, ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.models import StrictModel

if TYPE_CHECKING:
    from chalicelib.providers.http import HttpClient, HttpResponse

MergeRule = Literal["latest", "first", "append"]
SECRET: JsonDict = {"x-secret": True}
DC_PATTERN = r"^[a-z]{2,4}[0-9]{1,3}$"
_KEY = re.compile(r"^[A-Za-z0-9]{8,64}-([a-z]{2,4}[0-9]{1,3})$")
LIST_ID = r"^[A-Za-z0-9]{1,32}$"
FIELD_NAME = r"^[a-z][a-z0-9_]{0,63}$"
MERGE_TAG = r"^[A-Z0-9_]{1,10}$"  # Mailchimp merge tags: upper case, at most 10 characters
# Mailchimp limits concurrency (10 simultaneous connections per account) rather than a rate;
# 10 requests/s per authorization and container keeps one container well inside it.
RATE = 10.0


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id in a list: the MD5 of the lower-cased address."""
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()


class ApiKey(StrictModel):
    """A Mailchimp API key (Account → Extras → API keys); it ends with the data center."""

    api_key: SecretStr = Field(description="API key, e.g. 0123…cdef-us21", json_schema_extra=SECRET)

    @field_validator("api_key")
    @classmethod
    def _shape(cls, value: SecretStr) -> SecretStr:
        if not _KEY.match(value.get_secret_value().strip()):
            raise ValueError("must look like <key>-<data center>, e.g. …-us21 (the end of the key names the data center)")
        return SecretStr(value.get_secret_value().strip())

    @property
    def dc(self) -> str:
        match = _KEY.match(self.api_key.get_secret_value())
        return match.group(1) if match else ""


class OAuthToken(StrictModel):
    """An OAuth 2 access token (from the authorization flow; Mailchimp's never expire)."""

    access_token: SecretStr = Field(min_length=8, max_length=512, description="OAuth access token",
                                    json_schema_extra=SECRET)
    dc: str = Field(pattern=DC_PATTERN, description="Data center of the account (from /oauth2/metadata)")
    account_name: str | None = Field(None, max_length=200, description="Account name Mailchimp reported")


ListId = Annotated[str, Field(pattern=LIST_ID, description="Mailchimp list (audience) id")]

_APPEND: MergeRule = "append"
DEFAULT_IMPORT_MAPPING: dict[str, str | None] = {
    "FNAME": "first_name", "LNAME": "last_name", "status": "mailchimp_status", "tags": "mailchimp_tags",
}


class MailchimpImportConfig(StrictModel):
    list_id: ListId
    field_mapping: dict[
        Annotated[str, Field(min_length=1, max_length=128)],
        Annotated[str, Field(pattern=FIELD_NAME)] | None,
    ] = Field(default_factory=dict, max_length=200,
              description="Column -> profile field, over the defaults (FNAME -> first_name, LNAME -> "
                          "last_name, status -> mailchimp_status, tags -> mailchimp_tags); null drops a "
                          "column. Columns: email, status, tags and each merge tag (ADDRESS -> ADDRESS_city...)")
    merge_rules: dict[Annotated[str, Field(pattern=FIELD_NAME)], MergeRule] = Field(
        default_factory=lambda: {"mailchimp_tags": _APPEND}, max_length=200,
        description="Profile field -> latest | first | append (tags append by default)")
    incremental: bool = Field(True, description="Import only members changed since the last finished run")

    @model_validator(mode="after")
    def _defaults(self) -> MailchimpImportConfig:
        self.field_mapping = {**DEFAULT_IMPORT_MAPPING, **self.field_mapping}
        return self


class MailchimpExportConfig(StrictModel):
    audience_id: str = Field(min_length=1, max_length=64, description="Audience to export")
    list_id: ListId
    fields: dict[Annotated[str, Field(pattern=FIELD_NAME)], Annotated[str, Field(pattern=MERGE_TAG)]] = Field(
        default_factory=lambda: {"first_name": "FNAME", "last_name": "LNAME"}, max_length=30,
        description="Profile field -> merge tag of the list")
    tag: str = Field("switchyard", min_length=1, max_length=100,
                     description="Tag that marks the audience's members in the list")
    on_remove: Literal["remove_tag", "unsubscribe"] = Field(
        "remove_tag", description="What happens to members who leave the audience")
    double_opt_in: bool = Field(False, description="New members are 'pending' (Mailchimp sends a confirmation)")
    include_removals: bool = Field(True, description="Also act on members who left the audience")
    backfill: bool = Field(True, description="The first run sends every member; off: it only records them")

    @field_validator("fields")
    @classmethod
    def _no_email(cls, value: dict[str, str]) -> dict[str, str]:
        if "email" in value or "EMAIL" in value.values():
            raise ValueError("the email address is always sent; do not map it")
        return value


METHODS = ("api_key", "oauth")

SPEC = ProviderSpec(
    id="mailchimp",
    name="Mailchimp",
    description="Import list members as profiles; export audiences to a list as tagged members.",
    tags=("email", "marketing"),
    auth_methods=(
        AuthMethodSpec(id="api_key", name="API key",
                       description="A Mailchimp API key; its suffix names the data center.",
                       credentials_model=ApiKey),
        AuthMethodSpec(id="oauth", name="OAuth 2.0",
                       description="Connect with Mailchimp (GET /oauth/mailchimp/start).",
                       credentials_model=OAuthToken),
    ),
    workflows=(
        WorkflowSpec(id="mailchimp_import", name="Mailchimp list import", job_type=JobType.IMPORT,
                     step=StepRef(Role.SOURCE, "chalicelib.providers.mailchimp_import:MailchimpImport"),
                     description="Reads a list's members (incrementally) and upserts a profile per member.",
                     auth_methods=METHODS, config_model=MailchimpImportConfig,
                     resource_fields=("list_id",), option_fields=("list_id", "field_mapping")),
        WorkflowSpec(id="mailchimp_audience_export", name="Mailchimp audience export",
                     step=StepRef(Role.DESTINATION, "chalicelib.providers.mailchimp_export:MailchimpAudienceExport"),
                     job_type=JobType.EXPORT,
                     description="Keeps a list's members tagged with an audience's membership.",
                     auth_methods=METHODS, config_model=MailchimpExportConfig,
                     resource_fields=("list_id",), option_fields=("list_id", "fields", "tag")),
    ),
)


# -- the API client ----------------------------------------------------------------------------


class MailchimpApi:
    """Requests to one account, through the shared HTTP layer."""

    def __init__(self, method: str, credentials: Any, counter: CallCounter | None,
                 deadline: float | None = None) -> None:
        from chalicelib.providers.http import HttpClient, RateLimit, basic_auth_value

        if method == "api_key":
            key = credentials.api_key.get_secret_value()
            dc = credentials.dc
            auth = basic_auth_value("switchyard", key)
            secrets = [key, auth, auth.split(" ", 1)[1]]
        elif method == "oauth":
            token = credentials.access_token.get_secret_value()
            dc = credentials.dc
            auth = f"Bearer {token}"
            secrets = [token]
        else:
            raise ProviderError(f"Mailchimp has no authorization method {method!r}", field="method")
        self.base = settings().mailchimp_base_url.format(dc=dc).rstrip("/")
        self.http: HttpClient = HttpClient(
            "mailchimp", label="Mailchimp", secrets=secrets, counter=counter, deadline=deadline,
            headers={"Authorization": auth, "Accept": "application/json"},
            rate_limit=RateLimit(rate=RATE, burst=10),
        )

    def url(self, path: str, query: dict[str, Any] | None = None) -> str:
        q = {k: v for k, v in (query or {}).items() if v is not None}
        return self.base + path + ("?" + urllib.parse.urlencode(q) if q else "")

    def get(self, path: str, operation: str, query: dict[str, Any] | None = None) -> Any:
        return self.http.get(self.url(path, query), operation).json()

    def send(self, method: str, path: str, operation: str, body: Any, *,
             idempotent: bool | None = None) -> HttpResponse:
        return self.http.request(method, self.url(path), operation, json_body=body, idempotent=idempotent)


def list_label(doc: dict[str, Any]) -> str:
    return f"{doc.get('name') or doc.get('id')} ({doc.get('id')})"


# -- the provider ----------------------------------------------------------------------------------


class MailchimpProvider:
    spec = SPEC

    def api(self, method: str, credentials: Any, counter: CallCounter | None,
            deadline: float | None = None) -> MailchimpApi:
        return MailchimpApi(method, credentials, counter, deadline)

    def check(self, method: str, credentials: Any, resources: dict[str, str],
              counter: CallCounter | None = None) -> CheckResult:
        from chalicelib.providers.http import HttpError

        api = self.api(method, credentials, counter)
        try:
            api.get("/ping", "ping")
            root = api.get("/", "root", {"fields": "account_id,account_name"}) or {}
        except HttpError as exc:
            if exc.transient:
                raise
            return CheckResult(HealthStatus.UNHEALTHY, exc.reason)
        account = str(root.get("account_id") or "") or None
        name = root.get("account_name") or account
        checked: dict[str, str] = {}
        list_id = resources.get("list_id")
        if list_id:
            try:
                api.get(f"/lists/{list_id}", "lists.get", {"fields": "id,name"})
            except HttpError as exc:
                if exc.transient:
                    raise
                why = f"list {list_id!r} was not found in this Mailchimp account" if exc.status == 404 \
                    else exc.reason
                return CheckResult(HealthStatus.UNHEALTHY, why, provider_account=account, resource="list_id")
            checked["list_id"] = list_id
        return CheckResult(
            HealthStatus.HEALTHY,
            f"reaches Mailchimp account {name}" + (f" and list {list_id!r}" if list_id else ""),
            provider_account=account, resources=checked,
        )

    def options(self, method: str, credentials: Any, workflow: str, field: str, params: dict[str, str],
                counter: CallCounter | None = None) -> list[Option]:
        from chalicelib.providers.http import HttpError

        api = self.api(method, credentials, counter)
        try:
            if field == "list_id":
                doc = api.get("/lists", "lists.list", {"count": 1000, "fields": "lists.id,lists.name,total_items"})
                return [Option(value=x["id"], label=list_label(x)) for x in doc.get("lists") or []]
            list_id = params.get("list_id")
            if not list_id:
                raise ProviderError("choose a list first (list_id)", field="list_id")
            if field in ("fields", "field_mapping", "merge_fields"):
                doc = api.get(f"/lists/{list_id}/merge-fields", "merge_fields.list", {"count": 1000})
                return [Option(value=x["tag"], label=f"{x.get('name') or x['tag']} ({x['tag']})", kind=x.get("type"))
                        for x in doc.get("merge_fields") or []]
            if field in ("tag", "tags"):
                doc = api.get(f"/lists/{list_id}/tag-search", "tags.search", {"name": params.get("name") or None})
                return [Option(value=x["name"], label=x["name"], kind="tag") for x in doc.get("tags") or []]
        except HttpError as exc:
            if exc.status == 404 and field != "list_id":
                raise ProviderError(f"list {params.get('list_id')!r} was not found", field="list_id") from None
            raise
        raise ProviderError(f"field {field!r} has no live options", field="field")

    def credential_hint(self, method: str, credentials: Any) -> str | None:
        if method == "api_key":
            key = credentials.api_key.get_secret_value()
            return f"…{key.rsplit('-', 1)[0][-4:]}-{credentials.dc}"
        name = getattr(credentials, "account_name", None)
        return f"OAuth ({name}, {credentials.dc})" if name else f"OAuth ({credentials.dc})"


PROVIDER = MailchimpProvider()

__all__ = ["PROVIDER", "SPEC", "ApiKey", "MailchimpApi", "MailchimpExportConfig", "MailchimpImportConfig",
           "MailchimpProvider", "OAuthToken", "subscriber_hash"]
