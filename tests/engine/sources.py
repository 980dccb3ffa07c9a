"""A test-only import source: rows from memory, a resumable cursor, injectable errors.

It stands in for a provider's import step so the engine can be tested on its own rules
(steps, checkpoints, statuses, retries); the S3 reader has its own tests.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from chalicelib.domain.catalog import AuthMethodSpec, JobType, ProviderSpec, Role, StepRef, WorkflowSpec
from chalicelib.domain.models import CheckResult, HealthStatus
from chalicelib.providers.base import Option, ProviderError
from chalicelib.providers.roles import ReadResult, SourceRow, StepContext


class Key(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: SecretStr = Field(min_length=4, json_schema_extra={"x-secret": True})


class ListImportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str
    identifier_field: str = "email"
    field_mapping: dict[str, str] = Field(default_factory=dict)


class MemorySource:
    """Datasets live in `self.datasets[name]`; `self.errors` is consumed one per read."""

    spec = ProviderSpec(
        id="test_source",
        name="Test source",
        description="test double",
        auth_methods=(AuthMethodSpec("api_key", "API key", "", Key),),
        workflows=(
            WorkflowSpec("list_import", "List import", JobType.IMPORT, "", ("api_key",),
                         ListImportConfig, step=StepRef(Role.SOURCE, "tests.engine.sources:itself")),
        ),
    )

    def __init__(self) -> None:
        self.datasets: dict[str, list[dict[str, Any]]] = {}
        self.errors: list[ProviderError | None] = []
        self.reads = 0

    def check(self, method: str, credentials: Any, resources: dict[str, str], counter: Any = None) -> CheckResult:
        return CheckResult(HealthStatus.HEALTHY, "ok", provider_account="mem")

    def options(self, *a: Any, **k: Any) -> list[Option]:
        return []

    def credential_hint(self, method: str, credentials: Any) -> str | None:
        return None

    def read(self, ctx: StepContext) -> ReadResult:
        self.reads += 1
        if ctx.counter is not None:  # one API request per read, like a real source's page
            ctx.counter.add("test_source.read")
        if self.errors:
            err = self.errors.pop(0)
            if err is not None:
                if ctx.counter is not None:
                    ctx.counter.add_error("test_source.read")
                raise err
        rows = self.datasets[ctx.config["dataset"]]
        start = (ctx.cursor or {}).get("i", 0)
        end = min(len(rows), start + ctx.max_records)
        batch = [SourceRow(data=dict(r), ref=f"mem://{ctx.config['dataset']}#{i}")
                 for i, r in enumerate(rows[start:end], start)]
        return ReadResult(rows=batch, cursor={"i": end}, done=end >= len(rows),
                          state={"imported": len(rows)}, processed=end, total=len(rows))


def itself(provider: MemorySource) -> MemorySource:
    """The source's step is the source itself: the test sees every read it is asked for."""
    return provider


def people(n: int, *, offset: int = 0, missing_every: int = 0) -> list[dict[str, Any]]:
    out = []
    for i in range(offset, offset + n):
        row = {"email": f"person{i}@example.com", "first_name": f"P{i}", "plan": "free"}
        if missing_every and i % missing_every == 0:
            row["email"] = ""
        out.append(row)
    return out
