"""OAuth authorization-code flows in progress: one item per `state`, single use.

The item is keyed by the SHA-256 of the state (the state itself is only ever in the
browser's URL), holds whom the flow belongs to and the hash of the browser nonce (a
cookie set when the flow started), and expires after 10 minutes (TTL, and checked on use:
DynamoDB's TTL deletes late).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from chalicelib.store.dynamo import ConditionFailed, Table, deser


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class FlowState:
    provider: str
    account_id: str
    user_id: str
    role: str
    token_id: str
    nonce_hash: str
    label: str
    expires_at: int  # epoch seconds
    mode: str = "popup"  # popup | redirect: how the browser left; a redirect's errors go back to the SPA


class StateUnknown(Exception):
    """No such state: never issued, already used, or swept by TTL."""


class StateMismatch(Exception):
    """The state exists but this browser did not start the flow (another user's state)."""


class OAuthStateRepo:
    def __init__(self, table: Table) -> None:
        self.table = table

    @staticmethod
    def _key(state: str) -> dict[str, Any]:
        return {"PK": {"S": f"OAUTH#{digest(state)}"}, "SK": {"S": "STATE"}}

    def put(self, state: str, flow: FlowState) -> None:
        item = {"PK": f"OAUTH#{digest(state)}", "SK": "STATE", "type": "oauth_state",
                "provider": flow.provider, "account_id": flow.account_id, "user_id": flow.user_id,
                "role": flow.role, "token_id": flow.token_id, "nonce_hash": flow.nonce_hash,
                "label": flow.label, "expires_at": flow.expires_at, "mode": flow.mode}
        self.table.put(item, condition="attribute_not_exists(PK)")

    def take(self, state: str, nonce: str) -> FlowState:
        """Delete the state and return it, only if this browser's nonce matches: one
        conditional DeleteItem, so two callbacks with the same state cannot both win."""
        try:
            resp = self.table.write(
                "delete_item", Key=self._key(state),
                ConditionExpression="attribute_exists(PK) AND nonce_hash = :n",
                ExpressionAttributeValues={":n": {"S": digest(nonce)}},
                ReturnValues="ALL_OLD", ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ConditionFailed as refused:
            if refused.old:
                raise StateMismatch() from None
            raise StateUnknown() from None
        row = deser(resp.get("Attributes") or {})
        if not row:
            raise StateUnknown()
        return FlowState(provider=str(row["provider"]), account_id=str(row["account_id"]),
                         user_id=str(row["user_id"]), role=str(row["role"]), token_id=str(row.get("token_id", "")),
                         nonce_hash=str(row["nonce_hash"]), label=str(row.get("label", "")),
                         expires_at=int(row["expires_at"]), mode=str(row.get("mode", "popup")))


__all__ = ["FlowState", "OAuthStateRepo", "StateMismatch", "StateUnknown", "digest"]
