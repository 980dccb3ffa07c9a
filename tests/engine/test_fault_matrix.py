"""The fault matrix: every registered provider × every fault, as a real run through the API
and the engine against the provider's fake (docs/providers/faults.md has the table).

Each row reuses the provider's workflow fake of the conformance suite
(tests/providers/workflow_fakes.py: it makes one tenant's data, authorization and job) and
injects ONE fault at the destination after the job was created:

* auth      — the provider refuses the credentials (401/403, AccessDenied, an unknown key):
              the job fails at once, its error log quotes the provider's words, and the
              authorization is unhealthy;
* throttled — a 429 with `Retry-After` (AWS: a throttling code, no Retry-After; Google Tag
              Manager: a 403 whose reason is rateLimitExceeded, no Retry-After): the wait is
              the one asked for, or a backoff (on the client layer's clock: nothing sleeps),
              and the run succeeds;
* outage    — one 5xx, then success: retried, the run succeeds, nothing twice at the
              destination;
* timeout   — one answer comes too late: retried as transient, the run succeeds;
* partial   — a batch is partly refused: only the refused items are sent again.

A fault that cannot happen to a provider is a `NotApplicable` with the reason. A provider
in the registry without a row, or a row without every fault, fails
`test_every_registered_provider_has_a_full_row`.

Time: the default test run has a budget, and some cells were already proven by a test of
the default run (`proven_by`, whose existence the row test checks). Those cells run here
only with SWITCHYARD_FAULTS=full; every other cell runs by default.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib.providers.registry import Registry
from tests.engine.fresh import forget_moto_models, fresh_deps
from tests.http_receiver import Answer
from tests.membership.conftest import Stack, streamed_stack
from tests.providers import aws_faults
from tests.providers.workflow_fakes import (  # noqa: F401 (fixtures the fakes ask for by name)
    WORKFLOW_FAKES,
    WorkflowFake,
    _records,
    fake_fullcontact,
    private_urls,
)
from tests.timing import MovedClock, late, on_http_layer, read_timeout

ROOT = Path(__file__).resolve().parents[2]
FAULTS = ("auth", "throttled", "outage", "timeout", "partial")
RETRY_AFTER = 2  # seconds a 429 asks for


@dataclass
class Scene:
    """What an injection and a check may use."""

    fake: WorkflowFake
    deps: Any
    api: Any
    tenant: Any
    job_id: str
    clock: MovedClock
    monkeypatch: pytest.MonkeyPatch
    notes: dict[str, Any] = field(default_factory=dict)
    fake_workflow: str = ""


Check = Callable[[Scene, dict[str, Any]], None]


@dataclass(frozen=True)
class Case:
    """A fault injected into a real run of `workflow`. `inject` runs after the job was
    created and before its run is delivered; `check(scene, run)` adds the row's own
    assertions. `words`: what the provider says (auth rows), quoted in the job's error log."""

    workflow: str
    inject: Callable[[Scene], None]
    check: Check = lambda scene, run: None
    words: str = ""
    proven_by: str = ""  # "tests/...py::test_name" of the default run that proves this cell too


@dataclass(frozen=True)
class NotApplicable:
    why: str


Cell = Case | NotApplicable


# -- injections ---------------------------------------------------------------------------------


def _slow_client(scene: Scene) -> None:
    """A read timeout no healthy answer reaches on this machine now (tests/timing.py), read
    outside any request (chalice's test client swaps the environment inside one)."""
    from chalicelib import config

    scene.notes["read_timeout"] = timeout = read_timeout()
    scene.monkeypatch.setenv("SWITCHYARD_PROVIDER_TIMEOUT", str(timeout))
    config.reset()
    config.settings()


def _slow(scene: Scene) -> float:
    """Seconds a timed-out answer takes: surely past the read timeout `_slow_client` set."""
    return late(scene.notes["read_timeout"])


def _waited_retry_after(scene: Scene, run: dict[str, Any]) -> None:
    assert float(RETRY_AFTER) in scene.clock.slept, scene.clock.slept
    assert scene.notes["retries"] == 0  # the client waited; the engine had nothing to retry


