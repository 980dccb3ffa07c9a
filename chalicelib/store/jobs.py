"""Jobs in the main table: their items, the purge index, and the one transaction in which
a job write moves its authorization's usage counters and its audience's count
(see docs/data-model.md)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from chalicelib.domain.catalog import JobType
from chalicelib.domain.errors import Conflict, Invalid, not_found, stale_version
from chalicelib.domain.models import Authorization, Job
from chalicelib.domain.statuses import PURGE_AFTER_DAYS, PURGEABLE_STATUSES, JobStatus
from chalicelib.store import keys as K
from chalicelib.store.authorizations import AuthorizationRepo
from chalicelib.store.dynamo import (
    CONTENDED,
    Page,
    Table,
    Transaction,
    TransactionFailed,
    attempts,
    now_iso,
    paged_query,
    prefix_page,
    ser,
)
from chalicelib.store.unit_of_work import UnitOfWork

PURGE_SHARDS = 8
_clock = time.time  # the purge index's clock (tests move it)


def _purge_keys(j: Job) -> tuple[str | None, str | None]:
    """Paused, failed and completed jobs are listed in the sparse sweep index under the
    time they become due; every write recomputes it ("unless touched"). Not a TTL: the
    purge must move the authorization's and audience's counters like a user's delete."""
    if j.status not in PURGEABLE_STATUSES:
        return None, None
    due = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_clock() + PURGE_AFTER_DAYS * 86400))
    return K.sweep_shard("PURGE", j.id, PURGE_SHARDS), f"{due}#{j.account_id}#{j.id}"


def _job_item(j: Job) -> dict[str, Any]:
    purge = _purge_keys(j)
    return {
        "PK": K.account_pk(j.account_id),
        "SK": K.job_sk(j.id),
        "GSI1PK": K.auth_jobs_gsi(j.account_id, j.authorization_id),
        "GSI1SK": K.job_sk(j.id),
        "type": "job",
        "id": j.id,
        "account_id": j.account_id,
        "provider": j.provider,
        "job_type": j.job_type.value,
        "workflow": j.workflow,
        "authorization_id": j.authorization_id,
        "authorization_label": j.authorization_label,
        "label": j.label,
        "description": j.description,
        # Free-form documents are stored as JSON text: no float/Decimal round trips.
        "config_json": json.dumps(j.config, sort_keys=True),
        "schedule_json": json.dumps(j.schedule) if j.schedule is not None else None,
        "status": j.status.value,
        "owner": j.owner,
        "created_at": j.created_at,
        "updated_at": j.updated_at,
        "provider_account": j.provider_account,
        "fault_count": j.fault_count,
        "next_run_at": j.next_run_at,
        "last_run_json": json.dumps(j.last_run) if j.last_run is not None else None,
        "version": j.version,
        "GSI2PK": purge[0],
        "GSI2SK": purge[1],
        "current_run_id": j.current_run_id,
        "state_json": json.dumps(j.state, sort_keys=True) if j.state else None,
        "failure_window_hours": Decimal(str(j.failure_window_hours)),
        "first_fault_at": j.first_fault_at,
        "pending_alert": j.pending_alert,
    }


