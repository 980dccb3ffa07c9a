"""Every refusal of bad input speaks plain language: the message is sentences about fields
named in words, never the validator's wording, a regular expression or a field path. The
paths stay in `fields`, for forms to mark the field."""

from __future__ import annotations

import re
from typing import Any

import pytest

from chalicelib.services.validation import PATTERN_WORDS

JARGON = re.compile(
    r"should|String |Input |Value error|Assertion failed|validation|pattern|"
    r"[\^$\\{}\[\]]|credentials is|is not valid: [a-z_.]+$|type=|pydantic|errors\.")
VALIDATOR = re.compile(r"should|String |Input |Value error|Assertion failed|pattern|[\^$\\]|\{\d")
S3 = {"provider": "amazon_s3", "method": "access_keys", "label": "Keys"}


def _assert_plain(r: Any, status: int = 422) -> dict[str, Any]:
    assert r.status_code == status, r.body
    err = r.json["error"]
    message = err["message"]
    assert not JARGON.search(message), message
    for path in err["fields"]:
        if "." in path or "_" in path:
            assert path not in message, (path, message)
    for words in err["fields"].values():  # they may show a JSON shape, never validator words
        assert not VALIDATOR.search(words), words
    return err


def _job(world: dict[str, Any], **over: Any) -> dict[str, Any]:
    body = {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
            "authorization_id": world["auth"]["id"], "label": "Import", "config": {"bucket": world["bucket"]}}
    body.update(over)
    return body


def test_the_words_of_the_reported_cases(api):
    """The cases a new user met: a pattern, a too-short secret, a time zone, credentials."""
    err = _assert_plain(api.post("/authorizations", {**S3, "credentials": {
        "access_key_id": "nope", "secret_access_key": "short"}}))
    assert set(err["fields"]) == {"credentials.access_key_id", "credentials.secret_access_key"}
    assert err["fields"]["credentials.access_key_id"].startswith("must be an AWS access key ID")
    assert err["fields"]["credentials.secret_access_key"] == "must be at least 16 characters"
    assert err["message"] == (
        "Check the credentials: Access key ID must be an AWS access key ID: AKIA or ASIA followed by "
        "16 capital letters or digits. Secret access key must be at least 16 characters.")


def test_time_zone_and_schedule_errors_name_the_field_in_words(api, world):
    r = api.post("/jobs", _job(world, schedule={"type": "daily", "at": "25:00", "timezone": "Mars/Olympus"}))
    err = _assert_plain(r)
    assert err["fields"]["schedule.daily.timezone"] == "must be an IANA time zone name such as Europe/Paris"
    assert err["fields"]["schedule.daily.at"].startswith("must be a time of day as HH:MM")
    assert "Time zone must be an IANA time zone name such as Europe/Paris." in err["message"]
    assert "Schedule time must be a time of day as HH:MM" in err["message"]


