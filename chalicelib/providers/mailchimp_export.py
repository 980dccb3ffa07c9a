"""Mailchimp audience export: one part of a run's plan per step (docs/providers/mailchimp.md).

The export service (chalicelib/runs/export.py) computes the adds and removes of a run
and calls `write_part` with the next slice. For Mailchimp a part is:

1. adds: batch subscribe (`POST /lists/{id}`, 500 members a call, `update_existing`) —
   an upsert keyed by the address (Mailchimp's subscriber hash), with the mapped merge
   fields; new members get `subscribed` (or `pending` with double opt-in). Mailchimp
   refuses to resubscribe a member who unsubscribed or was cleaned (compliance state):
   such a member is reported as rejected, never forced;
2. removes with `on_remove: unsubscribe`: batch subscribe with status `unsubscribed`;
3. the membership tag: `active` for adds, `inactive` for removes — one
   `POST /lists/{id}/members/{hash}/tags` per member when the part has at most
   `DIRECT_TAG_LIMIT` of them, else one `POST /batches` with every tag operation, polled
   (`GET /batches/{id}`) until Mailchimp reports it finished; when some operations failed,
   their results are read from the batch's `response_body_url` (mailchimp_batches.py) and
   each failed member is rejected with Mailchimp's reason, as a direct call would be.

Every request is idempotent in effect (upserts by hash, tag states), so a redelivered step
sends the same part again without changing the outcome. Per-member errors (a fake-looking
address, compliance state) are returned as `rejected` and counted by the service; they
never fail the run. 401/403 are auth errors, a missing list a config error, 429/5xx are
retried by the HTTP layer and then transient.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chalicelib.providers.base import ProviderError
from chalicelib.providers.http import HttpError
from chalicelib.providers.mailchimp import (
    MailchimpApi,
    MailchimpExportConfig,
    MailchimpProvider,
    subscriber_hash,
)
from chalicelib.providers.mailchimp_batches import read_results
from chalicelib.providers.roles import StepContext

BATCH_SUBSCRIBE_MAX = 500  # Mailchimp's limit per batch subscribe call
DIRECT_TAG_LIMIT = 10  # up to this many tag changes: one call each; more: one /batches
POLL_WAITS = (0.0, 1.0, 2.0, 4.0, 8.0)  # then every 10 s until the step's deadline
POLL_MARGIN = 5.0


@dataclass(frozen=True)
class Part:
    key: str  # how log lines name the part
    rows: int
    bytes: int  # request bytes sent
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (profile id, Mailchimp's reason)
    notes: list[str] = field(default_factory=list)  # things worth a log line


def first_email(value: Any) -> str | None:
    """The exported email value: one address, or the first of a profile's several."""
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str) and v.strip()), None)
    return value.strip() if isinstance(value, str) and value.strip() else None


def merge_value(value: Any) -> Any:
    """A profile value as a merge field value: lists joined, the rest as is."""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return value


def _without_address(text: str, email: str) -> str:
    # Mailchimp quotes the address in per-member errors; logs keep the reason, not the PII.
    return (text or "rejected").replace(email, "the address") if email else (text or "rejected")


