"""The local stack's admin token: generated, or chosen by the operator only if it is random."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.domain import tokens
from devserver import seed


def test_a_weak_chosen_admin_token_stops_the_start_with_how_to_make_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a $SWITCHYARD_ADMIN_TOKEN with 24+ characters of secret that a person chose
    monkeypatch.setenv(seed.TOKEN_ENV, "tok_local.mysupersecretpassword12345")
    # WHEN / THEN the start stops with a message that says how to generate one
    with pytest.raises(seed.SeedError) as err:
        seed.admin_token(tmp_path)
    assert "secrets.token_urlsafe(32)" in str(err.value) and "mysupersecret" not in str(err.value)


def test_an_unset_admin_token_is_generated_random_and_kept_private(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(seed.TOKEN_ENV, raising=False)
    token, source = seed.admin_token(tmp_path)
    assert source == "generated" and tokens.chosen_token_problem(token) is None
    assert (tmp_path / seed.TOKEN_FILE).stat().st_mode & 0o777 == 0o600
    # AND a random chosen one is taken as it is
    monkeypatch.setenv(seed.TOKEN_ENV, "tok_local." + tokens.new_secret())
    assert seed.admin_token(tmp_path)[1] == "env"
