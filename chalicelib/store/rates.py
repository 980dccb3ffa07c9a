"""Request rates shared by every Lambda: one item per key in the main table, holding the
time the key's next request may go (a token bucket of one token, kept as its "theoretical
arrival time").

A caller reads the item, takes the next free slot (now, or that time if later) and moves
the time one interval on with a conditional write that names the value it read: of two
containers reserving at once, one wins and the other reads again and takes the slot after.
Two DynamoDB requests per provider request; used only where a provider's quota is small
and shared by every tenant (Google Tag Manager: 0.25 requests/s per Cloud project).
"""

from __future__ import annotations

from typing import Any

from chalicelib.store.dynamo import Table

RATE_SK = "RATE"
MAX_RACES = 20  # reservations lost to other containers before this one gives up for now


def rate_pk(key: str) -> str:
    return f"RATE#{key}"


class SharedRateStore:
    """`providers.calls.SharedRates` in DynamoDB (slots in wall-clock milliseconds)."""

    def __init__(self, table: Table) -> None:
        self.t = table

    def reserve(self, key: str, interval: float, now: float, latest: float) -> tuple[bool, float]:
        step = max(1, round(interval * 1000))
        for _ in range(MAX_RACES):
            seen = self._read(key)
            now_ms = round(now * 1000)
            slot = max(now_ms, seen or now_ms)
            wait = (slot - now_ms) / 1000
            if wait > latest:
                return False, wait
            if not self._swap(key, seen, slot + step):
                continue  # another container took this slot: read again
            return True, wait
        return False, interval

    def take(self, key: str, rate: float, burst_seconds: float, cost: int, now: float) -> tuple[bool, float]:
        """A bucket of `rate` units a second that holds `burst_seconds` of them (GCRA):
        take `cost` units now, or say how long to wait. Same item and race rule as
        `reserve`; a refusal writes nothing."""
        for _ in range(MAX_RACES):
            seen = self._read(key)
            now_ms = round(now * 1000)
            tat = max(now_ms, seen or now_ms) + round(cost / rate * 1000)
            over = (tat - now_ms) / 1000 - burst_seconds
            if over > 0:
                return False, over
            if self._swap(key, seen, tat):
                return True, 0.0
        return False, 1.0

    def _swap(self, key: str, seen: int | None, next_ms: int) -> bool:
        """Move the key's time from what was read to `next_ms`; False when another
        container moved it first."""
        update: dict[str, Any] = {
            "Key": self._key(key),
            "UpdateExpression": "SET next_ms = :next",
            "ExpressionAttributeValues": {":next": {"N": str(next_ms)}},
        }
        if seen is None:
            update["ConditionExpression"] = "attribute_not_exists(next_ms)"
        else:
            update["ConditionExpression"] = "next_ms = :seen"
            update["ExpressionAttributeValues"][":seen"] = {"N": str(seen)}
        return self.t.write_if("update_item", **update)

    def _read(self, key: str) -> int | None:
        got = self.t.client.get_item(TableName=self.t.name, Key=self._key(key), ConsistentRead=True,
                                     ProjectionExpression="next_ms").get("Item")
        return int(got["next_ms"]["N"]) if got and "next_ms" in got else None

    @staticmethod
    def _key(key: str) -> dict[str, Any]:
        return {"PK": {"S": rate_pk(key)}, "SK": {"S": RATE_SK}}


__all__ = ["SharedRateStore", "rate_pk"]
