"""The app's settings are read outside any chalice.test request, before and after each test.

chalice.test.Client swaps os.environ for a copy with the "local" stage's variables while it
handles a request. Once, a test left the settings unread (config.reset()) and the next file's
first read happened inside such a request: that worker then used switchyard-local-main, which
the test stack does not have, for five files (tests/conftest.py `settle_settings`)."""

from __future__ import annotations

from typing import Any

import pytest
from chalice import Chalice
from chalice.test import Client

from tests.conftest import STAGE, settle_settings


def _stage_read_inside_a_request() -> str:
    """Forget the settings, then read them first inside a test-client request."""
    from chalicelib import config

    # Its own name: a Chalice app named "switchyard" would set the service logger to ERROR.
    probe = Chalice(app_name="settings-probe", configure_logs=False)

    @probe.lambda_function(name="read_stage")
    def read_stage(event: Any, context: Any) -> str:
        return config.settings().stage

    config.reset()
    with Client(probe, stage_name="local") as c:
        return str(c.lambda_.invoke("read_stage", {}).payload)


def test_a_first_read_inside_a_request_takes_the_local_stage_and_the_guard_repairs_it(deps) -> None:
    import logging

    from chalicelib import config, logs

    service_log = logs.logger()
    level = logging.getLogger(service_log.name).level
    # GIVEN settings first read inside a request (the hazard is real: positive control)
    assert _stage_read_inside_a_request() == "local"
    # (the probe app leaves the service's logger as it was: same level for later tests)
    assert logging.getLogger(service_log.name).level == level
    assert config.settings().stage == "local"
    # WHEN the per-test guard runs, THEN it names the problem and reads them again, outside
    with pytest.raises(AssertionError, match="read with stage 'local'"):
        settle_settings("after a probe")
    assert config.settings().stage == STAGE


def test_a_test_that_leaves_the_settings_unread(deps) -> None:
    from chalicelib import config

    config.reset()
    assert config.settings.cache_info().currsize == 0


def test_the_next_test_starts_with_them_read_outside_any_request(deps) -> None:
    from chalicelib import config

    # The guard read them before this test began (the test above left them unread); a read
    # inside this test's request would now find them cached with the stack's stage.
    assert config.settings.cache_info().currsize == 1
    assert config.settings().stage == STAGE