class MailchimpAudienceExport:
    def __init__(self, provider: MailchimpProvider) -> None:
        self.provider = provider

    def freeze(self, config: dict[str, Any]) -> dict[str, Any]:
        try:
            cfg = MailchimpExportConfig.model_validate(config)
        except ValueError as exc:
            raise ProviderError(f"the export configuration is not valid: {exc}") from None
        return {
            "audience_id": cfg.audience_id,
            "list_id": cfg.list_id,
            "fields": ["email", *cfg.fields],  # values captured per change, email first
            "merge_tags": list(cfg.fields.values()),
            "required": ["email"],  # a member without an address is omitted (missing_identifier)
            "tag": cfg.tag,
            "on_remove": cfg.on_remove,
            "double_opt_in": cfg.double_opt_in,
        }

    def write_part(self, ctx: StepContext, frozen: dict[str, Any], part: int,
                   rows: Sequence[tuple[str, str, list[Any]]]) -> Part:
        api = self.provider.api(ctx.method, ctx.credentials, ctx.counter, ctx.deadline)
        list_id = str(frozen["list_id"])
        tags = list(frozen["merge_tags"])
        rejected: list[tuple[str, str]] = []
        notes: list[str] = []
        sent = 0
        adds: dict[str, tuple[str, dict[str, Any]]] = {}  # email -> (profile id, merge fields)
        removes: dict[str, str] = {}  # email -> profile id
        for action, pid, values in rows:
            email = first_email(values[0] if values else None)
            if email is None:
                rejected.append((pid, "no email address"))
                continue
            if action == "add":
                merge = {t: merge_value(v) for t, v in zip(tags, values[1:], strict=False) if v is not None}
                adds[email] = (pid, merge)
            else:
                removes[email] = pid
        by_email = {e: p for e, (p, _) in adds.items()} | removes
        status_new = "pending" if frozen.get("double_opt_in") else "subscribed"
        members = [{"email_address": e, "status": status_new, **({"merge_fields": m} if m else {})}
                   for e, (_, m) in adds.items()]
        failed = set()
        for email, why, n in self._subscribe(api, list_id, members):
            sent += n
            if email:
                failed.add(email.lower())
                rejected.append((by_email.get(email) or _lookup(by_email, email), _without_address(why, email)))
        if frozen.get("on_remove") == "unsubscribe" and removes:
            gone = [{"email_address": e, "status": "unsubscribed"} for e in removes]
            for email, why, n in self._subscribe(api, list_id, gone):
                sent += n
                if email:
                    failed.add(email.lower())
                    rejected.append((_lookup(by_email, email), _without_address(why, email)))
        changes = [(e, "active") for e in adds if e.lower() not in failed]
        changes += [(e, "inactive") for e in removes if e.lower() not in failed]
        sent += self._tag(ctx, api, list_id, str(frozen["tag"]), changes, by_email, rejected, notes)
        return Part(key=f"Mailchimp list {list_id} (part {part})", rows=len(rows), bytes=sent,
                    rejected=rejected, notes=notes)

    def write_manifest(self, ctx: StepContext, frozen: dict[str, Any], summary: dict[str, Any]) -> str:
        """Mailchimp has nothing like a manifest: the list itself is the result."""
        return f"Mailchimp list {frozen['list_id']}"

    # -- requests -------------------------------------------------------------------------------

    def _subscribe(self, api: MailchimpApi, list_id: str,
                   members: list[dict[str, Any]]) -> list[tuple[str | None, str, int]]:
        """Batch subscribe in calls of 500; returns (email, error, 0) per rejected member and
        (None, "", bytes) per call."""
        out: list[tuple[str | None, str, int]] = []
        for start in range(0, len(members), BATCH_SUBSCRIBE_MAX):
            body = {"members": members[start:start + BATCH_SUBSCRIBE_MAX], "update_existing": True}
            # Batch subscribe is an upsert by address: repeating it changes nothing more.
            resp = _on_list(list_id, lambda b=body: api.send("POST", f"/lists/{list_id}", "lists.batch_subscribe",
                                                            b, idempotent=True))
            out.append((None, "", len(json.dumps(body))))
            doc = resp.json() or {}
            for err in doc.get("errors") or []:
                email = str(err.get("email_address") or "")
                if email:
                    out.append((email, str(err.get("error") or err.get("error_code") or "rejected"), 0))
        return out

    def _tag(self, ctx: StepContext, api: MailchimpApi, list_id: str, tag: str, changes: list[tuple[str, str]],
             by_email: dict[str, str], rejected: list[tuple[str, str]], notes: list[str]) -> int:
        if not changes:
            return 0
        if len(changes) <= DIRECT_TAG_LIMIT:
            sent = 0
            for email, status in changes:
                body = {"tags": [{"name": tag, "status": status}]}
                path = f"/lists/{list_id}/members/{subscriber_hash(email)}/tags"
                try:
                    api.send("POST", path, "members.tags", body, idempotent=True)
                except HttpError as exc:
                    if exc.status == 404 and status == "inactive":
                        continue  # not in the list (any more): nothing to untag
                    if exc.kind == "config" and exc.status in (400, 404):
                        rejected.append((_lookup(by_email, email), _without_address(exc.words or exc.reason, email)))
                        continue
                    raise
                sent += len(json.dumps(body))
            return sent
        ops = [{"method": "POST", "path": f"/lists/{list_id}/members/{subscriber_hash(e)}/tags",
                "operation_id": by_email.get(e, ""),
                "body": json.dumps({"tags": [{"name": tag, "status": s}]})} for e, s in changes]
        body = {"operations": ops}
        # A repeated submission runs the same idempotent tag operations again: harmless.
        doc = _on_list(list_id, lambda: api.send("POST", "/batches", "batches.create", body, idempotent=True)).json()
        batch_id = str((doc or {}).get("id") or "")
        result = self._wait(ctx, api, batch_id)
        errored = int(result.get("errored_operations") or 0)
        if errored:
            failed = batch_rejections(ctx, result, changes, by_email)
            rejected.extend(failed)
            notes.append(f"Mailchimp batch {batch_id}: {errored} of {len(ops)} tag operations failed, "
                         f"{len(failed)} rejected (the rest untagged members no longer in the list)")
        return len(json.dumps(body))

    def _wait(self, ctx: StepContext, api: MailchimpApi, batch_id: str) -> dict[str, Any]:
        n = 0
        while True:
            doc = api.get(f"/batches/{batch_id}", "batches.get") or {}
            if doc.get("status") == "finished":
                return dict(doc)
            wait = POLL_WAITS[n] if n < len(POLL_WAITS) else 10.0
            n += 1
            if time.monotonic() + wait > ctx.deadline - POLL_MARGIN:
                # The step replays later and submits the same operations again (idempotent).
                raise ProviderError(f"Mailchimp is still processing batch {batch_id} ({doc.get('status')}); "
                                    "the part is sent again shortly", transient=True, retry_after=30.0)
            time.sleep(wait)


