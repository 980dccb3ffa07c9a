"""Reading a finished Mailchimp batch's per-operation results (docs/providers/mailchimp.md).

A batch (`POST /batches`) reports only counts; what each operation answered is in the
archive at its `response_body_url`: a gzipped tar of JSON files, each an array of
`{"status_code", "operation_id", "response"}` with the response body as a JSON string.

That URL is on Mailchimp's storage host, not the API's, and carries its own credential
(a presigned URL). So it is fetched through the HTTP layer like every provider call (SSRF
guard: https, public addresses only; timeouts, retries, the body size cap) but with no
Mailchimp credentials: the API key or token is never sent to another host, and the
storage refuses a second credential anyway. A failure to read it is never taken for
success: failed operations would then count as sent.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from typing import Any

from chalicelib.providers.base import ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.http import HttpClient, HttpError, RateLimit
from chalicelib.providers.mailchimp import RATE

LABEL = "Mailchimp's batch results storage"
MAX_RESULTS_BYTES = 64 * 1024 * 1024  # unpacked JSON of one archive (a gzip bomb stops here)
RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class OperationResult:
    operation_id: str
    status: int
    words: str  # Mailchimp's reason for a failed operation (detail, else title), "" for a success


def read_results(url: str, counter: CallCounter | None, deadline: float | None) -> list[OperationResult]:
    """Every operation's result from a finished batch's `response_body_url`.

    Raises ProviderError: transient when the archive could not be fetched or read (the
    part is sent again and the batch's fresh URL read); not transient when the URL itself
    is refused by the SSRF guard (Mailchimp pointed somewhere it must not)."""
    if not url:
        raise ProviderError("Mailchimp reported failed batch operations but no results URL yet; "
                            "the part is sent again shortly", transient=True, retry_after=RETRY_SECONDS)
    client = HttpClient("mailchimp", label=LABEL, counter=counter, deadline=deadline,
                        headers={"Accept": "application/x-gzip, application/octet-stream"},
                        rate_limit=RateLimit(rate=RATE, burst=10))
    try:
        body = client.get(url, "batches.results").body
    except HttpError as exc:
        if exc.kind == "blocked":
            raise ProviderError(f"Mailchimp's batch results URL was refused: {exc.reason}") from None
        # Storage answers (an expired URL's 403 included) say nothing about the authorization.
        raise ProviderError(f"Mailchimp's batch results could not be fetched ({exc.reason}); the part is "
                            "sent again shortly", transient=True, retry_after=RETRY_SECONDS) from None
    try:
        return parse_results(body)
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise ProviderError(f"Mailchimp's batch results could not be read ({exc}); the part is sent again "
                            "shortly", transient=True, retry_after=RETRY_SECONDS) from None


def parse_results(archive: bytes) -> list[OperationResult]:
    """The operation results in a gzipped tar of JSON arrays (every *.json file in it)."""
    out: list[OperationResult] = []
    unpacked = 0
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar:
            if not member.isfile() or not member.name.endswith(".json"):
                continue
            unpacked += member.size
            if unpacked > MAX_RESULTS_BYTES:
                raise ValueError(f"more than {MAX_RESULTS_BYTES // 2**20} MB of results")
            handle = tar.extractfile(member)
            items = json.loads(handle.read()) if handle is not None else []
            if not isinstance(items, list):
                raise ValueError(f"{member.name} is not a JSON array")
            out.extend(_result(item) for item in items)
    return out


def _result(item: Any) -> OperationResult:
    if not isinstance(item, dict) or not isinstance(item.get("status_code"), int):
        raise ValueError("an operation result without a status_code")
    status = int(item["status_code"])
    words = ""
    if status >= 400:
        try:
            doc = json.loads(item.get("response") or "{}")
        except ValueError:
            doc = {}
        if isinstance(doc, dict):
            words = str(doc.get("detail") or doc.get("title") or "")
        words = words or f"Mailchimp answered {status}"
    return OperationResult(str(item.get("operation_id") or ""), status, words)


__all__ = ["OperationResult", "parse_results", "read_results"]
