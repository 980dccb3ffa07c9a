"""POST /jobs/preview: every check a create makes, nothing written; the next 3 run starts
of the schedule (EventBridge cron included). The wizard calls it before Review."""

from __future__ import annotations

from datetime import UTC, datetime

from chalicelib.domain.schedules import next_fires
from tests.api.helpers import create_auth, make_bucket

CRON = {"type": "cron", "expression": "cron(30 9 ? * MON-FRI *)", "timezone": "Europe/Paris"}


def _body(auth_id: str, bucket: str, **extra):
    return {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
            "authorization_id": auth_id, "label": "Weekday import", "config": {"bucket": bucket}, **extra}


def _iso(times):
    return [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in times]


def test_preview_gives_the_next_three_cron_runs_and_writes_nothing(api):
    bucket = make_bucket()
    auth = create_auth(api)
    before = _iso(next_fires(CRON, datetime.now(UTC), 3))
    r = api.post("/jobs/preview", _body(auth["id"], bucket, schedule=CRON))
    after = _iso(next_fires(CRON, datetime.now(UTC), 3))
    assert r.status_code == 200, r.body
    assert r.json["data"]["valid"] is True
    assert r.json["data"]["next_runs"] in (before, after)
    # Weekdays at 09:30 in Paris: 08:30 or 07:30 UTC, never a Saturday or Sunday.
    for at in r.json["data"]["next_runs"]:
        when = datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ")
        assert when.weekday() < 5 and when.minute == 30 and when.hour in (7, 8), at
    assert api.get("/jobs").json["data"] == []
    # The same body creates the job: its next run is the first one previewed.
    created = api.post("/jobs", _body(auth["id"], bucket, schedule=CRON, start=True))
    assert created.status_code == 201, created.body
    assert created.json["data"]["schedule"]["expression"] == "cron(30 9 ? * MON-FRI *)"
    assert created.json["data"]["cost_estimate"]["runs_per_month"] > 20


def test_preview_refuses_what_a_create_refuses_at_the_field(api):
    bucket = make_bucket()
    auth = create_auth(api)
    cases = [
        ({**CRON, "expression": "cron(0 9 * * * *)"}, "schedule.cron.expression", "day-of-month and day-of-week"),
        ({**CRON, "expression": "cron(61 9 ? * MON *)"}, "schedule.cron.expression", "minutes value 61"),
        ({**CRON, "expression": "every day at nine"}, "schedule.cron.expression", "cron(minutes hours"),
        ({**CRON, "timezone": "Mars/Olympus"}, "schedule.cron.timezone", "IANA time zone"),
        ({"type": "daily", "at": "09:00", "timezone": "Europe/Pariss"}, "schedule.daily.timezone", "IANA time zone"),
    ]
    for schedule, field, words in cases:
        r = api.post("/jobs/preview", _body(auth["id"], bucket, schedule=schedule))
        assert r.status_code == 422, (schedule, r.body)
        fields = r.json["error"]["fields"]
        assert list(fields) == [field] and words in fields[field], (schedule, fields)
        assert "'^" not in r.json["error"]["message"] and "should" not in r.json["error"]["message"]
    # A bucket the keys cannot reach: the configuration is at fault, and its field is named.
    r = api.post("/jobs/preview", _body(auth["id"], "no-such-bucket-" + bucket))
    assert r.status_code == 422, r.body
    assert r.json["error"]["code"] == "job.config_unreachable" and "config.bucket" in r.json["error"]["fields"]
    assert api.get("/jobs").json["data"] == []
    # Positive control: the same body with the real bucket passes.
    assert api.post("/jobs/preview", _body(auth["id"], bucket)).status_code == 200


def test_an_edits_dry_run_gives_the_next_runs_in_the_jobs_time_zone(api):
    # GIVEN a job, and a cron schedule with a fixed year: its runs are known whatever the clock
    bucket = make_bucket()
    auth = create_auth(api)
    job = api.post("/jobs", _body(auth["id"], bucket, schedule=CRON, start=False)).json["data"]
    summer = {"type": "cron", "expression": "cron(0 9 1 6-8 ? 2030)", "timezone": "America/New_York"}
    # WHEN Edit configuration asks what the new schedule would do
    r = api.patch(f"/jobs/{job['id']}?dry_run=true", {"schedule": summer, "version": job["version"]})
    # THEN the runs are 09:00 in New York (EDT, UTC-4) on the first of June, July and August 2030
    assert r.status_code == 200, r.body
    assert r.json["data"]["next_runs"] == ["2030-06-01T13:00:00Z", "2030-07-01T13:00:00Z", "2030-08-01T13:00:00Z"]
    # AND the same expression in Paris gives other instants (CEST, UTC+2): the zone is the job's
    paris = api.patch(f"/jobs/{job['id']}?dry_run=true", {"schedule": {**summer, "timezone": "Europe/Paris"},
                                                          "version": job["version"]}).json["data"]
    assert paris["next_runs"] == ["2030-06-01T07:00:00Z", "2030-07-01T07:00:00Z", "2030-08-01T07:00:00Z"]
    # AND nothing was written
    assert api.get(f"/jobs/{job['id']}").json["data"] == job
    # AND a bad expression is refused at its field, as on create
    bad = api.patch(f"/jobs/{job['id']}?dry_run=true", {"schedule": {**summer, "expression": "cron(61 9 1 6 ? 2030)"},
                                                        "version": job["version"]})
    assert bad.status_code == 422 and "schedule.cron.expression" in bad.json["error"]["fields"], bad.body
