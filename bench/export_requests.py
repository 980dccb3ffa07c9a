"""AWS requests per audience member of an S3 export run, counted on the wire against moto.

For each audience size, on a fresh moto of its own (a child process): profiles are seeded with
ProfileRepo.upsert_batch (every one a member of the audience), an audience and an S3
export job are created through the API, and the runs queue is drained into the engine
with its production settings (5,000 rows a part). Then 1% of the members leave, as many
profiles join, and a second run sends the changes.

Requests are counted with botocore `before-send` hooks (once per HTTP attempt, retries
included), registered before any client exists on:

* the app's session (chalicelib.store.aws: DynamoDB, Secrets Manager, SQS sends),
* the providers' shared session (chalicelib.providers.calls: the customer's S3, STS),
* the session of this script's own SQS client, which plays Lambda's event source mapping
  (ReceiveMessage + DeleteMessage per step; AWS bills those too: shown apart).

moto answers a Query in time proportional to the whole table (it scans for the partition),
so reading 100,000 profiles takes it tens of minutes (the script gives the app's DynamoDB
client a longer read timeout for that; nothing else differs from the app's client). The default sizes are 5,000 and
20,000 members; the request count of a run is linear in the members (pages of profiles,
chunks of membership and plan, parts), so the script fits `requests = a + b * members` on
the measured sizes and prints the figure for 100,000 as an extrapolation, next to what it
measured. `--members 100000` measures it for real (slow).

    .venv/bin/python bench/export_requests.py [--members 5000,20000]

Exit status 0 when every measured and extrapolated run stays within 0.05 requests per
member and no Scan was sent; 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.awsnet import exit_code  # noqa: E402
from bench.export_setup import BenchAccount, Wire, app_clients, fresh_stack, people, report, seed  # noqa: E402

STAGE = "benchexport"
BUDGET = 0.05  # AWS requests per member
TARGET = 100_000
CHANGE = 0.01  # share of members that leave (and of new members that join) before run 2
BUCKET = "bench-export"
FIELDS = ["email", "first_name", "last_name", "country", "plan"]


@dataclass
class RunFigures:
    label: str
    members: int
    changes: int
    steps: int
    seconds: float
    counts: dict[str, Counter[str]]

    @property
    def engine(self) -> int:
        return sum(self.counts["app"].values()) + sum(self.counts["provider"].values())

    @property
    def polling(self) -> int:
        return sum(self.counts["event source"].values())

    def per_member(self, with_polling: bool = False) -> float:
        return (self.engine + (self.polling if with_polling else 0)) / self.members


def measure(members: int) -> tuple[RunFigures, RunFigures]:
    with fresh_stack(STAGE):
        return run(members)


def run(members: int) -> tuple[RunFigures, RunFigures]:
    import boto3

    wire = Wire(("app", "provider", "event source"))
    # moto scans the whole table for each Query: at 100,000 profiles one Query takes it
    # longer than the app client's 10 s read timeout. Same client, same hooks, a longer wait.
    app_clients(app_hook=wire.hook("app"), provider_hook=wire.hook("provider"), read_timeout=600)
    poller_session = boto3.session.Session(region_name="us-east-1")
    poller_session.events.register("before-send", wire.hook("event source"))
    bench = BenchAccount(STAGE, poller_session.client("sqs"))
    d, account = bench.d, bench.account
    t0 = time.perf_counter()
    seed(d.profiles, account.id, people(0, members), "seed")
    print(f"  seeded {members:,} profiles in {time.perf_counter() - t0:.0f} s", flush=True)
    _, job = bench.s3_export_job(BUCKET, FIELDS)

    def drain() -> tuple[int, float]:
        wire.take()
        wire.on = True
        t = time.perf_counter()
        steps = bench.drain()
        wire.on = False
        return steps, time.perf_counter() - t

    steps, secs = drain()
    first = RunFigures("backfill", members, members, steps, secs, wire.take())
    runs = d.runs.page(account.id, job["id"], limit=5, cursor=None).items
    assert runs[0].status == "succeeded" and runs[0].added == members, runs[0]

    # 1% leave, as many join.
    moved = max(1, int(members * CHANGE))
    seed(d.profiles, account.id, [*people(0, moved, member=False), *people(members, moved)], "change")
    d.runs_queue.send({"account_id": account.id, "job_id": job["id"], "trigger": "schedule"})
    steps, secs = drain()
    second_counts = wire.take()
    latest = d.runs.page(account.id, job["id"], limit=5, cursor=None).items[0]
    assert latest.status == "succeeded" and (latest.added, latest.removed) == (moved, moved), latest
    second = RunFigures("1% joined, 1% left", members, latest.added + latest.removed, steps, secs, second_counts)
    bench.close()
    return first, second


def fit(xs: list[int], ys: list[int]) -> tuple[float, float]:
    if len(xs) < 2:
        return 0.0, ys[0] / xs[0]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", default="1000,2000" if os.environ.get("BENCH_QUICK", "") not in ("", "0") else "5000,20000", help="comma-separated audience sizes")
    sizes = [int(s) for s in parser.parse_args().members.split(",")]
    results: list[tuple[RunFigures, RunFigures]] = []
    for n in sizes:
        print(f"audience of {n:,} members (fresh moto):", flush=True)
        results.append(measure(n))
    print()
    head = (f"{'run':<22}{'members':>9}{'sent':>8}{'steps':>6}{'engine req':>11}{'per member':>11}"
            f"{'+ polling':>10}{'seconds':>8}  by operation (app + provider)")
    print(head)
    print("-" * (len(head) + 40))
    checks: list[tuple[str, bool, str]] = []
    scans = 0
    for first, second in results:
        for r in (first, second):
            ops = Counter(r.counts["app"]) + Counter(r.counts["provider"])
            scans += sum(n for op, n in ops.items() if op.endswith(".Scan"))
            print(f"{r.label:<22}{r.members:>9,}{r.changes:>8,}{r.steps:>6}{r.engine:>11,}"
                  f"{r.per_member():>11.4f}{r.per_member(True):>10.4f}{r.seconds:>8.0f}  "
                  + ", ".join(f"{op} {n}" for op, n in sorted(ops.items())))
            checks.append((f"{r.label}, {r.members:,} members: <= {BUDGET} requests per member (measured)",
                           r.per_member(True) <= BUDGET, f"{r.per_member(True):.4f} with polling"))
    print()
    if TARGET not in sizes:
        for i, label in ((0, "backfill"), (1, "1% joined, 1% left")):
            xs = [res[i].members for res in results]
            ys = [res[i].engine + res[i].polling for res in results]
            a, b = fit(xs, ys)
            est = a + b * TARGET
            print(f"extrapolated, {label}: requests = {a:.1f} + {b:.5f} x members -> {TARGET:,} members: "
                  f"~{est:,.0f} requests = {est / TARGET:.4f} per member (NOT measured)")
            checks.append((f"{label}, {TARGET:,} members: <= {BUDGET} per member (extrapolated)",
                           est / TARGET <= BUDGET, f"{est / TARGET:.4f}"))
        print()
    checks.append(("zero Scans", scans == 0, str(scans)))
    return report(checks, 72)


if __name__ == "__main__":
    sys.exit(exit_code(main()))
