"""Collection use cases (docs/realtime.md): issuing write keys, accepting Segment-compatible
requests (validate, rate, dedup, hand off to the FIFO queue) and applying a hand-off to
profiles exactly once (a per-job sequence, claims, the profile store's step tag and
watermark, one commit)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chalicelib.domain import collect as C
from chalicelib.domain import tokens
from chalicelib.domain.errors import Conflict, Invalid, Unauthenticated
from chalicelib.domain.ids import new_id
from chalicelib.domain.models import Authorization, Job
from chalicelib.domain.runs import LogLine
from chalicelib.domain.statuses import JobStatus
from chalicelib.store.collect import (
    ENTRY_BYTES,
    CollectQueue,
    WriteKey,
    pack,
    unpack,
)
from chalicelib.store.dynamo import TransactionFailed, now_iso
from chalicelib.store.unit_of_work import UnitOfWork

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.services.needs import CollectNeeds

log = logging.getLogger("switchyard.collect")

KEY_PREFIX = "wk_"
KEY_CACHE_SECONDS = 60.0  # like API tokens: a revoked key works at most this much longer
BURST_SECONDS = 10.0
ACCEPTING = (JobStatus.RUNNING, JobStatus.SLEEPING)
ROTATION_GRACE_SECONDS = 24 * 3600

# The clock of per-job rates, rotated keys' ends and messageId claims (tests move it).
clock: Callable[[], float] = time.time


# -- write keys ---------------------------------------------------------------------------


def _hash(raw: str) -> str:
    # 256 random bits, like API tokens: a fast unsalted hash leaves nothing to brute-force.
    return hashlib.sha256(raw.encode()).hexdigest()


def create_with_key(d: CollectNeeds, auth: Authorization) -> None:
    """Write the authorization and its new write key together; the key is on `auth` once."""
    key_id = new_id("wk")
    raw = f"{key_id}.{tokens.new_secret()}"
    auth.issued_key = raw
    auth.credential_hint = "…" + raw[-4:]
    auth.provider_account = key_id  # the key's id, not secret: which key this authorization is
    tx = d.transaction()
    d.auths.add_new(tx, auth)
    d.write_keys.add_new(tx, WriteKey(key_id, _hash(raw), auth.account_id, auth.id, None, "active"), now_iso())
    tx.commit()


def key_in_use(auth: Authorization) -> Conflict:
    return Conflict(f"the write key of authorization {auth.id!r} already feeds a job; one write key feeds "
                    "one job: create another write key", code="authorization.in_use",
                    fields={"authorization_id": "its write key already feeds a job"})


def bind_write_key(d: CollectNeeds, tx: UnitOfWork, job: Job, auth: Authorization, *, inline: bool) -> None:
    """The job's create transaction claims the write key (conditional: one job per key)."""
    if inline or not auth.provider_account:
        raise Invalid("a write key is issued by POST /authorizations and shown once there; create it first, "
                      "then give its authorization_id", code="authorization.write_key_first",
                      fields={"authorization": "create the write key with POST /authorizations"})
    repo = d.write_keys
    key = repo.get(auth.provider_account)
    # A key whose job was deleted may feed a new one (the condition holds if nothing moved).
    old = key.job_id if key is not None and key.job_id and d.jobs.get(job.account_id, key.job_id) is None else None
    repo.add_bind(tx, auth.provider_account, job.account_id, job.id, replacing=old)


def rotate_key(d: CollectNeeds, auth: Authorization, version: int | None) -> Authorization:
    """A new key for the authorization (shown once); the old one keeps working for a grace
    period, so apps can be redeployed without losing events. New key first, then the
    authorization, then the old key's end: a crash in between leaves the old key working."""
    repo = d.write_keys
    old = repo.get(auth.provider_account or "")
    key_id = new_id("wk")
    raw = f"{key_id}.{tokens.new_secret()}"
    repo.put(WriteKey(key_id, _hash(raw), auth.account_id, auth.id, old.job_id if old else None, "active"),
             now_iso())
    updated = d.auths.update(auth.account_id, auth.id, {"provider_account": key_id, "credential_hint": "…" + raw[-4:]},
                             expected_version=version)
    if old is not None:
        repo.expire(old.id, clock() + ROTATION_GRACE_SECONDS)
    key_cache.clear()
    updated.issued_key = raw
    return updated


