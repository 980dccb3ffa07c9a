"""Use cases of authorizations: create (check first), read, edit, rotate, check, delete."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chalicelib.domain.access import Capability, Principal
from chalicelib.domain.audit import AuditEvent, diff
from chalicelib.domain.catalog import ProviderSpec
from chalicelib.domain.errors import Invalid, Unavailable, not_found
from chalicelib.domain.ids import new_id
from chalicelib.domain.models import (
    Authorization,
    CheckResult,
    Health,
    HealthStatus,
    Job,
    empty_usage,
)
from chalicelib.domain.rules import in_use_error
from chalicelib.providers.base import Provider, ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.services import credentials as creds_svc
from chalicelib.services import health
from chalicelib.services.collect import create_with_key, revoke_key, rotate_key
from chalicelib.store.authorizations import AuthorizationInUse
from chalicelib.store.dynamo import Page, now_iso
from chalicelib.store.unit_of_work import UnitOfWork

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.services.needs import AuthorizationsNeeds

log = logging.getLogger("switchyard.authorizations")

@dataclass(frozen=True)
class NewAuthorization:
    provider: str
    method: str
    label: str
    description: str
    credentials: dict[str, Any]


def run_check(
    provider: Provider, method: str, credentials: Any, resources: dict[str, str],
    counter: CallCounter | None = None,
) -> CheckResult:
    spec = provider.spec.method(method)
    if not spec.verifiable:
        return CheckResult(HealthStatus.UNKNOWN, f"{provider.spec.name} offers no way to verify")
    try:
        return provider.check(method, credentials, resources, counter)
    except ProviderError as exc:
        # Raised only for transient trouble (throttling, outage, our own identity):
        # nothing is decided about the credentials, so nothing is stored or changed.
        raise Unavailable(
            f"{provider.spec.name} could not be checked right now: {exc.reason}; retry shortly",
            code="provider.unavailable",
        ) from None


def record_requests(d: AuthorizationsNeeds, account_id: str, auth_id: str, counter: CallCounter) -> None:
    """The provider requests of one API call (a check, options, a job's reach check), on
    the authorization's activity (one UpdateItem, after the calls), and the call as its
    last use. A failure to count never fails the user's call."""
    try:
        d.auths.mark_used(account_id, auth_id, now_iso())
        if counter.total:
            d.runs.record_requests(account_id, auth_id, datetime.now(UTC), counter.total, counter.error_total)
    except Exception:
        log.warning("could not record %d requests of authorization %s", counter.total, auth_id,
                    exc_info=True)


def refuse_check(provider: ProviderSpec, check: CheckResult, *, field: str,
                 config_resources: dict[str, str] | None = None) -> Invalid:
    """The refusal of a failed check, saying whose fault it is: the credentials (auth), or a
    resource they were given that cannot be reached (config: the bucket, the list), marked
    at that field. Transient trouble never gets here (run_check answers 503)."""
    if check.resource:
        # The resource came from the job's configuration, or from the credentials themselves.
        where = "config" if check.resource in (config_resources or {}) else field
        return Invalid(
            f"{provider.name} accepted these credentials, but {check.reason}: check the "
            f"{check.resource.replace('_', ' ')}",
            code="authorization.check_failed",
            fields={f"{where}.{check.resource}": check.reason or "cannot be reached"},
            details={"reason": check.reason, "problem": "config"},
        )
    return Invalid(
        f"{provider.name} did not accept these credentials: {check.reason}",
        code="authorization.check_failed",
        fields={field: check.reason or "check failed"},
        details={"reason": check.reason, "problem": "auth"},
    )


def prepare(
    d: AuthorizationsNeeds,
    p: Principal,
    new: NewAuthorization,
    *,
    resources: dict[str, str],
    field_prefix: str = "",
    counter: CallCounter | None = None,
) -> tuple[Authorization, dict[str, Any]]:
    """Validate and check credentials; returns the item to write and the secret value.

    Nothing is stored here: a failing check leaves no trace (SPEC rule 2).
    The check's requests go to `counter`; the caller records them once the authorization
    exists.
    """
    provider = d.registry.for_request(new.provider, field=f"{field_prefix}provider")
    method = provider.spec.method(new.method, field_name=f"{field_prefix}method")
    credentials = creds_svc.parse(method, new.credentials, prefix=f"{field_prefix}credentials",
                                  generated=creds_svc.generated_values(d, p.account_id, method))
    check = run_check(provider, method.id, credentials, resources, counter)
    if not check.ok:
        raise refuse_check(provider.spec, check, field=f"{field_prefix}credentials", config_resources=resources)
    auth_id = new_id("auth")
    now = now_iso()
    auth = Authorization(
        id=auth_id,
        account_id=p.account_id,
        provider=provider.spec.id,
        method=method.id,
        label=new.label,
        description=new.description,
        owner=p.user_id,
        created_at=now,
        updated_at=now,
        secret_name=d.secrets.name_for(p.account_id, auth_id),
        health=Health(check.status, check.reason, now),
        provider_account=check.provider_account,
        credential_hint=provider.credential_hint(method.id, credentials),
        usage=empty_usage(),
    )
    return auth, creds_svc.to_secret(credentials)


def store_secret(d: AuthorizationsNeeds, auth: Authorization, secret: dict[str, Any]) -> None:
    d.secrets.create(
        auth.secret_name,
        secret,
        tags={"switchyard:account": auth.account_id, "switchyard:authorization": auth.id,
              "switchyard:provider": auth.provider},
    )


def create(d: AuthorizationsNeeds, p: Principal, new: NewAuthorization) -> Authorization:
    p.require(Capability.MANAGE_INTEGRATIONS)
    counter = d.calls()
    auth, secret = prepare(d, p, new, resources={}, counter=counter)
    store_secret(d, auth, secret)
    try:
        if d.registry.get(auth.provider).spec.method(auth.method).issued:
            create_with_key(d, auth)
        else:
            d.auths.put_new(auth)
    except Exception:
        d.secrets.delete_now(auth.secret_name)
        raise
    record_requests(d, p.account_id, auth.id, counter)
    audit_created(d, p, auth)
    return auth


def _created_values(auth: Authorization) -> dict[str, Any]:
    # Metadata only: the credentials never enter an audit event.
    return {"provider": auth.provider, "method": auth.method, "label": auth.label}


def audit_created(d: AuthorizationsNeeds, p: Principal, auth: Authorization) -> None:
    """The `created` event of an authorization written on its own (dashboard, OAuth)."""
    _audit(d, p, "created", auth, _created_values(auth))


def audit_created_in(d: AuthorizationsNeeds, tx: UnitOfWork, p: Principal, auth: Authorization) -> None:
    """The same event, in the transaction that creates it (inline in a job's create)."""
    d.audit.add(tx, AuditEvent(p.account_id, p.user_id, "created", "authorization", auth.id, auth.label,
                               diff({}, _created_values(auth))))


def _audit(d: AuthorizationsNeeds, p: Principal, action: str, auth: Authorization, values: dict[str, Any] | None = None,
           before: dict[str, Any] | None = None) -> None:
    """Recorded once the change committed; `values` never hold credentials."""
    changes = diff(before or {}, values or {})
    d.audit.put(AuditEvent(p.account_id, p.user_id, action, "authorization", auth.id, auth.label, changes))


def get(d: AuthorizationsNeeds, p: Principal, auth_id: str) -> Authorization:
    p.require(Capability.READ)
    auth = d.auths.get(p.account_id, auth_id)
    if auth is None:
        raise not_found("authorization", auth_id)
    return auth


def activity(d: AuthorizationsNeeds, p: Principal, auth_id: str, granularity: str) -> list[dict[str, Any]]:
    """API requests made with the authorization (SPEC rule 8), per hour, day or week."""
    get(d, p, auth_id)
    return d.runs.request_activity(p.account_id, auth_id, granularity)


def summary(d: AuthorizationsNeeds, p: Principal, auth_id: str) -> tuple[Authorization, list[Job]]:
    auth = get(d, p, auth_id)
    return auth, jobs_using(d, p, auth_id)


def jobs_using(d: AuthorizationsNeeds, p: Principal, auth_id: str) -> list[Job]:
    """The jobs of this account on the authorization, for its summary."""
    p.require(Capability.READ)
    return d.jobs.jobs_of_authorization(p.account_id, auth_id)


def list_(
    d: AuthorizationsNeeds, p: Principal, *, limit: int, cursor: str | None, provider: str | None, health: str | None
) -> Page:
    p.require(Capability.READ)
    return d.auths.page(p.account_id, limit=limit, cursor=cursor, provider=provider, health=health)


def edit(
    d: AuthorizationsNeeds, p: Principal, auth_id: str, changes: dict[str, Any], version: int | None
) -> Authorization:
    p.require(Capability.MANAGE_INTEGRATIONS)
    before = get(d, p, auth_id)
    after = d.auths.update(p.account_id, auth_id, changes, expected_version=version)
    _audit(d, p, "changed", after, {k: getattr(after, k) for k in changes},
           before={k: getattr(before, k) for k in changes})
    return after


def check_now(d: AuthorizationsNeeds, p: Principal, auth_id: str) -> Authorization:
    p.require(Capability.MANAGE_INTEGRATIONS)
    auth = get(d, p, auth_id)
    provider = d.registry.get(auth.provider)
    counter = d.calls(auth.id)
    try:
        credentials = creds_svc.load(d, auth, provider.spec)
        check = run_check(provider, auth.method, credentials, {}, counter)
    except ProviderError as exc:
        if not exc.auth:
            raise Unavailable(f"{provider.spec.name} could not be checked right now: {exc.reason}; retry shortly",
                              code="provider.unavailable") from None
        check = CheckResult(HealthStatus.UNHEALTHY, exc.reason)  # the token refresh was refused
    finally:
        record_requests(d, p.account_id, auth.id, counter)
    health.record(d, auth, check, by=p.user_id)
    return d.auths.get(p.account_id, auth_id, consistent=True) or auth


def health_history(d: AuthorizationsNeeds, p: Principal, auth_id: str, *, limit: int, cursor: str | None) -> Page:
    get(d, p, auth_id)
    return d.auths.health_history(p.account_id, auth_id, limit=limit, cursor=cursor)


def rotate(
    d: AuthorizationsNeeds, p: Principal, auth_id: str, raw_credentials: Any, version: int | None
) -> Authorization:
    """New credentials become a new secret version only after they verify.

    They must reach the same provider account and every resource the jobs using this
    authorization are configured with, so no job is broken by the swap.
    """
    p.require(Capability.MANAGE_INTEGRATIONS)
    auth = get(d, p, auth_id)
    provider = d.registry.get(auth.provider)
    method = provider.spec.method(auth.method)
    # Rotating is also how an authorization made with a customer-chosen external id moves
    # to the account's generated one.
    credentials = creds_svc.parse(method, raw_credentials, prefix="credentials",
                                  generated=creds_svc.generated_values(d, p.account_id, method))
    if method.issued:
        rotated = rotate_key(d, auth, version)
        _audit(d, p, "rotated", rotated, {"credential_hint": rotated.credential_hint},
               before={"credential_hint": auth.credential_hint})
        return rotated
    jobs = d.jobs.jobs_of_authorization(p.account_id, auth_id)
    resource_sets = _resource_sets(provider.spec, jobs) or [{}]
    check: CheckResult | None = None
    counter = d.calls(auth.id)
    try:
        for resources in resource_sets:
            check = _rotation_check(provider, auth, method.id, credentials, resources, counter,
                                    [j for j in jobs if _resources_of(provider.spec, j) == resources])
    finally:
        record_requests(d, p.account_id, auth.id, counter)
    assert check is not None
    d.secrets.put_version(auth.secret_name, creds_svc.to_secret(credentials))
    updated = d.auths.update(
        p.account_id,
        auth_id,
        {"credential_hint": provider.credential_hint(method.id, credentials)},
        expected_version=version,
    )
    health.record(d, updated, check, by=p.user_id)
    _audit(d, p, "rotated", updated, {"credential_hint": updated.credential_hint},
           before={"credential_hint": auth.credential_hint})
    return d.auths.get(p.account_id, auth_id, consistent=True) or updated


def _rotation_check(provider: Provider, auth: Authorization, method: str, credentials: Any,
                    resources: dict[str, str], counter: CallCounter, jobs: list[Job]) -> CheckResult:
    check = run_check(provider, method, credentials, resources, counter)
    if not check.ok and jobs:
        # Name what would break: the user must know which job's list/bucket is out of reach.
        what = ", ".join(f"{k} {v!r}" for k, v in sorted(resources.items()))
        names = ", ".join(f"{j.label!r} ({j.id})" for j in jobs)
        raise Invalid(
            f"{provider.spec.name} did not accept these credentials for {what}, used by job {names}: "
            f"{check.reason}",
            code="authorization.check_failed",
            fields={"credentials": check.reason or "check failed"},
            details={"reason": check.reason, "resources": resources,
                     "jobs": [{"id": j.id, "label": j.label} for j in jobs]},
        )
    if not check.ok:
        raise refuse_check(provider.spec, check, field="credentials")
    if auth.provider_account and check.provider_account not in (None, auth.provider_account):
        raise Invalid(
            f"the new credentials reach {provider.spec.name} account {check.provider_account}, "
            f"this authorization is for account {auth.provider_account}; create a new "
            "authorization instead",
            code="authorization.other_account",
            fields={"credentials": "reach another provider account"},
        )
    return check


def _resources_of(spec: ProviderSpec, job: Job) -> dict[str, str]:
    wf = next((w for w in spec.workflows if w.id == job.workflow), None)
    if wf is None:
        return {}
    return {f: str(job.config[f]) for f in wf.resource_fields if job.config.get(f)}


def _resource_sets(spec: ProviderSpec, jobs: list[Job]) -> list[dict[str, str]]:
    seen: list[dict[str, str]] = []
    for job in jobs:
        res = _resources_of(spec, job)
        if res and res not in seen:
            seen.append(res)
    return seen


def delete(d: AuthorizationsNeeds, p: Principal, auth_id: str) -> None:
    p.require(Capability.MANAGE_INTEGRATIONS)
    try:
        auth = d.auths.delete_if_unused(p.account_id, auth_id)
    except AuthorizationInUse:
        raise in_use_error(auth_id, d.jobs.jobs_of_authorization(p.account_id, auth_id)) from None
    d.secrets.schedule_deletion(auth.secret_name)
    if d.registry.get(auth.provider).spec.method(auth.method).issued:
        revoke_key(d, auth)
    _audit(d, p, "deleted", auth)


def check_for_job(
    d: AuthorizationsNeeds, auth: Authorization, provider: Provider, resources: dict[str, str],
    counter: CallCounter | None = None, ahead: creds_svc.SecretAhead | None = None,
) -> CheckResult:
    """Can this authorization reach these configured resources? (job create/edit, rule 9)

    The check's requests are recorded here, unless the caller passes its own `counter`
    (and records them in its own write). `ahead`: its secret, if already being read."""
    try:
        credentials = creds_svc.load(d, auth, provider.spec, ahead)
    except Exception as exc:  # a secret that cannot be read is an outage, not bad input...
        if not getattr(exc, "response", None):
            raise
        if d.auths.get(auth.account_id, auth.id, consistent=True) is None:
            # ...unless the authorization was deleted since the caller read it (its secret
            # went with it): the caller is told so, as when the delete comes first
            raise Invalid(
                f"authorization {auth.id!r} was deleted meanwhile",
                code="authorization.not_found",
                fields={"authorization_id": "not found"},
            ) from None
        raise Unavailable("the authorization's credentials could not be read") from None
    if counter is not None:
        return run_check(provider, auth.method, credentials, resources, counter)
    counter = d.calls(auth.id)
    try:
        return run_check(provider, auth.method, credentials, resources, counter)
    finally:
        record_requests(d, auth.account_id, auth.id, counter)

