"""A deployed-style authorizer for revocation tests: a separate process holding what a
deployed stage holds between a client and the API.

* API Gateway's side: the identityValidationExpression check (a refused header never
  reaches the authorizer) and the answer cache, per header value, for the authorizer's
  ttl_seconds;
* the authorizer Lambda: the app's real `token_authorizer`, called with API Gateway's event,
  with its own in-process cache (services.accounts.token_cache).

Only DynamoDB (the shared moto server) connects it to the test process, so a revocation
made there cannot clear these caches, as in a deployed stage. Time is simulated: both
caches read one clock that only `advance` moves, so the window measured does not depend
on the machine's speed.

Protocol: one JSON object per line on stdin, one answer per line on stdout.
    {"op": "authorize", "header": "Bearer tok_..."} -> {"principal": {...} | null,
        "invoked": bool, "dynamodb": <GetItems sent for this request>}
    {"op": "advance", "seconds": 0.5} -> {"now": <simulated seconds>}
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/api/GET/jobs"


def serve() -> None:
    # The app logs to stdout (as Lambda wants): answers get a stream of their own.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.path.insert(0, str(ROOT))
    import app  # noqa: F401  (registers the blueprints: the authorizer gets its config)
    from chalicelib.api.auth import token_authorizer
    from chalicelib.domain.tokens import HEADER_PATTERN
    from chalicelib.services.accounts import token_cache
    from chalicelib.store import aws

    now = [0.0]
    token_cache.clock = lambda: now[0]
    ttl = token_authorizer.config.ttl_seconds
    gateway_cache: dict[str, tuple[float, dict[str, Any]]] = {}
    tally = aws.track_requests()

    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "advance":
            now[0] += float(cmd["seconds"])
            out: dict[str, Any] = {"now": now[0]}
        else:
            header = cmd["header"]
            before = tally.counts.get("dynamodb", 0)
            invoked = False
            if not re.match(HEADER_PATTERN, header):
                principal = None  # API Gateway's own 401
            else:
                hit = gateway_cache.get(header)
                if hit is None or hit[0] <= now[0]:
                    invoked = True
                    policy = token_authorizer({"type": "TOKEN", "authorizationToken": header,
                                               "methodArn": METHOD_ARN}, {})
                    gateway_cache[header] = (now[0] + ttl, policy)
                    hit = gateway_cache[header]
                context = hit[1].get("context") or {}
                principal = context if context.get("user_id") else None
            out = {"principal": principal, "invoked": invoked,
                   "dynamodb": tally.counts.get("dynamodb", 0) - before}
        answers.write(json.dumps(out) + "\n")
        answers.flush()


class DeployedAuthorizer:
    """The test's handle on the process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__], cwd=ROOT, env=dict(os.environ),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def _ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the authorizer process ended (exit {self.proc.poll()})"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def authorize(self, header: str) -> dict[str, Any]:
        return self._ask({"op": "authorize", "header": header})

    def advance(self, seconds: float) -> float:
        return float(self._ask({"op": "advance", "seconds": seconds})["now"])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


if __name__ == "__main__":
    serve()
