"""One call on a daemon thread of its own, with the caller's context (log lines keep their
ids), its result or exception taken from the Future. Used to send an AWS request while this
thread sends another that does not depend on it.

Daemon, not a pool: an idle pool's threads would outlive the delivery (and hold the
interpreter at exit); one thread costs well under 1 ms.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


def in_background(work: Callable[[], T], name: str = "background") -> Future[T]:
    context = contextvars.copy_context()
    done: Future[T] = Future()

    def run() -> None:
        if done.set_running_or_notify_cancel():
            try:
                done.set_result(context.run(work))
            except BaseException as exc:  # handed to whoever takes the result
                done.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return done


__all__ = ["in_background"]
