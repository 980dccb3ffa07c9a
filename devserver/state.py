"""Local persistence for moto: pickle the DynamoDB, Secrets Manager and S3 backends.

moto keeps everything in memory. On start the runner deploys infra/ (which creates
empty tables and queues), then `restore()` merges the pickled backends back over the
live ones. `save()` writes a snapshot atomically (temp file + os.replace).

SQS backends hold locks and cannot be pickled: queues are re-created from infra/ on
every start and messages in flight are lost.

Snapshots are consistent: every moto request for a persisted service holds a shared
gate while it runs and `save()` takes the gate exclusively (see `Gate`). SQS requests
skip the gate so that long polls never hold a snapshot up.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

PERSISTED = ("dynamodb", "secretsmanager", "s3", "scheduler")
FORMAT = 1
STATE_FILE = "moto-state.pickle"

_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_QUERY_SCOPE = re.compile(r"X-Amz-Credential=[^&/%]+(?:/|%2F)\d{8}(?:/|%2F)[^&/%]+(?:/|%2F)([^&/%]+)", re.I)


class Gate:
    """A readers/writer gate: many moto requests at once, or one snapshot."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._writer = True  # new requests wait from here on
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def service_of(environ: dict[str, Any]) -> str | None:
    """The AWS service a request is signed for (from the SigV4 credential scope)."""
    m = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if m:
        return m.group(1)
    m = _QUERY_SCOPE.search(environ.get("QUERY_STRING", ""))
    return m.group(1) if m else None


class GatedApp:
    """WSGI middleware around moto's app: requests to persisted services share the gate."""

    def __init__(self, app: Callable[..., Any], gate: Gate) -> None:
        self.app = app
        self.gate = gate

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if service_of(environ) == "sqs":
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        with self.gate.shared():
            # moto builds whole bodies; materialise them inside the gate.
            result = self.app(environ, start_response)
            try:
                return list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


def _backends() -> Iterator[tuple[str, str, str, Any]]:
    from moto.backends import get_backend

    for service in PERSISTED:
        for account_id, region, backend in get_backend(service).iter_backends():  # type: ignore[call-overload]
            yield service, account_id, region, backend


class Store:
    """The snapshot file of one state directory, plus a little metadata (the seed)."""

    def __init__(self, state_dir: Path, gate: Gate) -> None:
        self.dir = state_dir
        self.path = state_dir / STATE_FILE
        self.gate = gate
        self.meta: dict[str, Any] = {}
        self._last: bytes | None = None
        self._save_lock = threading.Lock()
        # Never write before restore() finished: a Ctrl-C during start-up must not replace
        # the saved state with the empty one being built.
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready

    def restore(self) -> bool:
        """Merge the saved backends into the live ones; False when there is nothing to restore."""
        if not self.path.exists():
            self._ready = True
            return False
        try:
            snap = pickle.loads(self.path.read_bytes())
            if snap.get("format") != FORMAT:
                raise ValueError(f"unknown state format {snap.get('format')!r}")
        except Exception as exc:
            aside = self.path.with_name(f"{STATE_FILE}.unreadable-{int(time.time())}")
            os.replace(self.path, aside)
            print(f"!! could not read {self.path} ({type(exc).__name__}: {exc});"
                  f" moved it to {aside.name} and starting with empty local state")
            self._ready = True
            return False
        from moto.backends import get_backend

        with self.gate.exclusive():
            for (service, account_id, region), saved in snap["backends"].items():
                live = get_backend(service)[account_id][region]
                for key, value in saved.items():
                    current = live.__dict__.get(key)
                    if isinstance(current, dict) and isinstance(value, dict):
                        # Keep what infra/ just created (e.g. a table added to the template);
                        # saved entries of the same name win.
                        current.update(value)
                    else:
                        live.__dict__[key] = value
            s3: Any = get_backend("s3")
            for account_id, partition, backend in s3.iter_backends():
                for name in backend.buckets:
                    s3.bucket_accounts[name] = (partition, account_id)
        self.meta = dict(snap.get("meta") or {})
        self._ready = True
        return True

    def save(self) -> bool:
        """Write a snapshot if anything changed; True when a file was written."""
        if not self._ready:
            return False
        with self._save_lock:
            with self.gate.exclusive():
                snap = {
                    "format": FORMAT,
                    "backends": {(s, a, r): b.__dict__ for s, a, r, b in _backends()},
                    "meta": self.meta,
                }
                data = pickle.dumps(snap, protocol=pickle.HIGHEST_PROTOCOL)
            if data == self._last:  # an idle stack does not rewrite the file
                return False
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{STATE_FILE}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self._last = data
            return True


class PeriodicSaver(threading.Thread):
    def __init__(self, store: Store, every: float, stop: threading.Event) -> None:
        super().__init__(name="state-saver", daemon=True)
        self.store = store
        self.every = every
        self.stop = stop

    def run(self) -> None:
        while not self.stop.wait(self.every):
            try:
                self.store.save()
            except Exception as exc:  # keep serving; the next round or shutdown retries
                print(f"!! saving local state failed: {type(exc).__name__}: {exc}")