def batch_rejections(ctx: StepContext, batch: dict[str, Any], changes: list[tuple[str, str]],
                     by_email: dict[str, str]) -> list[tuple[str, str]]:
    """(profile id, Mailchimp's reason) of each failed tag operation of a finished batch, read
    from its results. As with a direct tag call, a 404 for an untag means the member is gone
    (nothing to do), and 429/5xx leave the part to be sent again; any other failure rejects
    the member."""
    status_of = {by_email.get(e, ""): (e, s) for e, s in changes}
    out: list[tuple[str, str]] = []
    for res in read_results(str(batch.get("response_body_url") or ""), ctx.counter, ctx.deadline):
        if res.status < 400:
            continue
        email, status = status_of.get(res.operation_id, ("", ""))
        if res.status == 404 and status == "inactive":
            continue
        if res.status == 429 or res.status >= 500:
            why = _without_address(res.words, email)
            raise ProviderError(f"Mailchimp could not run a tag operation of batch {batch.get('id')} "
                                f"({res.status}: {why}); the part is sent again shortly",
                                transient=True, retry_after=30.0)
        out.append((res.operation_id, _without_address(res.words, email)))
    return out


def _lookup(by_email: dict[str, str], email: str) -> str:
    low = email.lower()
    return next((p for e, p in by_email.items() if e.lower() == low), "")


def _on_list(list_id: str, call: Any) -> Any:
    try:
        return call()
    except HttpError as exc:
        if exc.status == 404:
            raise ProviderError(f"Mailchimp list {list_id!r} was not found: {exc.words or exc.reason}; "
                                "choose another list", field="list_id") from None
        raise


__all__ = ["BATCH_SUBSCRIBE_MAX", "DIRECT_TAG_LIMIT", "MailchimpAudienceExport", "Part", "batch_rejections"]
