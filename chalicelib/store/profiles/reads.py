"""Reading profiles: by id, by identifier, an account's listing page by page (a Query per
shard page, never a Scan), and the identifier lookups an upsert plans with."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from chalicelib.domain import profiles as P
from chalicelib.domain.errors import BadRequest
from chalicelib.store import keys as K
from chalicelib.store.dynamo import Page, deser
from chalicelib.store.profiles.items import (
    DATA,
    ID_SK,
    PROFILE_PREFIX,
    SHARDS,
    attr_key,
    data_of,
    identifier_key,
    profile_key,
    profile_of,
    profiles_pk,
)
from chalicelib.store.profiles.requests import ProfileRequests, StoreStats


class ProfileReads(ProfileRequests):
    """Profiles and identifier items read back; each public call resets `last_stats`."""

    def lookup(self, account_id: str, identifiers: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(kind, normalized value) -> profile id, for those that reach a profile: the one
        they created (its key derives from them) or the one they were linked to."""
        self.last_stats = StoreStats()
        derived = {k: P.profile_id_for(account_id, *k) for k in identifiers}
        keys = [profile_key(account_id, p) for p in dict.fromkeys(derived.values())]
        found = {row["SK"].removeprefix(PROFILE_PREFIX) for row in self._batch_get(keys, ("SK",))}
        out = {k: p for k, p in derived.items() if p in found}
        return out | self._lookup(account_id, [k for k in identifiers if k not in out])

    def _lookup(self, account_id: str, identifiers: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        keys = {identifier_key(account_id, kind, value)["PK"]: (kind, value) for kind, value in identifiers}
        items = self._batch_get([{"PK": pk, "SK": ID_SK} for pk in keys], ("PK", "profile_id"))
        return {keys[i["PK"]]: i["profile_id"] for i in items}

    def _read_profiles(self, account_id: str, pids: Sequence[str]) -> dict[str, dict[str, Any]]:
        rows = self._batch_get([profile_key(account_id, p) for p in pids], (DATA,), data_of)
        return {d["id"]: d for d in rows}

    def _get(self, key: Mapping[str, str], *, consistent: bool) -> dict[str, Any] | None:
        resp = self._call("GetItem", write=False, TableName=self.t.name, Key=attr_key(key),
                          ConsistentRead=consistent)
        item = resp.get("Item")
        return deser(item) if item else None

    def get(self, account_id: str, profile_id: str, *, consistent: bool = False) -> P.Profile | None:
        self.last_stats = StoreStats()
        if not P.PROFILE_ID.match(profile_id):
            return None
        row = self._get(profile_key(account_id, profile_id), consistent=consistent)
        return profile_of(data_of(row)) if row else None

    def get_many(self, account_id: str, profile_ids: Sequence[str], *,
                 step_tag: str | None = None) -> tuple[dict[str, P.Profile], set[str]]:
        """Profiles by id (BatchGetItem, 100 a request, strongly consistent), and the ids of
        those that `step_tag` already wrote: an enrichment step replayed after a crash
        skips them instead of asking the provider again (docs/providers/enrichment.md)."""
        self.last_stats = StoreStats()
        wanted = [p for p in dict.fromkeys(profile_ids) if P.PROFILE_ID.match(p)]
        rows = self._read_profiles(account_id, wanted)
        written = {pid for pid, d in rows.items()
                   if step_tag and any(s[0] == step_tag for s in d.get("steps") or [])}
        return {pid: profile_of(d) for pid, d in rows.items()}, written

    def find(self, account_id: str, kind: str, value: str) -> P.Profile | None:
        """The profile an identifier points at (the value is normalized first)."""
        self.last_stats = StoreStats()
        try:
            normalized = P.normalize_identifier(kind, value)
        except ValueError:
            return None
        if normalized is None:
            return None
        # Most identifiers created their profile: its key derives from them.
        row = self._get(profile_key(account_id, P.profile_id_for(account_id, kind, normalized)), consistent=False)
        if row is None:
            item = self._get(identifier_key(account_id, kind, normalized), consistent=False)
            if item is None:
                return None
            row = self._get(profile_key(account_id, item["profile_id"]), consistent=False)
        return profile_of(data_of(row)) if row else None

    def _query(
        self, pk: str, *, limit: int | None, start: dict[str, Any] | None, count: bool = False
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "TableName": self.t.name,
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :p)",
            "ExpressionAttributeNames": {"#pk": "PK", "#sk": "SK"},
            "ExpressionAttributeValues": {":pk": {"S": pk}, ":p": {"S": PROFILE_PREFIX}},
            "ScanIndexForward": True,
        }
        if not count:
            kwargs["ProjectionExpression"] = DATA
        if limit is not None:
            kwargs["Limit"] = limit
        if start:
            kwargs["ExclusiveStartKey"] = start
        if count:
            kwargs["Select"] = "COUNT"
        return self._call("Query", write=False, **kwargs)

    def iterate(self, account_id: str, page_size: int = 100) -> Iterator[P.Profile]:
        """Every profile of the account, shard by shard (a Query per page; never a Scan)."""
        self.last_stats = StoreStats()
        for shard in range(SHARDS):
            start = None
            while True:
                resp = self._query(profiles_pk(account_id, shard), limit=page_size, start=start)
                for item in resp.get("Items", []):
                    yield profile_of(data_of(deser(item)))
                start = resp.get("LastEvaluatedKey")
                if not start:
                    break

    def shard_page(self, account_id: str, shard: int, start: dict[str, Any] | None,
                   limit: int) -> tuple[list[P.Profile], dict[str, Any] | None]:
        """One page of one shard's profiles (a Query) and the key to continue from, if any."""
        self.last_stats = StoreStats()
        resp = self._query(profiles_pk(account_id, shard), limit=limit, start=start)
        rows = [profile_of(data_of(deser(i))) for i in resp.get("Items", [])]
        return rows, resp.get("LastEvaluatedKey")

    def count(self, account_id: str) -> int:
        self.last_stats = StoreStats()
        total = 0
        for shard in range(SHARDS):
            start = None
            while True:
                resp = self._query(profiles_pk(account_id, shard), limit=None, start=start, count=True)
                total += int(resp.get("Count", 0))
                start = resp.get("LastEvaluatedKey")
                if not start:
                    break
        return total

    def page(self, account_id: str, *, limit: int, cursor: str | None) -> Page:
        """One page of the account's profiles, shard after shard, with an opaque cursor that
        only this account's listing accepts. At most SHARDS + 1 Queries per page."""
        self.last_stats = StoreStats()
        pks = [profiles_pk(account_id, s) for s in range(SHARDS)]
        shard, start = 0, None
        if cursor:
            key = K.decode_cursor(cursor, expect={}, key_names=("PK", "SK"), sk_prefix=PROFILE_PREFIX)
            if key["PK"] not in pks:
                raise _bad_cursor()
            shard, start = pks.index(key["PK"]), attr_key(key)
        out: list[P.Profile] = []
        while shard < SHARDS and len(out) < limit:
            need = limit - len(out)
            # One extra item tells whether this shard has more, without an empty read.
            resp = self._query(pks[shard], limit=need + 1, start=start)
            rows = [profile_of(data_of(deser(i))) for i in resp.get("Items", [])]
            out += rows[:need]
            if len(rows) > need:
                break
            start = resp.get("LastEvaluatedKey")
            if not start:
                shard, start = shard + 1, None
        next_cursor = None
        if shard < SHARDS and out:
            next_cursor = K.encode_cursor(profile_key(account_id, out[-1].id))
        return Page(items=out, next_cursor=next_cursor)


def _bad_cursor() -> BadRequest:
    return BadRequest(
        "the cursor is not valid for this listing; start again without it",
        code="request.invalid_cursor",
        fields={"cursor": "invalid"},
    )
