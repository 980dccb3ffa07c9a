"""What one scheduled export run costs against the size of the account, once exports read
only what changed: AWS requests and DynamoDB read capacity units (RCUs), counted.

For each account size (full: 10,000, 50,000 and 100,000 profiles; BENCH_QUICK=1: 300,
1,500 and 3,000, the same shape), on a fresh moto in a child process
(`awsnet.counting_moto`):

* an account, an audience ("plan is pro or team") and an hourly S3 export job of it are
  created through the API;
* what a finished audience backfill and a first export run leave behind is written straight
  into the tables with BatchWriteItem (the app's paths that write it are proven by the tests,
  tests/membership/test_export_changes.py; through them, 100,000 profiles take moto hours):
  every profile a member, the audience's log of their enters, its head and finished
  backfill, and the job's change-log cursor at that head;
* run A: 1% of the account changed since (half the changed profiles left the audience, as
  many new ones joined: profiles, member items and log entries written the way the stream
  handler leaves them), then one export run, measured;
* run B: a fixed 100 more changes (50 left, 50 joined), then one export run, measured.

Measured per run, from the moment its first step is delivered to its last commit:
* AWS requests: every request moto served in that window (DynamoDB, SQS, S3, STS, Secrets
  Manager), less the bench's own (its SQS receive/delete, which play Lambda's event source
  mapping, and the size look-ups below);
* RCUs: each DynamoDB read the app sent is looked up again, without its projection and
  filter, on a client of the bench's own, and priced the way DynamoDB prices it: a GetItem
  and each item of a BatchGetItem one unit per 4 KB, a Query one unit per 4 KB of all the
  items it read, half for an eventually consistent read (moto's own ConsumedCapacity is a
  constant, not a measure).

Budget (bench/README.md, "export_cost"): the largest account's figure over the smallest's is
<= 1.2, on requests and on RCUs, for both measures: (i) per changed profile at 1% changed
(run A) and (ii) the whole run at a fixed 100 changes (run B). Every run must send exactly
its changes (checked), and no Scan may be sent.

    .venv/bin/python bench/export_cost.py [--sizes 10000,50000,100000]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.awsnet import exit_code, quick, result  # noqa: E402
from bench.export_setup import BenchAccount, app_clients, fresh_stack  # noqa: E402

STAGE = "benchcost"
BUDGET = 1.2  # largest account / smallest account, each figure
FULL_SIZES = (10_000, 50_000, 100_000)
QUICK_SIZES = (300, 1_500, 3_000)
CHANGED = 0.01  # run A: share of the account changed since the last run
FIXED = 100  # run B: changes since the last run, whatever the account's size
BUCKET = "bench-export-cost"
FIELDS = ["email", "first_name", "country", "plan"]
NOW = "2026-12-05T12:00:00+00:00"


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it: names plus values (numbers approximated)."""
    return sum(len(k.encode()) + _value_size(v) for k, v in item.items())


def _value_size(v: dict[str, Any]) -> int:
    (kind, x), = v.items()
    if kind == "S":
        return len(str(x).encode())
    if kind == "N":
        return (len(str(x).lstrip("-").replace(".", "")) + 1) // 2 + 1
    if kind == "B":
        return len(x)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + _value_size(e) for e in x)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + _value_size(e) for k, e in x.items())
    return sum(len(str(e).encode()) for e in x)  # SS, NS, BS


def units(size: int) -> int:
    return max(1, math.ceil(size / 4096))