def _job(row: dict[str, Any]) -> Job:
    return Job(
        id=row["id"],
        account_id=row["account_id"],
        provider=row["provider"],
        job_type=JobType(row["job_type"]),
        workflow=row["workflow"],
        authorization_id=row["authorization_id"],
        authorization_label=row.get("authorization_label", ""),
        label=row["label"],
        description=row.get("description", ""),
        config=json.loads(row.get("config_json") or "{}"),
        schedule=json.loads(row["schedule_json"]) if row.get("schedule_json") else None,
        status=JobStatus(row["status"]),
        owner=row["owner"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        provider_account=row.get("provider_account"),
        fault_count=int(row.get("fault_count", 0)),
        next_run_at=row.get("next_run_at"),
        last_run=json.loads(row["last_run_json"]) if row.get("last_run_json") else None,
        version=int(row.get("version", 1)),
        current_run_id=row.get("current_run_id"),
        state=json.loads(row["state_json"]) if row.get("state_json") else {},
        failure_window_hours=float(row.get("failure_window_hours", 10)),
        first_fault_at=row.get("first_fault_at"),
        pending_alert=row.get("pending_alert") or None,
    )


@dataclass(frozen=True)
class UsageMove:
    """Move one job's weight in an authorization's usage counters."""

    auth_id: str
    leave: JobStatus | None  # counter to decrement
    enter: JobStatus | None  # counter to increment
    provider: str | None = None  # when set, the authorization must be of this provider


class JobRepo:
    def __init__(self, table: Table) -> None:
        self.t = table

    def get(self, account_id: str, job_id: str, *, consistent: bool = False) -> Job | None:
        row = self.t.get(K.account_pk(account_id), K.job_sk(job_id), consistent=consistent)
        return _job(row) if row else None

    def page(
        self,
        account_id: str,
        *,
        limit: int,
        cursor: str | None,
        status: str | None = None,
        provider: str | None = None,
        job_type: str | None = None,
        authorization_id: str | None = None,
    ) -> Page:
        keep = None
        if status or provider or job_type:

            def keep(j: Job) -> bool:
                return (
                    (status is None or j.status.value == status)
                    and (provider is None or j.provider == provider)
                    and (job_type is None or j.job_type.value == job_type)
                )

        pk = K.account_pk(account_id)
        if authorization_id:
            gpk = K.auth_jobs_gsi(account_id, authorization_id)
            return paged_query(
                self.t,
                index=K.GSI1,
                key_condition="GSI1PK = :g",
                names={},
                values={":g": gpk},
                key_names=("PK", "SK", "GSI1PK", "GSI1SK"),
                expect={"PK": pk, "GSI1PK": gpk},
                sk_prefix="JOB#",
                limit=limit,
                cursor=cursor,
                convert=_job,
                keep=keep,
            )
        return prefix_page(self.t, pk, "JOB#", limit=limit, cursor=cursor,
                           convert=_job, keep=keep)

    def jobs_of_authorization(self, account_id: str, auth_id: str, limit: int = 200) -> list[Job]:
        return list(self.page(account_id, limit=limit, cursor=None, authorization_id=auth_id).items)

    # -- writes ---------------------------------------------------------------------------

    def _usage_op(self, account_id: str, move: UsageMove) -> dict[str, Any]:
        names = {"#u": "usage"}
        values: dict[str, Any] = {":one": {"N": "1"}}
        sets = []
        if move.leave is not None:
            names["#l"] = move.leave.value
            sets.append("#u.#l = #u.#l - :one")
        if move.enter is not None:
            names["#e"] = move.enter.value
            sets.append("#u.#e = #u.#e + :one")
        condition = "attribute_exists(PK)"
        if move.provider is not None:
            condition += " AND #prov = :prov"
            names["#prov"] = "provider"
            values[":prov"] = {"S": move.provider}
        if move.enter is not None:
            names["#lu"] = "last_used_at"
            values[":now"] = {"S": now_iso()}
            sets.append("#lu = :now")
        return {
            "Update": {
                "TableName": self.t.name,
                "Key": {"PK": {"S": K.account_pk(account_id)}, "SK": {"S": K.auth_sk(move.auth_id)}},
                "UpdateExpression": "SET " + ", ".join(sets),
                "ConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    def _audience_op(self, account_id: str, audience_id: str, delta: int) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.t.name,
                "Key": {"PK": {"S": K.account_pk(account_id)}, "SK": {"S": K.audience_sk(audience_id)}},
                "UpdateExpression": "ADD jobs_using :d",
                "ConditionExpression": "attribute_exists(PK)",
                "ExpressionAttributeValues": {":d": {"N": str(delta)}},
            }
        }

    def _run(
        self,
        tx: UnitOfWork,
        job_op: dict[str, Any],
        account_id: str,
        moves: Iterable[UsageMove],
        *,
        job_id: str,
        version: int | None,
        audiences: list[tuple[str | None, int]] | None = None,
    ) -> None:
        """Commit `tx` with the job write, the usage moves and the audience counts added to
        it: one transaction. An export job counts on its audience item (`jobs_using`), so an
        audience in use cannot be deleted and a job cannot point at a missing audience.

        Decrements against an authorization that no longer exists are dropped and the
        transaction retried: only failed/completed jobs can outlive their authorization.
        Increments never are: a job cannot become active on a deleted authorization.
        """
        moves = [m for m in moves if m.leave != m.enter]
        counted = [(aud, delta) for aud, delta in (audiences or []) if aud and delta]
        others = set(tx.names)  # what the caller added: its audit event, log lines, a run's commit
        tx.add("job", job_op)
        for aud, delta in counted:
            tx.add(f"audience:{aud}", self._audience_op(account_id, aud, delta))
        for m in moves:
            tx.add(f"usage:{m.auth_id}", self._usage_op(account_id, m))
        waits = attempts(CONTENDED)
        next(waits)  # the first commit is attempt 0
        while True:
            try:
                tx.commit()
                return
            except TransactionFailed as exc:
                refused = set(exc.refused)
                if "job" in refused:
                    if self.get(account_id, job_id, consistent=True) is None:
                        raise not_found("job", job_id) from None
                    raise stale_version("job", version) from None
                if refused & others:
                    raise Conflict(
                        "a related object changed at the same time; retry",
                        code="conflict.concurrent_change",
                    ) from None
                gone = [(aud, delta) for aud, delta in counted if f"audience:{aud}" in refused]
                for aud, delta in gone:
                    if delta > 0:
                        raise Invalid(
                            f"audience {aud!r} was not found",
                            code="audience.not_found",
                            fields={"config.audience_id": "no such audience in this account"},
                        ) from None
                if gone:
                    # Only a job saved before audiences were counted can lose its audience.
                    for aud, _ in gone:
                        tx.drop(f"audience:{aud}")
                    counted = [a for a in counted if a not in gone]
                    continue
                failed = [m for m in moves if f"usage:{m.auth_id}" in refused]
                if not failed:
                    if not exc.conflict:
                        raise
                    if next(waits, None) is None:  # another transaction kept holding an item
                        raise Conflict(
                            "a related object changed at the same time; retry",
                            code="conflict.concurrent_change",
                        ) from None
                    continue
                for m in failed:
                    if m.enter is not None:
                        raise AuthorizationGone(m.auth_id) from None
                for m in failed:
                    tx.drop(f"usage:{m.auth_id}")
                moves = [m for m in moves if m not in failed]

    def due_for_purge(self, shard: int, now_iso_: str, *, limit: int = 100) -> list[tuple[str, str]]:
        """(account_id, job_id) of jobs whose purge time has passed, oldest first: one
        Query of the sparse sweep index (never a Scan)."""
        resp = self.t.client.query(
            TableName=self.t.name,
            IndexName=K.GSI2,
            KeyConditionExpression="GSI2PK = :pk AND GSI2SK < :now",
            ExpressionAttributeValues={":pk": {"S": f"PURGE#{shard}"}, ":now": {"S": now_iso_}},
            Limit=limit,
        )
        out = []
        for item in resp.get("Items", []):
            _due, account_id, job_id = item["GSI2SK"]["S"].split("#", 2)
            out.append((account_id, job_id))
        return out

    def create(
        self,
        job: Job,
        *,
        new_auth: Authorization | None = None,
        auth_provider: str,
        tx: UnitOfWork | None = None,
    ) -> None:
        """Create the job, in `tx` with whatever the caller added to it (its audit event)."""
        tx = tx if tx is not None else Transaction(self.t)
        op = {
            "Put": {
                "TableName": self.t.name,
                "Item": ser(_job_item(job)),
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        }
        if new_auth is not None:
            # The inline authorization is born with this job's weight on it.
            new_auth.usage[job.status.value] += 1
            AuthorizationRepo(self.t).add_new(tx, new_auth)
            self._run(
                tx,
                op,
                job.account_id,
                [],
                job_id=job.id,
                version=None,
                audiences=[(audience_of(job), 1)],
            )
            return
        self._run(
            tx,
            op,
            job.account_id,
            [UsageMove(job.authorization_id, None, job.status, provider=auth_provider)],
            job_id=job.id,
            version=None,
            audiences=[(audience_of(job), 1)],
        )

    def save(
        self,
        before: Job,
        after: Job,
        *,
        expected_version: int | None,
        expected_status: JobStatus | None = None,
        tx: UnitOfWork | None = None,
    ) -> Job:
        """Write `after` over `before` if nobody changed it since; move usage counters.

        What the caller added to `tx` (a run's commit, log lines) lands in the same transaction.
        """
        tx = tx if tx is not None else Transaction(self.t)
        after.version = before.version + 1
        after.updated_at = now_iso()
        values: dict[str, Any] = {":v": {"N": str(before.version)}}
        condition = "attribute_exists(PK) AND version = :v"
        if expected_version is not None and expected_version != before.version:
            raise stale_version("job", expected_version)
        if expected_status is not None:
            condition += " AND #st = :st"
            values[":st"] = {"S": expected_status.value}
        op = {
            "Put": {
                "TableName": self.t.name,
                "Item": ser(_job_item(after)),
                "ConditionExpression": condition,
                "ExpressionAttributeValues": values,
                **({"ExpressionAttributeNames": {"#st": "status"}} if expected_status else {}),
            }
        }
        if before.authorization_id == after.authorization_id:
            moves = [UsageMove(after.authorization_id, before.status, after.status)]
        else:
            moves = [
                UsageMove(before.authorization_id, before.status, None),
                UsageMove(after.authorization_id, None, after.status, provider=after.provider),
            ]
        before_aud, after_aud = audience_of(before), audience_of(after)
        self._run(
            tx,
            op,
            after.account_id,
            moves,
            job_id=after.id,
            version=expected_version if expected_version is not None else before.version,
            audiences=[] if before_aud == after_aud else [(before_aud, -1), (after_aud, 1)],
        )
        return after

    def clear_alert(self, account_id: str, job_id: str, transition_id: str) -> None:
        """The job's pending alert of this transition is out (a newer one is left alone).
        Not a user edit: the version stays, so nobody's edit turns stale over it."""
        self.t.write_if(
            "update_item",
            Key={"PK": {"S": K.account_pk(account_id)}, "SK": {"S": K.job_sk(job_id)}},
            UpdateExpression="REMOVE pending_alert",
            ConditionExpression="pending_alert.transition_id = :t",
            ExpressionAttributeValues={":t": {"S": transition_id}},
        )

    def delete(self, job: Job, *, tx: UnitOfWork | None = None) -> None:
        """Delete the job, in `tx` with whatever the caller added (its audit event, its rules)."""
        tx = tx if tx is not None else Transaction(self.t)
        op = {
            "Delete": {
                "TableName": self.t.name,
                "Key": {"PK": {"S": K.account_pk(job.account_id)}, "SK": {"S": K.job_sk(job.id)}},
                "ConditionExpression": "attribute_exists(PK) AND version = :v",
                "ExpressionAttributeValues": {":v": {"N": str(job.version)}},
            }
        }
        self._run(
            tx,
            op,
            job.account_id,
            [UsageMove(job.authorization_id, job.status, None)],
            job_id=job.id,
            version=job.version,
            audiences=[(audience_of(job), -1)],
        )


def audience_of(job: Job) -> str | None:
    """The audience an export job sends, or an enrichment job filters by (its config
    names it), else None."""
    if job.job_type not in (JobType.EXPORT, JobType.ENRICHMENT):
        return None
    aud = job.config.get("audience_id")
    return aud if isinstance(aud, str) and aud else None


class AuthorizationGone(Exception):
    def __init__(self, auth_id: str) -> None:
        super().__init__(auth_id)
        self.auth_id = auth_id


__all__ = ["PURGE_SHARDS", "AuthorizationGone", "JobRepo", "UsageMove", "audience_of"]
