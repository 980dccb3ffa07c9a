"""The Google Tag Manager provider against a fake Google over real HTTP
(tests/fakes/google.py): check, options and the install-tag task."""

from __future__ import annotations

import time
from typing import Any

import pytest

from chalicelib.domain.models import HealthStatus
from chalicelib.providers.base import ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.gtm import (
    ALL_PAGES_TRIGGER,
    PROVIDER,
    TAG_SCRIPT,
    GoogleOAuth,
    GtmInstallConfig,
    tag_html,
)
from chalicelib.providers.registry import Registry
from chalicelib.providers.roles import StepContext
from tests.fakes.google import EDIT, VERSIONS, FakeGoogle


def _creds(fake: FakeGoogle, **kw: Any) -> GoogleOAuth:
    return GoogleOAuth.model_validate(fake.grant(**kw))


def _setup(fake: FakeGoogle) -> None:
    fake.add_account("6001", "Acme")
    fake.add_account("6002", "Acme EU")
    fake.add_container("6001", "9001", "acme.example", workspace_id="3")


def _ctx(creds: Any, config: dict[str, Any], state: dict[str, Any] | None = None,
         counter: CallCounter | None = None, run_id: str = "run_1") -> StepContext:
    cfg = GtmInstallConfig.model_validate(config).model_dump(mode="json")
    return StepContext(account_id="acct_7", job_id="job_1", run_id=run_id, step=0, method="oauth",
                       credentials=creds, config=cfg, cursor=None, state=state or {}, max_records=1000,
                       deadline=time.monotonic() + 60, counter=counter)


CONFIG = {"account_id": "6001", "container_id": "9001", "workspace_id": "3"}


def test_check_is_healthy_with_the_first_account_and_verifies_resources(fake_google):
    # GIVEN a Google user with two Tag Manager accounts
    fake = fake_google
    _setup(fake)
    creds = _creds(fake)
    # WHEN checked THEN healthy, reaching the first account
    counter = CallCounter()
    check = PROVIDER.check("oauth", creds, {}, counter)
    assert check.status is HealthStatus.HEALTHY and check.provider_account == "6001"
    assert "Acme" in (check.reason or "") and counter.counts["google_tag_manager.accounts.list"] == 1
    # AND with a job's resources, each is verified
    ok = PROVIDER.check("oauth", creds, CONFIG)
    assert ok.ok and ok.resources == CONFIG
    gone = PROVIDER.check("oauth", creds, {**CONFIG, "workspace_id": "77"})
    assert gone.status is HealthStatus.UNHEALTHY and "workspace '77' was not found" in (gone.reason or "")
    other = PROVIDER.check("oauth", creds, {"account_id": "7777"})
    assert other.status is HealthStatus.UNHEALTHY and "7777" in (other.reason or "")


def test_check_401_is_unhealthy_in_googles_words_and_the_token_never_shows(fake_google):
    # GIVEN a token Google does not accept (revoked)
    fake = fake_google
    _setup(fake)
    creds = _creds(fake)
    fake.revoke()
    # WHEN checked THEN unhealthy with Google's words, never an exception
    check = PROVIDER.check("oauth", creds, {})
    assert check.status is HealthStatus.UNHEALTHY
    assert "401" in (check.reason or "") and "invalid authentication credentials" in (check.reason or "")
    assert creds.access_token.get_secret_value() not in (check.reason or "")
    assert creds.refresh_token.get_secret_value() not in repr(creds)


def test_accounts_list_follows_page_tokens(fake_google):
    # GIVEN more accounts than one page holds
    fake = fake_google
    fake.page_size = 2
    for i in range(5):
        fake.add_account(str(100 + i), f"A{i}")
    # WHEN the wizard asks for account options THEN all five, over three pages
    opts = PROVIDER.options("oauth", _creds(fake), "gtm_install_tag", "account_id", {})
    assert [o.value for o in opts] == ["100", "101", "102", "103", "104"]
    assert [p for m, p in fake.requests if p.endswith("/accounts")] == ["/tagmanager/v2/accounts"] * 3


