"""The load suite's client: locust as a library, run in a process of its own.

`python -m tests.proof.load_client <config.json>` prints one JSON document: per request
kind its count, failures, p50 and p95 (ms), and the errors seen. Locust patches the
standard library with gevent when imported, so it never runs inside pytest's process
(the session's moto server and every other test run on real threads there).

config: {"base": "http://127.0.0.1:PORT", "token": "...", "users": 50, "seconds": 60,
         "job_ids": [...], "seed": 1}
The seed fixes the sequence of jobs asked for (which user asks when is the machine's).
"""

from __future__ import annotations

import json
import random
import sys
from typing import Any

KINDS = ("GET /healthz", "GET /jobs", "GET /authorizations", "GET /jobs/{id}")


def run(conf: dict[str, Any]) -> dict[str, Any]:
    import gevent
    from locust import HttpUser, constant, task
    from locust.env import Environment

    headers = {"Authorization": f"Bearer {conf['token']}", "Accept": "application/json"}
    job_ids = list(conf["job_ids"])
    rng = random.Random(conf["seed"])

    class Dashboard(HttpUser):
        """A user with the dashboard open, clicking without pause (closed loop): each kind
        equally often, so every kind has as many samples."""

        host = conf["base"]
        wait_time = constant(0)

        @task
        def healthz(self) -> None:
            self.client.get("/api/v1/healthz", name=KINDS[0])

        @task
        def jobs(self) -> None:
            self.client.get("/api/v1/jobs?limit=50", headers=headers, name=KINDS[1])

        @task
        def authorizations(self) -> None:
            self.client.get("/api/v1/authorizations?limit=50", headers=headers, name=KINDS[2])

        @task
        def job(self) -> None:
            self.client.get(f"/api/v1/jobs/{rng.choice(job_ids)}", headers=headers, name=KINDS[3])

    env = Environment(user_classes=[Dashboard])
    runner = env.create_local_runner()
    runner.start(conf["users"], spawn_rate=conf["users"])
    gevent.spawn_later(conf["seconds"], runner.quit)
    runner.greenlet.join()
    out: dict[str, Any] = {"kinds": {}, "errors": [], "users": conf["users"], "seconds": conf["seconds"]}
    for kind in KINDS:
        e = env.stats.get(kind, "GET")
        out["kinds"][kind] = {
            "requests": e.num_requests, "failures": e.num_failures,
            "p50_ms": e.get_response_time_percentile(0.5), "p95_ms": e.get_response_time_percentile(0.95),
            "rps": round(e.num_requests / conf["seconds"], 1),
        }
    out["errors"] = [{"name": err.name, "error": str(err.error), "occurrences": err.occurrences}
                     for err in env.stats.errors.values()]
    return out


def main() -> int:
    with open(sys.argv[1]) as f:
        conf = json.load(f)
    print(json.dumps(run(conf)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
