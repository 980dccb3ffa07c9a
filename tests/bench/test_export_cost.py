"""bench/export_cost.py in quick mode: an export run's requests and read units do not grow
with the account's size (see the bench's docstring)."""

import pytest

from tests.bench.runner import TIMEOUT_S, assert_bench_passes


@pytest.mark.timeout(TIMEOUT_S + 60)
def test_export_cost_does_not_grow_with_the_account() -> None:
    assert_bench_passes("export_cost.py")