def _backed_off(scene: Scene, run: dict[str, Any]) -> None:
    """No Retry-After to honour: the client waited on its own (its rate was lowered) and
    sent again; the engine had nothing to retry."""
    assert sum(scene.clock.slept) > 0, scene.clock.slept
    assert scene.notes["retries"] == 0
    assert run["cost"]["provider_calls"] >= 2, run["cost"]


def _engine_retried(scene: Scene, run: dict[str, Any]) -> None:
    assert scene.notes["retries"] >= 1
    logs = scene.api.get(f"/jobs/{scene.job_id}/logs").json["data"]
    assert any(ln["code"] == "run.transient_error" for ln in logs), logs


def _retried(scene: Scene, run: dict[str, Any]) -> None:
    """Retried within the call (the client layer) or by the engine: either way more than one
    attempt reached the destination, counted in the run's cost."""
    assert run["cost"]["provider_calls"] >= 2, run["cost"]


def _also(*checks: Check) -> Check:
    def both(scene: Scene, run: dict[str, Any]) -> None:
        for c in checks:
            c(scene, run)

    return both


# Mailchimp: tests/fakes/mailchimp.py


def _mc(scene: Scene) -> Any:
    return scene.fake.env["fake_mailchimp"]


def _mc_path(scene: Scene) -> str:
    return f"/lists/{scene.fake.list_id}"  # type: ignore[attr-defined]


def _mc_subscribes(scene: Scene) -> int:
    return len([r for r in _mc(scene).requests if r.method == "POST" and r.path.endswith(_mc_path(scene))])


MAILCHIMP = "mailchimp_audience_export"


def _mc_revoke(scene: Scene) -> None:
    _mc(scene).api_keys.clear()


def _mc_429(scene: Scene) -> None:
    _mc(scene).fail(429, retry_after=str(RETRY_AFTER), path=_mc_path(scene), method="POST")


def _mc_500(scene: Scene) -> None:
    _mc(scene).fail(500, path=_mc_path(scene), method="POST")


def _mc_slow(scene: Scene) -> None:
    _slow_client(scene)
    _mc(scene).stall(_slow(scene), path=_mc_path(scene), method="POST")


def _mc_sent_twice(scene: Scene, run: dict[str, Any]) -> None:
    assert _mc_subscribes(scene) == 2


# Google Tag Manager: tests/fakes/google.py

GTM = "gtm_install_tag"
GTM_PATH = "/workspaces/3/tags"


def _google(scene: Scene) -> Any:
    return scene.fake.env["fake_google"]


def _gtm_requests(scene: Scene, part: str) -> int:
    return len([p for _, p in _google(scene).requests if part in p])


# FullContact: tests/fakes/fullcontact.py (a Receiver with a script)

FULLCONTACT = "fullcontact_person_enrich"


def _fc(scene: Scene) -> Any:
    return scene.fake.env["fake_fullcontact"]


def _fc_lookups(scene: Scene) -> int:
    return len(_fc(scene).lookups())


def _fc_slow(scene: Scene) -> None:
    _slow_client(scene)
    # The first lookup answers late (not at all, as far as the client is concerned).
    _fc(scene).receiver.then(Answer(404, {"status": 404, "message": "Profile not found"}, delay=_slow(scene)))


# Webhook and generic enrichment endpoint: tests/http_receiver.py


def _receiver(scene: Scene) -> Any:
    return scene.fake.receiver  # type: ignore[attr-defined]


def _script(*answers: Answer) -> Callable[[Scene], None]:
    def inject(scene: Scene) -> None:
        _receiver(scene).then(*answers)

    return inject


def _slow_receiver(scene: Scene) -> None:
    _slow_client(scene)
    _receiver(scene).then(Answer(200, {"ok": True}, delay=_slow(scene)))


WEBHOOK = "webhook_audience_export"
ENDPOINT = "http_profile_enrich"
THROTTLED = Answer(429, {"error": "slow down"}, headers={"Retry-After": str(RETRY_AFTER)})
BROKEN = Answer(500, {"error": "internal error"})


# AWS: botocore event hooks on the providers' shared session (tests/providers/aws_faults.py)

KINESIS = "kinesis_audience_export"
SQS = "sqs_audience_export"
S3 = "s3_audience_export"


