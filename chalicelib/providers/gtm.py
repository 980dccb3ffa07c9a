"""Google Tag Manager (Tag Manager API v2): install the Switchyard web tag as a Custom HTML
tag in a container workspace and create (optionally publish) a container version.
Docs: docs/providers/gtm.md.

Every request goes through the one HTTP layer (providers/http.py). The API base is the
setting `gtm_base_url` (tests and the local stack point it at a fake). Authorization is
OAuth 2.0 only (services/oauth.py); an access token near expiry is refreshed when the
credentials are loaded (services/credentials.py), so this module always gets a live one.
Import-time cost: pydantic models.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import TYPE_CHECKING, Any

from pydantic import Field, SecretStr
from pydantic.config import JsonDict

from chalicelib.config import settings
from chalicelib.domain.catalog import AuthMethodSpec, JobType, ProviderSpec, Role, StepRef, WorkflowSpec
from chalicelib.domain.models import CheckResult, HealthStatus
from chalicelib.providers.base import Option, ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.models import StrictModel
from chalicelib.providers.roles import StepContext, TaskResult

if TYPE_CHECKING:
    from chalicelib.providers.http import HttpClient

SECRET: JsonDict = {"x-secret": True}
GTM_ID = r"^[0-9]{1,20}$"
PUBLISH_SCOPE = "https://www.googleapis.com/auth/tagmanager.publish"
# Editing the workspace and creating versions, and publishing them (versions.publish takes
# tagmanager.publish only). Asked for at connect time, when no job says yet whether it
# publishes: docs/providers/gtm.md, "Scopes".
SCOPES = ("https://www.googleapis.com/auth/tagmanager.edit.containers",
          "https://www.googleapis.com/auth/tagmanager.edit.containerversions",
          PUBLISH_SCOPE)
# GTM's built-in "All Pages" trigger (Page View, every page) has this fixed id in every
# web container; it is not listed among the workspace's triggers.
ALL_PAGES_TRIGGER = "2147479553"
TAG_SCRIPT = "https://cdn.switchyard.example/tag.js"
DEFAULT_TAG_NAME = "Switchyard web tag"
# Tag Manager allows a Google Cloud project 0.25 requests/s (on a 100 s sliding window),
# shared by every tenant: the rate is reserved across Lambdas (providers/http.py,
# SharedRates), and no single authorization goes faster either.
PROJECT_RATE = 0.25
# Google's quota answers: 403 with one of these reasons (in error.errors[].reason, or
# error.details[].reason for the newer error shape).
QUOTA_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"})


class GoogleOAuth(StrictModel):
    """Tokens from Google's OAuth 2.0 web-server flow with offline access."""

    access_token: SecretStr = Field(min_length=8, max_length=4096, description="OAuth access token",
                                    json_schema_extra=SECRET)
    refresh_token: SecretStr = Field(min_length=8, max_length=4096, description="OAuth refresh token",
                                     json_schema_extra=SECRET)
    expires_at: int = Field(ge=0, description="When the access token expires (Unix seconds)")
    scope: str | None = Field(None, max_length=2000, description="Scopes Google granted, space separated")


class GtmInstallConfig(StrictModel):
    account_id: str = Field(pattern=GTM_ID, description="Tag Manager account id")
    container_id: str = Field(pattern=GTM_ID, description="Container id (a web container)")
    workspace_id: str = Field(pattern=GTM_ID, description="Workspace to install the tag in")
    tag_name: str = Field(DEFAULT_TAG_NAME, min_length=1, max_length=100,
                          description="Name of the tag; a tag of this name is updated, not duplicated")
    publish: bool = Field(False, description="Publish the new container version (else only create it)")


SPEC = ProviderSpec(
    id="google_tag_manager",
    name="Google Tag Manager",
    description="Install the Switchyard web tag in a Tag Manager container.",
    tags=("web", "tagging"),
    auth_methods=(
        AuthMethodSpec(id="oauth", name="OAuth 2.0",
                       description="Connect with Google (GET /oauth/google_tag_manager/start).",
                       credentials_model=GoogleOAuth),
    ),
    workflows=(
        WorkflowSpec(id="gtm_install_tag", name="Install the Switchyard web tag", job_type=JobType.OTHER,
                     step=StepRef(Role.TASK, "chalicelib.providers.gtm:GtmInstallTag"),
                     description="Installs (or updates) the Switchyard web tag as a Custom HTML tag firing "
                                 "on All Pages, then creates a container version and optionally publishes it.",
                     auth_methods=("oauth",), config_model=GtmInstallConfig,
                     resource_fields=("account_id", "container_id", "workspace_id"),
                     option_fields=("account_id", "container_id", "workspace_id")),
    ),
)


