"""Profile upserts: AWS requests per 1,000 profiles and throughput, against a fresh moto.

20,000 realistic CSV rows (one identifier, email) are mapped with domain.profiles and
upserted in steps of 1,000 (as the engine does), then imported again with changes to
every row. Beside them, in the same run, boto3's `batch_writer` writes 20,000 items of
the same shape: the fastest a plain bulk load can go, with no identifier resolution,
merging or exactly-once bookkeeping. A smaller run with two identifiers (email and
user_id) shows what a second identifier costs.

Requests are counted on the wire (botocore before-send on the app's session, so retries
count) and by the repository's own stats; the two must agree. moto answers every request
in a few ms whatever it holds: compare ratios within one run, not absolute times.

    .venv/bin/python bench/profiles_upsert.py

Exit status 0 when both imports stay within 100 requests per 1,000 profiles, no Scan was
sent and the store holds exactly the imported profiles; 1 otherwise.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.awsnet import counting_moto, exit_code  # noqa: E402

STAGE = "benchprofiles"
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")  # BENCH_QUICK: the same budgets on fewer rows
N = 1_000 if QUICK else 20_000
N_TWO_IDS = 250 if QUICK else 5_000
STEP = 1_000  # records per upsert_batch, like one engine step
BUDGET = 100  # requests per 1,000 profiles

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Linus"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton"]
CITIES = [("FR", "Paris"), ("DE", "Berlin"), ("US", "Boston"), ("GB", "London"), ("JP", "Osaka")]
PLANS = ["free", "starter", "pro", "enterprise"]
CONFIG = {
    "identifier_field": "Email",
    "field_mapping": {"Email": "email", "First Name": "first_name", "Last Name": "last_name",
                      "Signup Date": "signed_up_at", "Lifetime Value": "ltv", "Tags": "tags"},
    "merge_rules": {"tags": "append", "signed_up_at": "first"},
}


def rows(n: int, version: int, *, user_ids: bool = False, seed: int = 7) -> list[dict[str, Any]]:
    """CSV rows as a reader yields them: every value a string, headers as people write them."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        country, city = rnd.choice(CITIES)
        row = {
            "Email": f"{rnd.choice(FIRST).lower()}.{rnd.choice(LAST).lower()}.{i}@example.com",
            "First Name": rnd.choice(FIRST),
            "Last Name": rnd.choice(LAST),
            "Country": country,
            "City": city,
            "Plan": rnd.choice(PLANS),
            "Signup Date": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
            "Lifetime Value": f"{rnd.uniform(0, 5000) + version:.2f}",
            "Newsletter": rnd.choice(["yes", "no", ""]),
            "Last Seen": f"2025-06-{version:02d}T10:00:00Z",
            "Tags": f"wave{version}" if version == 1 or i % 5 == 0 else "",
        }
        if user_ids:
            row["User Id"] = f"u{i:07d}"
        out.append(row)
    return out


@dataclass
class Result:
    name: str
    profiles: int
    seconds: float
    requests: Counter[str]
    read_units: float = 0.0
    write_units: float = 0.0
    outcomes: Counter[str] | None = None

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    @property
    def per_1000(self) -> float:
        return self.total * 1000 / self.profiles

    @property
    def rows_per_s(self) -> float:
        return self.profiles / self.seconds


class Wire:
    """before-send on the app's session: every client made from it afterwards counts."""

    def __init__(self) -> None:
        from chalicelib.store import aws

        aws.reset()
        self.ops: Counter[str] = Counter()
        self.total: Counter[str] = Counter()
        aws.session().events.register("before-send", self)

    def __call__(self, event_name: str = "", **_: Any) -> None:
        op = event_name.rsplit(".", 1)[-1]
        self.ops[op] += 1
        self.total[op] += 1

    def take(self) -> Counter[str]:
        out, self.ops = self.ops, Counter()
        return out


def upsert_all(name: str, account_id: str, source: list[dict[str, Any]], mapping: Any, tag: str,
               wire: Wire) -> tuple[Result, float]:
    from chalicelib.domain.profiles import ProfileRecord, map_record
    from chalicelib.store.dynamo import Table
    from chalicelib.store.profiles import ProfileRepo

    t0 = time.perf_counter()
    records = []
    for i, row in enumerate(source):
        r = map_record(row, mapping, f"s3://bench/people.csv#{i + 2}")
        assert isinstance(r, ProfileRecord), r
        records.append(r)
    map_s = time.perf_counter() - t0
    repo = ProfileRepo(Table(setting="profiles_table_name"))
    outcomes: Counter[str] = Counter()
    by_repo: Counter[str] = Counter()
    reads = writes = 0.0
    wire.take()
    t0 = time.perf_counter()
    for n, start in enumerate(range(0, len(records), STEP)):
        out = repo.upsert_batch(account_id, records[start:start + STEP], step_tag=f"{tag}#{n}",
                                rules=mapping.merge_rules)
        outcomes.update(out)
        by_repo.update(repo.last_stats.requests)
        reads += repo.last_stats.read_units
        writes += repo.last_stats.write_units
    seconds = time.perf_counter() - t0
    on_wire = wire.take()
    assert on_wire == by_repo, f"wire {dict(on_wire)} != repository {dict(by_repo)}"
    return Result(name, len(records), seconds, on_wire, reads, writes, outcomes), map_s


