"""Accounts, their users and API tokens in the main table (see docs/data-model.md)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from typing import Any

from chalicelib.domain.access import Role
from chalicelib.domain.errors import not_found
from chalicelib.domain.models import Account, Token, User, UserAccess
from chalicelib.store import keys as K
from chalicelib.store.dynamo import (
    ConditionFailed,
    Page,
    Table,
    Transaction,
    TransactionFailed,
    paged_query,
    prefix_page,
)

ACCOUNT_SHARDS = 16  # partitions of the account index (sweep index GSI2, `ACCOUNTS#<n>`)


def _index_keys(account_id: str) -> dict[str, str]:
    # The account's entry in the sweep index: how operator steps list every account by
    # Query instead of reading the whole table.
    return {"GSI2PK": K.sweep_shard("ACCOUNTS", account_id, ACCOUNT_SHARDS), "GSI2SK": account_id}


class AccountRepo:
    def __init__(self, table: Table) -> None:
        self.t = table

    def create_account(self, account: Account, admin: User, token: Token) -> None:
        """Account, first admin and first token together: never an account nobody can reach."""
        tx = Transaction(self.t)
        tx.put("account", {
            "PK": K.account_pk(account.id),
            "SK": K.ACCOUNT_SK,
            "type": "account",
            "id": account.id,
            "name": account.name,
            "created_at": account.created_at,
            **_index_keys(account.id),
        }, condition="attribute_not_exists(PK)")
        tx.put("admin", self._user_item(admin))
        tx.put("admin_access", self._access_item(admin))
        tx.put("token", self._token_item(token), condition="attribute_not_exists(PK)")
        tx.commit()

    def get_account(self, account_id: str) -> Account | None:
        row = self.t.get(K.account_pk(account_id), K.ACCOUNT_SK)
        if not row:
            return None
        return Account(id=row["id"], name=row["name"], created_at=row["created_at"])

    def all_account_ids(self) -> Iterator[str]:
        """Every account of the stage: Queries of the account index, shard by shard (never a
        Scan). Accounts made before the index are listed once the operator's migration
        (infra/index_accounts.py) gave them their entry with `add_to_index`."""
        for shard in range(ACCOUNT_SHARDS):
            start: dict[str, Any] | None = None
            while True:
                items, start = self.t.sweep_page("ACCOUNTS", shard, start)
                yield from (str(i["GSI2SK"]["S"]) for i in items)
                if not start:
                    break

    def add_to_index(self, account_id: str) -> bool:
        """Give an account made before the account index its entry: one conditional
        UpdateItem that only adds an entry that is missing to an account that exists, so
        running it again changes nothing. True when it added the entry. The operator's
        migration (infra/index_accounts.py) finds the accounts to pass; chalicelib reads
        no table whole."""
        keys = _index_keys(account_id)
        return self.t.write_if(
            "update_item",
            Key={"PK": {"S": K.account_pk(account_id)}, "SK": {"S": K.ACCOUNT_SK}},
            UpdateExpression="SET GSI2PK = :pk, GSI2SK = :sk",
            ConditionExpression="attribute_exists(PK) AND attribute_not_exists(GSI2PK)",
            ExpressionAttributeValues={":pk": {"S": keys["GSI2PK"]}, ":sk": {"S": keys["GSI2SK"]}},
        )

    def aws_external_id(self, account_id: str) -> str:
        """The account's AWS external id, created on first use: one UpdateItem that keeps a
        value already there, so concurrent first uses all get the same id."""
        row = self.t.get(K.account_pk(account_id), K.ACCOUNT_SK)
        if row and row.get("aws_external_id"):
            return str(row["aws_external_id"])
        try:
            resp = self.t.write(
                "update_item",
                Key={"PK": {"S": K.account_pk(account_id)}, "SK": {"S": K.ACCOUNT_SK}},
                UpdateExpression="SET aws_external_id = if_not_exists(aws_external_id, :e)",
                ConditionExpression="attribute_exists(PK)",
                ExpressionAttributeValues={":e": {"S": f"switchyard-{secrets.token_urlsafe(24)}"}},
                ReturnValues="ALL_NEW",
            )
        except ConditionFailed:
            raise not_found("account", account_id) from None
        return str(resp["Attributes"]["aws_external_id"]["S"])

    @staticmethod
    def _user_item(user: User) -> dict[str, Any]:
        return {
            "PK": K.account_pk(user.account_id),
            "SK": K.user_sk(user.id),
            "type": "user",
            "id": user.id,
            "account_id": user.account_id,
            "email": user.email,
            "name": user.name,
            "role": user.role.value,
            "created_at": user.created_at,
            "disabled": user.disabled,
        }

    @staticmethod
    def _access_item(user: User) -> dict[str, Any]:
        return {
            "PK": K.user_access_pk(user.id),
            "SK": K.ACCOUNT_SK,
            "type": "user_access",
            "account_id": user.account_id,
            "user_id": user.id,
            "role": user.role.value,
            "disabled": user.disabled,
        }

    @staticmethod
    def _user(row: dict[str, Any]) -> User:
        return User(
            id=row["id"],
            account_id=row["account_id"],
            email=row["email"],
            name=row["name"],
            role=Role(row["role"]),
            created_at=row["created_at"],
            disabled=bool(row.get("disabled", False)),
        )

    def create_user(self, user: User) -> None:
        tx = Transaction(self.t)
        tx.put("user", self._user_item(user), condition="attribute_not_exists(PK)")
        tx.put("access", self._access_item(user))
        tx.commit()

    def update_user(self, user: User) -> None:
        """The user's role or disabled flag, and the access item the authorizer reads, together."""
        tx = Transaction(self.t)
        tx.put("user", self._user_item(user), condition="attribute_exists(PK)")
        tx.put("access", self._access_item(user))
        try:
            tx.commit()
        except TransactionFailed:
            raise not_found("user", user.id) from None

    def get_access(self, user_id: str) -> UserAccess | None:
        """Strongly consistent: a change committed before this read is seen by it."""
        row = self.t.get(K.user_access_pk(user_id), K.ACCOUNT_SK, consistent=True)
        if not row:
            return None  # users created before access items: their tokens' own role holds
        return UserAccess(account_id=row["account_id"], user_id=row["user_id"], role=Role(row["role"]),
                          disabled=bool(row.get("disabled", False)))

    def get_user(self, account_id: str, user_id: str) -> User | None:
        row = self.t.get(K.account_pk(account_id), K.user_sk(user_id))
        return self._user(row) if row else None

    def users_by_id(self, account_id: str, user_ids: Iterable[str]) -> dict[str, User]:
        """The account's users among `user_ids` (BatchGetItem, 100 keys a request); missing
        ones are left out."""
        rows = self.t.batch_get([{"PK": K.account_pk(account_id), "SK": K.user_sk(u)} for u in set(user_ids)])
        return {user.id: user for user in map(self._user, rows)}

    def list_users(self, account_id: str, limit: int, cursor: str | None) -> Page:
        return prefix_page(self.t, K.account_pk(account_id), "USER#", limit=limit, cursor=cursor,
                           convert=self._user)

    @staticmethod
    def _token(row: dict[str, Any]) -> Token:
        return Token(
            id=row["id"],
            account_id=row["account_id"],
            user_id=row["user_id"],
            role=Role(row["role"]),
            label=row["label"],
            token_hash=row["token_hash"],
            created_at=row["created_at"],
            last4=row["last4"],
        )

    @staticmethod
    def _token_item(token: Token) -> dict[str, Any]:
        return {
            "PK": K.token_pk(token.id),
            "SK": K.ACCOUNT_SK,
            "GSI1PK": K.account_tokens_gsi(token.account_id),
            "GSI1SK": f"TOKEN#{token.id}",
            "type": "token",
            "id": token.id,
            "account_id": token.account_id,
            "user_id": token.user_id,
            "role": token.role.value,
            "label": token.label,
            "token_hash": token.token_hash,
            "created_at": token.created_at,
            "last4": token.last4,
        }

    def put_token_of_active_user(self, token: Token) -> bool:
        """The token, only while its user exists and is not disabled (False otherwise):
        a token cannot be issued to a user being disabled at the same moment."""
        tx = Transaction(self.t)
        tx.add("user", {"ConditionCheck": {
            "TableName": self.t.name,
            "Key": {"PK": {"S": K.account_pk(token.account_id)}, "SK": {"S": K.user_sk(token.user_id)}},
            "ConditionExpression": "attribute_exists(PK) AND (attribute_not_exists(disabled) OR disabled = :f)",
            "ExpressionAttributeValues": {":f": {"BOOL": False}},
        }})
        tx.put("token", self._token_item(token), condition="attribute_not_exists(PK)")
        try:
            tx.commit()
        except TransactionFailed:
            return False
        return True

    def tokens_of_user(self, account_id: str, user_id: str) -> list[Token]:
        """Every token of one user: Queries of the account's token index (no Scan)."""
        out: list[Token] = []
        cursor: str | None = None
        while True:
            page = self.list_tokens(account_id, 100, cursor)
            out += [t for t in page.items if t.user_id == user_id]
            if not page.next_cursor:
                return out
            cursor = page.next_cursor

    def put_token(self, token: Token) -> None:
        self.t.put(self._token_item(token), condition="attribute_not_exists(PK)")

    def get_token(self, token_id: str) -> Token | None:
        # Strongly consistent: a revocation committed before this read is seen by it.
        row = self.t.get(K.token_pk(token_id), K.ACCOUNT_SK, consistent=True)
        return self._token(row) if row else None

    def list_tokens(self, account_id: str, limit: int, cursor: str | None) -> Page:
        gpk = K.account_tokens_gsi(account_id)
        return paged_query(
            self.t,
            index=K.GSI1,
            key_condition="GSI1PK = :g",
            names={},
            values={":g": gpk},
            key_names=("PK", "SK", "GSI1PK", "GSI1SK"),
            expect={"GSI1PK": gpk},
            sk_prefix="META",
            limit=limit,
            cursor=cursor,
            convert=self._token,
        )

    def delete_token(self, account_id: str, token_id: str) -> None:
        try:
            self.t.write(
                "delete_item",
                Key={"PK": {"S": K.token_pk(token_id)}, "SK": {"S": K.ACCOUNT_SK}},
                # Scoped to the caller's account: another account's token is "not found".
                ConditionExpression="account_id = :a",
                ExpressionAttributeValues={":a": {"S": account_id}},
            )
        except ConditionFailed:
            raise not_found("token", token_id) from None


__all__ = ["ACCOUNT_SHARDS", "AccountRepo"]