def revoke_key(d: CollectNeeds, auth: Authorization) -> None:
    """The authorization is gone: its key stops now (containers' caches: within a minute)."""
    if auth.provider_account:
        d.write_keys.expire(auth.provider_account, clock())
        key_cache.clear()


class _KeyCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, WriteKey | None]] = {}

    def get(self, digest: str) -> tuple[bool, WriteKey | None]:
        with self._lock:
            hit = self._items.get(digest)
        if hit is None or hit[0] < time.monotonic():
            return False, None
        return True, hit[1]

    def put(self, digest: str, key: WriteKey | None) -> None:
        with self._lock:
            if len(self._items) > 10_000:
                self._items.clear()
            self._items[digest] = (time.monotonic() + KEY_CACHE_SECONDS, key)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


key_cache = _KeyCache()


def _invalid_key() -> Unauthenticated:
    return Unauthenticated("the write key is unknown or revoked; send the job's write key as the Basic-auth "
                           "user name", code="write_key.invalid", fields={"Authorization": "unknown write key"})


def key_from_request(headers: Mapping[str, str], body: Mapping[str, Any] | None) -> str | None:
    """Basic (user name = key, password ignored), Bearer, or the body's writeKey, in that order."""
    header = (headers.get("authorization") or "").strip()
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise _invalid_key() from None
            return decoded.partition(":")[0].strip()
        if scheme.lower() == "bearer":
            return value.strip()
        raise _invalid_key()
    raw = (body or {}).get("writeKey")
    return raw.strip() if isinstance(raw, str) else None


def resolve_key(d: CollectNeeds, raw: str | None) -> WriteKey:
    if not raw:
        raise Unauthenticated("a write key is required: send it as the Basic-auth user name",
                              code="write_key.invalid", fields={"Authorization": "missing"})
    if tokens.looks_like_token(raw):
        raise Unauthenticated("this is an API token; the tracking API takes the job's write key (wk_…)",
                              code="auth.api_token_not_write_key", fields={"Authorization": "an API token"})
    key_id, dot, _ = raw.partition(".")
    if not key_id.startswith(KEY_PREFIX) or not dot or len(raw) > 256:
        raise _invalid_key()
    digest = _hash(raw)
    cached, key = key_cache.get(digest)
    if not cached:
        key = d.write_keys.get(key_id)
        if key is not None and not hmac.compare_digest(key.key_hash, digest):
            key = None
        key_cache.put(digest, key)
    if key is None or key.status != "active" or (key.not_after is not None and key.not_after <= clock()):
        raise _invalid_key()
    return key


# -- accepting ----------------------------------------------------------------------------


class RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__("too many messages")
        self.retry_after = retry_after


@dataclass
class Accepted:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[C.Rejection] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"success": True, "accepted": self.accepted, "duplicates": self.duplicates,
                "rejected": [r.as_dict() for r in self.rejected]}


def _job_for(d: CollectNeeds, key: WriteKey) -> Job:
    if key.job_id is None and key.not_after is not None:
        # A key rotated before its authorization got a job: in its grace period it feeds the job
        # its successor was bound to (two reads, only on this rare path).
        auth = d.auths.get(key.account_id, key.authorization_id)
        current = d.write_keys.get(auth.provider_account) if auth and auth.provider_account else None
        if current is not None and current.id != key.id:
            key = current
    if key.job_id is None:
        raise Unauthenticated("this write key feeds no job yet: create a collection job with its authorization",
                              code="write_key.no_job", fields={"Authorization": "no job uses this key"})
    job = d.jobs.get(key.account_id, key.job_id)
    if job is None:
        raise _invalid_key()  # its job was deleted: the key feeds nothing any more
    if job.status not in ACCEPTING:
        raise Conflict(f"the job is {job.status.value}: nothing was stored; resume it to collect again",
                       code="job.not_accepting", details={"status": job.status.value})
    return job


def reason_of(code: str) -> str:
    return code.removeprefix("message.")


