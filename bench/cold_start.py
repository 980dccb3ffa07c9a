"""Cold start: wall time of `import app` against `import chalice, boto3, pydantic`.

Each sample is a fresh interpreter (`python -c`) that times one import with
time.perf_counter(); the two kinds alternate so machine noise hits both alike. Budget:
median(import app) <= 1.3 x median(import chalice, boto3, pydantic), measured in the
same run (never compare absolute times across machines).

    .venv/bin/python bench/cold_start.py [--runs 15]

Exit status 0 when the budget holds and `import app` creates no AWS client, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET = 1.3
BASELINE = "chalice, boto3, pydantic"
HEAVY = (
    "pydantic",
    "pydantic_core",
    "boto3",
    "botocore",
    "chalicelib.providers.s3",
    "chalicelib.api.schemas",
    "aws_lambda_powertools",
)

TIMER = """
import time
t0 = time.perf_counter()
import {modules}
t1 = time.perf_counter()
print(t1 - t0)
"""

# After `import app`: which heavy modules are loaded, and did anything build a botocore client?
PROBE = """
import gc, json, sys
import app
clients = 0
if "botocore.client" in sys.modules:
    base = sys.modules["botocore.client"].BaseClient
    clients = sum(1 for o in gc.get_objects() if isinstance(o, base))
print(json.dumps({
    "loaded": {m: (m in sys.modules) for m in json.loads(sys.argv[1])},
    "botocore_clients": clients,
    "modules": len(sys.modules),
}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # The import must not depend on the environment: strip what could make it cheaper
    # or dearer (a stage, endpoints, profiles) and keep only what Python needs.
    for key in list(env):
        if key.startswith(("AWS_", "SWITCHYARD_", "POWERTOOLS_")):
            del env[key]
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = str(ROOT)
    return env


def _run(code: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"subprocess failed ({out.returncode}):\n{out.stderr}")
    return out.stdout.strip().splitlines()[-1]


def time_import(modules: str) -> float:
    return float(_run(TIMER.format(modules=modules)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=15, help="samples of each kind (default 15)")
    args = parser.parse_args()

    # One discarded run of each so .pyc files exist before sampling.
    time_import(BASELINE)
    time_import("app")

    base: list[float] = []
    app: list[float] = []
    for _ in range(args.runs):
        base.append(time_import(BASELINE))
        app.append(time_import("app"))

    mb, ma = statistics.median(base), statistics.median(app)
    ratio = ma / mb
    print(f"cold start, {args.runs} fresh interpreters each, alternating ({sys.executable})")
    print(f"  import {BASELINE:<26} median {mb * 1000:7.1f} ms  "
          f"(min {min(base) * 1000:.1f}, max {max(base) * 1000:.1f})")
    print(f"  import {'app':<26} median {ma * 1000:7.1f} ms  "
          f"(min {min(app) * 1000:.1f}, max {max(app) * 1000:.1f})")
    print(f"  ratio app / baseline = {ratio:.2f}  (budget <= {BUDGET})  "
          f"{'PASS' if ratio <= BUDGET else 'FAIL'}")

    probe = json.loads(_run(PROBE, json.dumps(HEAVY)))
    print("after `import app` (fresh interpreter):")
    for name, loaded in probe["loaded"].items():
        print(f"  {name:<28} {'LOADED' if loaded else 'not loaded'}")
    clients = probe["botocore_clients"]
    print(f"  botocore clients created     {clients}  {'PASS' if clients == 0 else 'FAIL'}")
    print(f"  modules in sys.modules       {probe['modules']}")
    return 0 if ratio <= BUDGET and clients == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