CASES: list[tuple[str, str, str, Any]] = [
    # (name, method, path, body) ; "{job}" / "{auth}" are filled in
    ("missing fields", "POST", "/jobs", {}),
    ("wrong types", "POST", "/jobs", {"provider": 5, "job_type": None, "workflow": [], "label": "",
                                      "config": "x", "start": "maybe"}),
    ("unknown field", "POST", "/authorizations", {**S3, "credentials": {}, "colour": "red"}),
    ("empty credentials", "POST", "/authorizations", {**S3, "credentials": {}}),
    ("credentials not an object", "POST", "/authorizations", {**S3, "credentials": "x"}),
    ("unknown method", "POST", "/authorizations", {**S3, "method": "magic", "credentials": {}}),
    ("bad region", "POST", "/authorizations", {**S3, "credentials": {
        "access_key_id": "AKIA" + "A" * 16, "secret_access_key": "s" * 20, "region": "mars"}}),
    ("bad role arn", "POST", "/authorizations", {"provider": "amazon_s3", "method": "assume_role", "label": "R",
                                                 "credentials": {"role_arn": "nope"}}),
    ("external id sent", "POST", "/authorizations", {"provider": "amazon_s3", "method": "assume_role", "label": "R",
                                                     "credentials": {"role_arn": "arn:aws:iam::210987654321:role/R",
                                                                     "external_id": "chosen"}}),
    ("control characters", "POST", "/authorizations", {**S3, "label": "a\x00b", "credentials": {}}),
    ("label too long", "POST", "/authorizations", {**S3, "label": "x" * 201, "credentials": {}}),
    ("both authorizations", "POST", "/jobs", "both"),
    ("bad bucket", "POST", "/jobs", "bucket"),
    ("interval too short", "POST", "/jobs", "interval"),
    ("unknown schedule type", "POST", "/jobs", "schedule_type"),
    ("bad cron expression", "POST", "/jobs", "cron"),
    ("cron out of range", "POST", "/jobs", "cron_range"),
    ("preview of a bad job", "POST", "/jobs/preview", "cron"),
    ("bad start flag", "POST", "/jobs", "start"),
    ("failure window", "POST", "/jobs", "window"),
    ("null label", "PATCH", "/jobs/{job}", {"label": None, "version": 1}),
    ("bad version", "PATCH", "/jobs/{job}", {"label": "x", "version": "1"}),
    ("immutable", "PATCH", "/jobs/{job}", {"provider": "x", "version": 1}),
    ("config field list", "PATCH", "/jobs/{job}", {"config": {"fields": ["Not A Field"]}, "version": 1}),
    ("alert e-mail", "PUT", "/alerts", {"emails": ["not-an-email"], "webhooks": ["ftp://x"], "version": 0}),
    ("too many e-mails", "PUT", "/alerts", {"emails": [f"a{i}@example.com" for i in range(11)], "version": 0}),
    ("alert rule", "POST", "/jobs/{job}/alert-rules", {"metric": "clicks", "granularity": "year", "min": -1}),
    ("alert rule bounds", "POST", "/jobs/{job}/alert-rules", {"metric": "added", "granularity": "day",
                                                              "min": 5, "max": 1}),
    ("user", "POST", "/users", {"email": "x", "name": "", "role": "king"}),
    ("token", "POST", "/tokens", {"label": "", "user_id": "a b"}),
    ("audience filter", "POST", "/audiences", {"name": "A", "filter": {"all": [{"field": "Plan!", "op": "like"}]}}),
    ("audience preview", "POST", "/audiences/preview", {"filter": {"any": "x"}}),
    ("audience name", "POST", "/audiences", {"name": "", "filter": {"all": []}}),
    ("rotate", "PUT", "/authorizations/{auth}/credentials", {"credentials": {"access_key_id": 5}, "version": 1}),
]


@pytest.mark.parametrize("name,method,path,body", CASES, ids=[c[0] for c in CASES])
def test_each_kind_of_refused_input_is_plain(api, world, name, method, path, body):
    path = path.format(job=world["job"]["id"], auth=world["auth"]["id"])
    special = {
        "both": _job(world, authorization={"method": "access_keys", "label": "x", "credentials": {}}),
        "bucket": _job(world, config={"bucket": "Not_A_Bucket"}),
        "interval": _job(world, schedule={"type": "interval", "every_minutes": 1}),
        "schedule_type": _job(world, schedule={"type": "hourly"}),
        "cron": _job(world, schedule={"type": "cron", "expression": "every monday at nine"}),
        "cron_range": _job(world, schedule={"type": "cron", "expression": "cron(0 24 ? * MON *)"}),
        "start": _job(world, start="maybe"),
        "window": _job(world, failure_window_hours=0),
    }
    if isinstance(body, str):
        body = special[body]
    err = _assert_plain(api.call(method, path, body=body), 422)
    assert err["fields"], err


@pytest.mark.parametrize("query", ["limit=0", "limit=ten", "status=bogus", "colour=red"])
def test_query_refusals_are_plain(api, query):
    _assert_plain(api.get(f"/jobs?{query}"), 400)


def test_body_refusals_are_plain(api):
    for raw in (b"{", b"", b"\xff", b"[" * 100):
        _assert_plain(api.call("POST", "/jobs", raw=raw), 400)
    _assert_plain(api.call("POST", "/jobs", raw=b"a=b", headers={"Content-Type": "text/plain"}), 415)


def _patterns(schema: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        if isinstance(schema.get("pattern"), str):
            found.add(schema["pattern"])
        for value in schema.values():
            found |= _patterns(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= _patterns(value)
    return found


def test_every_pattern_a_client_can_miss_has_words():
    """Positive control for the table: each pattern of the request, credentials and config
    models is described (a new one without words would fall back to a vaguer phrase)."""
    from chalicelib.api import audience_schemas, job_schemas, schemas
    from chalicelib.providers.registry import Registry

    models: list[Any] = [job_schemas.JobCreate, job_schemas.JobPatch, schemas.AuthorizationCreate, schemas.UserCreate,
                         schemas.TokenCreate, schemas.AlertSettingsPut, audience_schemas.AudienceCreate]
    for provider in Registry().all():
        for method in provider.spec.auth_methods:
            models.append(method.credentials_model)
        for wf in provider.spec.workflows:
            models.append(wf.config_model)
    patterns = set().union(*(_patterns(m.model_json_schema()) for m in models))
    assert len(patterns) >= 10
    assert patterns - set(PATTERN_WORDS) == set()