def accept(d: CollectNeeds, headers: Mapping[str, str], raw_body: bytes, forced_type: str | None,
           *, queue: CollectQueue | None = None, now: datetime | None = None) -> Accepted:
    """Validate, rate and dedup a request, then hand its messages to the engine. Everything
    refused raises before anything is stored; a bad message is reported, not raised."""
    header_key = key_from_request(headers, None)
    key = resolve_key(d, header_key) if header_key else None
    body = C.parse_body(raw_body)
    if key is None:
        key = resolve_key(d, key_from_request({}, body))
    job = _job_for(d, key)
    batch = [body] if forced_type else C.batch_of(body)
    rate = int(job.config.get("max_messages_per_second") or 1000)
    # A request larger than the whole bucket takes all of it (else it could never pass).
    cost = min(len(batch), int(rate * BURST_SECONDS))
    ok, wait = d.shared_rates.take(f"collect#{job.id}", rate, BURST_SECONDS, cost, clock())
    if not ok:
        raise RateLimited(wait)
    received = now or datetime.now(UTC)
    defaults = {k: body.get(k) for k in ("context", "integrations") if isinstance(body.get(k), dict)}
    out = Accepted()
    good: list[dict[str, Any]] = []
    for i, msg in enumerate(batch):
        checked = C.check(i, msg, forced_type=forced_type, defaults=defaults, sent_at=body.get("sentAt"),
                          received_at=received)
        if isinstance(checked, C.Rejection):
            out.rejected.append(checked)
        else:
            good.append(checked)
    claimed = d.collect.claims(job.account_id, job.id, [m["messageId"] for m in good], clock())
    fresh: list[dict[str, Any]] = []
    seen: set[str] = set()
    for m in good:
        if m["messageId"] in claimed or m["messageId"] in seen:
            out.duplicates += 1
        else:
            seen.add(m["messageId"])
            fresh.append(m)
    out.accepted = len(fresh)
    rejected = dict(Counter(reason_of(r.code) for r in out.rejected))
    # Rejections and duplicates ride on the first hand-off (one with no messages if need be),
    # so the job's counts are committed exactly once with the rest.
    if fresh or rejected or out.duplicates:
        request_id = new_id("req")
        entries = [{"account_id": job.account_id, "job_id": job.id, "handoff": f"{request_id}#{n}",
                    "received_at": C.iso(received), "rejected": rejected if n == 0 else {},
                    "duplicates": out.duplicates if n == 0 else 0, "messages": blob}
                   for n, blob in enumerate(_packed(fresh))]
        (queue or d.collect_queue).send(job.id, entries, request_id)
    return out


def _packed(messages: list[dict[str, Any]]) -> list[str]:
    """Hand-offs under SQS's size limit: halve a part until it fits (rarely needed: a
    500 KB batch of JSON compresses far below 200 KB)."""
    parts = [messages]
    out: list[str] = []
    while parts:
        part = parts.pop(0)
        blob = pack(part)
        if len(blob) <= ENTRY_BYTES or len(part) <= 1:
            out.append(blob)
        else:
            half = len(part) // 2
            parts[:0] = [part[:half], part[half:]]
    return out


def totals_of(d: CollectNeeds, job: Job) -> dict[str, Any]:
    """`collection` of GET /jobs/{id} for a collection job (one GetItem), nothing for others."""
    if not d.registry.get(job.provider).spec.workflow(job.workflow).pushed:
        return {}
    return {"collection": d.collect.totals(job.account_id, job.id)}


# -- applying (the engine) ---------------------------------------------------------------


def _no_fault(point: str) -> None:
    return None


def log_blocked(d: CollectNeeds, account_id: str, job_id: str, received: int, error_type: str) -> None:
    """A line in the job's log: accepted events wait behind a hand-off that keeps failing."""
    d.runs.write_logs(account_id, job_id, [LogLine(
        "error", "collect.blocked", f"accepted events are waiting: applying them failed {received} times "
        f"({error_type}); they are retried, nothing is lost", context={"attempts": received})])


