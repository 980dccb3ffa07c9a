"""The composition root: the one place that builds the adapters the services use.

A `Deps` holds every adapter of one stage (tables, repositories, queues, the scheduler, the
secrets store, the event bus and topic, the provider registry). Each is built on first use
and kept, so a warm Lambda reuses its repositories; services receive the `Deps` and never
construct a repository, queue or AWS adapter themselves (an alert webhook or an OAuth token
call builds the provider layer's HTTP client for its one request). Each adapter is typed by
its protocol in `store/protocols.py`, what services call of it, not by the AWS class built
here, and each service module types the `Deps` it receives by the adapters it uses
(`services/needs.py`): no service imports this module.

Chalice handlers are module-level functions with no constructor to inject into, so each
route or worker takes the process's `Deps` from `deps()` at its edge and hands it down;
tests build their own `Deps` (fresh tables, an extended registry) and install it with `use`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING

from chalicelib.domain.models import Job
from chalicelib.domain.schedules import next_fire
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.registry import Registry, default_registry
from chalicelib.store import aws
from chalicelib.store.accounts import AccountRepo
from chalicelib.store.alert_rules import AlertRuleRepo
from chalicelib.store.alerts import AlertDeliveries, AlertSettingsRepo, AlertTopic, EventBus
from chalicelib.store.audience_members import AudienceMemberRepo
from chalicelib.store.audiences import AudienceRepo
from chalicelib.store.audit import AuditRepo
from chalicelib.store.authorizations import AuthorizationRepo
from chalicelib.store.collect import CollectQueue, CollectRepo, WriteKeyRepo
from chalicelib.store.dynamo import Table, Transaction
from chalicelib.store.jobs import JobRepo
from chalicelib.store.membership import MembershipRepo
from chalicelib.store.oauth import OAuthStateRepo
from chalicelib.store.profiles import ProfileRepo
from chalicelib.store.queues import BackfillQueue, HealthQueue, RealtimeQueue, RunQueue
from chalicelib.store.rates import SharedRateStore
from chalicelib.store.realtime import RealtimeRepo
from chalicelib.store.runs import RunRepo
from chalicelib.store.scheduler import SchedulerStore, own_identity
from chalicelib.store.secrets import SecretsStore
from chalicelib.store.usage_keys import UsageKeys

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.store.protocols import (
        Accounts,
        AlertClaims,
        AlertEmails,
        AlertRules,
        AlertSettingsStore,
        AudienceMembers,
        Audiences,
        AuditLog,
        Authorizations,
        BackfillMessages,
        CollectClaims,
        CollectMessages,
        Events,
        HealthMessages,
        Jobs,
        Memberships,
        OAuthStates,
        Profiles,
        RateBuckets,
        RealtimeMessages,
        RunMessages,
        Runs,
        Schedules,
        Secrets,
        Subscriptions,
        UsagePlanKeys,
        WriteKeys,
    )
    from chalicelib.store.unit_of_work import UnitOfWork

PROFILE_BATCHES_IN_FLIGHT = 8


@dataclass
class Deps:
    """Adapters are fixed once built: to point at other tables, build another `Deps`."""

    table: Table = field(default_factory=Table)
    profiles_table: Table = field(default_factory=lambda: Table(setting="profiles_table_name"))
    registry: Registry = field(default_factory=default_registry)
    secrets: Secrets = field(default_factory=SecretsStore)
    runs_queue: RunMessages = field(default_factory=RunQueue)
    health_queue: HealthMessages = field(default_factory=HealthQueue)
    backfill_queue: BackfillMessages = field(default_factory=BackfillQueue)
    realtime_queue: RealtimeMessages = field(default_factory=RealtimeQueue)
    scheduler: Schedules = field(default_factory=SchedulerStore)
    event_bus: Events = field(default_factory=EventBus)
    alert_topic: AlertEmails = field(default_factory=AlertTopic)
    collect_queue: CollectMessages = field(default_factory=CollectQueue)
    usage_keys: UsagePlanKeys = field(default_factory=UsageKeys)
    # How long the health handler waits for a batch's checks (tests make hangs short).
    health_check_timeout: float = 20.0

    def calls(self, authorization_id: str | None = None) -> CallCounter:
        """A counter of provider requests on behalf of one authorization, carrying where
        rates shared by every tenant are kept (this stage's table)."""
        return CallCounter(authorization_id=authorization_id, rates=self.shared_rates)

    @cached_property
    def shared_rates(self) -> RateBuckets:
        return SharedRateStore(self.table)

    @cached_property
    def accounts(self) -> Accounts:
        return AccountRepo(self.table)

    @cached_property
    def auths(self) -> Authorizations:
        return AuthorizationRepo(self.table)

    @cached_property
    def jobs(self) -> Jobs:
        return JobRepo(self.table)

    @cached_property
    def audit(self) -> AuditLog:
        return AuditRepo(self.table)

    @cached_property
    def audiences(self) -> Audiences:
        return AudienceRepo(self.table)

    @cached_property
    def profiles(self) -> Profiles:
        # Batches in flight at once: an import step mostly waits on DynamoDB (the botocore
        # client's pool holds 10 connections).
        return ProfileRepo(self.profiles_table, parallel=PROFILE_BATCHES_IN_FLIGHT)

    @cached_property
    def runs(self) -> Runs:
        return RunRepo(self.table)

    @cached_property
    def audience_members(self) -> AudienceMembers:
        """Audiences' current members and change logs (services/audience_members.py)."""
        return AudienceMemberRepo(self.table)

    @cached_property
    def realtime(self) -> Subscriptions:
        """Real-time export jobs' subscriptions to audiences (services/realtime.py)."""
        return RealtimeRepo(self.table)

    @cached_property
    def memberships(self) -> Memberships:
        """Export jobs' confirmed memberships and run plans (chalicelib/runs/export.py)."""
        return MembershipRepo(self.table)

    @cached_property
    def oauth_states(self) -> OAuthStates:
        """OAuth flows in progress (chalicelib/services/oauth.py)."""
        return OAuthStateRepo(self.table)

    @cached_property
    def alert_settings(self) -> AlertSettingsStore:
        return AlertSettingsRepo(self.table)

    @cached_property
    def alert_deliveries(self) -> AlertClaims:
        """Which transitions' alerts went out (one delivery per transition)."""
        return AlertDeliveries(self.table)

    @cached_property
    def alert_rules(self) -> AlertRules:
        return AlertRuleRepo(self.table)

    @cached_property
    def write_keys(self) -> WriteKeys:
        """The collect endpoint's write keys."""
        return WriteKeyRepo(self.table)

    @cached_property
    def collect(self) -> CollectClaims:
        """Collected messages' claims and hand-offs."""
        return CollectRepo(self.table)

    def transaction(self) -> UnitOfWork:
        """Writes to the main table that commit together (repositories add to it)."""
        return Transaction(self.table)

    def own_identity(self) -> tuple[str, str]:
        """(partition, AWS account id) of this stage's own identity, read from STS once a process."""
        return own_identity()

    def request_counter(self) -> aws.RequestTally:
        return aws.track_requests()

    def next_run(self, job: Job, now: datetime) -> str | None:
        """When a continuous job runs next (None for one-time jobs)."""
        if job.schedule is None or job.schedule.get("type") == "once":
            return None
        nxt = next_fire(job.schedule, now)
        return nxt.strftime("%Y-%m-%dT%H:%M:%SZ") if nxt else None


_deps: Deps | None = None
_lock = threading.Lock()


def deps() -> Deps:
    """The process's adapters, built on first use (a warm Lambda keeps them)."""
    global _deps
    if _deps is None:
        with _lock:
            if _deps is None:
                _deps = Deps()
    return _deps


def use(new: Deps | None) -> None:
    """Install another `Deps` (tests: fresh tables, a registry with extra providers)."""
    global _deps
    _deps = new
