"""A job's history through the API (API.md): GET /jobs/{id}/runs and /logs page with
`limit` (default 50, max 200) and `cursor`, newest first; a run's log lines carry its
counters in `context`; a run is a use of the job's authorization (`last_used_at`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chalicelib.domain.ids import new_id
from chalicelib.domain.runs import LogLine, Run
from tests.engine.sources import people

HOURLY = {"type": "interval", "every_minutes": 60}


def _walk(api: Any, path: str, limit: int | None = None) -> list[list[dict[str, Any]]]:
    """Every page of a listing, following next_cursor."""
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        query = [f"limit={limit}"] if limit else []
        query += [f"cursor={cursor}"] if cursor else []
        r = api.get(path + ("?" + "&".join(query) if query else ""))
        assert r.status_code == 200, r.body
        pages.append(r.json["data"])
        cursor = r.json["next_cursor"]
        if not cursor:
            return pages
        assert len(pages) < 20, "the cursor never ends"


def test_runs_and_log_lines_page_with_limit_and_cursor_and_carry_counters(api, deps, tenant, drain, make_job):
    # GIVEN an hourly job that ran three times (2 of its 20 rows have no identifier)
    job = make_job(people(20, missing_every=10), schedule=HOURLY)
    drain.run()
    for _ in range(2):
        deps.runs_queue.send({"account_id": tenant.account_id, "job_id": job["id"], "trigger": "schedule"})
        drain.run()
    assert drain.errors == []
    # WHEN its runs are read two at a time
    pages = _walk(api, f"/jobs/{job['id']}/runs", limit=2)
    # THEN two pages, newest first, each run once
    assert [len(p) for p in pages] == [2, 1]
    runs = [r for p in pages for r in p]
    assert len({r["id"] for r in runs}) == 3
    assert [r["started_at"] for r in runs] == sorted((r["started_at"] for r in runs), reverse=True)
    assert runs[-1]["added"] == 18 and runs[-1]["omitted"] == 2
    # AND each run's closing log line holds its counters in context
    lines = [ln for p in _walk(api, f"/jobs/{job['id']}/logs", limit=3) for ln in p]
    closing = {ln["run_id"]: ln for ln in lines if ln["code"] == "run.succeeded"}
    assert set(closing) == {r["id"] for r in runs}
    for run in runs:
        ctx = closing[run["id"]]["context"]
        assert (ctx["added"], ctx["removed"], ctx["omitted"]) == (run["added"], run["removed"], run["omitted"])
    first_steps = [ln for ln in lines if ln["code"] == "run.step" and ln["run_id"] == runs[-1]["id"]]
    assert sum(ln["context"]["added"] for ln in first_steps) == 18
    assert {"added", "removed", "omitted"} <= set(first_steps[0]["context"])
    # AND paging by 3 returned every line once, in the order of one unpaged read
    assert [ln["timestamp"] for ln in lines] == [ln["timestamp"] for ln in
                                                 api.get(f"/jobs/{job['id']}/logs?limit=200").json["data"]]
    assert len({(ln["timestamp"], ln["code"], ln["run_id"]) for ln in lines}) == len(lines)


def test_the_default_page_is_50_and_the_limit_is_checked(api, deps, tenant, make_job):
    # GIVEN a job with 52 log lines and 51 runs (written the way the engine writes them)
    job = make_job(people(1), start=False)
    deps.runs.write_logs(tenant.account_id, job["id"],
                         [LogLine("info", "test.line", f"line {i}", context={"i": i}) for i in range(51)])
    for i in range(51):
        run = Run(id=new_id("run"), job_id=job["id"], account_id=tenant.account_id, trigger="schedule",
                  status="succeeded", started_at=datetime.now(UTC).strftime(f"%Y-%m-%dT%H:%M:{i % 60:02d}Z"))
        deps.table.client.put_item(**deps.runs.new_run_op(run)["Put"])
    for path, total in ((f"/jobs/{job['id']}/logs", 52), (f"/jobs/{job['id']}/runs", 51)):
        # WHEN read without a limit THEN 50 come, and the cursor brings the rest
        pages = _walk(api, path)
        assert [len(p) for p in pages] == [50, total - 50], path
        assert len({str(sorted(x.items())) for p in pages for x in p}) == total
        # AND a limit out of 1..200 is refused naming it
        for bad in (0, 201, "x"):
            r = api.get(f"{path}?limit={bad}")
            assert r.status_code == 400 and "limit" in r.json["error"]["fields"], (path, bad, r.body)
        assert len(api.get(f"{path}?limit=200").json["data"]) == total
    # AND a cursor of another listing is refused
    other = api.get(f"/jobs/{job['id']}/runs?limit=1").json["next_cursor"]
    r = api.get(f"/jobs/{job['id']}/logs?cursor={other}")
    assert r.status_code == 400 and "cursor" in r.json["error"]["fields"]


def test_a_run_is_a_use_of_the_authorization(api, deps, tenant, drain, make_job):
    # GIVEN a job resumed (its run queued) whose authorization was last used long ago
    job = make_job(people(5), start=False)
    assert api.post(f"/jobs/{job['id']}/resume").status_code == 200
    key = {"PK": {"S": f"ACCT#{tenant.account_id}"}, "SK": {"S": f"AUTH#{job['authorization_id']}"}}
    deps.table.client.update_item(TableName=deps.table.name, Key=key, UpdateExpression="SET last_used_at = :o",
                                  ExpressionAttributeValues={":o": {"S": "2020-01-01T00:00:00Z"}})
    start = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    # WHEN the run is delivered
    drain.run()
    # THEN the authorization's last use is that run
    assert api.get(f"/jobs/{job['id']}/runs").json["data"][0]["status"] == "succeeded"
    assert api.get(f"/authorizations/{job['authorization_id']}").json["data"]["last_used_at"] >= start
