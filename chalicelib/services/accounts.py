"""Accounts, users and API tokens; resolving a bearer token to a Principal."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from chalicelib.config import settings
from chalicelib.domain import quota, tokens
from chalicelib.domain.access import Capability, Principal, Role
from chalicelib.domain.audit import AuditEvent, diff
from chalicelib.domain.errors import Conflict, Invalid, NotFound, not_found
from chalicelib.domain.ids import new_id
from chalicelib.domain.models import Account, Token, User
from chalicelib.store.dynamo import Page, TransactionFailed, now_iso

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.services.needs import AccountsNeeds


def _hash(raw: str) -> str:
    # Tokens carry 256 random bits (chosen ones too: domain/tokens.py), so a fast unsalted
    # hash is enough: nothing to brute-force.
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: Token
    plaintext: str  # shown once, never stored


def _mint(account_id: str, user: User, label: str, plaintext: str | None = None) -> IssuedToken:
    token_id = new_id("tok")
    raw = plaintext or f"{token_id}.{tokens.new_secret()}"
    if plaintext is not None:
        token_id = raw.split(".", 1)[0]
    return IssuedToken(
        token=Token(
            id=token_id,
            account_id=account_id,
            user_id=user.id,
            role=user.role,
            label=label,
            token_hash=_hash(raw),
            created_at=now_iso(),
            last4=raw[-4:],
        ),
        plaintext=raw,
    )


def create_account(
    d: AccountsNeeds,
    name: str,
    admin_email: str,
    admin_name: str = "Admin",
    *,
    account_id: str | None = None,
    admin_token: str | None = None,
) -> tuple[Account, User, IssuedToken]:
    """Bootstrap a tenant with one admin user and a first admin token."""
    if admin_token is not None:
        _refuse_weak(admin_token, "admin_token")
    account = Account(id=account_id or new_id("acct"), name=name, created_at=now_iso())
    admin = User(
        id=new_id("usr"),
        account_id=account.id,
        email=admin_email,
        name=admin_name,
        role=Role.ADMIN,
        created_at=account.created_at,
    )
    issued = _mint(account.id, admin, "bootstrap admin token", admin_token)
    try:
        d.accounts.create_account(account, admin, issued.token)
    except TransactionFailed:
        raise Conflict(
            "that account id or admin token is already taken", code="account.exists"
        ) from None
    # After the account exists: a failure here leaves an account whose requests API Gateway
    # refuses until `ensure_usage_key` (or the backfill) is run again, never a key nobody owns.
    ensure_usage_key(d, account.id)
    return account, admin, issued


def ensure_usage_key(d: AccountsNeeds, account_id: str) -> None:
    """Give an account its API Gateway usage-plan key (per-account throttling). Idempotent:
    accounts created before keys existed get theirs from the operator's backfill."""
    d.usage_keys.ensure(quota.usage_key(settings().stage, account_id))


def backfill_usage_keys(d: AccountsNeeds) -> int:
    """Operator step before the routes require keys (and after the local stack restores
    saved accounts): every account of the account index gets its key (Queries, no Scan).
    Returns how many accounts were checked."""
    count = 0
    for account_id in d.accounts.all_account_ids():
        ensure_usage_key(d, account_id)
        count += 1
    return count


def register_token(d: AccountsNeeds, account_id: str, user_id: str, plaintext: str, label: str) -> Token:
    """Operator bootstrap (no route): make a token chosen by the operator valid for a user."""
    user = d.accounts.get_user(account_id, user_id)
    if user is None:
        raise not_found("user", user_id)
    _refuse_weak(plaintext, "token")
    issued = _mint(account_id, user, label, plaintext)
    d.accounts.put_token(issued.token)
    token_cache.clear()
    return issued.token


def _refuse_weak(raw: str, field: str) -> None:
    why = tokens.chosen_token_problem(raw)
    if why is not None:
        raise Invalid(f"the {field.replace('_', ' ')} {why}", fields={field: why})