def _aws_error(service: str, operation: str, code: str, status: int, message: str) -> Callable[[Scene], None]:
    def inject(scene: Scene) -> None:
        scene.notes["hits"] = aws_faults.answer_error(service, operation, code, status, message, times=1)

    return inject


def _aws_timeout(service: str, operation: str) -> Callable[[Scene], None]:
    def inject(scene: Scene) -> None:
        scene.notes["hits"] = aws_faults.time_out(service, operation, times=1)

    return inject


def _hit_once(scene: Scene, run: dict[str, Any]) -> None:
    assert len(scene.notes["hits"]) == 1


def _refuse_first_kinesis(scene: Scene) -> None:
    scene.notes["calls"] = aws_faults.refuse_kinesis_records(lambda n, records: {0, 2} if n == 0 else set())


def _refuse_first_sqs(scene: Scene) -> None:
    scene.notes["calls"] = aws_faults.refuse_sqs_entries(lambda n, entries: {1} if n == 0 else set())


def _only_refused_resent(scene: Scene, run: dict[str, Any]) -> None:
    calls = scene.notes["calls"]
    assert calls.refused[0], calls
    assert len(calls.sent) == 2 and calls.sent[1] == calls.refused[0], calls


# -- the matrix ---------------------------------------------------------------------------------

NO_BATCH = "one request per profile: nothing is batched, so nothing can be partly refused"

# Collection calls no provider: data is pushed to Switchyard, so a provider fault cannot happen.
PUSHED = NotApplicable("collection calls no provider: SDKs push to Switchyard; its own faults are the "
                       "collector's 429/409/401 and the crash proof (tests/proof/test_collect_crash.py)")