def test_options_list_containers_and_workspaces_and_name_what_is_missing(fake_google):
    fake = fake_google
    _setup(fake)
    creds = _creds(fake)
    containers = PROVIDER.options("oauth", creds, "gtm_install_tag", "container_id", {"account_id": "6001"})
    assert [(o.value, o.kind) for o in containers] == [("9001", "web")]
    workspaces = PROVIDER.options("oauth", creds, "gtm_install_tag", "workspace_id",
                                  {"account_id": "6001", "container_id": "9001"})
    assert [(o.value, o.label) for o in workspaces] == [("3", "Default Workspace")]
    with pytest.raises(ProviderError) as err:
        PROVIDER.options("oauth", creds, "gtm_install_tag", "workspace_id", {"account_id": "6001"})
    assert err.value.field == "container_id"
    with pytest.raises(ProviderError) as err:
        PROVIDER.options("oauth", creds, "gtm_install_tag", "workspace_id",
                         {"account_id": "6001", "container_id": "4040"})
    assert err.value.field == "container_id" and not err.value.transient


def test_install_creates_one_tag_then_updates_it_and_follows_the_new_workspace(fake_google):
    # GIVEN a container whose workspace has no Switchyard tag
    fake = fake_google
    _setup(fake)
    creds = _creds(fake)
    task = Registry().task("google_tag_manager", "gtm_install_tag")
    # WHEN the task runs
    first = task.run(_ctx(creds, CONFIG))
    # THEN one Custom HTML tag firing on All Pages loads tag.js for the Switchyard account
    ws = fake.workspace("6001", "9001")
    [tag] = ws.tags.values()
    assert tag["type"] == "html" and tag["name"] == "Switchyard web tag"
    assert tag["firingTriggerId"] == [ALL_PAGES_TRIGGER]
    html = {p["key"]: p["value"] for p in tag["parameter"]}["html"]
    assert TAG_SCRIPT in html and '"acct_7"' in html
    # AND a container version holds it; the log names the version; nothing published
    container = fake.container("6001", "9001")
    assert list(container.versions) == ["1"] and container.live is None
    assert "created container version 1" in first.messages
    assert container.versions["1"]["tag"][0]["name"] == "Switchyard web tag"
    # AND the workspace create_version replaced is the one the job follows next
    assert ws.id != "3" and first.state["workspace"]["current"] == ws.id
    # WHEN it runs again (the tag edited by hand meanwhile), with publish on
    tag["parameter"][0]["value"] = "<script>tampered</script>"
    second = task.run(_ctx(creds, {**CONFIG, "publish": True}, state=first.state))
    # THEN the same tag is updated, not duplicated, and version 2 is published
    ws2 = fake.workspace("6001", "9001")
    [again] = ws2.tags.values()
    assert again["tagId"] == tag["tagId"]
    assert {p["key"]: p["value"] for p in again["parameter"]}["html"] == html
    assert any(m.startswith("updated tag 'Switchyard web tag'") for m in second.messages)
    assert container.live == "2" and "published container version 2" in second.messages


def test_a_missing_workspace_is_a_config_error_naming_the_field(fake_google):
    fake = fake_google
    _setup(fake)
    with pytest.raises(ProviderError) as err:
        Registry().task("google_tag_manager", "gtm_install_tag").run(_ctx(_creds(fake), {**CONFIG, "workspace_id": "404"}))
    assert err.value.field == "workspace_id" and not err.value.transient and not err.value.auth


def test_missing_version_scope_is_an_auth_error(fake_google):
    # GIVEN a token granted only the edit scope (no containerversions)
    fake = fake_google
    _setup(fake)
    creds = _creds(fake, scopes=(EDIT,))
    # WHEN the task creates the version THEN Google's 403 is an auth error, in its words
    with pytest.raises(ProviderError) as err:
        Registry().task("google_tag_manager", "gtm_install_tag").run(_ctx(creds, CONFIG))
    assert err.value.auth and "insufficient authentication scopes" in err.value.reason