def baseline(source: list[dict[str, Any]], mapping: Any, wire: Wire) -> Result:
    """boto3 batch_writer: the same number of items, same shape, no resolution at all."""
    from chalicelib.config import settings
    from chalicelib.domain.profiles import ProfileRecord, map_record
    from chalicelib.store import aws

    items = []
    for i, row in enumerate(source):
        r = map_record(row, mapping, f"row {i}")
        assert isinstance(r, ProfileRecord)
        items.append({
            "PK": f"BENCH#BASELINE#{i % 16:02d}", "SK": f"ROW#{i:07d}", "type": "profile",
            "id": f"row{i}", "account_id": "bench", "identifiers_json": json.dumps(r.identifiers),
            "fields_json": json.dumps(r.fields), "steps_json": "[]", "created_at": "2025-01-01T00:00:00Z",
            "updated_at": "2025-01-01T00:00:00Z", "version": 1,
        })
    table = aws.session().resource("dynamodb").Table(settings().table_name)
    wire.take()
    t0 = time.perf_counter()
    with table.batch_writer() as w:
        for item in items:
            w.put_item(Item=item)
    seconds = time.perf_counter() - t0
    return Result("boto3 batch_writer (baseline)", len(items), seconds, wire.take())


def main() -> int:


    with counting_moto() as moto:
        from devserver.infra import deploy_stack, use_local_aws

        use_local_aws(moto.endpoint, STAGE)
        deploy_stack(STAGE)
        return run()


def run() -> int:
    from chalicelib.domain.profiles import Mapping
    from chalicelib.store.dynamo import Table
    from chalicelib.store.profiles import ProfileRepo

    wire = Wire()
    mapping = Mapping.from_config(CONFIG)
    two_ids = Mapping.from_config({**CONFIG, "identifier_fields": ["email", "user_id"],
                                   "field_mapping": {**CONFIG["field_mapping"], "User Id": "user_id"}})
    first_rows, second_rows = rows(N, 1), rows(N, 2)

    base = baseline(first_rows, mapping, wire)
    first, map_s = upsert_all("first import (empty store)", "acct_bench", first_rows, mapping, "import1", wire)
    again, _ = upsert_all("re-import, every row changed", "acct_bench", second_rows, mapping, "import2", wire)
    two, _ = upsert_all("first import, 2 identifiers", "acct_bench2", rows(N_TWO_IDS, 1, user_ids=True),
                        two_ids, "import3", wire)

    repo = ProfileRepo(Table(setting="profiles_table_name"))
    stored = repo.count("acct_bench")
    sample = repo.find("acct_bench", "email", first_rows[10]["Email"])

    print(f"moto on port {port_of(wire)}; {N:,} CSV rows of {len(first_rows[0])} columns, "
          f"upserted {STEP:,} per step; mapping {N:,} rows took {map_s:.2f} s "
          f"({N / map_s:,.0f} rows/s)\n")
    head = (f"{'scenario':<34}{'profiles':>9}{'requests':>9}{'per 1,000':>10}{'rows/s':>9}"
            f"{'vs baseline':>12}  {'RCU':>7} {'WCU':>7}  by operation")
    print(head)
    print("-" * (len(head) + 30))
    for r in (base, first, again, two):
        ops = ", ".join(f"{op} {n}" for op, n in sorted(r.requests.items()))
        print(f"{r.name:<34}{r.profiles:>9,}{r.total:>9,}{r.per_1000:>10.1f}{r.rows_per_s:>9,.0f}"
              f"{r.rows_per_s / base.rows_per_s:>11.2f}x  {r.read_units:>7.0f} {r.write_units:>7.0f}  {ops}")
    print()
    for r in (first, again, two):
        print(f"  {r.name}: outcomes {dict(r.outcomes or {})}")
    print("  (RCU/WCU are what moto reports: 1 WCU per BatchWriteItem request, not per item as AWS "
          "bills; the columns prove the figures flow, not their size)")
    print()

    checks = [
        (f"first import <= {BUDGET} requests per 1,000", first.per_1000 <= BUDGET, f"{first.per_1000:.1f}"),
        (f"re-import with changes <= {BUDGET} per 1,000", again.per_1000 <= BUDGET, f"{again.per_1000:.1f}"),
        ("every profile added once, then updated once",
         first.outcomes == Counter(added=N) and again.outcomes == Counter(updated=N),
         f"{dict(first.outcomes or {})} / {dict(again.outcomes or {})}"),
        ("store holds the imported profiles (count via Query)", stored == N, f"{stored:,}"),
        ("a profile carries the re-import's values",
         sample is not None and sample.fields["ltv"] == second_rows[10]["Lifetime Value"]
         and "wave2" in sample.fields["tags"], json.dumps(sample.fields if sample else None)[:80]),
        ("zero Scans (whole run)", wire.total["Scan"] == 0, str(wire.total["Scan"])),
    ]
    print("checks:")
    for label, ok, got in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {label:<52} {got}")
    print(f"  info  2 identifiers per profile (email + user_id):{'':<4} {two.per_1000:.1f} requests per 1,000 "
          "(over budget: each new identifier is one more item to write)")
    failed = [label for label, ok, _ in checks if not ok]
    print()
    print(f"RESULT {'PASS' if not failed else 'FAIL'} {len(checks) - len(failed)}/{len(checks)} budgets hold"
          + ("" if not failed else ": " + "; ".join(failed)))
    return 0 if not failed else 1


def port_of(wire: Wire) -> str:
    import os

    return os.environ.get("AWS_ENDPOINT_URL", "?").rsplit(":", 1)[-1]


if __name__ == "__main__":
    sys.exit(exit_code(main()))
