"""Mailchimp list import: a list's members, page by page, as source rows (docs/providers/mailchimp.md).

A run reads one frozen window of `last_changed`: after the last finished run's
watermark (`since_last_changed`, incremental jobs) and before the run's own start
(`before_last_changed`, fixed in the cursor at step 0), sorted by `last_changed`, in pages
of at most 1,000 (`count`/`offset`). A member changed while the run goes on moves out of
the window (it is read by the next run); when the window shrinks under us, the offset
steps back by as much, so no member is skipped (a few may be read twice: upserts are
idempotent). Reading again from the same cursor asks for the same pages.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.providers.base import ProviderError
from chalicelib.providers.http import HttpError
from chalicelib.providers.mailchimp import MailchimpImportConfig, MailchimpProvider
from chalicelib.providers.roles import ReadResult, SourceRow, StepContext

PAGE = 1000  # Mailchimp's maximum `count`
CURSOR_VERSION = 1
# A step stops asking for pages this long before its deadline.
MARGIN_SECONDS = 5.0
FIELDS = ",".join(["total_items"] + [f"members.{f}" for f in
                                     ("id", "email_address", "status", "merge_fields", "tags", "last_changed")])


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def row_of(member: dict[str, Any]) -> dict[str, Any]:
    """One member as a source row: email, status, tags (names) and each merge field by its
    tag; an address merge field becomes one column per part (ADDRESS_city, ...)."""
    data: dict[str, Any] = {
        "email": member.get("email_address"),
        "status": member.get("status"),
        "tags": [t.get("name") for t in member.get("tags") or [] if isinstance(t, dict) and t.get("name")],
    }
    for tag, value in (member.get("merge_fields") or {}).items():
        if isinstance(value, dict):
            for part, v in value.items():
                data[f"{tag}_{part}"] = v
        else:
            data[str(tag)] = value
    return data


class MailchimpImport:
    def __init__(self, provider: MailchimpProvider) -> None:
        self.provider = provider

    def start(self, ctx: StepContext, list_id: str, incremental: bool) -> dict[str, Any]:
        state = ctx.state or {}
        since = state.get("since_last_changed") if incremental and state.get("list_id") == list_id else None
        # The window's end: members changed after this are the next run's.
        before = datetime.now(UTC).replace(microsecond=0)
        return {"v": CURSOR_VERSION, "list_id": list_id, "since": since, "before": _iso(before),
                "offset": 0, "total": None, "read": 0}

    def read(self, ctx: StepContext) -> ReadResult:
        try:
            cfg = MailchimpImportConfig.model_validate(ctx.config)
        except ValueError as exc:
            raise ProviderError(f"the import configuration is not valid: {exc}") from None
        cur = dict(ctx.cursor or {}) or self.start(ctx, cfg.list_id, cfg.incremental)
        if cur.get("v") != CURSOR_VERSION:
            raise ProviderError("this run's checkpoint is not a Mailchimp import checkpoint; resume to start over")
        list_id = str(cur["list_id"])
        api = self.provider.api(ctx.method, ctx.credentials, ctx.counter, ctx.deadline)
        rows: list[SourceRow] = []
        done = False
        while len(rows) < max(1, ctx.max_records):
            if rows and time.monotonic() > ctx.deadline - MARGIN_SECONDS:
                break
            count = min(PAGE, max(1, ctx.max_records) - len(rows))
            query = {"count": count, "offset": cur["offset"], "fields": FIELDS, "sort_field": "last_changed",
                     "sort_dir": "ASC", "since_last_changed": cur["since"], "before_last_changed": cur["before"]}
            try:
                doc = api.get(f"/lists/{list_id}/members", "members.list", query) or {}
            except HttpError as exc:
                if exc.status == 404:
                    raise ProviderError(f"Mailchimp list {list_id!r} was not found: {exc.words or exc.reason}; "
                                        "choose another list", field="list_id") from None
                raise
            total = int(doc.get("total_items") or 0)
            known = cur["total"]
            if known is not None and total < known:
                # Members left the window since the last page: step back so none is skipped.
                cur["offset"] = max(0, int(cur["offset"]) - (known - total))
                cur["total"] = total
                continue
            cur["total"] = total
            members = doc.get("members") or []
            for m in members:
                rows.append(SourceRow(row_of(m), f"mailchimp:{list_id}#{m.get('id') or ''}"))
            cur["offset"] = int(cur["offset"]) + len(members)
            cur["read"] = int(cur["read"]) + len(members)
            if len(members) < count or cur["offset"] >= total:
                done = True
                break
        state: dict[str, Any] = {}
        if cfg.incremental:
            # One second of overlap: a member changed in the window's last second is read again
            # rather than missed, whichever way Mailchimp compares the bounds.
            before = datetime.fromisoformat(str(cur["before"]))
            state = {"list_id": list_id, "since_last_changed": _iso(before - timedelta(seconds=1))}
        return ReadResult(rows=rows, cursor=cur, done=done, state=state, processed=int(cur["read"]),
                          total=cur["total"])


__all__ = ["MailchimpImport", "row_of"]
