"""bench/s3_import_memory.py in quick mode: its budgets hold (see the bench's docstring)."""

import pytest

from tests.bench.runner import TIMEOUT_S, assert_bench_passes


@pytest.mark.timeout(TIMEOUT_S + 60)
def test_s3_import_memory_budgets_hold() -> None:
    assert_bench_passes("s3_import_memory.py")
