"""Upserting a batch of records: read what they reach, plan (planner.py), then write the new
identifier items before the profiles, under the account's write lease, exactly once per step."""

from __future__ import annotations

import functools
import itertools
import json
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from chalicelib.domain import profiles as P
from chalicelib.store.dynamo import now_iso
from chalicelib.store.profiles.items import DATA, data_of, identifier_key, profile_key
from chalicelib.store.profiles.lease import ProfileLease, Ticket
from chalicelib.store.profiles.planner import LETTER, Group, Planner
from chalicelib.store.profiles.reads import ProfileReads
from chalicelib.store.profiles.requests import StoreStats

STEP_HISTORY = 4  # steps whose outcomes a profile remembers
MAX_PROFILE_BYTES = 350_000  # DynamoDB items stop at 400 KB


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class ProfileWrites(ProfileReads, ProfileLease):
    """The upsert, and the batch writes it sends under the lease."""

    def _send(self, chunk: Sequence[dict[str, Any]]) -> None:
        self.t.batch_put(chunk, per_request=self.write_batch, sleep=self._backoff,
                         send=functools.partial(self._call, "BatchWriteItem", write=True))

    def _sent(self) -> None:
        self._writes += 1
        if self.checkpoint is not None:
            self.checkpoint(self._writes)

    def _chunks(self, items: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        chunk: list[dict[str, Any]] = []
        for item in items:
            chunk.append(item)
            if len(chunk) == self.write_batch:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _batch_write(self, items: Iterable[dict[str, Any]]) -> None:
        """Write `items`, 25 a request. `items` may be produced lazily: with `parallel` > 1,
        the next chunk is built on this thread while the previous ones are in flight."""
        if self.parallel == 1:
            for chunk in self._chunks(items):
                self._keep_lease()
                self._send(chunk)
                self._sent()
            return
        # A sliding window: the lease check and the checkpoints stay on this thread, in order.
        with ThreadPoolExecutor(self.parallel) as pool:
            inflight: deque[Future[None]] = deque()
            try:
                for chunk in self._chunks(items):
                    if len(inflight) >= self.parallel:
                        inflight.popleft().result()
                        self._sent()
                    self._keep_lease()
                    inflight.append(pool.submit(self._send, chunk))
                while inflight:
                    inflight.popleft().result()
                    self._sent()
            except BaseException:
                for f in inflight:
                    f.cancel()
                raise

    def upsert_batch(
        self,
        account_id: str,
        records: Iterable[P.ProfileRecord],
        *,
        step_tag: str,
        rules: Mapping[str, str] | None = None,
        default: str = "latest",
        ticket: Ticket | None = None,
        watermark: tuple[str, int] | None = None,
    ) -> list[str]:
        """Upsert records in order; one outcome per record: "added" (a new profile),
        "updated", "unchanged" or "too_large" (the profile would pass 350 KB; not stored).

        Exactly once per step_tag: replaying the same batch with the same tag, after a
        crash anywhere inside an earlier attempt (or after it finished), returns the same
        outcomes and leaves the same profiles.

        `records` may be a generator (an import maps its rows as it goes): it is consumed
        once the lease is held, and the profiles of the records seen so far are read while
        the rest are made. Nothing is written before the last record is planned.
        `ticket`: the lease, taken ahead by `lease_ahead` with this step_tag as owner.
        `watermark`: (job, sequence) of a step that its job applies strictly in sequence
        order, one at a time. Each profile it writes keeps, for that job, the sequence and
        the outcomes; a step whose sequence is not above the profile's mark is a replay and
        merges nothing, however many other steps wrote the profile since (the `steps`
        history only remembers the last few).
        """
        if ticket is None:  # with one, the stats count from lease_ahead on
            self.last_stats = StoreStats()
        if not step_tag or len(step_tag) > 256:
            raise ValueError("step_tag must be 1 to 256 characters")
        if watermark is not None and (not watermark[0] or len(watermark[0]) > 256 or watermark[1] < 1):
            raise ValueError("a watermark is a job id and a sequence number from 1")
        rest = iter(records)
        first = next(rest, None)
        if first is None:
            return []
        chained = itertools.chain((first,), rest)
        if ticket is not None:
            # The caller took the lease ahead and gives it up itself.
            ticket.hold(account_id, step_tag)
            try:
                return self._upsert(account_id, chained, step_tag, dict(rules or {}), default, watermark)
            finally:
                self._lease = None
        with self.lease(account_id, step_tag):
            return self._upsert(account_id, chained, step_tag, dict(rules or {}), default, watermark)

    def _take_records(self, source: Iterable[P.ProfileRecord], planner: Planner) -> None:
        """Fills `planner` with the records, the profile id each identifier would create,
        and those profiles as stored: every `read_batch` new ids are read (on the pool)
        while later records are still being taken from `source`, and the records whose
        profiles have been read are planned while the later reads are in flight."""
        account_id, records, derived = planner.account_id, planner.records, planner.derived
        pids: set[str] = set()
        chunk: list[Mapping[str, str]] = []
        # Each read, and how many records had all their ids in the reads up to it.
        parts: list[tuple[Future[list[dict[str, Any]]] | list[dict[str, Any]], int]] = []
        pool = ThreadPoolExecutor(self.parallel) if self.parallel > 1 else None

        def read(keys: list[Mapping[str, str]], complete: int) -> None:
            if pool is None:
                parts.append((self._read_chunk(keys, (DATA,), data_of), complete))
            else:
                parts.append((pool.submit(self._read_chunk, keys, (DATA,), data_of), complete))

        try:
            for rec in source:
                if not rec.identifiers:
                    raise ValueError("every record needs an identifier (map_record omits the others)")
                records.append(rec)
                for k in rec.identifiers.items():
                    if k in derived:
                        continue
                    pid = derived[k] = P.profile_id_for(account_id, *k)
                    if pid not in pids:
                        pids.add(pid)
                        chunk.append(profile_key(account_id, pid))
                        if len(chunk) == self.read_batch:
                            read(chunk, len(records) - 1)  # this record's later ids may come next
                            chunk = []
            if chunk:
                read(chunk, len(records))
            for part, complete in parts:
                for d in part if isinstance(part, list) else part.result():
                    planner.stored[d["id"]] = d
                planner.plan_read(complete)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _upsert(
        self,
        account_id: str,
        source: Iterable[P.ProfileRecord],
        step_tag: str,
        rules: dict[str, str],
        default: str,
        watermark: tuple[str, int] | None,
    ) -> list[str]:
        # 1. The profiles the batch's identifiers would have created: most records hit here.
        planner = Planner(account_id, step_tag=step_tag, rules=rules, default=default, watermark=watermark)
        self._take_records(source, planner)
        derived, stored, known = planner.derived, planner.stored, planner.known
        known.update((k, pid) for k, pid in derived.items() if pid in stored)
        # 2. The others are new, or were linked to a profile another identifier created.
        linked = self._lookup(account_id, [k for k in derived if k not in known])
        known.update(linked)
        stored.update(self._read_profiles(account_id, [p for p in dict.fromkeys(linked.values()) if p not in stored]))
        groups, outcomes = planner.plan_rest()

        now = now_iso()

        def item(g: Group) -> dict[str, Any] | None:
            """The profile item of a dirty group; None (outcomes: too_large) past 350 KB."""
            letters = "".join(LETTER[o] for o in g.outcomes)
            steps = [*(s for s in g.steps if s[0] != step_tag), [step_tag, letters]][-STEP_HISTORY:]
            marks = g.marks if watermark is None else {**g.marks, watermark[0]: [watermark[1], letters]}
            body: dict[str, Any] = {
                "id": g.id,
                "account_id": account_id,
                "identifiers": g.identifiers,
                "fields": g.fields,
                "steps": steps,
                "created_at": g.created_at or now,
                "updated_at": now,
                "version": g.version + 1,
            }
            if marks:  # only profiles a collection job wrote carry them (one entry per such job)
                body["marks"] = marks
            data = _dumps(body)
            if len(data.encode()) > MAX_PROFILE_BYTES:
                for i, o in zip(g.members, g.outcomes, strict=True):
                    outcomes[i] = "too_large" if o != "unchanged" else o
                return None
            return {**profile_key(account_id, g.id), DATA: data}

        # A profile that links new identifiers is encoded now: whether it fits decides
        # whether its identifier items are written. The others (most) are encoded while
        # the writes before them are in flight.
        id_items: list[dict[str, Any]] = []
        ready: list[dict[str, Any]] = []
        later: list[Group] = []
        for g in groups.values():
            if not g.dirty:
                continue
            if not g.new_links:
                later.append(g)
                continue
            found = item(g)
            if found is not None:
                ready.append(found)
                id_items += [{**identifier_key(account_id, kind, value), "profile_id": g.id}
                             for kind, value in g.new_links]

        def profile_items() -> Iterator[dict[str, Any]]:
            yield from ready
            for g in later:
                found = item(g)
                if found is not None:
                    yield found

        self._writes = 0
        if self.checkpoint is not None:
            self.checkpoint(0)
        # Identifiers first: a crash between the two leaves identifiers pointing at a
        # profile the replay writes, never a profile that no identifier reaches.
        self._batch_write(id_items)
        self._batch_write(profile_items())
        return outcomes
