"""Memory of the S3 file import reader: flat in the file size?

Writes a ~20 MB and a ~200 MB CSV of profile rows to S3 (moto), reads each completely
through S3FileReader in steps of 5,000 rows, and compares the reader's peak memory.

Where moto runs matters. moto answers every GetObject by copying the WHOLE object in
memory (FakeKey.value, then a slice for the Range), so with moto in-process (mock_aws)
any tracemalloc or RSS figure around the read loop would measure moto's copies of a 200 MB
object, not the reader. Here moto runs as a server in its own process (it holds the
objects and makes those copies there) and each measurement runs in a fresh subprocess
that contains only the reader, botocore and urllib3:

Between steps the loop runs gc.collect(): in production a step is one Lambda invocation,
and each step's boto3 client is a reference cycle that only the cyclic GC frees.

* tracemalloc peak: Python allocations from the first step to the last (a process of
  its own, started after imports and a warm-up read, so botocore's loaded models are not
  counted);
* max RSS delta: ru_maxrss after the read minus ru_maxrss just before it (a second
  process without tracemalloc, which also gives rows/s).

Rows/s: wall-clock includes moto's server-side work (a full copy of the object for every
request), so the reader's own figure is rows per CPU-second of the reader process.

    .venv/bin/python bench/s3_import_memory.py [--sizes 20,200] [--step 5000]

Exit status 0 when the 200 MB / 20 MB peak ratio is <= 1.2 (tracemalloc and RSS), else 1.
The data is generated and uploaded as a stream (8 MiB multipart parts): the generator
never holds a whole file.
"""

from __future__ import annotations

import argparse
import csv
import gc
import io
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BUCKET = "bench-import-memory"
PART_BYTES = 8 * 1024 * 1024
BUDGET_RATIO = 1.2
KEY_ID = "AKIABENCHABCDEFGHIJK"
SECRET = "benchSECRETbench1234567890"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def point_at(endpoint: str) -> None:
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }
    )
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(key, None)
    from chalicelib import config
    from chalicelib.providers import calls

    config.reset()
    calls.reset()


# -- data ---------------------------------------------------------------------------------

CITIES = ["Lisbon", "Oslo", "Quito", "São Paulo", "Kraków", "Nairobi", "Osaka", "Austin, TX"]
NOTES = ["", "prefers email", 'said "call me later"', "VIP, renews in March", "moved\nabroad", ""]


