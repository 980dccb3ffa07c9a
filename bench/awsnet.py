"""An AWS emulation for benches that behaves like a network: moto's server in its own
process, with a per-request latency added before each answer.

Why its own process: with moto in the bench's process, a threaded client (awswrangler's
put_df) and moto share one interpreter lock, which cancels what threads buy against a
real, latency-bound DynamoDB. Why latency: moto answers in a few ms of CPU whatever AWS
would take, so a client that waits on the network (and overlaps those waits) looks no
better than one that doesn't.

The latency model (bench/README.md gives the reasons for the defaults): for each request,

    delay = base[service, operation] (or base[service], or base["*"])
            + per_kb * (request bytes + response bytes) / 1024

added with time.sleep in the serving thread (moto's WSGI server runs one thread per
connection, so concurrent requests wait concurrently, as on a network). Override it with
the environment variable BENCH_AWS_LATENCY, a JSON object merged into the default, e.g.
'{"dynamodb": 0.004, "dynamodb.BatchWriteItem": 0.008, "per_kb": 0.00002}' (seconds);
'{"*": 0, "per_kb": 0, ...}' with every service at 0 turns it off.

    with Emulation() as aws:      # starts the server, sets AWS_ENDPOINT_URL & co.
        ...                       # aws.endpoint, aws.stats() (requests and delay added)

Also runnable on its own: `python bench/awsnet.py --port 5123` serves until interrupted.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Seconds. Same-region client-observed figures (see bench/README.md, "The emulation").
DEFAULT_MODEL: dict[str, float] = {
    "*": 0.010,
    "dynamodb": 0.004,
    "dynamodb.BatchGetItem": 0.006,
    "dynamodb.BatchWriteItem": 0.008,
    "dynamodb.TransactWriteItems": 0.010,
    "dynamodb.Query": 0.005,
    "s3": 0.020,
    "sqs": 0.006,
    "secretsmanager": 0.008,
    "sts": 0.010,
    "per_kb": 0.00001,  # ~100 MB/s on one connection
}

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/")


def model_from_env() -> dict[str, float]:
    model = dict(DEFAULT_MODEL)
    raw = os.environ.get("BENCH_AWS_LATENCY")
    if raw:
        extra = json.loads(raw)
        if not isinstance(extra, dict) or not all(isinstance(v, int | float) for v in extra.values()):
            raise SystemExit("BENCH_AWS_LATENCY must be a JSON object of numbers (seconds)")
        model.update({str(k): float(v) for k, v in extra.items()})
    return model


def service_and_operation(environ: dict[str, Any]) -> tuple[str, str]:
    """From what every AWS request carries: the SigV4 credential scope names the service;
    JSON protocols name the operation in X-Amz-Target, query protocols in Action=."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = _SCOPE.search(auth)
    service = m.group(1) if m else "*"
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return service, target.rsplit(".", 1)[-1]
    q = environ.get("QUERY_STRING", "")
    for part in q.split("&"):
        if part.startswith("Action="):
            return service, part[len("Action="):]
    return service, environ.get("REQUEST_METHOD", "")


class LatencyMiddleware:
    """WSGI wrapper: answer after moto, then hold the response for the modelled delay."""

    def __init__(self, app: Any, model: dict[str, float]) -> None:
        self.app = app
        self.model = model
        self.lock = threading.Lock()
        self.requests = 0
        self.delay_s = 0.0
        self.scale = 1.0  # 0 while a bench sets up state it does not measure

    def delay(self, service: str, op: str, size: int) -> float:
        m = self.model
        base = m.get(f"{service}.{op}", m.get(service, m.get("*", 0.0)))
        return self.scale * (base + m.get("per_kb", 0.0) * size / 1024)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith(("/moto-api", "/_bench/")):
            if path == "/_bench/scale":
                self.scale = float(environ.get("QUERY_STRING", "f=1").removeprefix("f="))
                path = "/_bench/stats"
            if path == "/_bench/stats":
                body = json.dumps({"requests": self.requests, "delay_s": self.delay_s}).encode()
                start_response("200 OK", [("Content-Type", "application/json")])
                return [body]
            return self.app(environ, start_response)
        service, op = service_and_operation(environ)
        sent = int(environ.get("CONTENT_LENGTH") or 0)
        captured: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured[:] = [status, headers, exc_info]
            return lambda _data: None

        chunks = list(self.app(environ, capture))
        size = sent + sum(len(c) for c in chunks)
        pause = self.delay(service, op, size)
        with self.lock:
            self.requests += 1
            self.delay_s += pause
            if self.requests % 200 == 0:
                # moto registers every model instance it creates for its dashboard (a copy of
                # the table per transaction item): dropped now and then, or memory and time grow.
                from moto.core.model_instances import reset_model_data

                reset_model_data()
        if pause > 0:
            time.sleep(pause)
        start_response(*captured)
        return chunks