def apply_handoff(d: CollectNeeds, entry: Mapping[str, Any], *, fault: Callable[[str], None] = _no_fault) -> str:
    """Apply one hand-off to profiles, exactly once, whatever crashed before.

    Its sequence number in the job first (the same on every attempt), then claims (a
    message id another hand-off holds is a duplicate; ours means a crashed attempt), then
    profiles with the hand-off as step tag and (job, sequence) as watermark (a replay
    skips what it wrote, however many other steps wrote those profiles since), then one
    transaction: the applied mark, the hour's window run, activity and a log line.
    Returns what happened, for the log."""
    account_id, job_id, handoff = str(entry["account_id"]), str(entry["job_id"]), str(entry["handoff"])
    job = d.jobs.get(account_id, job_id, consistent=True)
    if job is None:
        return "job deleted"
    repo = d.collect
    tag = f"{job_id}#{handoff}"
    now = clock()
    seq = repo.sequence(account_id, job_id, handoff, now)
    if seq is None:
        # An attempt that died after its commit may still hold the account's write lease.
        d.profiles.release(account_id, tag)
        return "already applied"
    fault("after_sequence")
    messages = unpack(str(entry["messages"]))
    claims = repo.claims(account_id, job_id, [m["messageId"] for m in messages], now)
    fresh: list[dict[str, Any]] = []
    seen: set[str] = set()
    duplicates = 0
    for m in messages:
        mid = m["messageId"]
        if claims.get(mid, handoff) != handoff or mid in seen:
            duplicates += 1
            continue
        seen.add(mid)
        fresh.append(m)
    repo.put_claims(account_id, job_id, [m for m in seen if m not in claims], handoff, now)
    fault("after_claims")
    plan = C.apply_plan(fresh, C.mapping_of(job.config))
    if plan.aliases:
        wanted = list(dict.fromkeys(k for i in plan.aliases for k in plan.records[i].identifiers.items()))
        plan = C.drop_conflicts(plan, d.profiles.lookup(account_id, wanted))
    outcomes: list[str] = []
    if plan.records:
        # The watermark finds a replay however many other jobs wrote its profiles since.
        outcomes = d.profiles.upsert_batch(account_id, plan.records, step_tag=tag, rules=plan.rules,
                                           watermark=(job_id, seq))
    fault("after_profiles")
    omitted = Counter(plan.omitted)
    rejected = {str(k): int(v) for k, v in (entry.get("rejected") or {}).items()}
    omitted.update(rejected)
    duplicates += int(entry.get("duplicates") or 0)  # answered as duplicates by the endpoint
    omitted.update(o for o in outcomes if o in ("unchanged", "too_large"))
    added = sum(1 for o in outcomes if o in ("added", "updated"))
    omitted_reasons = {k: v for k, v in omitted.items() if v}
    received = datetime.fromisoformat(str(entry["received_at"]).replace("Z", "+00:00"))
    run_id = d.runs.open_window(account_id, job_id, received, C.iso(received))
    total_omitted = sum(omitted_reasons.values())
    lines = [LogLine("info", "collect.applied", f"{len(messages)} messages: {added} added, {total_omitted} omitted, "
                     f"{duplicates} duplicates", run_id=run_id,
                     context={"added": added, "removed": 0, "omitted": total_omitted, "duplicates": duplicates,
                              "omitted_reasons": omitted_reasons})]
    lines += [LogLine("warning", "record.invalid", why, run_id=run_id) for why in plan.invalid[:5]]
    tx = d.transaction()
    repo.add_applied(tx, account_id, job_id, handoff)
    d.runs.add_window_counts(tx, account_id, job_id, run_id, processed=len(messages), added=added,
                           duplicates=duplicates, omitted=omitted_reasons)
    repo.add_totals(tx, account_id, job_id, accepted=len(messages), duplicates=duplicates,
                    rejected=sum(rejected.values()), received_at=C.iso(received))
    at = datetime.now(UTC)
    d.runs.add_activity(tx, account_id, job_id, received, added, 0, total_omitted)
    d.runs.add_logs(tx, account_id, job_id, lines, at)
    fault("before_commit")
    try:
        tx.commit()
    except TransactionFailed as exc:
        if "applied" in exc.refused:
            return "already applied"  # a concurrent delivery of the same hand-off committed first
        raise
    fault("after_commit")
    return f"{added} added, {total_omitted} omitted, {duplicates} duplicates"


__all__ = ["Accepted", "RateLimited", "accept", "apply_handoff", "bind_write_key", "create_with_key", "key_cache",
           "key_from_request", "key_in_use", "resolve_key", "totals_of"]
