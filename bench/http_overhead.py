"""The provider HTTP layer's cost per request against bare urllib3, on a server in another
process, called by HOSTNAME.

The server: tests/http_receiver.py (keep-alive, TCP_NODELAY) in a child process. Both
clients POST the same JSON to http://localhost:<port>/hook:

* layer  chalicelib.providers.http.HttpClient as a provider uses it: it vets the URL and
         resolves the host (getaddrinfo) once per client and URL, as long as its connection
         lives (30 s; again after an attempt without an answer), pins the connection to a
         vetted address, then rate limit, redaction, counting and classification on every
         request. Loopback is allowed the one way the product allows it, the
         SWITCHYARD_ALLOW_PRIVATE_URLS setting that the local stack and the tests set;
* bare   urllib3.PoolManager().request with the same headers and body, raising on >= 400
         (urllib3 resolves the name when it opens a connection, then keeps it alive).

Noise: each round times the two clients in the order layer, urllib3, urllib3, layer
(half the requests in each layer block), which cancels a load that rises or falls steadily
during the round, and takes the ratio of their per-request times; the budget reads the
MEDIAN of the per-round ratios. Rounds are short (~0.1 s), so a burst of load on the shared
machine spoils a few rounds, not the median. Budget: that median <= 1.2.

    .venv/bin/python bench/http_overhead.py [--requests 60] [--rounds 31]   (the same in quick mode: a few seconds)

Prints `RESULT PASS|FAIL ...`; exit status 1 on FAIL.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.awsnet import result  # noqa: E402

BUDGET = 1.2
BODY = {"events": [{"type": "audience.entered", "profile_id": f"prof_{i:026d}"} for i in range(10)]}
SERVER = """
import sys, time
from tests.http_receiver import Receiver
r = Receiver()
r.server.RequestHandlerClass.disable_nagle_algorithm = True  # no Nagle + delayed-ACK stalls
r.start()
print(r.port, flush=True)
sys.stdin.read()  # until the parent closes it
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=60, help="per client and round (even)")
    parser.add_argument("--rounds", type=int, default=31)
    args = parser.parse_args()

    os.environ["SWITCHYARD_ALLOW_PRIVATE_URLS"] = "1"
    import urllib3

    from chalicelib import config
    from chalicelib.providers.calls import CallCounter
    from chalicelib.providers.http import HttpClient, RateLimit

    config.reset()
    server = subprocess.Popen([sys.executable, "-c", SERVER], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        url = f"http://localhost:{port}/hook"
        counter = CallCounter(authorization_id="auth_bench")
        layer = HttpClient("bench", label="the bench receiver", secrets=["bench-secret-token"],
                           headers={"Authorization": "Bearer bench-secret-token"}, counter=counter,
                           rate_limit=RateLimit(rate=1_000_000, burst=1_000_000))
        pool = urllib3.PoolManager()
        headers = {"Authorization": "Bearer bench-secret-token", "Content-Type": "application/json"}

        def ours() -> None:
            layer.post(url, "hook.post", json_body=BODY, idempotent=True)

        def bare() -> None:
            resp = pool.request("POST", url, body=json.dumps(BODY).encode(), headers=headers, timeout=10)
            if resp.status >= 400:
                raise RuntimeError(f"status {resp.status}")

        ours(), bare()  # warm both (connections, imports)
        per: dict[str, list[float]] = {"layer": [], "urllib3": [], "ratio": []}
        half = args.requests // 2

        def timed(call: Callable[[], None], n: int) -> float:
            t0 = time.perf_counter()
            for _ in range(n):
                call()
            return time.perf_counter() - t0

        for _ in range(args.rounds):
            t_layer = timed(ours, half)
            t_plain = timed(bare, 2 * half)
            t_layer += timed(ours, half)
            per["layer"].append(t_layer / (2 * half))
            per["urllib3"].append(t_plain / (2 * half))
            per["ratio"].append(t_layer / t_plain)
    finally:
        server.communicate("", timeout=10)
    ratio = statistics.median(per["ratio"])
    print(f"http://localhost:{port} (a server in another process); {args.rounds} rounds of {2 * half} requests "
          f"per client (layer, urllib3, urllib3, layer); load average {os.getloadavg()[0]:.2f}")
    for name in ("layer", "urllib3"):
        xs = per[name]
        print(f"  {name:<8} median {statistics.median(xs) * 1e6:7,.0f} us/request "
              f"(min {min(xs) * 1e6:,.0f}, max {max(xs) * 1e6:,.0f})")
    print(f"  per-round ratio layer/urllib3: median {ratio:.2f} (min {min(per['ratio']):.2f}, "
          f"max {max(per['ratio']):.2f})")
    calls = 2 * half * args.rounds + 1
    counted = counter.total == calls
    print(f"  the layer counted {counter.total} attempts for {calls} calls {'(equal)' if counted else '(DIFFER)'}")
    return result(ratio <= BUDGET and counted,
                  f"http layer/urllib3 {ratio:.2f} (median of per-round ratios; budget <= {BUDGET})")


if __name__ == "__main__":
    sys.exit(main())