def serve(port: int, model: dict[str, float]) -> None:
    import logging

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    if str(ROOT) not in sys.path:  # run as a script: bench/ is on the path, not the repo
        sys.path.insert(0, str(ROOT))
    from bench import moto_speed

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto_speed.install()  # moto's own CPU per answer is not what a bench compares
    # moto's transaction backup copies whole tables, a cost real DynamoDB does not have:
    # the emulator's item backup, as the tests and `make run` use
    from devserver import transactions

    transactions.install()
    app = LatencyMiddleware(DomainDispatcherApplication(create_backend_app), model)
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    parent = os.getppid()

    def orphaned() -> None:
        # A bench killed outright (SIGKILL, a CI timeout) runs no cleanup: stop with it.
        while os.getppid() == parent:
            time.sleep(1)
        server.shutdown()

    threading.Thread(target=orphaned, daemon=True).start()
    print(f"awsnet ready on 127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Emulation:
    """moto in a child process behind the latency model; points this process's boto3 at it."""

    def __init__(self, model: dict[str, float] | None = None) -> None:
        self.model = model if model is not None else model_from_env()
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Emulation:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--port", str(self.port),
             "--model", json.dumps(self.model)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the AWS emulation exited with {self.proc.returncode}")
            try:
                self.stats()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("the AWS emulation did not start within 60 s")
        # Also at interpreter exit, for a bench that leaves without __exit__ (sys.exit in a
        # thread's excepthook, os._exit excepted).
        atexit.register(self.__exit__)
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            os.environ[key] = "local"
        os.environ.update({"AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1",
                           "AWS_REGION": "us-east-1"})
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            atexit.unregister(self.__exit__)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stats(self, path: str = "/_bench/stats") -> dict[str, Any]:
        """Requests served and latency added so far (for a window: the difference)."""
        with urllib.request.urlopen(self.endpoint + path, timeout=5) as resp:
            out: dict[str, Any] = json.loads(resp.read())
            return out

    @contextmanager
    def no_latency(self) -> Iterator[None]:
        """Setup that no bench measures (seeding state) runs without the added latency."""
        self.stats("/_bench/scale?f=0")
        try:
            yield
        finally:
            self.stats("/_bench/scale?f=1")

    def describe(self) -> str:
        m = self.model
        parts = ", ".join(f"{k} {v * 1000:g} ms" for k, v in m.items() if k != "per_kb")
        return (f"moto in its own process (pid {self.proc.pid if self.proc else '?'}) at {self.endpoint}; "
                f"latency added per request: {parts}; + {m.get('per_kb', 0) * 1e6:g} us per KB sent+received")


@contextmanager
def emulation() -> Iterator[Emulation]:
    with Emulation() as aws:
        yield aws


@contextmanager
def deployed(stage: str) -> Iterator[Emulation]:
    """The emulation with the app's stack deployed on it (latency off while deploying) and
    this process's app settings pointed at it, from the repository's root."""
    import logging

    os.chdir(ROOT)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with Emulation() as aws:
        from devserver.infra import deploy_stack, use_local_aws

        use_local_aws(aws.endpoint, stage)
        with aws.no_latency():
            deploy_stack(stage)
        yield aws


def counting_moto() -> Emulation:
    """moto in a child process with no latency, for benches that count requests on the
    client's side. Not moto's in-process ThreadedMotoServer: there moto shares the bench's
    interpreter lock with the bench's threads (a health check starved past its timeout
    keeps a thread waiting on moto), and stopping it leaves its daemon handler threads
    serving kept-alive connections. A killed child answers nothing: a request still in
    flight fails at once."""
    return Emulation(model={})


def exit_code(rc: int) -> int:
    """`rc`, or 1 when a non-daemon thread is still running once the bench is done: the
    interpreter would wait for it at exit (a bench that printed RESULT and never ended)."""
    me = threading.current_thread()
    deadline = time.monotonic() + 10  # idle pool workers need a moment to see shutdown
    for t in threading.enumerate():
        if t is not me and not t.daemon:
            t.join(max(0.0, deadline - time.monotonic()))
    left = [t.name for t in threading.enumerate() if t is not me and not t.daemon and t.is_alive()]
    if not left:
        return rc
    print(f"FAIL: threads still running after the bench: {', '.join(left)}; exiting without them",
          file=sys.stderr, flush=True)
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(1)


def quick() -> bool:
    """BENCH_QUICK=1: small sizes, same ratios and budgets (what `make test` runs)."""
    return os.environ.get("BENCH_QUICK", "") not in ("", "0")


def result(ok: bool, summary: str) -> int:
    """The one line CI reads, and the exit status."""
    print(f"RESULT {'PASS' if ok else 'FAIL'} {summary}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="moto behind a latency model")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default=None, help="JSON model (default: DEFAULT_MODEL + BENCH_AWS_LATENCY)")
    args = parser.parse_args()
    serve(args.port, json.loads(args.model) if args.model else model_from_env())
