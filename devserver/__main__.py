"""`python -m devserver` (what `make run` starts): the whole stack in one process.

moto's AWS emulation on 127.0.0.1:$AWS_PORT, the infra/ resources deployed into it, the
state of DynamoDB / Secrets Manager / S3 kept in $SWITCHYARD_STATE_DIR across restarts,
a demo account and bucket, and one HTTP origin on 127.0.0.1:$PORT: /api/* is the
Chalice app behind its local API Gateway, everything else the static web app.

Environment: PORT (8000), AWS_PORT (4566), SWITCHYARD_STATE_DIR (./.local),
SWITCHYARD_ADMIN_TOKEN (optional, 'tok_<id>.<secret>'), SWITCHYARD_DEV_CONTROL (tests only:
1 serves /__devserver/holds, which parks chosen SQS deliveries; see devserver/holds.py),
SWITCHYARD_DEV_GTM_RATE (tests only: requests a second to Google Tag Manager, Google's
quota of 0.25 otherwise).
"""

from __future__ import annotations

import io
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from devserver import seed
from devserver.console import Console
from devserver.gateway import ROOT

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"
STAGE = "local"
SAVE_EVERY_SECONDS = 30.0  # SWITCHYARD_SAVE_EVERY overrides it (a snapshot pauses moto while it pickles)


class StartupError(Exception):
    pass


def _save_every() -> float:
    raw = os.environ.get("SWITCHYARD_SAVE_EVERY", "").strip()
    try:
        seconds = float(raw) if raw else SAVE_EVERY_SECONDS
    except ValueError:
        raise StartupError(f"SWITCHYARD_SAVE_EVERY must be a number of seconds, got {raw!r}") from None
    if seconds <= 0:
        raise StartupError(f"SWITCHYARD_SAVE_EVERY must be positive, got {raw!r}")
    return seconds


def apply_gtm_rate() -> None:
    """Google's quota (a request every 4 s for the whole app) made a browser test of the wizard
    wait ~27 s on three Tag Manager calls; the quota itself is tested on a simulated clock."""
    raw = os.environ.get("SWITCHYARD_DEV_GTM_RATE", "").strip()
    if not raw:
        return
    try:
        rate = float(raw)
    except ValueError:
        raise StartupError(f"SWITCHYARD_DEV_GTM_RATE must be requests per second, got {raw!r}") from None
    if rate <= 0:
        raise StartupError(f"SWITCHYARD_DEV_GTM_RATE must be positive, got {raw!r}")
    from chalicelib.providers import gtm

    gtm.PROJECT_RATE = rate


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip() or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise StartupError(f"{name} must be a TCP port number, got {raw!r}")
    return int(raw)


def _ensure_free(port: int, name: str) -> None:
    with socket.socket() as s:
        # Like the servers themselves: a port held only by TIME_WAIT connections is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise StartupError(
                f"127.0.0.1:{port} is already in use ({exc.strerror}); stop whatever holds it"
                f" (another `make run`?) or pick another port with {name}=..."
            ) from None


