"""Operational CloudWatch metrics as Powertools EMF lines (docs/alerts.md, "CloudWatch").

Services `count` into a per-process buffer; each Lambda entry point flushes it when its
invocation ends (`flushing`), one EMF line per dimension set on stdout, which CloudWatch
turns into metrics with no API call. Only counts and ids of providers go in: never an
account's data, a label or a secret. Powertools is imported on flush only (cold start).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from chalicelib.config import settings

NAMESPACE = "Switchyard"
log = logging.getLogger("switchyard.metrics")

# Metric names (the dashboard and alarms in infra/template.json use the same).
SWEEP_QUEUED = "SweepQueued"
SWEEP_CHECKED = "SweepChecked"
SWEEP_HEALTHY = "SweepHealthy"
SWEEP_UNHEALTHY = "SweepUnhealthy"
SWEEP_INCONCLUSIVE = "SweepInconclusive"
SWEEP_TIMEOUTS = "SweepTimeouts"
SWEEP_ERRORS = "SweepErrors"
RUN_SUCCEEDED = "RunSucceeded"
RUN_FAILED = "RunFailed"
PROVIDER_REQUESTS = "ProviderRequests"

Dims = tuple[tuple[str, str], ...]


class MetricsBuffer:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # the health handler counts from its check threads
        self._counts: dict[Dims, Counter[str]] = {}

    def count(self, name: str, value: int = 1, **dimensions: str) -> None:
        dims: Dims = tuple(sorted(dimensions.items()))
        with self._lock:
            self._counts.setdefault(dims, Counter())[name] += value

    def pending(self) -> dict[Dims, dict[str, int]]:
        with self._lock:
            return {k: dict(v) for k, v in self._counts.items()}

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
        if not counts:
            return
        try:
            from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

            stage = settings().stage
            for dims, values in counts.items():
                m = EphemeralMetrics(namespace=NAMESPACE, service="switchyard")
                m.add_dimension(name="stage", value=stage)
                for key, dim in dims:
                    m.add_dimension(name=key, value=dim)
                for name, value in sorted(values.items()):
                    m.add_metric(name=name, unit=MetricUnit.Count, value=value)
                m.flush_metrics()
        except Exception:  # metrics never fail the work they describe
            log.exception("metrics not flushed")


_buffer = MetricsBuffer()


def metrics() -> MetricsBuffer:
    return _buffer


@contextmanager
def flushing() -> Iterator[MetricsBuffer]:
    """Wrap a Lambda entry point: what it counted is flushed when it ends, even on error."""
    try:
        yield _buffer
    finally:
        _buffer.flush()


__all__ = ["NAMESPACE", "MetricsBuffer", "flushing", "metrics"]
