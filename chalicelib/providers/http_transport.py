"""The transport of the HTTP client layer (`providers/http.py`): pooled urllib3
connections pinned to an address the guard checked, and one attempt at a time (the body
read to at most MAX_BODY_BYTES, never past the deadline). urllib3 is imported on first
use (cold start)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib.providers.http_guard import Target

if TYPE_CHECKING:  # pragma: no cover
    from urllib3.response import BaseHTTPResponse

MAX_BODY_BYTES = 10 * 1024 * 1024


class BodyTooLarge(Exception):
    pass


@dataclass(frozen=True)
class Raw:
    """One attempt's answer, its body read."""

    status: int
    headers: Mapping[str, str]
    data: bytes
    response: BaseHTTPResponse  # read and released; for urllib3's Retry
    throttle: bool = False  # the provider said "too many requests" with another status


_pools: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_pools_lock = threading.Lock()
MAX_POOLS = 64


class _NoQueries(logging.Filter):
    """urllib3 logs each request line at DEBUG, query string included; a user's URL may
    carry a token there. Keep the path, drop the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_strip_query(a) for a in record.args)
        return True


def _strip_query(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("/") and "?" in value:
        return value.split("?", 1)[0] + "?[redacted]"
    return value


_filtered = False
_u3: Any = None  # the urllib3 module, once imported


def _urllib3() -> Any:
    """urllib3, imported on the first attempt and then read from a global (an import
    statement per attempt costs more than the lookup)."""
    global _u3
    if _u3 is None:
        import urllib3
        import urllib3.exceptions

        _u3 = urllib3
    return _u3


def connection_pool(target: Target, address: str, ca_certs: str | None) -> Any:
    global _filtered
    urllib3 = _urllib3()
    key = (target.scheme, address, target.port, target.host, ca_certs)
    with _pools_lock:
        if not _filtered:
            logging.getLogger("urllib3.connectionpool").addFilter(_NoQueries())
            _filtered = True
        pool = _pools.get(key)
        if pool is not None:
            _pools.move_to_end(key)
            return pool
        if target.scheme == "https":
            # Connect to the vetted address; TLS still verifies the certificate against the
            # host name (server_hostname is the SNI name and the name checked).
            pool = urllib3.HTTPSConnectionPool(address, target.port, maxsize=4, block=False, retries=False,
                                               server_hostname=target.host, cert_reqs="CERT_REQUIRED",
                                               ca_certs=ca_certs)
        else:
            pool = urllib3.HTTPConnectionPool(address, target.port, maxsize=4, block=False, retries=False)
        _pools[key] = pool
        if len(_pools) > MAX_POOLS:
            _pools.popitem(last=False)[1].close()
        return pool



def close_pools() -> None:
    """Close and forget every pooled connection."""
    with _pools_lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()


def send_once(target: Target, address: str, method: str, headers: dict[str, str], body: bytes | None, *,
              connect_timeout: float, read_timeout: float, until: float, clock: Callable[[], float],
              ca_certs: str | None) -> tuple[Raw | None, Exception | None]:
    """One HTTP attempt to one of the target's addresses: the response with its body read,
    or the error that stopped it."""
    urllib3 = _urllib3()
    timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
    pool = connection_pool(target, address, ca_certs)
    try:
        resp = pool.urlopen(method, target.path, body=body,
                            headers={**headers, "Host": target.host_header},
                            retries=False, redirect=False, timeout=timeout,
                            preload_content=False, assert_same_host=False)
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in resp.stream(64 * 1024):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise BodyTooLarge()
                if clock() > until:
                    raise urllib3.exceptions.ReadTimeoutError(pool, target.path,
                                                              "the answer took longer than the deadline")
        except BaseException:
            resp.close()  # a half-read connection cannot be reused
            raise
        resp.release_conn()
        return Raw(resp.status, resp.headers, b"".join(chunks), resp), None
    except (urllib3.exceptions.HTTPError, OSError, BodyTooLarge) as exc:
        return None, exc
