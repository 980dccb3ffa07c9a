"""Runs, log lines and activity counters: the engine's records in the main table.

Keys (see docs/data-model.md):
  run       PK=ACCT#<a>            SK=RUN#<job>#<run>
  log line  PK=ACCT#<a>            SK=LOG#<job>#<timestamp>#<seq>
  activity  PK=ACCT#<a>#ACT#<job>  SK=H#<yyyy-mm-ddThh> | D#<yyyy-mm-dd>
  requests  PK=ACCT#<a>#AUTH#<auth>#ACT  SK=H#<yyyy-mm-ddThh>  (API requests made with an
            authorization, hourly only: one write per step or API call)

A step's effects are writes added here to the engine's unit of work and committed together,
conditional on the step number: that is what makes redelivery safe.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.domain.runs import ENDED, LogLine, Run, RunStatus, StepCommit
from chalicelib.store import keys as K
from chalicelib.store.dynamo import Page, Table, deser, prefix_page, ser, to_attr
from chalicelib.store.unit_of_work import UnitOfWork

RUN_TTL_DAYS = 90
LOG_TTL_DAYS = 30
ACTIVITY_TTL_DAYS = 400
REQUEST_PAGES = 4  # a 12-week series is ~2,000 small hourly items: one page, rarely two


def run_sk(job_id: str, run_id: str) -> str:
    return f"RUN#{job_id}#{run_id}"


def log_prefix(job_id: str) -> str:
    return f"LOG#{job_id}#"


def activity_pk(account_id: str, job_id: str) -> str:
    return f"ACCT#{account_id}#ACT#{job_id}"


def requests_pk(account_id: str, auth_id: str) -> str:
    return f"ACCT#{account_id}#AUTH#{auth_id}#ACT"


def series_buckets(granularity: str, now: datetime) -> tuple[list[datetime], timedelta, str]:
    """The points of an activity series (UTC): 48 hours, 30 days, or the weeks (from
    Monday) covering the last 84 days; each point's span and label format."""
    if granularity == "hour":
        start = (now - timedelta(hours=47)).replace(minute=0, second=0, microsecond=0)
        return [start + timedelta(hours=i) for i in range(48)], timedelta(hours=1), "%Y-%m-%dT%H:00:00Z"
    days = 30 if granularity == "day" else 84
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days - 1)
    step = 1
    if granularity == "week":
        start -= timedelta(days=start.weekday())
        step = 7
    buckets = [start + timedelta(days=i) for i in range(0, (today - start).days + 1, step)]
    return buckets, timedelta(days=step), "%Y-%m-%dT00:00:00Z"



def _run(row: dict[str, Any]) -> Run:
    return Run(
        id=row["id"],
        job_id=row["job_id"],
        account_id=row["account_id"],
        trigger=row["trigger"],
        status=RunStatus(row["status"]),
        started_at=row["started_at"],
        requested_by=row.get("requested_by"),
        finished_at=row.get("finished_at"),
        step=int(row.get("step", 0)),
        cursor=json.loads(row["cursor_json"]) if row.get("cursor_json") else None,
        processed=int(row.get("processed", 0)),
        total=int(row["total"]) if row.get("total") is not None else None,
        total_unit=row.get("total_unit", "rows"),
        read=int(row.get("read", 0)),
        added=int(row.get("added", 0)),
        removed=int(row.get("removed", 0)),
        omitted=int(row.get("omitted", 0)),
        omitted_reasons={k: int(v) for k, v in (row.get("omitted_reasons") or {}).items()},
        error=row.get("error"),
        cost={k: float(v) for k, v in (row.get("cost") or {}).items()},
        lease_owner=row.get("lease_owner"),
        enqueued_step=int(row.get("enqueued_step", 0)),
        origin=row.get("origin"),
    )