@dataclass
class Meter:
    """DynamoDB reads of the app's client, priced in RCUs by looking each one up again on the
    bench's own client (`shadow`); the look-ups are counted so they can be taken out."""

    shadow: Any
    on: bool = False
    rcu: float = 0.0
    ops: Counter[str] = field(default_factory=Counter)
    lookups: int = 0

    def hook(self, model: Any = None, params: Any = None, **_: Any) -> None:
        if not self.on:
            return
        op = model.name
        self.ops[op] += 1
        if op == "GetItem":
            self.lookups += 1
            got = self.shadow.get_item(TableName=params["TableName"], Key=params["Key"]).get("Item") or {}
            self.rcu += units(item_size(got)) * _factor(params)
        elif op == "BatchGetItem":
            for table, req in params["RequestItems"].items():
                self.lookups += 1
                got = self.shadow.batch_get_item(RequestItems={table: {"Keys": req["Keys"]}})
                sizes = [item_size(i) for i in got["Responses"].get(table, [])]
                missing = len(req["Keys"]) - len(sizes)
                self.rcu += (sum(units(s) for s in sizes) + missing) * _factor(req)
        elif op == "Query":
            self.lookups += 1
            kc = params["KeyConditionExpression"]
            ask = {k: params[k] for k in ("TableName", "IndexName", "Limit", "ExclusiveStartKey",
                                          "ScanIndexForward") if k in params}
            ask["KeyConditionExpression"] = kc
            ask["ExpressionAttributeValues"] = {k: v for k, v in params["ExpressionAttributeValues"].items()
                                                if k in kc}
            names = {k: v for k, v in (params.get("ExpressionAttributeNames") or {}).items() if k in kc}
            if names:
                ask["ExpressionAttributeNames"] = names
            got = self.shadow.query(**ask)
            self.rcu += units(sum(item_size(i) for i in got.get("Items", []))) * _factor(params)

    def take(self) -> tuple[float, Counter[str], int]:
        out = (self.rcu, self.ops, self.lookups)
        self.rcu, self.ops, self.lookups = 0.0, Counter(), 0
        return out


def _factor(params: dict[str, Any]) -> float:
    return 1.0 if params.get("ConsistentRead") else 0.5


@dataclass
class RunCost:
    label: str
    profiles: int
    changes: int
    requests: int
    rcu: float
    dynamodb: Counter[str]
    seconds: float

    @property
    def requests_per_change(self) -> float:
        return self.requests / self.changes

    @property
    def rcu_per_change(self) -> float:
        return self.rcu / self.changes


class Seeder:
    """Writes the state of an account straight into moto (BatchWriteItem, 25 a request)."""

    def __init__(self, client: Any, table: str, profiles_table: str, account_id: str, audience_id: str,
                 version: int) -> None:
        self.c, self.table, self.profiles_table = client, table, profiles_table
        self.acct, self.aud, self.version = account_id, audience_id, version
        self.head = 0

    def put(self, table: str, items: list[dict[str, Any]]) -> None:
        for start in range(0, len(items), 25):
            pending: dict[str, Any] = {table: [{"PutRequest": {"Item": i}} for i in items[start:start + 25]]}
            while pending:
                pending = self.c.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    def profile(self, i: int, plan: str, version: int) -> tuple[str, dict[str, Any]]:
        from chalicelib.domain.profiles import profile_id_for
        from chalicelib.store.profiles import DATA, profile_key

        email = f"member.{i}@example.com"
        pid = profile_id_for(self.acct, "email", email)
        data = {"id": pid, "account_id": self.acct, "identifiers": {"email": [email]},
                "fields": {"first_name": f"First{i}", "country": ["FR", "DE", "US", "GB", "JP"][i % 5],
                           "plan": plan},
                "steps": [["seed", "c"]], "created_at": NOW, "updated_at": NOW, "version": version}
        key = profile_key(self.acct, pid)
        return pid, {"PK": {"S": key["PK"]}, "SK": {"S": key["SK"]},
                     DATA: {"S": json.dumps(data, sort_keys=True, separators=(",", ":"))}}

    def changes(self, entered: list[tuple[int, str]], left: list[tuple[int, str]], version: int) -> None:
        """Profiles written, and their enters and exits recorded as the next changes of the log."""
        from chalicelib.store.audience_members import MEMBER_PREFIX, change_sk, changes_pk, members_pk

        profiles, members, log = [], [], []
        for i, plan, member, what in ([(i, p, True, "enter") for i, p in entered]
                                      + [(i, p, False, "exit") for i, p in left]):
            pid, item = self.profile(i, plan, version)
            profiles.append(item)
            self.head += 1
            members.append({"PK": {"S": members_pk(self.acct, self.aud)}, "SK": {"S": MEMBER_PREFIX + pid},
                            "in": {"BOOL": member}, "pos": {"S": ""}, "pv": {"N": str(version)},
                            "av": {"N": str(self.version)}, "at": {"S": NOW}})
            log.append({"PK": {"S": changes_pk(self.acct, self.aud)}, "SK": {"S": change_sk(self.head)},
                        "type": {"S": "audience_change"}, "n": {"N": str(self.head)}, "profile_id": {"S": pid},
                        "change": {"S": what}, "at": {"S": NOW}, "pos": {"S": ""},
                        "av": {"N": str(self.version)}})
        self.put(self.profiles_table, profiles)
        self.put(self.table, members + log)
        self.put(self.table, [{"PK": {"S": changes_pk(self.acct, self.aud)}, "SK": {"S": "HEAD"},
                               "n": {"N": str(self.head)}}])

    def backfill_done(self) -> None:
        from chalicelib.store.audience_members import BACKFILL_SK, changes_pk
        from chalicelib.store.profiles import SHARDS

        self.put(self.table, [{"PK": {"S": changes_pk(self.acct, self.aud)}, "SK": {"S": BACKFILL_SK},
                               "type": {"S": "audience_backfill"}, "av": {"N": str(self.version)},
                               "shard": {"N": str(SHARDS)}, "done": {"BOOL": True}, "pages": {"N": "1"},
                               "started_at": {"S": NOW}}])