def _logging() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("werkzeug", "botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run() -> int:
    started = time.monotonic()
    # Until the stack is up, SIGTERM behaves like Ctrl-C: unwind and clean up.
    signal.signal(signal.SIGTERM, _interrupt)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    _logging()
    port = _port("PORT", 8000)
    aws_port = _port("AWS_PORT", 4566)
    if port == aws_port:
        raise StartupError("PORT and AWS_PORT must differ")
    state_dir = Path(os.environ.get("SWITCHYARD_STATE_DIR", "").strip() or ROOT / ".local").resolve()
    _ensure_free(aws_port, "AWS_PORT")
    _ensure_free(port, "PORT")

    endpoint = f"http://127.0.0.1:{aws_port}"
    from devserver.infra import deploy_stack, quiet_expected_moto_warnings, use_local_aws

    # Webhooks and other user-supplied URLs may point at receivers on this machine (http
    # allowed): the SSRF guard of deployed stages would refuse them.
    os.environ["SWITCHYARD_ALLOW_PRIVATE_URLS"] = "1"
    use_local_aws(endpoint, STAGE, region=REGION)
    quiet_expected_moto_warnings()
    apply_gtm_rate()

    from devserver import events, gateway, holds
    from devserver.quota import UsagePlanLimiter
    from devserver.state import Gate, GatedApp, PeriodicSaver, Store

    # The admin token is checked before anything starts, so a malformed one fails fast.
    token, token_source = seed.admin_token(state_dir)

    # 1. AWS emulation in this process (DynamoDB's requests atomic, as in AWS).
    from devserver import emulator

    moto = emulator.start(aws_port)
    gate = Gate()
    wsgi = moto._server
    assert wsgi is not None
    wsgi.app = GatedApp(wsgi.app, gate)  # type: ignore[assignment]

    stop = threading.Event()
    http = None
    loop_threads: list[threading.Thread] = []
    store = Store(state_dir, gate)
    try:
        # 2. Resources from infra/, then the saved state over them.
        outputs = deploy_stack(STAGE, region=REGION)
        restored = store.restore()
        # Saved state holds accounts but not API Gateway's keys: give each its key again.
        # State saved before the account index existed gets its index entries first (the
        # operator's one-time migration; a no-op once done).
        import boto3

        from chalicelib.bootstrap import Deps
        from chalicelib.services.accounts import backfill_usage_keys
        from infra.index_accounts import index_accounts

        if restored:
            indexed = index_accounts(boto3.client("dynamodb", region_name=REGION), Deps(), say=lambda _: None)
            if indexed.added:
                logging.getLogger("devserver").info("saved state: %d account(s) added to the account index",
                                                    indexed.added)
        backfill_usage_keys(Deps())

        # 3. Demo data (only what the restored state lacks).
        seeded = seed.seed_account(store.meta, token, token_source)
        wrote_csv = seed.seed_bucket()
        seed.seed_oauth_apps(port)
        store.save()

        # 4. The app behind its local gateway, and the static web app, on one origin.
        app, chalice_config = gateway.load_app(STAGE)
        console = Console()
        console.install()
        brakes = holds.Holds() if holds.enabled(dict(os.environ)) else None
        if brakes is not None:
            logging.getLogger("devserver").warning(
                "%s=1: test control API on %s/ (holds SQS deliveries on request)", holds.ENV_FLAG, holds.PREFIX)
        limiter = UsagePlanLimiter(outputs["UsagePlanId"], region=REGION)
        http = gateway.make_server(app, chalice_config, "127.0.0.1", port, console=console, holds=brakes,
                                   limiter=limiter)
        threading.Thread(target=http.server.serve_forever, name="http", daemon=True).start()
        PeriodicSaver(store, _save_every(), stop).start()
        loop_threads = events.start_event_loop(app, stop, holds=brakes)

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if stop.is_set():
                print("\nstopping now, without saving", flush=True)
                os._exit(130)
            stop.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

        _banner(
            port=port, endpoint=endpoint, state_dir=state_dir, restored=restored, seeded=seeded,
            wrote_csv=wrote_csv, handlers=events.event_handlers(app), loop=bool(loop_threads),
            static=gateway.static_root(), elapsed=time.monotonic() - started,
        )
        while not stop.wait(0.5):
            pass
        print("\nstopping: saving local state ...", flush=True)
    finally:
        stop.set()
        if http is not None:
            http.shutdown()
            http.server.server_close()
        for t in loop_threads:
            t.join(timeout=10)
        try:
            if store.save():
                print(f"saved {store.path}", flush=True)
            elif store.ready:
                print(f"state unchanged since the last save ({store.path})", flush=True)
            else:
                print("stopped before the saved state was loaded: nothing written", flush=True)
        finally:
            moto.stop()
    return 0


def _banner(*, port: int, endpoint: str, state_dir: Path, restored: bool, seeded: seed.Seeded,
            wrote_csv: bool, handlers: list[str], loop: bool, static: Path, elapsed: float) -> None:
    base = f"http://127.0.0.1:{port}"
    where = {
        "env": "from $SWITCHYARD_ADMIN_TOKEN",
        "file": f"kept in {state_dir / 'admin-token'}",
        "generated": f"generated, kept in {state_dir / 'admin-token'}",
    }[seeded.token_source]
    state = "restored" if restored else "new"
    account = "created" if seeded.created else "from saved state"
    demo = "written" if wrote_csv else "present"
    if handlers and not loop:
        events_line = f"NOT delivered locally yet: {', '.join(handlers)} (devserver/events.py)"
    elif handlers:
        events_line = ", ".join(handlers)
    else:
        events_line = "none defined (the local event loop hook is devserver/events.py)"
    lines = [
        "",
        f"Switchyard local stack is up ({elapsed:.1f}s)",
        f"  Web app      {base}/   (serving {static.relative_to(ROOT)})",
        f"  API          {base}/api/v1   (OpenAPI: {base}/api/v1/openapi.json)",
        f"  AWS (moto)   {endpoint}   (region {REGION}, account {ACCOUNT_ID})",
        f"  State        {state_dir}   ({state}; saved every {_save_every():.0f}s and on exit)",
        f"  Demo account {seeded.account_id} ({account}), admin {seed.DEMO_EMAIL}",
        f"  Demo data    s3://{seed.DEMO_BUCKET}/{seed.DEMO_KEY} ({demo})",
        f"  Events       {events_line}",
        f"  Admin token  {seeded.token}",
        f"               ({where})",
        "",
        f'  curl -s -H "Authorization: Bearer {seeded.token}" {base}/api/v1/jobs',
        "",
        "Ctrl-C stops everything and saves the state.",
        "",
    ]
    print("\n".join(lines), flush=True)


def main() -> None:
    if sys.argv[1:]:
        print(__doc__)
        sys.exit(0 if sys.argv[1] in ("-h", "--help") else 2)
    try:
        code = run()
    except (StartupError, seed.SeedError) as exc:
        print(f"devserver: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("devserver: interrupted while starting", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
