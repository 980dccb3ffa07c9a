"""The one interface every provider implements (STYLE: spec, check, options, steps)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib.domain.catalog import ProviderSpec
from chalicelib.domain.models import CheckResult
from chalicelib.providers.calls import CallCounter


@dataclass(frozen=True)
class Option:
    value: str
    label: str
    kind: str | None = None  # e.g. "prefix" or "object" for S3 keys


class Provider(Protocol):
    spec: ProviderSpec

    def check(
        self,
        method: str,
        credentials: Any,
        resources: dict[str, str],
        counter: CallCounter | None = None,
    ) -> CheckResult:
        """Verify credentials (and named resources).

        Bad credentials or missing resources are a result (unhealthy + reason), never an
        exception; ProviderError(transient=True) means nothing could be concluded.
        """
        ...

    def options(
        self,
        method: str,
        credentials: Any,
        workflow: str,
        field: str,
        params: dict[str, str],
        counter: CallCounter | None = None,
    ) -> list[Option]:
        """Choices for a config field, read live through the credentials."""
        ...

    def credential_hint(self, method: str, credentials: Any) -> str | None:
        """A masked, non-secret reminder of which credentials these are."""
        ...


class ProviderError(Exception):
    """A provider call failed in a way the user must fix or wait out.

    `transient` separates throttling/outages (retry later) from config/auth errors.
    The message is the provider's reason in plain words, never a credential.
    """

    def __init__(
        self,
        reason: str,
        *,
        transient: bool = False,
        field: str | None = None,
        retry_after: float | None = None,
        auth: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        # The credentials themselves were refused (401/403, revoked or expired keys): the
        # authorization is unhealthy, not just this job's configuration.
        self.auth = auth
        self.field = field
        self.retry_after = retry_after  # seconds the provider asked us to wait (Retry-After)


def mask(value: str, keep: int = 4) -> str:
    if len(value) <= keep * 2:
        return "…" + value[-2:] if len(value) > 2 else "…"
    return f"{value[:keep]}…{value[-keep:]}"


# -- run steps (the job engine calls these; see docs/engine.md) -------------------------


@dataclass
class StepContext:
    """Everything one step of one run may use. No AWS client of the app's own is in here:
    providers reach their service through `credentials` and providers.calls only."""

    account_id: str
    job_id: str
    run_id: str
    step: int  # 0 for the first step of a run
    method: str
    credentials: Any  # the auth method's validated credentials model
    config: dict[str, Any]  # the workflow's validated config (model_dump)
    cursor: dict[str, Any] | None  # where this step starts; None at step 0
    state: dict[str, Any]  # job-level state left by the last finished run (e.g. what was imported)
    max_records: int  # read at most this many rows in this step
    deadline: float  # time.monotonic() by which the step must return
    counter: CallCounter | None = None
    # Export parts: where the rows given start in the run's plan. A destination that sends a
    # part in several requests names each row by it (stable ids however parts are split).
    first_row: int = 0


@dataclass
class SourceRow:
    data: dict[str, Any]  # one record as read (CSV row or JSON object), before mapping
    ref: str  # where it came from, for log lines: "s3://bucket/key#line"


@dataclass
class ReadResult:
    rows: list[SourceRow]
    cursor: dict[str, Any]  # where the next step starts (JSON-serialisable, < 100 KB)
    done: bool  # True when this run has read everything it will read
    state: dict[str, Any]  # job-level state to keep once the run finishes (incremental imports)
    processed: int  # rows read so far in this run, this step included
    total: int | None = None  # rows (or bytes, see total_unit) this run will read, when known
    total_unit: str = "rows"
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (ref, why) for unparseable rows


class ImportStep(Protocol):
    def read(self, ctx: StepContext) -> ReadResult:
        """Read the next rows from ctx.cursor. Must be deterministic: reading again from the
        same cursor returns the same rows (a redelivered step re-reads them). Raises
        ProviderError for config/auth problems (transient=False) and outages (transient=True)."""
        ...


@dataclass
class TaskResult:
    """What a one-step run of an `other` job did (docs/engine.md, "Other jobs")."""

    messages: list[str]  # log lines of the run, plain words (never a credential)
    state: dict[str, Any]  # job-level state kept for the next run


class TaskStep(Protocol):
    def run(self, ctx: StepContext) -> TaskResult:
        """Do the whole job in one step, idempotently: a redelivered step runs it again.
        Raises ProviderError like the other steps."""
        ...
