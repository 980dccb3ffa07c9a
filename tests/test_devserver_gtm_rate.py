"""The local stack's Tag Manager rate (SWITCHYARD_DEV_GTM_RATE): what the browser tests set
so the wizard does not wait on Google's quota; unset, Google's own rate stays."""

from __future__ import annotations

import pytest

from chalicelib.providers import gtm
from devserver.__main__ import StartupError, apply_gtm_rate


def test_the_rate_is_set_from_the_environment_and_left_alone_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gtm, "PROJECT_RATE", 0.25)
    monkeypatch.delenv("SWITCHYARD_DEV_GTM_RATE", raising=False)
    apply_gtm_rate()
    assert gtm.PROJECT_RATE == 0.25
    monkeypatch.setenv("SWITCHYARD_DEV_GTM_RATE", "1000")
    apply_gtm_rate()
    assert gtm.PROJECT_RATE == 1000.0


@pytest.mark.parametrize("raw", ["fast", "0", "-1"])
def test_a_rate_that_is_not_a_positive_number_stops_the_start(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setattr(gtm, "PROJECT_RATE", 0.25)
    monkeypatch.setenv("SWITCHYARD_DEV_GTM_RATE", raw)
    with pytest.raises(StartupError, match="SWITCHYARD_DEV_GTM_RATE"):
        apply_gtm_rate()
    assert gtm.PROJECT_RATE == 0.25