def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class RunRepo:
    def __init__(self, table: Table) -> None:
        self.t = table

    # -- runs --------------------------------------------------------------------------

    def new_run_op(self, run: Run, lease_seconds: int | None = None, *, expires_at: int | None = None,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The new run's Put. With `lease_seconds`, the run is created holding its step 0
        lease for its origin (the delivery that starts it), as `acquire` would give it.
        `extra` adds attributes of a kind of run (a collection window's counters); it may
        not replace one."""
        item: dict[str, Any] = {
            "PK": K.account_pk(run.account_id),
            "SK": run_sk(run.job_id, run.id),
            "type": "run",
            "id": run.id,
            "job_id": run.job_id,
            "account_id": run.account_id,
            "trigger": run.trigger,
            "status": run.status,
            "started_at": run.started_at,
            "requested_by": run.requested_by,
            "step": 0,
            "processed": 0,
            "added": 0,
            "removed": 0,
            "omitted": 0,
            "omitted_reasons": {},
            "cost": {},
            "enqueued_step": 0,
            "origin": run.origin,
            "expires_at": expires_at if expires_at is not None else int(time.time()) + RUN_TTL_DAYS * 86400,
        }
        clash = sorted((extra or {}).keys() & item.keys())
        if clash:
            raise ValueError(f"a run's own attributes cannot be replaced: {clash}")
        item.update(extra or {})
        if lease_seconds is not None:
            item["lease_owner"] = run.origin
            item["lease_until"] = int(time.time()) + lease_seconds
        return {
            "Put": {
                "TableName": self.t.name,
                "Item": ser(item),
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        }

    def add_new_run(self, tx: UnitOfWork, run: Run, lease_seconds: int | None = None) -> None:
        tx.add("run", self.new_run_op(run, lease_seconds))

    # -- collection windows: a collection job's runs are its hours, not steps; each hand-off
    # adds its counts to its hour's run, and a new hour's run closes the earlier ones

    @staticmethod
    def window_id(at: datetime) -> str:
        return f"win_{at:%Y%m%d%H}"

    def open_window(self, account_id: str, job_id: str, at: datetime, started_at: str) -> str:
        """The hour's window run, created once (a later hand-off of the hour finds it)."""
        run = Run(id=self.window_id(at), job_id=job_id, account_id=account_id, trigger="collect",
                  status=RunStatus.RUNNING, started_at=started_at)
        put = self.new_run_op(run, expires_at=int(at.timestamp()) + RUN_TTL_DAYS * 86400,
                              extra={"read": 0, "duplicates": 0})["Put"]
        if self.t.write_if("put_item", Item=put["Item"], ConditionExpression=put["ConditionExpression"]):
            self._close_before(account_id, job_id, run.id)
        return run.id

    def _close_before(self, account_id: str, job_id: str, run_id: str) -> None:
        """A new hour's window closes the job's earlier open ones (their hour is over): one
        Query an hour per job. Windows of hours without a later event stay open until one
        comes."""
        rows, _ = self.t.query(key_condition="PK = :pk AND begins_with(SK, :p)",
                               names={"#s": "status"},
                               values={":pk": K.account_pk(account_id), ":p": f"RUN#{job_id}#win_",
                                       ":r": RunStatus.RUNNING.value},
                               filter_expression="#s = :r", limit=24)
        for row in rows:
            if row["id"] >= run_id:
                continue
            hour = datetime.strptime(row["id"].removeprefix("win_"), "%Y%m%d%H").replace(tzinfo=UTC)
            self.t.write_if(
                "update_item", Key={"PK": {"S": K.account_pk(account_id)}, "SK": {"S": row["SK"]}},
                UpdateExpression="SET #s = :done, finished_at = :end",
                ConditionExpression="#s = :r", ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":done": {"S": RunStatus.SUCCEEDED.value},
                                           ":r": {"S": RunStatus.RUNNING.value},
                                           ":end": {"S": (hour + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}})

    def add_window_counts(self, tx: UnitOfWork, account_id: str, job_id: str, run_id: str, *, processed: int,
                          added: int, duplicates: int, omitted: dict[str, int]) -> None:
        names: dict[str, str] = {}
        values: dict[str, Any] = {":p": {"N": str(processed)}, ":a": {"N": str(added)},
                                  ":d": {"N": str(duplicates)}, ":o": {"N": str(sum(omitted.values()))}}
        adds = ["#processed :p", "#read :p", "#added :a", "#duplicates :d", "#omitted :o"]
        names.update({f"#{n}": n for n in ("processed", "read", "added", "duplicates", "omitted")})
        for i, (reason, n) in enumerate(sorted(omitted.items())):
            names["#reasons"] = "omitted_reasons"
            names[f"#r{i}"] = reason
            values[f":r{i}"] = {"N": str(n)}
            adds.append(f"#reasons.#r{i} :r{i}")
        tx.add("window", {"Update": {
            "TableName": self.t.name, "Key": {"PK": {"S": K.account_pk(account_id)},
                                              "SK": {"S": run_sk(job_id, run_id)}},
            "UpdateExpression": "ADD " + ", ".join(adds),
            "ConditionExpression": "attribute_exists(PK)",
            "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}})

    def get(self, account_id: str, job_id: str, run_id: str) -> Run | None:
        row = self.t.get(K.account_pk(account_id), run_sk(job_id, run_id), consistent=True)
        return _run(row) if row else None

    def page(self, account_id: str, job_id: str, *, limit: int, cursor: str | None) -> Page:
        pk = K.account_pk(account_id)
        prefix = f"RUN#{job_id}#"
        return prefix_page(self.t, pk, prefix, limit=limit, cursor=cursor,
                           convert=_run)

    def acquire(self, run: Run, owner: str, lease_seconds: int) -> bool:
        """Take the run's lease for its current step: never two steps of one job at once.

        The owner is the SQS message id, so a redelivery of the very message that crashed
        takes the lease back at once, while a duplicate waits for the lease to lapse.
        """
        now = int(time.time())
        return self.t.write_if(
            "update_item",
            Key={"PK": {"S": K.account_pk(run.account_id)}, "SK": {"S": run_sk(run.job_id, run.id)}},
            UpdateExpression="SET lease_owner = :me, lease_until = :until",
            ConditionExpression=(
                "#st = :step AND (attribute_not_exists(lease_until) OR lease_until < :now "
                "OR lease_owner = :me)"
            ),
            ExpressionAttributeNames={"#st": "step"},
            ExpressionAttributeValues={
                ":me": {"S": owner},
                ":until": {"N": str(now + lease_seconds)},
                ":now": {"N": str(now)},
                ":step": {"N": str(run.step)},
            },
        )

    def add_commit(self, tx: UnitOfWork, run: Run, owner: str, c: StepCommit, now: str) -> None:
        """Move the run from step n to n+1, conditional on it still being at step n under
        this lease: a step that was already committed can never be committed twice."""
        tx.add("run", self._commit_op(run, owner, c, now))

    def _commit_op(self, run: Run, owner: str, c: StepCommit, now: str) -> dict[str, Any]:
        names: dict[str, str] = {"#st": "step", "#cur": "cursor_json", "#pr": "processed",
                                 "#tu": "total_unit", "#rd": "read"}
        if c.omitted_reasons:
            names["#or"] = "omitted_reasons"
        if c.cost:
            names["#cost"] = "cost"
        values: dict[str, Any] = {
            ":n": c.step,
            ":next": c.step + 1,
            ":me": owner,
            ":cur": json.dumps(c.cursor, sort_keys=True) if c.cursor is not None else "null",
            ":pr": c.processed,
            ":tu": c.total_unit,
            ":rd": c.read,
            ":add": c.added,
            ":rem": c.removed,
            ":om": sum(c.omitted_reasons.values()),
        }
        sets = ["#st = :next", "#cur = :cur", "#pr = :pr", "#tu = :tu", "#rd = :rd"]
        adds = ["added :add", "removed :rem", "omitted :om"]
        if c.total is not None:
            names["#tot"] = "total"
            values[":tot"] = c.total
            sets.append("#tot = :tot")
        for i, (reason, n) in enumerate(sorted(c.omitted_reasons.items())):
            names[f"#r{i}"] = reason
            values[f":r{i}"] = n
            values[":zero"] = 0
            sets.append(f"#or.#r{i} = if_not_exists(#or.#r{i}, :zero) + :r{i}")
        for i, (metric, v) in enumerate(sorted(c.cost.items())):
            names[f"#c{i}"] = metric
            values[f":c{i}"] = v
            values[":zero"] = 0
            sets.append(f"#cost.#c{i} = if_not_exists(#cost.#c{i}, :zero) + :c{i}")
        if c.status is not None:
            names["#status"] = "status"
            values[":status"] = c.status
            values[":fin"] = now
            sets += ["#status = :status", "finished_at = :fin"]
            if c.error is not None:
                values[":err"] = c.error
                sets.append("#e = :err")
                names["#e"] = "error"
        return {
            "Update": {
                "TableName": self.t.name,
                "Key": {"PK": {"S": K.account_pk(run.account_id)}, "SK": {"S": run_sk(run.job_id, run.id)}},
                # The lease ends with the step: the next step's delivery takes a fresh one.
                "UpdateExpression": "SET " + ", ".join(sets) + " ADD " + ", ".join(adds)
                + " REMOVE lease_owner, lease_until",
                "ConditionExpression": "#st = :n AND lease_owner = :me",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": {k: to_attr(v) for k, v in values.items()},
            }
        }

    def add_status(self, tx: UnitOfWork, run: Run, status: RunStatus, *, error: str | None, now: str,
                   expect_step: int | None = None, origin: str | None = None) -> None:
        """Set the run's status (ending its lease), conditional on its step when given."""
        tx.add("run", self._status_op(run, status, error=error, now=now, expect_step=expect_step,
                                      origin=origin))

    def _status_op(self, run: Run, status: RunStatus, *, error: str | None, now: str,
                   expect_step: int | None = None, origin: str | None = None) -> dict[str, Any]:
        names = {"#status": "status", "#e": "error"}
        values: dict[str, Any] = {":s": status.value, ":e": error, ":now": now}
        extra_set = ""
        if origin is not None:
            values[":o"] = origin
            extra_set = ", origin = :o"
        condition = "attribute_exists(PK)"
        if expect_step is not None:
            names["#st"] = "step"
            values[":n"] = expect_step
            condition += " AND #st = :n"
        ended = status in ENDED
        return {
            "Update": {
                "TableName": self.t.name,
                "Key": {"PK": {"S": K.account_pk(run.account_id)}, "SK": {"S": run_sk(run.job_id, run.id)}},
                "UpdateExpression": "SET #status = :s, #e = :e" + extra_set
                + (", finished_at = :now" if ended else "")
                + " REMOVE lease_owner, lease_until",
                "ConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": {
                    k: to_attr(v) for k, v in values.items() if k != ":now" or ended
                },
            }
        }

    def mark_enqueued(self, run: Run, step: int) -> bool:
        """Record that step `step` was queued; true only for the first caller."""
        return self.t.write_if(
            "update_item",
            Key={"PK": {"S": K.account_pk(run.account_id)}, "SK": {"S": run_sk(run.job_id, run.id)}},
            UpdateExpression="SET enqueued_step = :s",
            ConditionExpression="attribute_exists(PK) AND enqueued_step < :s",
            ExpressionAttributeValues={":s": {"N": str(step)}},
        )

    # -- log lines ---------------------------------------------------------------------

    def add_logs(self, tx: UnitOfWork, account_id: str, job_id: str, lines: list[LogLine],
                 at: datetime) -> None:
        """Log lines in the transaction of the change they tell of. A millisecond apart, so
        newest-first listings keep the order they were written in."""
        for i, line in enumerate(lines):
            tx.add(tx.numbered("log:"), self._log_op(account_id, job_id, line, at + timedelta(milliseconds=i)))

    def _log_op(self, account_id: str, job_id: str, line: LogLine, at: datetime) -> dict[str, Any]:
        ts = _iso(at)
        item = {
            "PK": K.account_pk(account_id),
            "SK": f"{log_prefix(job_id)}{ts}#{secrets.token_hex(3)}",
            "type": "log",
            "timestamp": ts,
            "level": line.level,
            "code": line.code,
            "message": line.message[:2000],
            "run_id": line.run_id,
            "user": line.user,
            "context_json": json.dumps(line.context, sort_keys=True, default=str),
            "expires_at": int(at.timestamp()) + LOG_TTL_DAYS * 86400,
        }
        return {"Put": {"TableName": self.t.name, "Item": ser(item)}}

    def logs(self, account_id: str, job_id: str, *, limit: int, cursor: str | None,
             level: str | None) -> Page:
        pk = K.account_pk(account_id)
        prefix = log_prefix(job_id)
        order = ["debug", "info", "warning", "error"]
        keep = None
        if level:
            floor = order.index(level)

            def keep(row: dict[str, Any]) -> bool:
                return order.index(row["level"]) >= floor if row["level"] in order else True

        return prefix_page(self.t, pk, prefix, limit=limit, cursor=cursor,
                           convert=lambda row: row, keep=keep)

    def write_logs(self, account_id: str, job_id: str, lines: list[LogLine]) -> None:
        """Log lines outside a step's transaction (state changes made by users)."""
        now = datetime.now(UTC)
        for line in lines:
            op = self._log_op(account_id, job_id, line, now)["Put"]
            self.t.client.put_item(TableName=op["TableName"], Item=op["Item"])

    # -- activity ----------------------------------------------------------------------

    def add_activity(self, tx: UnitOfWork, account_id: str, job_id: str, at: datetime, added: int,
                     removed: int, omitted: int) -> None:
        """A step's counts ADDed to the job's hour and day, with the step's commit."""
        for op in self.activity_ops(account_id, job_id, at, added, removed, omitted):
            tx.add(tx.numbered("activity:"), op)

    def activity_ops(self, account_id: str, job_id: str, at: datetime, added: int, removed: int,
                     omitted: int) -> list[dict[str, Any]]:
        if not (added or removed or omitted):
            return []
        pk = activity_pk(account_id, job_id)
        ops = []
        for sk in (f"H#{at:%Y-%m-%dT%H}", f"D#{at:%Y-%m-%d}"):
            ops.append({
                "Update": {
                    "TableName": self.t.name,
                    "Key": {"PK": {"S": pk}, "SK": {"S": sk}},
                    "UpdateExpression": "ADD added :a, removed :r, omitted :o SET expires_at = :x",
                    "ExpressionAttributeValues": {
                        ":a": {"N": str(added)}, ":r": {"N": str(removed)}, ":o": {"N": str(omitted)},
                        ":x": {"N": str(int(at.timestamp()) + ACTIVITY_TTL_DAYS * 86400)},
                    },
                }
            })
        return ops

    def activity(self, account_id: str, job_id: str, granularity: str,
                 now: datetime | None = None) -> list[dict[str, Any]]:
        """One bounded Query per series: 48 hours, 30 days, or 12 weeks of daily items."""
        now = now or datetime.now(UTC)
        if granularity == "hour":
            start = (now - timedelta(hours=47)).replace(minute=0, second=0, microsecond=0)
            lo, hi = f"H#{start:%Y-%m-%dT%H}", f"H#{now:%Y-%m-%dT%H}"
            buckets = [start + timedelta(hours=i) for i in range(48)]
            label = "%Y-%m-%dT%H:00:00Z"
            key = "H#%Y-%m-%dT%H"
        else:
            days = 30 if granularity == "day" else 84
            today = now.replace(hour=0, minute=0, second=0, microsecond=0)
            start = today - timedelta(days=days - 1)
            if granularity == "week":
                start -= timedelta(days=start.weekday())  # weeks start on Monday
            lo, hi = f"D#{start:%Y-%m-%d}", f"D#{today:%Y-%m-%d}"
            label = "%Y-%m-%dT00:00:00Z"
            key = "D#%Y-%m-%d"
            step = 1 if granularity == "day" else 7
            buckets = [start + timedelta(days=i) for i in range(0, (today - start).days + 1, step)]
        resp = self.t.client.query(
            TableName=self.t.name,
            KeyConditionExpression="PK = :pk AND SK BETWEEN :lo AND :hi",
            ExpressionAttributeValues={":pk": {"S": activity_pk(account_id, job_id)},
                                       ":lo": {"S": lo}, ":hi": {"S": hi}},
        )
        found = {row["SK"]: row for row in (deser(i) for i in resp.get("Items", []))}
        series = []
        for b in buckets:
            point: dict[str, Any] = {"start": b.strftime(label), "added": 0, "removed": 0, "omitted": 0}
            span = 7 if granularity == "week" else 1
            for d in range(span):
                day = b + timedelta(days=d)
                row = found.get(day.strftime(key)) if granularity != "hour" or d == 0 else None
                if row:
                    for k in ("added", "removed", "omitted"):
                        point[k] += int(row.get(k, 0))
            series.append(point)
        return series

    # -- API requests per authorization -------------------------------------------------

    def add_requests(self, tx: UnitOfWork, account_id: str, auth_id: str, at: datetime, requests: int,
                     errors: int) -> None:
        """ADD a step's (or an API call's) provider requests to the authorization's hour. In a
        step's commit it moves with the checkpoint, so a redelivered step never counts twice.
        Day and week series add hours up on read."""
        for op in self._request_ops(account_id, auth_id, at, requests, errors):
            tx.add("requests", op)

    def _request_ops(self, account_id: str, auth_id: str, at: datetime, requests: int,
                     errors: int) -> list[dict[str, Any]]:
        """At most ONE Update (see add_requests)."""
        if not (requests or errors):
            return []
        return [{
            "Update": {
                "TableName": self.t.name,
                "Key": {"PK": {"S": requests_pk(account_id, auth_id)}, "SK": {"S": f"H#{at:%Y-%m-%dT%H}"}},
                "UpdateExpression": "ADD #q :q, #e :e SET expires_at = :x",
                "ExpressionAttributeNames": {"#q": "requests", "#e": "errors"},
                "ExpressionAttributeValues": {
                    ":q": {"N": str(requests)}, ":e": {"N": str(errors)},
                    ":x": {"N": str(int(at.timestamp()) + ACTIVITY_TTL_DAYS * 86400)},
                },
            }
        }]

    def record_requests(self, account_id: str, auth_id: str, at: datetime, requests: int,
                        errors: int) -> None:
        """Requests made outside runs (checks, options): one UpdateItem, after the calls."""
        for op in self._request_ops(account_id, auth_id, at, requests, errors):
            self.t.client.update_item(**op["Update"])

    def request_activity(self, account_id: str, auth_id: str, granularity: str,
                         now: datetime | None = None) -> list[dict[str, Any]]:
        """API requests (and failed ones) per hour, day or week: one Query of the hourly
        items of the window (at most ~2,000 items, ~100 bytes each)."""
        now = now or datetime.now(UTC)
        buckets, span, label = series_buckets(granularity, now)
        points: list[dict[str, Any]] = [{"start": b.strftime(label), "api_requests": 0, "errors": 0}
                                        for b in buckets]
        kwargs: dict[str, Any] = {
            "TableName": self.t.name,
            "KeyConditionExpression": "PK = :pk AND SK BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {":pk": {"S": requests_pk(account_id, auth_id)},
                                          ":lo": {"S": f"H#{buckets[0]:%Y-%m-%dT%H}"},
                                          ":hi": {"S": f"H#{now:%Y-%m-%dT%H}"}},
        }
        for _ in range(REQUEST_PAGES):
            resp = self.t.client.query(**kwargs)
            for row in (deser(i) for i in resp.get("Items", [])):
                hour = datetime.strptime(row["SK"][2:], "%Y-%m-%dT%H").replace(tzinfo=UTC)
                i = int((hour - buckets[0]) / span)
                if 0 <= i < len(points):
                    points[i]["api_requests"] += int(row.get("requests", 0))
                    points[i]["errors"] += int(row.get("errors", 0))
            if "LastEvaluatedKey" not in resp:
                break
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        return points