def quota_exceeded(status: int, body: bytes) -> bool:
    """A 403 that is Google's rate limit (wait and retry), not a refusal of the credentials."""
    if status != 403:
        return False
    try:
        error = json.loads(body).get("error") or {}
    except (ValueError, AttributeError):
        return False
    if not isinstance(error, dict):
        return False
    reasons = [e.get("reason") for e in (error.get("errors") or []) + (error.get("details") or [])
               if isinstance(e, dict)]
    return any(r in QUOTA_REASONS for r in reasons)


def can_publish(credentials: Any) -> bool | None:
    """Whether the grant includes tagmanager.publish; None when Google did not say."""
    if not credentials.scope:
        return None
    return PUBLISH_SCOPE in credentials.scope.split()


def tag_html(switchyard_account_id: str) -> str:
    """The tag's HTML: load tag.js asynchronously for this Switchyard account; a queue
    collects calls made before it loads. The id is JSON-quoted with <, > and & escaped, so
    it can break out of neither the string nor the script element."""
    account = json.dumps(switchyard_account_id)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        account = account.replace(char, escaped)
    return (
        "<script>\n"
        "(function(w,d,a){w.switchyard=w.switchyard||function(){(w.switchyard.q=w.switchyard.q||[])"
        ".push(arguments)};\n"
        "var s=d.createElement('script');s.async=true;\n"
        f"s.src='{TAG_SCRIPT}?account='+encodeURIComponent(a);\n"
        "d.head.appendChild(s);})(window,document," + account + ");\n"
        "</script>"
    )


def tag_body(name: str, html: str, job_id: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "html",  # Custom HTML
        "parameter": [{"type": "template", "key": "html", "value": html},
                      {"type": "boolean", "key": "supportDocumentWrite", "value": "false"}],
        "firingTriggerId": [ALL_PAGES_TRIGGER],
        "tagFiringOption": "oncePerEvent",
        "notes": f"Installed by Switchyard (job {job_id}). Changes made here are overwritten by the next run.",
    }


# -- the API client ------------------------------------------------------------------------------


