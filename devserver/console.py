"""What `make run` prints while it serves: one line per request, text on a terminal, JSON otherwise.

The app logs every API request it answers (`switchyard.request`, the JSON line it writes in
Lambda) and http.server adds an access line for every request: two lines each. Here the
devserver's access line is written only for requests the app did not log (static files, the
gateway's own 401/404 answers), in the same format. When stdout is a terminal, the app's
lines are rendered as text (still scrubbed of credentials); piped or redirected, they stay the
JSON objects Lambda writes, one per line.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from datetime import UTC, datetime
from typing import IO, Any

from chalicelib import logs

TEXT = "text"
JSON = "json"
# Ids worth seeing on a text line, in this order (the JSON line carries them all).
TEXT_KEYS = ("job_id", "run_id", "authorization_id", "queue")

_request = threading.local()  # the request this handler thread is answering


def choose_format(stream: IO[str] | Any) -> str:
    """Text for a person at a terminal, JSON for a file or a pipe (one object per line)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return TEXT if callable(isatty) and isatty() else JSON
    except ValueError:  # a closed stream
        return JSON


def begin(method: str, path: str) -> None:
    """A request starts on this thread."""
    _request.method, _request.path = method, path
    _request.started = time.monotonic()
    _request.app_logged = False


def _mark_app_logged(record: logging.LogRecord) -> bool:
    _request.app_logged = True
    return True


def _clock(created: float) -> str:
    return datetime.fromtimestamp(created).strftime("%H:%M:%S")


def _request_text(created: float, status: object, duration_ms: object) -> str:
    method = getattr(_request, "method", "?")
    path = getattr(_request, "path", "?")
    ms = f" ({duration_ms:.0f} ms)" if isinstance(duration_ms, int | float) else ""
    return f"{_clock(created)} {method} {path} -> {status}{ms}"


class TextFormatter(logging.Formatter):
    """Renders the app's records as text; everything else Powertools asks of its formatter
    (the correlation keys) goes to the formatter it replaces."""

    def __init__(self, powertools: logging.Formatter) -> None:
        super().__init__()
        self.powertools = powertools

    def __getattr__(self, name: str) -> Any:
        if name == "powertools":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.powertools, name)

    def format(self, record: logging.LogRecord) -> str:
        if record.name == logs.request_log.name:
            return logs.scrub(_request_text(record.created, getattr(record, "status", "?"),
                                            getattr(record, "duration_ms", None)))
        keys = logs.current()
        ids = "".join(f" {k}={keys[k]}" for k in TEXT_KEYS if keys.get(k))
        line = f"{_clock(record.created)} {record.levelname:<7} {record.name}: {record.getMessage()}{ids}"
        if record.exc_info and isinstance(record.exc_info[1], BaseException):
            line += "\n" + logs.safe_traceback(record.exc_info[1])
        return logs.scrub(line)


class Console:
    """Chooses the format once, from stdout, and writes the devserver's request lines."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.format = choose_format(self.stream)
        self._lock = threading.Lock()

    def install(self) -> None:
        """Note the app's request lines; on a terminal, render the app's lines as text."""
        logs.request_log.addFilter(_mark_app_logged)
        if self.format == TEXT:
            handler = logs.logger().registered_handler
            assert handler.formatter is not None
            handler.setFormatter(TextFormatter(handler.formatter))

    def access(self, status: int | str) -> None:
        """The end of a request on this thread: its line, unless the app wrote one."""
        if getattr(_request, "app_logged", False):
            return
        now = time.time()
        started = getattr(_request, "started", None)
        duration_ms = round((time.monotonic() - started) * 1000, 1) if started is not None else None
        if self.format == TEXT:
            line = _request_text(now, status, duration_ms)
        else:
            line = json.dumps({
                "level": "INFO", "message": "request",
                "timestamp": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
                "name": "devserver.access", "method": getattr(_request, "method", None),
                "path": getattr(_request, "path", None), "status": status, "duration_ms": duration_ms,
            }, separators=(",", ":"))
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()
        _request.app_logged = True  # one line per request, whatever else calls this
