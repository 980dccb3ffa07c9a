"""A Lambda container's cold start without cyclic garbage collection.

`hold()` stops the cyclic collector (app.py calls it through `coldstart_begin`, before the
rest of chalicelib); the middleware below, and the token authorizer that middleware does not
wrap, start it again once the cold start is over. Why: `import
app` and the first request's lazy imports (boto3, botocore's models, Powertools) allocate
hundreds of thousands of objects that live as long as the container, which set off ~150
collections, the full ones walking everything loaded so far; none of them finds garbage
worth the time, yet they were ~15 % of a fresh container's CPU up to its first answer.
Reference counting still frees everything acyclic meanwhile.

When the cold start is over, what it loaded is frozen (`gc.freeze`: moved out of the
collector's reach, so later full collections walk only what requests allocate) and the
collector runs again:
* an API request: after its answer (a request is small and bounded);
* the token authorizer (its own Lambda; Chalice runs no middleware around authorizers):
  after its answer;
* any other event (a queue's worker, a schedule): before the handler, because a step can
  allocate a lot and must not run without the collector.

The freeze also keeps whatever cycles that first request dropped; that is one request's worth.
Importing this module changes nothing: a process that imports chalicelib without app.py
(tests, tools) keeps the collector as it was, and `settle()` there does nothing.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

from chalice.app import Request

_held = False


def hold() -> None:
    """Stop the cyclic collector until `settle()` (once; a no-op if it is already off)."""
    global _held
    if gc.isenabled() and not _held:
        gc.disable()
        _held = True


def settle() -> None:
    """Freeze what exists now and restart the collector, once (if this module stopped it)."""
    global _held
    if _held:
        _held = False
        gc.freeze()
        gc.enable()


def middleware(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Chalice middleware for every handler type (registered in app.py, outermost)."""
    if not _held:
        return get_response(event)
    if not isinstance(event, Request):
        settle()
        return get_response(event)
    try:
        return get_response(event)
    finally:
        settle()


__all__ = ["hold", "middleware", "settle"]