class GtmApi:
    def __init__(self, credentials: Any, counter: CallCounter | None, deadline: float | None = None) -> None:
        from chalicelib.providers.http import HttpClient, RateLimit

        token = credentials.access_token.get_secret_value()
        self.base = settings().gtm_base_url.rstrip("/")
        self.http: HttpClient = HttpClient(
            "google_tag_manager", label="Google Tag Manager", secrets=[token], counter=counter,
            deadline=deadline, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            rate_limit=RateLimit(rate=PROJECT_RATE, burst=1, min_rate=PROJECT_RATE / 8, shared_rate=PROJECT_RATE),
            throttled=quota_exceeded,
        )

    def url(self, path: str, query: dict[str, Any] | None = None) -> str:
        q = {k: v for k, v in (query or {}).items() if v is not None}
        return f"{self.base}/{path.lstrip('/')}" + ("?" + urllib.parse.urlencode(q) if q else "")

    def get(self, path: str, operation: str, query: dict[str, Any] | None = None) -> dict[str, Any]:
        doc = self.http.get(self.url(path, query), operation).json()
        return doc if isinstance(doc, dict) else {}

    def all(self, path: str, key: str, operation: str) -> list[dict[str, Any]]:
        """Every item of a list call, following nextPageToken."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(100):  # a bound, in case a page token never ends
            doc = self.get(path, operation, {"pageToken": token})
            items += [x for x in doc.get(key) or [] if isinstance(x, dict)]
            token = doc.get("nextPageToken") or None
            if not token:
                break
        return items

    def send(self, method: str, path: str, operation: str, body: Any,
             query: dict[str, Any] | None = None) -> dict[str, Any]:
        doc = self.http.request(method, self.url(path, query), operation, json_body=body).json()
        return doc if isinstance(doc, dict) else {}


def _cannot_publish() -> ProviderError:
    # The authorization is fine for everything else: a config problem of publishing jobs,
    # not an auth failure that would mark it unhealthy.
    return ProviderError("this Google authorization may not publish container versions (it was connected "
                         "before Switchyard asked for the tagmanager.publish permission): connect Google Tag "
                         "Manager again, allow publishing, and use the new authorization for this job; or set "
                         "publish to false", field="publish")


def _not_found(what: str, field: str) -> ProviderError:
    return ProviderError(f"{what} was not found in Google Tag Manager (or this Google user cannot see it)",
                         field=field)


# -- the provider ----------------------------------------------------------------------------------


class GtmProvider:
    spec = SPEC

    def api(self, credentials: Any, counter: CallCounter | None, deadline: float | None = None) -> GtmApi:
        return GtmApi(credentials, counter, deadline)

    def check(self, method: str, credentials: Any, resources: dict[str, str],
              counter: CallCounter | None = None) -> CheckResult:
        from chalicelib.providers.http import HttpError

        api = self.api(credentials, counter)
        try:
            accounts = api.all("accounts", "account", "accounts.list")
        except HttpError as exc:
            if exc.transient:
                raise
            return CheckResult(HealthStatus.UNHEALTHY, exc.reason)
        if not accounts:
            return CheckResult(HealthStatus.UNHEALTHY, "this Google user has access to no Tag Manager account")
        first = str(accounts[0].get("accountId") or "") or None
        checked: dict[str, str] = {}
        account = resources.get("account_id")
        if account:
            if account not in {str(a.get("accountId")) for a in accounts}:
                return CheckResult(HealthStatus.UNHEALTHY,
                                   f"Tag Manager account {account!r} is not among this Google user's accounts",
                                   provider_account=first)
            checked["account_id"] = account
            for field, path in (("container_id", f"accounts/{account}/containers/{resources.get('container_id')}"),
                                ("workspace_id", f"accounts/{account}/containers/{resources.get('container_id')}"
                                                 f"/workspaces/{resources.get('workspace_id')}")):
                if not resources.get(field) or (field == "workspace_id" and not resources.get("container_id")):
                    continue
                try:
                    api.get(path, f"{field.split('_')[0]}s.get")
                except HttpError as exc:
                    if exc.transient:
                        raise
                    why = f"{field.split('_')[0]} {resources[field]!r} was not found" if exc.status == 404 \
                        else exc.reason
                    return CheckResult(HealthStatus.UNHEALTHY, why, provider_account=first)
                checked[field] = resources[field]
        names = ", ".join(str(a.get("name") or a.get("accountId")) for a in accounts[:3])
        more = f" and {len(accounts) - 3} more" if len(accounts) > 3 else ""
        return CheckResult(HealthStatus.HEALTHY, f"reaches Tag Manager accounts {names}{more}",
                           provider_account=first, resources=checked)

    def options(self, method: str, credentials: Any, workflow: str, field: str, params: dict[str, str],
                counter: CallCounter | None = None) -> list[Option]:
        from chalicelib.providers.http import HttpError

        api = self.api(credentials, counter)
        account, container = params.get("account_id"), params.get("container_id")
        try:
            if field == "account_id":
                return [Option(value=str(a["accountId"]), label=f"{a.get('name')} ({a['accountId']})")
                        for a in api.all("accounts", "account", "accounts.list")]
            if not account:
                raise ProviderError("choose an account first (account_id)", field="account_id")
            if field == "container_id":
                return [Option(value=str(c["containerId"]), label=f"{c.get('name')} ({c.get('publicId')})",
                               kind=",".join(c.get("usageContext") or []) or None)
                        for c in api.all(f"accounts/{account}/containers", "container", "containers.list")]
            if not container:
                raise ProviderError("choose a container first (container_id)", field="container_id")
            if field == "workspace_id":
                return [Option(value=str(w["workspaceId"]), label=str(w.get("name") or w["workspaceId"]))
                        for w in api.all(f"accounts/{account}/containers/{container}/workspaces", "workspace",
                                         "workspaces.list")]
        except HttpError as exc:
            if exc.status == 404:
                what = "container" if field == "workspace_id" else "account"
                raise _not_found(f"{what} {params.get(what + '_id')!r}", f"{what}_id") from None
            raise
        raise ProviderError(f"field {field!r} has no live options", field="field")

    def credential_hint(self, method: str, credentials: Any) -> str | None:
        granted = (credentials.scope or "").split()
        short = [s.rsplit(".", 1)[-1] for s in granted if "tagmanager" in s]
        return "Google OAuth" + (f" ({', '.join(short)})" if short else "")


class GtmInstallTag:
    """One step: upsert the tag by name, create a version, publish it when asked."""

    def __init__(self, provider: GtmProvider) -> None:
        self.provider = provider

    @staticmethod
    def workspace(config: dict[str, Any], state: dict[str, Any]) -> str:
        """create_version deletes the workspace it versions and makes a new one: the job
        keeps following the new one, until its configuration names another."""
        ws = state.get("workspace") or {}
        key = [config["account_id"], config["container_id"], config["workspace_id"]]
        if ws.get("configured") == key and ws.get("current"):
            return str(ws["current"])
        return str(config["workspace_id"])

    def run(self, ctx: StepContext) -> TaskResult:
        from chalicelib.providers.http import HttpError

        cfg = ctx.config
        if cfg.get("publish") and can_publish(ctx.credentials) is False:
            raise _cannot_publish()  # before any change: nothing half done
        account, container = cfg["account_id"], cfg["container_id"]
        ws = self.workspace(cfg, ctx.state)
        base = f"accounts/{account}/containers/{container}/workspaces/{ws}"
        api = self.provider.api(ctx.credentials, ctx.counter, ctx.deadline)
        name = cfg.get("tag_name") or DEFAULT_TAG_NAME
        body = tag_body(name, tag_html(ctx.account_id), ctx.job_id)
        messages: list[str] = []
        version_name = f"Switchyard web tag ({ctx.run_id})"
        try:
            try:
                same = [t for t in api.all(f"{base}/tags", "tag", "tags.list") if t.get("name") == name]
            except HttpError as exc:
                done = self._done_by_earlier_attempt(api, cfg, ctx, ws, version_name, exc) if exc.status == 404 else None
                if done is None:
                    raise
                return done
            if same:
                tag = same[0]
                # The fingerprint makes the update fail (409) if someone edits the tag meanwhile.
                api.send("PUT", str(tag["path"]), "tags.update", body, {"fingerprint": tag.get("fingerprint")})
                messages.append(f"updated tag {name!r} (id {tag.get('tagId')}) in workspace {ws}")
                if len(same) > 1:
                    messages.append(f"{len(same) - 1} other tag(s) named {name!r} were left as they are")
            else:
                tag = api.send("POST", f"{base}/tags", "tags.create", body)
                messages.append(f"created tag {name!r} (id {tag.get('tagId')}) in workspace {ws}")
            made = api.send("POST", f"{base}:create_version", "workspaces.create_version",
                            {"name": version_name,
                             "notes": f"Created by Switchyard job {ctx.job_id}, run {ctx.run_id}"})
        except HttpError as exc:
            if exc.status == 404:
                raise _not_found(f"workspace {ws!r} of container {container!r} (account {account!r})",
                                 "workspace_id") from None
            raise
        if made.get("compilerError"):
            raise ProviderError("Tag Manager could not compile the workspace into a version; open the workspace "
                                "in Tag Manager to see the error", field="workspace_id")
        version = made.get("containerVersion") or {}
        version_id = str(version.get("containerVersionId") or "")
        if not version_id:
            raise ProviderError("Tag Manager created no container version (the workspace may be out of sync "
                                "with the container's latest version)", transient=True)
        messages.append(f"created container version {version_id}")
        new_ws = str(made.get("newWorkspacePath") or "").rstrip("/").rsplit("/", 1)[-1]
        if cfg.get("publish"):
            try:
                published = api.send("POST", f"{version.get('path')}:publish", "versions.publish", None)
            except HttpError as exc:
                if exc.status == 403 and "scope" in exc.words.lower():
                    raise _cannot_publish() from None
                raise
            if published.get("compilerError"):
                raise ProviderError(f"Tag Manager could not publish version {version_id} (compiler error)",
                                    field="publish")
            messages.append(f"published container version {version_id}")
        state = dict(ctx.state)
        state["workspace"] = {"configured": [account, container, cfg["workspace_id"]], "current": new_ws or ws}
        state["last_version_id"] = version_id
        return TaskResult(messages=messages, state=state)

    @staticmethod
    def _done_by_earlier_attempt(api: GtmApi, cfg: dict[str, Any], ctx: StepContext, ws: str, version_name: str,
                                 exc: Exception) -> TaskResult | None:
        """The workspace this run works in is gone. When an earlier attempt of this very run
        created its version (create_version deletes the workspace it versions) and crashed
        before its commit, the run's work is done: follow the workspace Tag Manager made
        then (the container's newest: ids only grow) and create no second version.
        None when no version of this run exists (the workspace is really missing)."""
        account, container = cfg["account_id"], cfg["container_id"]
        cpath = f"accounts/{account}/containers/{container}"
        mine = [v for v in api.all(f"{cpath}/version_headers", "containerVersionHeader", "version_headers.list")
                if v.get("name") == version_name]
        if not mine:
            return None
        spaces = [str(w.get("workspaceId")) for w in api.all(f"{cpath}/workspaces", "workspace", "workspaces.list")
                  if str(w.get("workspaceId") or "").isdigit()]
        if not spaces:
            raise _not_found(f"a workspace of container {container!r} (account {account!r})", "workspace_id") from exc
        current = max(spaces, key=int)
        version_id = str(mine[0].get("containerVersionId") or "")
        state = dict(ctx.state)
        state["workspace"] = {"configured": [account, container, cfg["workspace_id"]], "current": current}
        state["last_version_id"] = version_id
        return TaskResult(messages=[f"container version {version_id} of this run already exists (an earlier "
                                    f"attempt made it before the run was saved); following workspace {current}"],
                          state=state)


PROVIDER = GtmProvider()

__all__ = [
    "ALL_PAGES_TRIGGER",
    "PROJECT_RATE",
    "PROVIDER",
    "PUBLISH_SCOPE",
    "SCOPES",
    "SPEC",
    "GoogleOAuth",
    "GtmApi",
    "GtmInstallConfig",
    "GtmInstallTag",
    "GtmProvider",
    "can_publish",
    "quota_exceeded",
    "tag_body",
    "tag_html",
]