MATRIX: dict[str, dict[str, Cell]] = {
    "http_api": dict.fromkeys(FAULTS, PUSHED),
    "mailchimp": {
        "auth": Case(MAILCHIMP, _mc_revoke, words="Your API key may be invalid"),
        "throttled": Case(MAILCHIMP, _mc_429, _also(_waited_retry_after, _mc_sent_twice),
                          proven_by="tests/engine/test_mailchimp.py::test_a_429_then_200_loses_no_member"),
        "outage": Case(MAILCHIMP, _mc_500, _also(_retried, _mc_sent_twice)),
        "timeout": Case(MAILCHIMP, _mc_slow, _also(_retried, _mc_sent_twice)),
        "partial": NotApplicable(
            "batch subscribe's per-member errors are permanent (an address Mailchimp rejects): they "
            "are counted as omitted 'rejected', never re-sent (tests/engine/test_mailchimp.py::"
            "test_export_tags_members_and_leavers_lose_the_tag); a refused request is re-sent whole"),
    },
    "webhook": {
        "auth": Case(WEBHOOK, _script(*[Answer(401, {"message": "bad signature"})] * 4), words="bad signature"),
        "throttled": Case(WEBHOOK, _script(THROTTLED), _waited_retry_after),
        "outage": Case(WEBHOOK, _script(BROKEN), _retried, proven_by="tests/engine/test_webhook_export.py::"
                       "test_a_busy_receiver_makes_the_job_back_off_then_nothing_is_lost"),
        "timeout": Case(WEBHOOK, _slow_receiver, _retried),
        "partial": NotApplicable("a batch is one JSON request: the endpoint takes or refuses it whole"),
    },
    "fullcontact": {
        "auth": Case(FULLCONTACT, lambda s: _fc(s).keys.clear(), words="Invalid access token"),
        "throttled": Case(FULLCONTACT, lambda s: _fc(s).throttle(1, retry_after=RETRY_AFTER),
                          _waited_retry_after,
                          proven_by="tests/engine/test_enrichment.py::test_a_429_then_200_loses_nothing"),
        "outage": Case(FULLCONTACT, lambda s: _fc(s).receiver.then(Answer(503, {"status": 503,
                                                                               "message": "Service Unavailable"})),
                       _retried),
        "timeout": Case(FULLCONTACT, _fc_slow, _retried),
        "partial": NotApplicable(NO_BATCH),
    },
    "http_enrichment": {
        "auth": Case(ENDPOINT, _script(*[Answer(401, {"error": "token revoked"})] * 4), words="token revoked"),
        # The endpoint's calls are FullContact's: the same client layer, one POST per profile.
        "throttled": Case(ENDPOINT, _script(THROTTLED), _waited_retry_after,
                          proven_by="tests/providers/test_http.py::test_retry_after_in_seconds_is_honoured"),
        "outage": Case(ENDPOINT, _script(BROKEN), _retried, proven_by="tests/providers/test_http.py::"
                       "test_transient_statuses_are_retried_and_every_attempt_counted"),
        "timeout": Case(ENDPOINT, _slow_receiver, _retried,
                        proven_by="tests/providers/test_http.py::test_slow_answers_time_out_and_are_retried"),
        "partial": NotApplicable(NO_BATCH),
    },
    "google_tag_manager": {
        "auth": Case(GTM, lambda s: _google(s).fail(401, times=10, path="/tagmanager/v2/"),
                     words="Request had invalid authentication credentials",
                     proven_by="tests/engine/test_gtm.py::"
                               "test_a_401_during_the_run_fails_the_job_and_marks_the_authorization"),
        "throttled": Case(GTM, lambda s: _google(s).quota(path=GTM_PATH), _backed_off,
                          proven_by="tests/providers/test_gtm.py::"
                                    "test_a_quota_403_is_retried_with_backoff_and_a_lasting_one_is_transient_not_auth"),
        "outage": Case(GTM, lambda s: _google(s).fail(503, path=GTM_PATH), _retried,
                       proven_by="tests/providers/test_gtm.py::"
                                 "test_5xx_is_retried_then_succeeds_and_a_lasting_outage_is_transient"),
        "timeout": Case(GTM, lambda s: (_slow_client(s), _google(s).stall(_slow(s), path="/tagmanager/v2/")),
                        _retried),
        "partial": NotApplicable("one tag and one version per run: nothing is batched"),
    },
    "amazon_kinesis": {
        "auth": Case(KINESIS, _aws_error("kinesis", "PutRecords", "UnrecognizedClientException", 400,
                                         "The security token included in the request is invalid."),
                     words="UnrecognizedClientException"),
        "throttled": Case(KINESIS, _aws_error("kinesis", "PutRecords", "LimitExceededException", 400,
                                              "Rate exceeded for stream"), _also(_hit_once, _engine_retried),
                          proven_by="tests/providers/test_kinesis.py::test_check_throttled_or_failing_is_transient"),
        "outage": Case(KINESIS, _aws_error("kinesis", "PutRecords", "InternalFailure", 500, "Internal failure"),
                       _also(_hit_once, _engine_retried)),
        "timeout": Case(KINESIS, _aws_timeout("kinesis", "PutRecords"), _also(_hit_once, _engine_retried),
                        proven_by="tests/providers/test_kinesis.py::test_a_put_that_times_out_fails_the_step_as_transient"),
        "partial": Case(KINESIS, _refuse_first_kinesis, _only_refused_resent,
                        proven_by="tests/providers/test_kinesis.py::test_refused_records_are_retried_alone_with_backoff"),
    },
    "amazon_sqs": {
        "auth": Case(SQS, _aws_error("sqs", "SendMessageBatch", "InvalidClientTokenId", 403,
                                     "The security token included in the request is invalid."),
                     words="InvalidClientTokenId"),
        "throttled": Case(SQS, _aws_error("sqs", "SendMessageBatch", "RequestThrottled", 400, "Request throttled"),
                          _also(_hit_once, _engine_retried),
                          proven_by="tests/providers/test_sqs.py::test_check_throttled_is_transient"),
        "outage": Case(SQS, _aws_error("sqs", "SendMessageBatch", "InternalError", 500, "Internal error"),
                       _also(_hit_once, _engine_retried)),
        "timeout": Case(SQS, _aws_timeout("sqs", "SendMessageBatch"), _also(_hit_once, _engine_retried),
                        proven_by="tests/providers/test_sqs.py::test_a_batch_that_times_out_fails_the_step_as_transient"),
        "partial": Case(SQS, _refuse_first_sqs, _only_refused_resent,
                        proven_by="tests/providers/test_sqs.py::test_failed_entries_are_retried_alone"),
    },
    "amazon_s3": {
        "auth": Case(S3, _aws_error("s3", "PutObject", "AccessDenied", 403, "Access Denied"), words="AccessDenied"),
        "throttled": Case(S3, _aws_error("s3", "PutObject", "SlowDown", 503, "Please reduce your request rate."),
                          _also(_hit_once, _engine_retried),
                          proven_by="tests/providers/test_s3_errors.py::test_throttling_and_outages_are_transient"),
        "outage": Case(S3, _aws_error("s3", "PutObject", "InternalError", 500,
                                      "We encountered an internal error. Please try again."),
                       _also(_hit_once, _engine_retried)),
        "timeout": Case(S3, _aws_timeout("s3", "PutObject"), _also(_hit_once, _engine_retried),
                        proven_by="tests/providers/test_s3_errors.py::test_unreachable_is_transient"),
        "partial": NotApplicable("an object is written whole (PutObject); a part written again overwrites "
                                 "the same key"),
    },
}