class _TokenCache:
    """Resolved tokens for a short while: the authorizer Lambda's own cache, behind API
    Gateway's. Its lifetime (SWITCHYARD_TOKEN_CACHE_SECONDS, 1 s) plus API Gateway's
    (AUTHORIZER_TTL_SECONDS) bound how long a revoked token, a disabled user or an old role
    keeps working: another process's revocation cannot reach this cache."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, Principal | None]] = {}
        # The clock entries expire by (a deployed-style test drives a simulated one).
        self.clock: Any = time.monotonic

    def get(self, key: str) -> tuple[bool, Principal | None]:
        with self._lock:
            hit = self._items.get(key)
            if hit is None or hit[0] <= self.clock():
                return False, None
            return True, hit[1]

    def put(self, key: str, value: Principal | None) -> None:
        ttl = settings().token_cache_seconds
        if ttl <= 0:
            return
        with self._lock:
            if len(self._items) > 10_000:
                self._items.clear()
            self._items[key] = (self.clock() + ttl, value)

    def forget_user(self, user_id: str) -> None:
        with self._lock:
            for k in [k for k, (_, p) in self._items.items() if p and p.user_id == user_id]:
                del self._items[k]

    def forget_token(self, token_id: str) -> None:
        with self._lock:
            for k in [k for k, (_, p) in self._items.items() if p and p.token_id == token_id]:
                del self._items[k]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


token_cache = _TokenCache()


def resolve_header(d: AccountsNeeds, header: str | None) -> Principal | None:
    """The caller of an `Authorization` header: only `Bearer <token>` is read (anything
    else costs no DynamoDB request, and API Gateway refuses it before the authorizer)."""
    token = tokens.from_header(header)
    return resolve_token(d, token) if token is not None else None


def resolve_token(d: AccountsNeeds, raw: str | None) -> Principal | None:
    """The principal of a token, with its user's current role; None when the token is
    unknown or revoked, or its user is disabled. Two strongly consistent GetItems (the
    token, then its user's access item) when not cached."""
    if not raw or not tokens.looks_like_token(raw):
        return None
    digest = _hash(raw)
    cached, principal = token_cache.get(digest)
    if cached:
        return principal
    token = d.accounts.get_token(raw.split(".", 1)[0])
    principal = None
    if token is not None and hmac.compare_digest(token.token_hash, digest):
        access = d.accounts.get_access(token.user_id)
        if access is None or access.account_id == token.account_id:
            role = access.role if access is not None else token.role
            if access is None or not access.disabled:
                principal = Principal(account_id=token.account_id, user_id=token.user_id, role=role,
                                      token_id=token.id)
    token_cache.put(digest, principal)
    return principal


def issue_token(d: AccountsNeeds, p: Principal, *, label: str, user_id: str | None) -> IssuedToken:
    p.require(Capability.ADMINISTER)
    user = d.accounts.get_user(p.account_id, user_id or p.user_id)
    if user is None:
        raise Invalid("that user does not exist in this account", fields={"user_id": "not found"})
    if user.disabled:
        raise Conflict("that user is disabled: enable them first", code="user.disabled")
    issued = _mint(p.account_id, user, label)
    if not d.accounts.put_token_of_active_user(issued.token):
        raise Conflict("that user was disabled or removed meanwhile", code="user.disabled")
    # Who the token acts as, never the token (nor its last characters).
    _audit(d, p, "created", "token", issued.token.id, label,
           {"user_id": user.id, "role": issued.token.role.value, "label": label})
    return issued


def list_tokens(d: AccountsNeeds, p: Principal, limit: int, cursor: str | None) -> Page:
    """Each token with the role it acts with: its user's current role, which a role change
    gives every token of the user at once (the token keeps the role it was issued with)."""
    p.require(Capability.ADMINISTER)
    page = d.accounts.list_tokens(p.account_id, limit, cursor)
    users = d.accounts.users_by_id(p.account_id, (t.user_id for t in page.items))
    roles = {uid: u.role for uid, u in users.items()}
    return replace(page, items=[replace(t, role=roles.get(t.user_id, t.role)) for t in page.items])


def revoke_token(d: AccountsNeeds, p: Principal, token_id: str) -> None:
    p.require(Capability.ADMINISTER)
    d.accounts.delete_token(p.account_id, token_id)
    token_cache.forget_token(token_id)
    _audit(d, p, "deleted", "token", token_id, "")


def create_user(d: AccountsNeeds, p: Principal, *, email: str, name: str, role: Role) -> User:
    p.require(Capability.ADMINISTER)
    user = User(
        id=new_id("usr"),
        account_id=p.account_id,
        email=email,
        name=name,
        role=role,
        created_at=now_iso(),
    )
    d.accounts.create_user(user)
    _audit(d, p, "created", "user", user.id, name, {"email": email, "name": name, "role": role.value})
    return user


def update_user(d: AccountsNeeds, p: Principal, user_id: str, *, role: Role | None, disabled: bool | None) -> User:
    """Change a user's role or disable them. Their tokens follow at once in this process and
    within the revocation window everywhere (the authorizer reads the user's access item);
    disabling also deletes every token of the user."""
    p.require(Capability.ADMINISTER)
    if user_id == p.user_id:
        raise Conflict("you cannot change your own role or disable yourself: ask another admin",
                       code="user.self")
    user = d.accounts.get_user(p.account_id, user_id)
    if user is None:
        raise not_found("user", user_id)
    before = {"role": user.role.value, "disabled": user.disabled}
    if role is not None:
        user.role = role
    if disabled is not None:
        user.disabled = disabled
    d.accounts.update_user(user)
    token_cache.forget_user(user.id)
    revoked = []
    if user.disabled:
        # The access item already refuses them; deleting the tokens makes it final
        # (enabling the user again does not bring them back).
        for token in d.accounts.tokens_of_user(p.account_id, user.id):
            try:
                d.accounts.delete_token(p.account_id, token.id)
            except NotFound:
                continue  # revoked meanwhile
            revoked.append(token.id)
    _audit(d, p, "changed", "user", user.id, user.name, {"role": user.role.value, "disabled": user.disabled},
           before=before)
    for token_id in revoked:
        _audit(d, p, "deleted", "token", token_id, "")
    return user


def _audit(d: AccountsNeeds, p: Principal, action: str, object_type: str, object_id: str, label: str,
           values: dict[str, Any] | None = None, *, before: dict[str, Any] | None = None) -> None:
    """Recorded once the change committed (single-item writes)."""
    d.audit.put(AuditEvent(p.account_id, p.user_id, action, object_type, object_id, label,
                           diff(before or {}, values or {})))


def list_users(d: AccountsNeeds, p: Principal, limit: int, cursor: str | None) -> Page:
    p.require(Capability.ADMINISTER)
    return d.accounts.list_users(p.account_id, limit, cursor)


def list_user_names(d: AccountsNeeds, p: Principal, limit: int, cursor: str | None) -> Page:
    """The caller's account's users for every role; the route shows only id and name (the
    owner of a job and the actor of an audit entry are people the caller works with)."""
    p.require(Capability.READ)
    return d.accounts.list_users(p.account_id, limit, cursor)


def me(d: AccountsNeeds, p: Principal) -> tuple[Account, User]:
    account = d.accounts.get_account(p.account_id)
    user = d.accounts.get_user(p.account_id, p.user_id)
    if account is None or user is None:
        raise not_found("user", p.user_id)
    return account, user