def test_a_quota_403_is_retried_with_backoff_and_a_lasting_one_is_transient_not_auth(fake_google):
    # GIVEN Google answers the tag listing once with its quota 403 (rateLimitExceeded, no Retry-After)
    fake = fake_google
    _setup(fake)
    fake.quota(1, path="/tags")
    counter = CallCounter()
    # WHEN the task runs THEN the HTTP layer retried it and the run finished
    out = Registry().task("google_tag_manager", "gtm_install_tag").run(_ctx(_creds(fake), CONFIG, counter=counter))
    assert "created container version 1" in out.messages
    assert counter.errors["google_tag_manager.tags.list"] == 1
    assert counter.counts["google_tag_manager.tags.list"] == 2
    # GIVEN the per-user variant keeps coming WHEN the task runs THEN a transient error in
    # Google's words: the run waits and retries, the authorization stays healthy
    fake.quota(10, path="/tags", reason="userRateLimitExceeded")
    with pytest.raises(ProviderError) as err:
        Registry().task("google_tag_manager", "gtm_install_tag").run(_ctx(_creds(fake), CONFIG, state=out.state))
    assert err.value.transient and not err.value.auth, err.value.reason
    assert "403" in err.value.reason and "Quota exceeded" in err.value.reason
    # AND a 403 that is not about quota is still an auth error (positive control)
    fake.failures.clear()
    fake.fail(403, 1, path="/tags")
    with pytest.raises(ProviderError) as err:
        Registry().task("google_tag_manager", "gtm_install_tag").run(_ctx(_creds(fake), CONFIG, state=out.state))
    assert err.value.auth and not err.value.transient


def test_publishing_needs_the_publish_scope(fake_google):
    fake = fake_google
    _setup(fake)
    publish = {**CONFIG, "publish": True}
    # GIVEN an authorization granted before Switchyard asked for tagmanager.publish
    old = _creds(fake, scopes=(EDIT, VERSIONS))
    # WHEN a publishing run starts THEN it stops before changing anything, telling the user
    # to connect again; a config error of the job, not an auth failure
    with pytest.raises(ProviderError) as err:
        Registry().task("google_tag_manager", "gtm_install_tag").run(_ctx(old, publish))
    assert err.value.field == "publish" and not err.value.auth and not err.value.transient
    assert "connect Google Tag Manager again" in err.value.reason
    assert fake.calls == [] and fake.container("6001", "9001").versions == {}
    # AND when the grant's scopes are unknown, Google's refusal of the publish call (the
    # fake checks the scope the discovery document lists for it) says the same
    unknown = old.model_copy(update={"scope": None})
    with pytest.raises(ProviderError) as err:
        Registry().task("google_tag_manager", "gtm_install_tag").run(_ctx(unknown, publish))
    assert err.value.field == "publish" and not err.value.auth
    assert fake.refused == [(403, "Request had insufficient authentication scopes.")]
    # AND a grant with the scope publishes (positive control; a new run, in the workspace
    # Tag Manager made when the failed run's version was created)
    current = fake.workspace("6001", "9001").id
    out = Registry().task("google_tag_manager", "gtm_install_tag").run(_ctx(_creds(fake), {**publish, "workspace_id": current},
                                                         run_id="run_2"))
    assert any(m.startswith("published container version") for m in out.messages)
    assert "tagmanager.accounts.containers.versions.publish" in fake.calls