# What a clean run of each workflow's fake adds (tests/providers/workflow_fakes.py).
ADDED = {MAILCHIMP: 4, WEBHOOK: 4, FULLCONTACT: 3, ENDPOINT: 3, GTM: 0, KINESIS: 4, SQS: 4, S3: 4}


def _delivered(scene: Scene) -> list[str]:
    """What reached the destination, one entry per stored item (a duplicate shows twice)."""
    fake = scene.fake
    wf = type(fake).__name__
    if wf == "KinesisExport":
        return [json.loads(d)["event_id"] for d in _records(fake.stream)]  # type: ignore[attr-defined]
    if wf == "SqsExport":
        sqs = boto3.client("sqs", region_name="us-east-1")
        ids: list[str] = []
        while True:
            got = sqs.receive_message(QueueUrl=fake.url, MaxNumberOfMessages=10,  # type: ignore[attr-defined]
                                      VisibilityTimeout=600).get("Messages", [])
            if not got:
                return ids
            ids += [json.loads(m["Body"])["event_id"] for m in got]
    if wf == "WebhookExport":
        return [e["event_id"] for e in fake.inbox.events]  # type: ignore[attr-defined]
    return fake.effect(scene.deps, scene.tenant, scene.job_id)


# -- the tests ----------------------------------------------------------------------------------


def test_every_registered_provider_has_a_full_row() -> None:
    registered = set(Registry().ids())
    assert registered <= set(MATRIX), f"no fault-matrix row for {sorted(registered - set(MATRIX))}"
    for provider, row in MATRIX.items():
        assert set(row) == set(FAULTS), (provider, sorted(row))
        workflows = {w.id for w in Registry().get(provider).spec.workflows}
        for fault, cell in row.items():
            if isinstance(cell, Case):
                assert cell.workflow in workflows and (provider, cell.workflow) in WORKFLOW_FAKES, (provider, fault)
                assert fault != "auth" or cell.words, f"{provider}: the auth row names the provider's words"
                if cell.proven_by:
                    path, name = cell.proven_by.split("::")
                    assert f"def {name}(" in (ROOT / path).read_text(), f"{provider}/{fault}: {cell.proven_by} is gone"
            else:
                assert len(cell.why) > 20, (provider, fault)


FULL = os.environ.get("SWITCHYARD_FAULTS") == "full"
CASES = [(p, f) for p in sorted(MATRIX) for f in FAULTS
         if isinstance(MATRIX[p][f], Case) and (FULL or not MATRIX[p][f].proven_by)]  # type: ignore[union-attr]
# The export cells again on the change-log path: the audience backfilled, a clean first run
# leaving a cursor, 2 profiles joining and 1 leaving, then the faulty run reads only those.
EXPORTS = (MAILCHIMP, WEBHOOK, KINESIS, SQS, S3)
PATHS = [pytest.param(p, f, "full", id=f"{p}-{f}") for p, f in CASES] + [
    pytest.param(p, f, "log", id=f"{p}-{f}-log") for p, f in CASES
    if MATRIX[p][f].workflow in EXPORTS]  # type: ignore[union-attr]
HOURLY = {"type": "interval", "every_minutes": 60}


