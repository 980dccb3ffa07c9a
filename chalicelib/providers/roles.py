"""The four roles a workflow's step plays for the job engine, and what they exchange.

A workflow declares its role in its spec (`WorkflowSpec.step`, domain/catalog.py): the
role, and the factory that builds the step from its provider, named "module:attribute" so
the step's module is imported on the first run that needs it. The registry
(providers/registry.py: `source()`, `destination()`, `enricher()`, `task()`) builds it and
returns it typed by the protocols below:

* Source      — an import workflow: reads records, one page per step (runs/imports.py);
* Destination — an export workflow: writes the parts of a run's plan (runs/export.py);
* Enricher    — an enrichment workflow: looks profiles up one at a time (runs/enrichment.py);
* Task        — an `other` workflow: does its whole job in one step (runs/tasks.py).

Import-time cost: dataclasses and typing only (the engine imports this module).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from chalicelib.domain.enrichment import UNMATCHED
from chalicelib.domain.profiles import Profile
from chalicelib.providers.calls import CallCounter

# -- what every step is given ------------------------------------------------------------


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


# -- source (import) ------------------------------------------------------------------------


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


@runtime_checkable
class Source(Protocol):
    def read(self, ctx: StepContext) -> ReadResult:
        """Read the next rows from ctx.cursor. Must be deterministic: reading again from the
        same cursor returns the same rows (a redelivered step re-reads them). Raises
        ProviderError for config/auth problems (transient=False) and outages (transient=True)."""
        ...


# -- destination (export) ------------------------------------------------------------------

# One change of an export run's plan: (action "add" | "remove", profile id, the values of
# the job's exported fields captured when the plan was made).
PlanRow = tuple[str, str, list[Any]]


class PartResult(Protocol):
    key: str
    rows: int  # how many of the rows given the part holds (the first ones)
    bytes: int
    # Positions (among those rows) the destination was not sent because one row is over
    # its size limit (an event destination's 1 MB record): counted as omitted `too_large`.
    skipped: tuple[int, ...]


@runtime_checkable
class Destination(Protocol):
    def freeze(self, config: dict[str, Any]) -> dict[str, Any]:
        """Destination settings a run keeps from its step 0 (small JSON); "fields" names
        the profile values captured for each change. ProviderError when unusable."""
        ...

    def write_part(self, ctx: StepContext, frozen: dict[str, Any], part: int,
                   rows: Sequence[PlanRow]) -> PartResult:
        """Write part `part` (idempotent: same part, same rows, same result) with the first
        rows that fit; returning means the destination has them."""
        ...

    def write_manifest(self, ctx: StepContext, frozen: dict[str, Any], summary: dict[str, Any]) -> str:
        """Tell the destination the run's parts are complete."""
        ...


# -- enricher ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lookup:
    """One profile's answer: `fields` to merge (mapped, non-empty), or None with the
    reason it is omitted (unmatched, rejected) and the provider's words, if any."""

    fields: dict[str, Any] | None
    reason: str = UNMATCHED
    words: str = ""


@runtime_checkable
class Enricher(Protocol):
    def freeze(self, config: dict[str, Any]) -> dict[str, Any]:
        """The settings a run keeps from its step 0 (small JSON): the field mapping and
        whether to overwrite stored values. ProviderError when unusable."""
        ...

    def eligible(self, profile: Profile) -> bool:
        """Does the profile carry what the provider looks up by (e.g. an email)?"""
        ...

    def lookup(self, ctx: StepContext, frozen: dict[str, Any], profile: Profile) -> Lookup:
        """Ask the provider about one profile, through providers/http.py. 404 / no data is
        a Lookup without fields; auth and config errors raise ProviderError(transient=
        False), throttling and outages ProviderError(transient=True)."""
        ...


# -- task (`other` jobs) ----------------------------------------------------------------------


@dataclass
class TaskResult:
    """What a one-step run of an `other` job did (docs/engine.md, "Other jobs")."""

    messages: list[str]  # log lines of the run, plain words (never a credential)
    state: dict[str, Any]  # job-level state kept for the next run


@runtime_checkable
class Task(Protocol):
    def run(self, ctx: StepContext) -> TaskResult:
        """Do the whole job in one step, idempotently: a redelivered step runs it again.
        Raises ProviderError like the other steps."""
        ...


__all__ = [
    "Destination",
    "Enricher",
    "Lookup",
    "PartResult",
    "PlanRow",
    "ReadResult",
    "Source",
    "SourceRow",
    "StepContext",
    "Task",
    "TaskResult",
]
