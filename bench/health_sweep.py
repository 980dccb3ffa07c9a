"""The daily health sweep of 10,000 authorizations: AWS requests of the fan-out and of the
checks, all counted on the wire against an in-process moto server, and a SIMULATED wall
time on AWS.

What runs:
1. 10,000 authorizations over 3 accounts are seeded with BatchWriteItem, items built by the
   store's own builder (`AuthorizationRepo.put_new_op`); not counted.
2. The sweep (services/health.sweep) runs in full: sharded index Queries and
   SendMessageBatch, every request counted.
3. The health Lambda's side runs for every message, as the event source and the handler
   would: while the sweep sends, a poller takes batches off the queue (ReceiveMessage, then
   DeleteMessageBatch); once the queue is drained, a pool of workers runs
   `health.check_many` on every batch taken (BatchGetItem of the batch, GetSecretValue and
   the verdict's UpdateItem per check). Unlike Lambda, a batch is deleted before its checks
   rather than after: the same requests, but moto's SQS costs grow with every message in
   the queue (each SendMessage walks them all), and a 10,000-deep queue made the sweep
   alone take hours; checks running beside the sweep starved the poller the same way.
   Empty polls (the poller waiting for the sweep) are shown apart.

Fan-out = getting every authorization to its check: the sweep's Queries and
SendMessageBatch, the event source's ReceiveMessage and DeleteMessageBatch, and the
handler's BatchGetItem of the batch. Budget: <= 1.3 requests per authorization. The check
itself (GetSecretValue, the verdict's UpdateItem, a transaction on a change) is shown apart.

The wall time is computed, not measured (moto's timings say nothing about AWS): per-request
latencies below, 2 s per provider check, 50 concurrent health Lambdas taking batches in the
order the sweep sent them.

    .venv/bin/python bench/health_sweep.py [N]      (N defaults to 10,000)

Exit status 0 when the fan-out is within budget, every authorization was checked once and
no Scan was sent, 1 otherwise.
"""

from __future__ import annotations

import heapq
import os
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.awsnet import counting_moto, exit_code  # noqa: E402

STAGE = "bench"
N = 300 if os.environ.get("BENCH_QUICK", "") not in ("", "0") else 10_000  # quick: same budgets
ACCOUNTS = 3
WORKERS = 6  # threads running the handler's checks (moto is one process: more do not help)
BUDGET = 1.3
CONCURRENCY = 50
PROVIDER_LATENCY_S = 2.0
# Assumed AWS latencies per request, seconds (typical in-region p50 figures).
LATENCY = {"dynamodb": 0.006, "sqs": 0.010, "secretsmanager": 0.015}
ONCE_OPS = {"GetQueueUrl"}  # looked up once per container, whatever N
FAN_OUT_OPS = {"Query", "SendMessageBatch", "ReceiveMessage", "DeleteMessageBatch", "BatchGetItem"}


class Wire:
    """Every HTTP attempt botocore makes, by (role of the thread, service, operation)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.on = False
        self._lock = threading.Lock()
        self._role = threading.local()

    def role(self, name: str) -> None:
        """Count this thread's requests under `name` (sweep, lambda, idle)."""
        self._role.name = name

    def install(self) -> None:
        from botocore.endpoint import Endpoint

        original = Endpoint._do_get_response
        wire = self

        def counted(endpoint: Any, request: Any, operation_model: Any, context: Any) -> Any:
            if wire.on:
                key = (getattr(wire._role, "name", "other"),
                       operation_model.service_model.endpoint_prefix, operation_model.name)
                with wire._lock:
                    wire.counts[key] += 1
            return original(endpoint, request, operation_model, context)

        Endpoint._do_get_response = counted  # type: ignore[method-assign]

    def take(self) -> Counter[tuple[str, str, str]]:
        with self._lock:
            out, self.counts = self.counts, Counter()
        return out