@pytest.fixture(scope="module")
def module_deps(aws_endpoint: str) -> Iterator[Any]:
    # One pair of fresh tables for the module (moto answers in time proportional to the
    # table); every case has its own tenant.
    yield from fresh_deps()


@pytest.fixture(scope="module")
def module_stack(aws_endpoint: str) -> Iterator[Stack]:
    # The change-log rows' tables: the profiles table with its stream and the local poller.
    yield from streamed_stack()


@pytest.fixture()
def path(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "full"))


@pytest.fixture()
def deps(request: pytest.FixtureRequest, path: str) -> Iterator[Any]:
    from chalicelib.bootstrap import use
    from chalicelib.services.accounts import token_cache

    token_cache.clear()
    if path == "log":
        stack = request.getfixturevalue("module_stack")
        stack.next_test()
        d = stack.deps
    else:
        d = request.getfixturevalue("module_deps")
    use(d)
    yield d
    use(None)


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[MovedClock]:
    from chalicelib.providers import calls

    yield on_http_layer(monkeypatch, MovedClock())
    calls.reset()  # drop the event hooks an AWS row registered on the shared session


def _stop_receiver(fake: WorkflowFake) -> None:
    # Webhook and endpoint fakes start a receiver in start(); a failed run never reads it back.
    receiver = getattr(fake, "receiver", None)
    if receiver is not None and receiver._thread.is_alive():
        receiver.stop()


def _settle(drain: Any, api: Any, deps: Any, tenant: Any, job_id: str) -> tuple[dict[str, Any], int]:
    """Deliver the run; a transient failure's retry is delivered as SQS would after its
    delay (the engine queued it with DelaySeconds). Returns the run and the engine retries."""
    retries = 0
    for _ in range(4):
        forget_moto_models()
        drain.run()
        run = api.get(f"/jobs/{job_id}/runs").json["data"][0]  # the newest
        if run["status"] != "retrying":
            return run, retries
        retries += 1
        deps.runs_queue.send({"account_id": tenant.account_id, "job_id": job_id, "trigger": "retry"})
    return run, retries


class HourlyJobs:
    """The test's Api, making the jobs it creates hourly: a job that can be run again."""

    def __init__(self, api: Any) -> None:
        self.api = api

    def post(self, path_: str, body: Any = None) -> Any:
        return self.api.post(path_, {**body, "schedule": HOURLY} if path_ == "/jobs" else body)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)


@dataclass
class OnTheLog:
    """The change-log path's set-up and checks around the faulty run (the second)."""

    stack: Stack
    scene: Scene
    drain: Any
    cursor: dict[str, Any] = field(default_factory=dict)
    before: list[str] = field(default_factory=list)

    def state(self) -> dict[str, Any]:
        s = self.scene
        job = s.deps.jobs.get(s.tenant.account_id, s.job_id, consistent=True)
        return dict(job.state.get("changes") or {})

    def first_run_then_changes(self) -> None:
        from tests.engine.fresh import seed
        from tests.membership.test_backfill import drain as drain_backfill

        s = self.scene
        acct = s.tenant.account_id
        self.stack.deliver()
        drain_backfill(self.stack, acct)
        run, _ = _settle(self.drain, s.api, s.deps, s.tenant, s.job_id)
        assert run["status"] == "succeeded" and run["added"] == ADDED[s.fake_workflow], run
        self.cursor = self.state()
        assert self.cursor, "the first run left no change-log cursor"
        self.before = _delivered(s)
        if "fake_mailchimp" in s.fake.env:
            s.fake.env["fake_mailchimp"].requests.clear()  # the rows count the faulty run's requests
        s.clock.slept.clear()
        # 2 profiles join, a member leaves
        seed(s.deps, acct, [{"email": f"j{i}@example.com", "first_name": f"J{i}", "plan": "pro"} for i in (0, 1)]
             + [{"email": "p0@example.com", "first_name": "P0", "plan": "free"}])
        self.stack.deliver()
        r = s.api.post(f"/jobs/{s.job_id}/run", {})
        assert r.status_code in (200, 202), r.body

    def check(self, run: dict[str, Any]) -> list[str]:
        """The faulty run sent the 3 changes, each once, read only them, and left the cursor
        at the log's head; the next run sends nothing. Returns what the faulty run delivered."""
        s = self.scene
        assert (run["added"], run["removed"]) == (2, 1), run
        after = _delivered(s)
        new = list((Counter(after) - Counter(self.before)).elements())
        # S3: the part, the manifest and 3 rows; the others: 3 events or member states
        assert len(new) == len(set(new)) == (5 if s.fake_workflow == S3 else 3), new
        # (the positive control: it read the 3 changes and their profiles, and the member
        # without an email the first run could not send, by key; no page of every profile)
        ctx = _step0(s, run["id"])
        waiting = len(self.cursor["pending"])
        assert (ctx["full"], ctx["changes_read"], ctx["profiles_read"]) == (False, 3, 3 + waiting), ctx
        head = s.deps.audience_members.head(s.tenant.account_id, self.cursor["audience_id"])
        assert self.state() == {**self.cursor, "n": head}, (self.state(), head)
        r = s.api.post(f"/jobs/{s.job_id}/run", {})
        assert r.status_code in (200, 202), r.body
        third, _ = _settle(self.drain, s.api, s.deps, s.tenant, s.job_id)
        assert (third["status"], third["added"], third["removed"]) == ("succeeded", 0, 0), third
        assert not Counter(_delivered(s)) - Counter(after)
        return new


