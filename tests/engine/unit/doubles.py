"""Test-only destination, enricher and task for the run pipeline's unit tests: each records
what the engine asked of it, and errors can be queued, one per call. The import source is
tests/engine/sources.py's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.domain.catalog import AuthMethodSpec, JobType, ProviderSpec, Role, StepRef, WorkflowSpec
from chalicelib.domain.enrichment import UNMATCHED
from chalicelib.domain.profiles import Profile
from chalicelib.providers.base import ProviderError
from chalicelib.providers.roles import Lookup, PlanRow, StepContext, TaskResult
from tests.engine.sources import Key, MemorySource


class ExportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    audience_id: str
    fields: list[str] = Field(default_factory=lambda: ["email", "first_name"])
    backfill: bool = True
    include_removals: bool = True


class EnrichConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    audience_id: str | None = None
    refresh_after_days: float = 30
    overwrite: bool = True


class TaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = "done"


class Double:
    """What every provider answers besides its step (checks, options, hints)."""

    spec: ProviderSpec

    def __init__(self) -> None:
        self.errors: list[ProviderError] = []

    # The same answers as the import source's: none of these tests checks credentials.
    check = MemorySource.check
    options = MemorySource.options
    credential_hint = MemorySource.credential_hint

    def _call(self, ctx: StepContext, what: str) -> None:
        if ctx.counter is not None:
            ctx.counter.add(what)
        if self.errors:
            raise self.errors.pop(0)


def _spec(pid: str, workflow: str, job_type: JobType, role: Role, config: type[Any]) -> ProviderSpec:
    return ProviderSpec(id=pid, name=pid, description="test double",
                        auth_methods=(AuthMethodSpec("api_key", "API key", "", Key),),
                        workflows=(WorkflowSpec(workflow, workflow, job_type, "", ("api_key",), config,
                                                step=StepRef(role, "tests.engine.unit.doubles:itself")),))


@dataclass
class Part:
    key: str
    rows: int
    bytes: int
    skipped: tuple[int, ...] = ()
    rejected: list[tuple[str, str]] = field(default_factory=list)


class MemoryDestination(Double):
    """Keeps every part it was sent, by part number (a rewritten part replaces itself)."""

    spec = _spec("test_dest", "list_export", JobType.EXPORT, Role.DESTINATION, ExportConfig)

    def __init__(self) -> None:
        super().__init__()
        self.parts: dict[int, list[PlanRow]] = {}
        self.manifests: list[dict[str, Any]] = []
        self.reject: dict[str, str] = {}  # profile id -> why the destination refuses it

    def freeze(self, config: dict[str, Any]) -> dict[str, Any]:
        return {"fields": list(config["fields"])}

    def write_part(self, ctx: StepContext, frozen: dict[str, Any], part: int, rows: Sequence[PlanRow]) -> Part:
        self._call(ctx, "test_dest.put")
        self.parts[part] = [(a, pid, list(v)) for a, pid, v in rows]
        return Part(key=f"part-{part:05d}", rows=len(rows), bytes=len(str(rows)),
                    rejected=[(pid, self.reject[pid]) for _, pid, _ in rows if pid in self.reject])

    def write_manifest(self, ctx: StepContext, frozen: dict[str, Any], summary: dict[str, Any]) -> str:
        self.manifests.append(summary)
        return "manifest"

    def sent(self) -> list[PlanRow]:
        return [row for n in sorted(self.parts) for row in self.parts[n]]


class MemoryEnricher(Double):
    """Answers by email from `known`; `asked` lists every email looked up."""

    spec = _spec("test_enricher", "lookup", JobType.ENRICHMENT, Role.ENRICHER, EnrichConfig)

    def __init__(self) -> None:
        super().__init__()
        self.known: dict[str, dict[str, Any]] = {}
        self.asked: list[str] = []

    def freeze(self, config: dict[str, Any]) -> dict[str, Any]:
        return {"overwrite": bool(config.get("overwrite", True))}

    def eligible(self, profile: Profile) -> bool:
        return bool(profile.identifiers.get("email"))

    def lookup(self, ctx: StepContext, frozen: dict[str, Any], profile: Profile) -> Lookup:
        email = profile.identifiers["email"][0]
        self.asked.append(email)
        self._call(ctx, "test_enricher.get")
        found = self.known.get(email)
        return Lookup(dict(found)) if found else Lookup(None, UNMATCHED)


class MemoryTask(Double):
    """Counts its runs in the job's state."""

    spec = _spec("test_task", "ping", JobType.OTHER, Role.TASK, TaskConfig)

    def run(self, ctx: StepContext) -> TaskResult:
        self._call(ctx, "test_task.ping")
        n = int(ctx.state.get("runs", 0)) + 1
        return TaskResult(messages=[f"{ctx.config['note']} ({n})"], state={"runs": n})


def itself(provider: Any) -> Any:
    return provider