class Instant:
    """A provider whose check answers healthy at once (the 2 s are added by the simulation)."""

    def __init__(self) -> None:
        from chalicelib.domain.catalog import AuthMethodSpec, JobType, ProviderSpec, WorkflowSpec
        from tests.engine.sources import Key, ListImportConfig

        self.spec = ProviderSpec(
            id="bench_probe", name="Bench probe", description="bench double",
            auth_methods=(AuthMethodSpec("api_key", "API key", "", Key),),
            workflows=(WorkflowSpec("list_import", "List import", JobType.IMPORT, "", ("api_key",),
                                    ListImportConfig),))

    def check(self, method: str, credentials: Any, resources: dict[str, str], counter: Any = None) -> Any:
        from chalicelib.domain.models import CheckResult, HealthStatus

        return CheckResult(HealthStatus.HEALTHY, None, provider_account="bench")


def start_stack(endpoint: str) -> None:
    from devserver.infra import deploy_stack, use_local_aws

    use_local_aws(endpoint, STAGE)
    deploy_stack(STAGE)
    # The app's clients with one change: a longer read timeout. moto answers a GSI Query by
    # walking the whole table, which at 10,000 items on a shared machine outlasts the 10 s
    # the app allows AWS; a timeout there would be retried and counted, a moto artefact.
    from chalicelib.store import aws

    for service in ("dynamodb", "sqs", "secretsmanager"):
        aws.use_client(service, aws.session().client(service, config=aws.client_config(service, read_timeout=600)))


def seed(d: Any, n: int) -> None:
    from chalicelib.domain.models import Authorization, Health, HealthStatus, empty_usage

    d.secrets.create("bench/key", {"api_key": "bench-key-0000"}, tags={"bench": "health"})
    puts = []
    for i in range(n):
        auth = Authorization(
            id=uuid.uuid4().hex, account_id=f"bench-{i % ACCOUNTS}", provider="bench_probe",
            method="api_key", label=f"auth {i}", description="", owner="bench",
            created_at="2026-01-01T00:00:00Z", updated_at="2026-01-01T00:00:00Z",
            secret_name="bench/key", health=Health(HealthStatus.HEALTHY, None, None), usage=empty_usage())
        puts.append({"PutRequest": {"Item": d.auths.put_new_op(auth)["Put"]["Item"]}})
    for start in range(0, len(puts), 25):
        pending: dict[str, Any] = {d.table.name: puts[start:start + 25]}
        while pending:
            pending = d.table.client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def simulate(send_batches: int, sweep_requests: Counter[str], per_batch: dict[str, float]
             ) -> tuple[float, float, float]:
    """(sweep seconds, one batch's seconds, wall seconds): the sweep sends batch after batch (its Queries spread
    evenly); 50 workers take each batch when both it and a worker are free."""
    sweep_s = sum(LATENCY[svc] * n for svc, n in sweep_requests.items())
    step = sweep_s / max(send_batches, 1)  # when each batch lands on the queue
    batch_s = (PROVIDER_LATENCY_S + LATENCY["sqs"] * (per_batch.get("sqs", 0))
               + LATENCY["dynamodb"] * per_batch.get("dynamodb", 0)
               # the checks of a batch run in parallel: one secret read and one write deep
               + LATENCY["secretsmanager"] * min(1.0, per_batch.get("secretsmanager", 0)))
    free = [0.0] * CONCURRENCY
    heapq.heapify(free)
    end = 0.0
    for i in range(send_batches):
        ready = (i + 1) * step
        start = max(ready, heapq.heappop(free))
        finish = start + batch_s
        heapq.heappush(free, finish)
        end = max(end, finish)
    return sweep_s, batch_s, end


def main() -> int:
    os.chdir(ROOT)
    with counting_moto() as moto:
        start_stack(moto.endpoint)
        wire = Wire()
        wire.install()
        return run(wire, moto.endpoint)