def plans(start: int, n: int) -> Iterator[tuple[int, str]]:
    return ((i, "pro" if i % 3 else "team") for i in range(start, start + n))


def measure(profiles: int) -> tuple[RunCost, RunCost]:
    with fresh_stack(STAGE) as moto:
        return run(moto, profiles)


def run(moto: Any, profiles: int) -> tuple[RunCost, RunCost]:
    import boto3
    from botocore.config import Config

    from chalicelib.store import aws
    from chalicelib.store import keys as K

    # moto finds a Query's items by walking the whole partition (the audience's log holds a
    # change per member), which at 50,000 profiles outlasts the app client's 10 s read
    # timeout on a loaded machine; DynamoDB does not. Same client settings, a longer wait.
    app_clients(read_timeout=600)
    own = boto3.session.Session(region_name="us-east-1")
    shadow = own.client("dynamodb", config=Config(read_timeout=600))
    meter = Meter(shadow)
    aws.client("dynamodb").meta.events.register("before-parameter-build.dynamodb", meter.hook)

    bench = BenchAccount(STAGE, own.client("sqs"))
    d, account = bench.d, bench.account
    audience, job = bench.s3_export_job(BUCKET, FIELDS)
    saved = d.audiences.get(account.id, audience["id"], consistent=True)
    assert saved is not None
    seeder = Seeder(shadow, d.table.name, d.profiles_table.name, account.id, audience["id"], saved.version)

    t0 = time.perf_counter()
    seeder.changes(list(plans(0, profiles)), [], 1)  # every profile a member
    seeder.backfill_done()
    state = {"membership_generation": 1, "changes": {"audience_id": audience["id"], "n": seeder.head,
                                                     "pending": []}}
    shadow.update_item(TableName=d.table.name,
                       Key={"PK": {"S": K.account_pk(account.id)}, "SK": {"S": K.job_sk(job["id"])}},
                       UpdateExpression="SET state_json = :s",
                       ExpressionAttributeValues={":s": {"S": json.dumps(state, sort_keys=True)}})
    print(f"  seeded {profiles:,} profiles, members and log in {time.perf_counter() - t0:.0f} s", flush=True)

    nxt = {"join": profiles, "leave": 0}  # the next new profile, the next member to leave

    def one_run(label: str, changes: int) -> RunCost:
        left = [(i, "free") for i in range(nxt["leave"], nxt["leave"] + changes // 2)]
        entered = list(plans(nxt["join"], changes - len(left)))
        nxt["leave"] += len(left)
        nxt["join"] += len(entered)
        seeder.changes(entered, left, 2)
        d.runs_queue.send({"account_id": account.id, "job_id": job["id"], "trigger": "schedule"})
        before = int(moto.stats()["requests"])
        meter.take()
        meter.on = True
        t = time.perf_counter()
        steps = bench.drain()
        own_requests = 2 * steps + 1  # the drain's receives and deletes
        meter.on = False
        secs = time.perf_counter() - t
        rcu, ops, lookups = meter.take()
        served = int(moto.stats()["requests"]) - before
        latest = d.runs.page(account.id, job["id"], limit=1, cursor=None).items[0]
        assert latest.status == "succeeded", latest
        assert (latest.added, latest.removed) == (len(entered), len(left)), (latest.added, latest.removed)
        return RunCost(label, profiles, changes, served - own_requests - lookups, rcu, ops, secs)

    a = one_run("1% changed", max(2, int(profiles * CHANGED)))
    b = one_run(f"{FIXED} changed", FIXED)
    aws.client("dynamodb").meta.events.unregister("before-parameter-build.dynamodb", meter.hook)
    bench.close()
    return a, b


def main() -> int:
    parser = argparse.ArgumentParser()
    default = QUICK_SIZES if quick() else FULL_SIZES
    parser.add_argument("--sizes", default=",".join(map(str, default)), help="comma-separated account sizes")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",")]
    results: list[tuple[RunCost, RunCost]] = []
    for n in sizes:
        print(f"account of {n:,} profiles (fresh moto):", flush=True)
        results.append(measure(n))
    print()
    head = f"{'run':<14}{'profiles':>10}{'changes':>8}{'requests':>9}{'RCU':>8}{'req/chg':>9}{'RCU/chg':>9}{'s':>5}  DynamoDB requests"
    print(head)
    print("-" * (len(head) + 30))
    scans = 0
    for pair in results:
        for r in pair:
            scans += r.dynamodb.get("Scan", 0)
            print(f"{r.label:<14}{r.profiles:>10,}{r.changes:>8,}{r.requests:>9,}{r.rcu:>8.1f}"
                  f"{r.requests_per_change:>9.3f}{r.rcu_per_change:>9.3f}{r.seconds:>5.0f}  "
                  + ", ".join(f"{op} {n}" for op, n in sorted(r.dynamodb.items())))
    small, large = results[0], results[-1]
    ratios = {
        "1% changed, requests per change": large[0].requests_per_change / small[0].requests_per_change,
        "1% changed, RCU per change": large[0].rcu_per_change / small[0].rcu_per_change,
        f"{FIXED} changed, requests": large[1].requests / small[1].requests,
        f"{FIXED} changed, RCU": large[1].rcu / small[1].rcu,
    }
    print()
    print(f"largest ({large[0].profiles:,}) / smallest ({small[0].profiles:,}) account, budget <= {BUDGET}:")
    for label, ratio in ratios.items():
        print(f"  {'PASS' if ratio <= BUDGET else 'FAIL'}  {label:<36} {ratio:.3f}")
    print(f"  {'PASS' if scans == 0 else 'FAIL'}  zero Scans{'':<26} {scans}")
    failed = [label for label, ratio in ratios.items() if ratio > BUDGET] + (["Scans sent"] if scans else [])
    summary = "; ".join(f"{label} {ratio:.2f}" for label, ratio in ratios.items())
    return result(not failed, f"largest/smallest <= {BUDGET}: {summary}"
                  + (f" (FAILED: {', '.join(failed)})" if failed else ""))


if __name__ == "__main__":
    sys.exit(exit_code(main()))