def test_every_request_the_provider_sends_matches_googles_discovery_document(fake_google):
    # GIVEN a container with a Switchyard tag already (so the run updates it)
    fake = fake_google
    _setup(fake)
    creds = _creds(fake)
    first = Registry().task("google_tag_manager", "gtm_install_tag").run(_ctx(creds, {**CONFIG, "publish": True}))
    # WHEN check, options and a second run (update, version, publish) go through the fake
    PROVIDER.check("oauth", creds, {"account_id": "6001", "container_id": "9001", "workspace_id": "3"})
    for field, params in (("account_id", {}), ("container_id", {"account_id": "6001"}),
                          ("workspace_id", {"account_id": "6001", "container_id": "9001"})):
        PROVIDER.options("oauth", creds, "gtm_install_tag", field, params)
    Registry().task("google_tag_manager", "gtm_install_tag").run(_ctx(creds, {**CONFIG, "publish": True}, state=first.state))
    # THEN the fake refused none of them, and every method the provider uses was exercised
    assert fake.refused == []
    assert {c.removeprefix("tagmanager.accounts.") for c in fake.calls} >= {
        "list", "containers.get", "containers.list", "containers.workspaces.get", "containers.workspaces.list",
        "containers.workspaces.tags.list", "containers.workspaces.tags.create",
        "containers.workspaces.tags.update", "containers.workspaces.create_version",
        "containers.versions.publish"}


@pytest.mark.parametrize(("method", "path", "body", "scopes", "status", "words"), [
    ("POST", "accounts/6001/containers/9001/workspaces/3/tags", {"name": "t", "type": "html", "colour": "red"},
     None, 400, 'Unknown name "colour"'),
    ("POST", "accounts/6001/containers/9001/workspaces/3/tags", {"name": "t", "type": "html",
                                                                "tagFiringOption": "always"},
     None, 400, "tagFiringOption"),
    ("POST", "accounts/6001/containers/9001/workspaces/3/tags", {"name": "t", "paused": "yes"},
     None, 400, "expected a boolean"),
    ("GET", "accounts/6001/containers/9001/workspaces/3/tags?pageSize=5", None, None, 400, "pageSize"),
    ("DELETE", "accounts/6001/containers/9001", None, None, 403, "scopes"),
    ("PATCH", "accounts/6001/containers/9001", {}, None, 405, "not allowed"),
    ("GET", "accounts/6001/containers/9001/widgets", None, None, 404, "was not found"),
    ("POST", "accounts/6001/containers/9001/versions/1:publish", None, (EDIT, VERSIONS), 403, "scopes"),
    ("POST", "accounts/6001/containers/9001/workspaces/3:create_version", None, (EDIT,), 403, "scopes"),
])
def test_the_fake_refuses_what_the_discovery_document_does_not_allow(fake_google, method, path, body, scopes,
                                                                       status, words):
    import json
    import urllib.error
    import urllib.request

    fake = fake_google
    _setup(fake)
    token = fake.grant(**({"scopes": scopes} if scopes else {}))["access_token"]

    def send(method: str, path: str, body: Any) -> tuple[int, str]:
        req = urllib.request.Request(f"{fake.gtm_url}/{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())["error"]["message"]

    got, text = send(method, path, body)
    assert got == status and words in text, (got, text)
    # positive control: the container itself is there and readable with the same token
    assert send("GET", "accounts/6001/containers/9001", None)[0] == 200


def test_tag_html_quotes_the_account_id():
    # GIVEN an id that tries to close the script element WHEN quoted THEN it cannot
    html = tag_html("acct_'x\"</script><script>alert(1)")
    assert html.count("</script>") == 1 and html.count("<script>") == 1
    assert "\\u003c/script\\u003e" in html


def test_5xx_is_retried_then_succeeds_and_a_lasting_outage_is_transient(fake_google):
    # GIVEN Google answers create_version with 503 twice
    fake = fake_google
    _setup(fake)
    creds = _creds(fake)
    fake.fail(503, 2, path=":create_version")
    # WHEN the task runs THEN the HTTP layer retried and the version exists
    out = Registry().task("google_tag_manager", "gtm_install_tag").run(_ctx(creds, CONFIG))
    assert "created container version 1" in out.messages
    # GIVEN Google keeps failing WHEN the task runs THEN a transient error (the run sleeps)
    fake.fail(503, 10, path="/tags")
    with pytest.raises(ProviderError) as err:
        Registry().task("google_tag_manager", "gtm_install_tag").run(_ctx(creds, CONFIG, state=out.state))
    assert err.value.transient and not err.value.auth and "503" in err.value.reason