class Lambda:
    """The health queue's event source and handler, for every message (see the docstring)."""

    def __init__(self, d: Any, wire: Wire, url: str) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from chalicelib.store import aws

        self.d, self.wire, self.url = d, wire, url
        self.sqs = aws.client("sqs")
        self.pool = ThreadPoolExecutor(WORKERS, initializer=wire.role, initargs=("lambda",))
        self.sweep_done = threading.Event()
        self.batches = 0
        self.messages = 0
        self.checked = 0
        self.failed: list[str] = []
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.taken: list[list[tuple[str, str]]] = []  # batches taken off the queue, to check

    def _poll(self) -> None:
        import json

        while True:
            self.wire.role("lambda")
            try:
                # A short wait: the queue's own 20 s long poll outlasts the SDK's read timeout on moto.
                msgs = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10,
                                                WaitTimeSeconds=1).get("Messages", [])
            except Exception as exc:  # reported, and the bench fails; keep draining
                self.failed.append(f"ReceiveMessage: {exc!r}")
                continue
            if not msgs:
                # An empty poll: counted apart (its number depends on timing, not on N).
                with self.wire._lock:
                    self.wire.counts[("lambda", "sqs", "ReceiveMessage")] -= 1
                    self.wire.counts[("idle", "sqs", "ReceiveMessage")] += 1
                if self.sweep_done.is_set():
                    break
                time.sleep(0.02)
                continue
            with self._lock:
                self.batches += 1
                self.messages += len(msgs)
                if self.messages // 1000 != (self.messages - len(msgs)) // 1000:
                    print(f"  {self.messages:,} messages taken off the queue", flush=True)
            self.sqs.delete_message_batch(QueueUrl=self.url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
            bodies = [json.loads(m["Body"]) for m in msgs]
            self.taken.append([(b["account_id"], b["authorization_id"]) for b in bodies])
            if len(msgs) < 10 and not self.sweep_done.is_set():
                time.sleep(0.02)  # let the sweep's next SendMessageBatch land whole

    def start(self) -> None:
        self.thread.start()

    def finish(self) -> None:
        """The handler's checks of every batch taken, once the queue is drained: run beside
        the sweep, their threads starved the poller and the queue grew (see the docstring)."""
        self.sweep_done.set()
        self.thread.join()
        for f in [self.pool.submit(self._handle, batch) for batch in self.taken]:
            f.result()
        self.pool.shutdown()

    def _handle(self, targets: list[tuple[str, str]]) -> None:
        from chalicelib.services import health

        try:
            verdicts = health.check_many(self.d, targets, timeout=60)
            with self._lock:
                self.checked += sum(1 for v in verdicts if v.status is not None)
        except Exception as exc:  # reported, and the bench fails
            with self._lock:
                self.failed.append(repr(exc))


def part(op: str) -> str:
    return "fan-out" if op in FAN_OUT_OPS else "once" if op in ONCE_OPS else "check"


def run(wire: Wire, endpoint: str) -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else N

    from chalicelib.bootstrap import Deps, use
    from chalicelib.providers.registry import Registry
    from chalicelib.services import health
    from chalicelib.store import aws

    d = Deps(registry=Registry(extra={"bench_probe": Instant()}))  # type: ignore[dict-item]
    use(d)
    t0 = time.perf_counter()
    seed(d, n)
    print(f"moto at {endpoint}; {n:,} authorizations over {ACCOUNTS} accounts seeded in "
          f"{time.perf_counter() - t0:.1f} s (not counted)", flush=True)

    url = aws.client("sqs").get_queue_url(QueueName=f"switchyard-{STAGE}-health")["QueueUrl"]
    lam = Lambda(d, wire, url)
    wire.on = True
    t0 = time.perf_counter()
    lam.start()
    wire.role("sweep")
    queued, send_requests = health.sweep(d)
    sweep_moto_s = time.perf_counter() - t0
    print(f"sweep done in {sweep_moto_s:.1f} s on moto; the checks go on", flush=True)
    lam.finish()
    all_moto_s = time.perf_counter() - t0
    wire.on = False
    ops = wire.take()
    assert queued == n, queued

    total: Counter[tuple[str, str]] = Counter()
    for (role, svc, op), count in ops.items():
        if role != "idle":
            total[(svc, op)] += count
    fan_out = sum(c for (_svc, op), c in total.items() if op in FAN_OUT_OPS)
    check = sum(c for (_svc, op), c in total.items() if op not in FAN_OUT_OPS | ONCE_OPS)
    scans = sum(c for (_svc, op), c in total.items() if op == "Scan")
    idle = ops.get(("idle", "sqs", "ReceiveMessage"), 0)

    print()
    print(f"requests for a sweep of {n:,}, all counted (sweep and health Lambda; {all_moto_s:.0f} s on moto):")
    print(f"  {'service':<15} {'operation':<20} {'requests':>10} {'per auth':>9}  part")
    for (svc, op), amount in sorted(total.items()):
        print(f"  {svc:<15} {op:<20} {amount:>10,} {amount / n:>9.3f}  {part(op)}")
    print(f"  fan-out {fan_out:,} = {fan_out / n:.3f} per authorization (budget {BUDGET}); "
          f"checks {check:,} = {check / n:.2f}; total {fan_out + check:,} = {(fan_out + check) / n:.2f}")
    print(f"  {lam.batches:,} batches received ({lam.messages / max(lam.batches, 1):.2f} messages each); "
          f"{lam.checked:,} authorizations checked; SendMessageBatch reported by the sweep: {send_requests:,}; "
          f"Scan requests: {scans}; empty polls while waiting (not counted above): {idle:,}")

    per_batch: dict[str, float] = {}
    sweep_by_service: Counter[str] = Counter()
    for (role, svc, _op), count in ops.items():
        if role in ("lambda", "other"):  # "other": check_many's own threads, one per check
            per_batch[svc] = per_batch.get(svc, 0.0) + count / max(lam.batches, 1)
        elif role == "sweep":
            sweep_by_service[svc] += count
    batches = -(-n // 10)
    sweep_s, batch_s, wall_s = simulate(batches, sweep_by_service, per_batch)
    print()
    print(f"SIMULATED wall time on AWS (computed, not measured): concurrency {CONCURRENCY}, provider check "
          f"{PROVIDER_LATENCY_S:g} s, request latencies {LATENCY}:")
    print(f"  sweep (one Lambda, sequential requests) {sweep_s:6.1f} s")
    print(f"  one health batch (10 checks in parallel) {batch_s:6.2f} s")
    print(f"  last check done after                   {wall_s:6.1f} s  "
          f"(lower bound {batches / CONCURRENCY * PROVIDER_LATENCY_S:.0f} s = {batches:,} batches / {CONCURRENCY} x "
          f"{PROVIDER_LATENCY_S:g} s)")
    print(f"  for scale, on moto here: the sweep took {sweep_moto_s:.1f} s, sweep and checks {all_moto_s:.1f} s "
          "(moto times are not AWS times)")

    problems = []
    if fan_out / n > BUDGET:
        problems.append(f"fan-out {fan_out / n:.3f} per authorization > {BUDGET}")
    if scans:
        problems.append(f"{scans} Scan requests")
    if lam.checked != n or lam.messages != n:
        problems.append(f"{lam.checked:,} checked, {lam.messages:,} messages received, of {n:,}")
    if lam.failed:
        problems.append(f"{len(lam.failed)} batches failed: {lam.failed[0]}")
    print()
    print(f"RESULT {'PASS' if not problems else 'FAIL'} fan-out {fan_out / n:.3f} per authorization (budget {BUDGET})"
          + ("" if not problems else ": " + "; ".join(problems)))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(exit_code(main()))
