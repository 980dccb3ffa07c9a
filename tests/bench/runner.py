"""Run a counting bench (bench/*.py) in quick mode as a test: it passes when the bench
prints `RESULT PASS` and exits 0, exactly what `make bench` asks of it.

These benches count requests (or compare peak memory), so they run beside the rest of the
suite on the xdist workers; the timed benches run after pytest in `make test`, on a quiet
machine (bench/README.md). Each bench runs in its own process with its own moto child
(bench/awsnet.py): they patch botocore and the app's clients, which must not leak into
the suite's workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# A bench that never ends fails rather than hold the suite (make bench's BENCH_TIMEOUT).
TIMEOUT_S = 600


def assert_bench_passes(script: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SWITCHYARD_"))}
    env.update({"BENCH_QUICK": "1", "PYTHONPATH": str(ROOT)})
    try:
        proc = subprocess.run([sys.executable, str(ROOT / "bench" / script)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"bench/{script} did not end within {TIMEOUT_S} s:\n{exc.stdout!s:.3000}") from exc
    out = "\n".join(line for line in proc.stdout.splitlines() if not line.startswith('{"level"'))
    print(out)  # the figures, in the test's report
    results = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and results and results[-1].startswith("RESULT PASS"), (
        f"bench/{script} exited {proc.returncode}; {results[-1] if results else 'no RESULT line (a crash)'}\n"
        f"{out[-4000:]}\n{proc.stderr[-3000:]}")