def _step0(scene: Scene, run_id: str) -> dict[str, Any]:
    lines = scene.api.get(f"/jobs/{scene.job_id}/logs").json["data"]
    [line] = [ln for ln in lines if ln.get("run_id") == run_id and ln["message"].startswith("step 0")]
    return dict(line.get("context") or {})


@pytest.mark.parametrize(("provider_id", "fault", "path"), PATHS, indirect=["path"])
def test_fault(request: pytest.FixtureRequest, provider_id: str, fault: str, path: str, deps: Any,
               new_tenant: Any, api_for: Any, clock: MovedClock, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.runs.engine import EngineOptions
    from tests.engine.conftest import Drain

    case = MATRIX[provider_id][fault]
    assert isinstance(case, Case)
    # GIVEN the workflow's fake, its tenant, authorization and job (created healthy)
    fake = WORKFLOW_FAKES[(provider_id, case.workflow)](request)
    request.addfinalizer(lambda: _stop_receiver(fake))
    tenant = new_tenant("Faults")
    api = api_for(tenant.admin_token)
    drain = Drain(deps, EngineOptions(max_records=1000))
    drain.purge()
    job_id = fake.start(HourlyJobs(api) if path == "log" else api, deps, tenant)
    scene = Scene(fake, deps, api, tenant, job_id, clock, monkeypatch, fake_workflow=case.workflow)
    # (on the log path: a first run leaving a cursor, then profiles join and leave)
    log = OnTheLog(request.getfixturevalue("module_stack"), scene, drain) if path == "log" else None
    if log:
        log.first_run_then_changes()
    # AND the fault
    case.inject(scene)
    # WHEN the run is delivered (and its retries, if any)
    run, scene.notes["retries"] = _settle(drain, api, deps, tenant, job_id)
    job = api.get(f"/jobs/{job_id}").json["data"]
    assert drain.errors == []
    if fault == "auth":
        # THEN the job failed at once, in the provider's words, and the authorization is unhealthy
        assert run["status"] == "failed" and job["status"] == "failed" and job["fault_count"] == 1, (run, job)
        [line] = api.get(f"/jobs/{job_id}/logs?level=error").json["data"]
        assert line["code"] == "run.config_error" and case.words in line["message"], line
        auth = api.get(f"/authorizations/{job['authorization_id']}").json["data"]
        assert auth["health"]["status"] == "unhealthy", auth["health"]
        assert case.words in auth["health"]["reason"], auth["health"]
        # (and a failed run leaves the cursor where the last good run put it)
        assert log is None or log.state() == log.cursor
        return
    # THEN the run succeeded, each item reached the destination once
    assert run["status"] == "succeeded", (run, api.get(f"/jobs/{job_id}/logs").json["data"])
    if log:
        log.check(run)
    else:
        assert run["added"] == ADDED[case.workflow], run
        delivered = _delivered(scene)
        assert delivered and len(delivered) == len(set(delivered)), delivered
    case.check(scene, run)