def rows_text(target_bytes: int) -> Iterator[bytes]:
    """CSV text of realistic profile rows, in ~1 MB pieces, until target_bytes."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["email", "first_name", "last_name", "phone", "city", "country", "signed_up",
                "lifetime_value", "marketing_opt_in", "note"])
    written = 0
    i = 0
    while written < target_bytes:
        for _ in range(1_000):
            w.writerow([
                f"customer{i:08d}@example.com", f"First{i % 5003}", f"Lastname{i % 7919}",
                f"+1-555-{i % 10_000_000:07d}", CITIES[i % len(CITIES)], "US" if i % 3 else "PT",
                f"20{15 + i % 10}-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
                f"{(i * 37) % 100_000 / 100:.2f}", "true" if i % 2 else "false", NOTES[i % len(NOTES)],
            ])
            i += 1
        data = out.getvalue().encode()
        out.seek(0)
        out.truncate()
        written += len(data)
        yield data


def upload(s3: Any, key: str, target_bytes: int) -> tuple[int, int]:
    """Multipart upload of rows_text, 8 MiB parts; returns (bytes, rows)."""
    mpu = s3.create_multipart_upload(Bucket=BUCKET, Key=key)
    parts: list[dict[str, Any]] = []
    buf = bytearray()
    total = rows = 0

    def send(data: bytes) -> None:
        n = len(parts) + 1
        etag = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=mpu["UploadId"], PartNumber=n, Body=data)["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})

    for piece in rows_text(target_bytes):
        buf += piece
        total += len(piece)
        rows += piece.count(b"\n")
        if len(buf) >= PART_BYTES:
            send(bytes(buf))
            buf.clear()
    if buf:
        send(bytes(buf))
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key=key, UploadId=mpu["UploadId"], MultipartUpload={"Parts": parts}
    )
    return total, rows


# -- the measured process ---------------------------------------------------------------------


def read_all(key: str, step_rows: int) -> tuple[int, int, int, float, float]:
    """Read the object through S3FileReader until done: (rows, invalid, steps, wall
    seconds and CPU seconds spent inside read())."""
    from chalicelib.providers.registry import Registry
    from chalicelib.providers.roles import StepContext
    from chalicelib.providers.s3 import AccessKeys

    reader = Registry().source("amazon_s3", "s3_file_import")
    creds = AccessKeys.model_validate({"access_key_id": KEY_ID, "secret_access_key": SECRET})
    cfg = {"bucket": BUCKET, "prefix": key}
    cursor: dict[str, Any] | None = None
    rows = invalid = steps = 0
    wall = cpu = 0.0
    while True:
        ctx = StepContext(
            account_id="acc", job_id="job", run_id="run", step=steps, method="access_keys",
            credentials=creds, config=cfg, cursor=cursor, state={}, max_records=step_rows,
            deadline=time.monotonic() + 120,
        )
        t, c = time.perf_counter(), time.process_time()
        result = reader.read(ctx)
        wall += time.perf_counter() - t
        cpu += time.process_time() - c
        steps += 1
        rows += len(result.rows)
        invalid += len(result.invalid)
        cursor = json.loads(json.dumps(result.cursor))  # as the engine stores it
        done = result.done
        del result, ctx  # the engine drops a step's rows once written
        # A step is one Lambda invocation: nothing of it survives into the next. Each step's
        # boto3 client is a reference cycle that only the cyclic GC frees; collect it here so
        # the next step's peak is not the previous steps' garbage (without this, peaks drift
        # up by ~0.25 MB a step until a gen-2 collection, for every file size alike).
        gc.collect()
        if done:
            return rows, invalid, steps, wall, cpu


def worker(endpoint: str, key: str, step_rows: int, trace: bool) -> None:
    point_at(endpoint)
    import tracemalloc

    # Warm up: load botocore's S3 model and the reader with one small read.
    read_all("warmup.csv", step_rows)
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace:
        tracemalloc.start()
    rows, invalid, steps, wall, cpu = read_all(key, step_rows)
    peak = tracemalloc.get_traced_memory()[1] if trace else None
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "rows": rows, "invalid": invalid, "steps": steps, "wall_s": wall, "cpu_s": cpu,
        "tracemalloc_peak": peak, "maxrss_delta_kb": maxrss_after - maxrss_before,
        "maxrss_kb": maxrss_after, "maxrss_before_kb": maxrss_before,
    }))


def measure(endpoint: str, key: str, step_rows: int, trace: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", "--endpoint", endpoint, "--key", key,
           "--step", str(step_rows)] + (["--trace"] if trace else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,5" if os.environ.get("BENCH_QUICK", "") not in ("", "0") else "20,200", help="file sizes in MB (first one is the base)")
    parser.add_argument("--step", type=int, default=5000, help="rows per step")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--trace", action="store_true")
    parser.add_argument("--endpoint")
    parser.add_argument("--key")
    args = parser.parse_args()
    if args.worker:
        worker(args.endpoint, args.key, args.step, args.trace)
        return 0

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        point_at(endpoint)
        import boto3

        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="warmup.csv", Body=b"email\na@example.com\n")
        results = []
        for mb in [int(x) for x in args.sizes.split(",")]:
            key = f"profiles-{mb}mb.csv"
            t = time.perf_counter()
            size, lines = upload(s3, key, mb * 1_000_000)
            up = time.perf_counter() - t
            traced = measure(endpoint, key, args.step, trace=True)
            plain = measure(endpoint, key, args.step, trace=False)
            results.append((mb, size, traced, plain))
            print(f"{mb:>4} MB: {size:,} bytes, {lines:,} lines (uploaded in {up:.1f} s); "
                  f"{plain['rows']:,} rows in {plain['steps']} steps of {args.step}; "
                  f"tracemalloc peak {traced['tracemalloc_peak'] / 1e6:.2f} MB; "
                  f"max RSS {plain['maxrss_kb'] / 1024:.1f} MiB "
                  f"(+{plain['maxrss_delta_kb'] / 1024:.1f} MiB over imports + warm-up); "
                  f"{plain['rows'] / plain['wall_s']:,.0f} rows/s wall (moto included), "
                  f"{plain['rows'] / plain['cpu_s']:,.0f} rows per reader CPU-second", flush=True)
            s3.delete_object(Bucket=BUCKET, Key=key)
    finally:
        server.terminate()
        server.wait(timeout=10)

    base, big = results[0], results[-1]
    trace_ratio = big[2]["tracemalloc_peak"] / base[2]["tracemalloc_peak"]
    # The read stays under the high-water mark of imports + warm-up (delta 0): compare the
    # whole process's max RSS.
    rss_ratio = big[3]["maxrss_kb"] / base[3]["maxrss_kb"]
    ok = trace_ratio <= BUDGET_RATIO and rss_ratio <= BUDGET_RATIO
    print(f"peak ratio {big[0]} MB / {base[0]} MB: tracemalloc {trace_ratio:.2f}, "
          f"max RSS {rss_ratio:.2f} (budget {BUDGET_RATIO}) -> {'OK' if ok else 'OVER BUDGET'}")
    print(f"RESULT {'PASS' if ok else 'FAIL'} peak memory ratio tracemalloc {trace_ratio:.2f}, "
          f"RSS {rss_ratio:.2f} (budget <= {BUDGET_RATIO})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
