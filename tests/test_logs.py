"""chalicelib/logs.py on its own: tracebacks without messages, redaction of registered
secrets (as they appear in JSON too), keys scoped and cleared, per thread, and the level
from the configuration (in a fresh interpreter: the Logger is built once per process)."""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

from chalicelib import logs
from chalicelib.domain.errors import Invalid
from chalicelib.providers.base import ProviderError
from tests.log_lines import log_lines, with_message
from tests.race_kit import crashes, race

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("switchyard.tests")


KEY = "secret-" + "looking-key"  # built at run time: the source lines a traceback quotes hold no value
PASSWORD = "hunter2" * 2


def _raise_chain() -> BaseException:
    try:
        try:
            {"a": 1}[KEY]
        except KeyError as inner:
            raise RuntimeError("wrapped: password=" + PASSWORD) from inner
    except RuntimeError as exc:
        return exc
    raise AssertionError("unreachable")


def test_tracebacks_keep_frames_and_types_but_withhold_messages() -> None:
    text = logs.safe_traceback(_raise_chain())
    assert KEY not in text and PASSWORD not in text
    # oldest first, linked as Python links them, with this file's frames
    assert text.index("KeyError: [message withheld") < text.index("direct cause") \
        < text.index("RuntimeError: [message withheld")
    assert text.count("Traceback (most recent call last):") == 2 and "in _raise_chain" in text


def test_our_own_errors_keep_their_messages() -> None:
    for exc in (Invalid("the body must be a JSON object"), ProviderError("the bucket does not exist")):
        try:
            raise exc
        except Exception as caught:
            assert logs.safe_traceback(caught).endswith(f": {caught}")


def test_registered_secrets_are_redacted_as_is_and_json_escaped(capsys) -> None:
    secret = 'pa"ss\\word-' + "9" * 8  # a quote and a backslash: JSON escapes both
    logs.redact(secret, "short")
    with logs.invocation("test"):
        log.info("given %s", secret, extra={"nested": {"value": secret}, "word": "short"})
    out = capsys.readouterr().out
    [line] = log_lines(out)
    assert secret not in out and json.dumps(secret)[1:-1] not in out
    assert line["message"] == "given [redacted]" and line["nested"] == {"value": "[redacted]"}
    assert line["word"] == "short"  # too short to be a credential: not redacted


def test_scope_restores_keys_and_invocation_starts_and_ends_empty(capsys) -> None:
    with logs.invocation("test", account_id="acct_1"):
        with logs.scope(job_id="job_1", run_id="run_1"):
            logs.bind(step=3)
            log.info("inside")
        log.info("after scope")
    logs.bind(job_id="stray")  # left behind by code outside any invocation...
    with logs.invocation("test"):
        log.info("next invocation")  # ...and not in the next invocation
    assert logs.current() == {}
    inside, after, nxt = log_lines(capsys.readouterr().out)
    assert (inside["account_id"], inside["job_id"], inside["run_id"], inside["step"]) == ("acct_1", "job_1", "run_1", 3)
    assert after["account_id"] == "acct_1" and not {"job_id", "run_id", "step"} & set(after)
    assert not {"account_id", "job_id"} & set(nxt) and nxt["handler"] == "test"


def test_concurrent_invocations_on_threads_keep_their_own_ids(capsys) -> None:
    # The devserver runs handlers on worker threads at once; the health handler uses a pool.
    barrier = threading.Barrier(2)

    def handle(job_id: str) -> None:
        try:
            with logs.invocation("run_step", job_id=job_id):
                barrier.wait()  # both bound before either logs
                log.info("working")
                barrier.wait()
        except BaseException:
            barrier.abort()  # the other thread stops waiting (and fails) too
            raise

    results = race([lambda j=j: handle(j) for j in ("job_a", "job_b")])
    assert not crashes(results), crashes(results)
    with logs.invocation("api", request_id="req_1"), cf.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(contextvars.copy_context().run, log.info, "in the pool").result()
    lines = log_lines(capsys.readouterr().out)
    assert sorted(line["job_id"] for line in with_message(lines, "working")) == ["job_a", "job_b"]
    [pooled] = with_message(lines, "in the pool")
    assert pooled["request_id"] == "req_1" and "job_id" not in pooled


def _fresh(level: str) -> list[dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHYARD_", "POWERTOOLS_", "AWS_LAMBDA"))}
    env.update(PYTHONPATH=str(ROOT), SWITCHYARD_LOG_LEVEL=level)
    code = ("import logging\nfrom chalicelib import logs\n"
            "with logs.invocation('t'):\n"
            "    logging.getLogger('switchyard.x').debug('d')\n"
            "    logging.getLogger('switchyard.x').info('i')\n"
            "    logging.getLogger('switchyard.x').warning('w')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    return log_lines(proc.stdout)


def test_the_level_comes_from_the_configuration_and_a_bad_one_means_info() -> None:
    assert [line["message"] for line in _fresh("warning")] == ["w"]
    bad = _fresh("LOUD")
    assert [line["message"] for line in bad] == ["SWITCHYARD_LOG_LEVEL is not a level; using INFO", "i", "w"]
