"""What the services need of the store, as protocols: `bootstrap.Deps` hands every adapter
out as one of these, so a service depends on what it calls, not on DynamoDB, SQS or
Scheduler. The DynamoDB repositories satisfy them, and so do the in-memory ones
(tests/fakes/memory_store.py, memory_runs.py), which is what lets a use case be tested
without moto.

A protocol lists only what code outside the store calls. mypy checks the AWS adapters
against them where `Deps` builds them (a return type) and the in-memory ones where
`memory_deps` installs them (the Makefile's lint runs mypy on both fakes); the cases of
tests/store/test_repo_contract.py check that the two behave alike. No store module imports
this one (they use `store.unit_of_work`), so it may name their types.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from datetime import datetime

    from chalicelib.domain.alert_rules import AlertRule
    from chalicelib.domain.audiences import Audience, Estimate
    from chalicelib.domain.audit import AuditEvent
    from chalicelib.domain.membership import MemberState, Verdict
    from chalicelib.domain.models import Account, Authorization, HealthStatus, Job, Token, User, UserAccess
    from chalicelib.domain.profiles import Profile, ProfileRecord
    from chalicelib.domain.runs import LogLine, Run, RunStatus, StepCommit
    from chalicelib.domain.statuses import JobStatus
    from chalicelib.store.alerts import AlertSettings
    from chalicelib.store.audience_members import BackfillState, Change
    from chalicelib.store.authorizations import HealthRecorded
    from chalicelib.store.collect import WriteKey
    from chalicelib.store.dynamo import Page
    from chalicelib.store.membership import PlanRef, PlanRow, SetRef
    from chalicelib.store.oauth import FlowState
    from chalicelib.store.profiles.lease import Ticket
    from chalicelib.store.realtime import Subscription
    from chalicelib.store.scheduler import SyncOutcome
    from chalicelib.store.unit_of_work import UnitOfWork


class Audiences(Protocol):
    """An account's audiences. `update` is conditional on the version (404 gone, 409
    stale); `delete` answers 404 when absent and 409 `audience.in_use` while an export
    job counts on it."""

    def create(self, audience: Audience) -> None: ...

    def get(self, account_id: str, audience_id: str, *, consistent: bool = False) -> Audience | None: ...

    def page(self, account_id: str, *, limit: int, cursor: str | None) -> Page: ...

    def all(self, account_id: str) -> list[Audience]: ...

    def update(self, account_id: str, audience_id: str, changes: dict[str, Any], *,
               expected_version: int) -> Audience: ...

    def delete(self, account_id: str, audience_id: str) -> Audience: ...

    def get_many(self, account_id: str, audience_ids: Iterable[str]) -> dict[str, Audience]: ...

    def cached_sizes(self, account_id: str, keys: Iterable[str], *, now: float) -> dict[str, Estimate]: ...

    def cache_sizes(self, account_id: str, sizes: Mapping[str, Estimate], *, expires_at: int) -> None: ...


class AuditLog(Protocol):
    """The account's audit trail: an event is added to the unit of work of the change it
    records, or put on its own after the change committed. Pages are newest first."""

    def add(self, tx: UnitOfWork, event: AuditEvent) -> None: ...

    def put(self, event: AuditEvent) -> None: ...

    def page(self, account_id: str, *, limit: int, cursor: str | None, object_id: str | None = None,
             user_id: str | None = None, since: str | None = None, until: str | None = None) -> Page: ...


class AlertRules(Protocol):
    """Metric threshold rules per job. `create` refuses with `JobGone` or `RuleLimit` and
    `delete` answers False when the rule was gone, both committing the caller's unit of
    work with them; `move_state` is conditional on the state read (False: another
    evaluator or a delete got there first)."""

    def create(self, rule: AlertRule, *, tx: UnitOfWork) -> AlertRule: ...

    def list_for_job(self, account_id: str, job_id: str) -> list[AlertRule]: ...

    def get(self, account_id: str, job_id: str, rule_id: str) -> AlertRule | None: ...

    def delete(self, rule: AlertRule, *, tx: UnitOfWork) -> bool: ...

    def add_deletes_for_job(self, tx: UnitOfWork, account_id: str, job_id: str) -> None: ...

    def sweep_page(self, shard: int, start: dict[str, Any] | None, *, limit: int = 100
                   ) -> tuple[list[AlertRule], dict[str, Any] | None]: ...

    def move_state(self, rule: AlertRule, to: str, at: str, *, alert: dict[str, Any] | None = None) -> bool: ...

    def clear_alert(self, rule: AlertRule, transition_id: str) -> None: ...


class Accounts(Protocol):
    """Accounts, their users and API tokens (hashes only)."""

    def create_account(self, account: Account, admin: User, token: Token) -> None: ...

    def get_account(self, account_id: str) -> Account | None: ...

    def all_account_ids(self) -> Iterator[str]: ...

    def add_to_index(self, account_id: str) -> bool: ...

    def aws_external_id(self, account_id: str) -> str: ...

    def create_user(self, user: User) -> None: ...

    def update_user(self, user: User) -> None: ...

    def get_access(self, user_id: str) -> UserAccess | None: ...

    def get_user(self, account_id: str, user_id: str) -> User | None: ...
    def users_by_id(self, account_id: str, user_ids: Iterable[str]) -> dict[str, User]: ...

    def list_users(self, account_id: str, limit: int, cursor: str | None) -> Page: ...

    def put_token_of_active_user(self, token: Token) -> bool: ...

    def tokens_of_user(self, account_id: str, user_id: str) -> list[Token]: ...

    def put_token(self, token: Token) -> None: ...

    def get_token(self, token_id: str) -> Token | None: ...

    def list_tokens(self, account_id: str, limit: int, cursor: str | None) -> Page: ...

    def delete_token(self, account_id: str, token_id: str) -> None: ...


class Authorizations(Protocol):
    """An account's authorizations. `update` is conditional on the item existing and, when
    given, on its version; `delete_if_unused` refuses while a job counts on the authorization;
    `record_health` moves the health state and says whether an alert is due."""

    def put_new(self, auth: Authorization) -> None: ...

    def add_new(self, tx: UnitOfWork, auth: Authorization) -> None: ...

    def mark_used(self, account_id: str, auth_id: str, at: str) -> None: ...

    def get(self, account_id: str, auth_id: str, *, consistent: bool = False) -> Authorization | None: ...

    def page(self, account_id: str, *, limit: int, cursor: str | None, provider: str | None = None,
             health: str | None = None) -> Page: ...

    def update(self, account_id: str, auth_id: str, changes: dict[str, Any], *,
               expected_version: int | None) -> Authorization: ...

    def get_many(self, account_id: str, auth_ids: Iterable[str], *,
                 consistent: bool = False) -> dict[str, Authorization]: ...

    def get_pairs(self, pairs: Iterable[tuple[str, str]], *,
                  consistent: bool = False) -> dict[str, Authorization]: ...

    def sweep_page(self, shard: int, start: dict[str, Any] | None, *, limit: int = 100,
                   ) -> tuple[list[tuple[str, str]], dict[str, Any] | None]: ...

    def record_health(self, auth: Authorization, status: HealthStatus, reason: str | None, *,
                      at: str, by: str, provider_account: str | None = None,
                      alert_when: Callable[[HealthStatus, HealthStatus], bool] = ...,
                      ) -> HealthRecorded: ...

    def clear_health_alert(self, account_id: str, auth_id: str, transition_id: str) -> None: ...

    def health_history(self, account_id: str, auth_id: str, *, limit: int, cursor: str | None) -> Page: ...

    def delete_if_unused(self, account_id: str, auth_id: str) -> Authorization: ...


class Jobs(Protocol):
    """An account's jobs. `create` and `save` commit the caller's unit of work with the job's
    own writes (the authorization's usage count moves with them); `save` is conditional on
    the version and, when given, the status."""

    def get(self, account_id: str, job_id: str, *, consistent: bool = False) -> Job | None: ...

    def page(self, account_id: str, *, limit: int, cursor: str | None, status: str | None = None,
             provider: str | None = None, job_type: str | None = None,
             authorization_id: str | None = None) -> Page: ...

    def jobs_of_authorization(self, account_id: str, auth_id: str, limit: int = 200) -> list[Job]: ...

    def due_for_purge(self, shard: int, now_iso_: str, *, limit: int = 100) -> list[tuple[str, str]]: ...

    def create(self, job: Job, *, new_auth: Authorization | None = None, auth_provider: str,
               tx: UnitOfWork | None = None) -> None: ...

    def save(self, before: Job, after: Job, *, expected_version: int | None,
             expected_status: JobStatus | None = None, tx: UnitOfWork | None = None) -> Job: ...

    def clear_alert(self, account_id: str, job_id: str, transition_id: str) -> None: ...

    def delete(self, job: Job, *, tx: UnitOfWork | None = None) -> None: ...


class Profiles(Protocol):
    """An account's profiles and the identifiers that find them. `upsert_batch` merges a batch
    under the account's lease (`lease_ahead` takes it before the batch needs it)."""

    def lookup(self, account_id: str, identifiers: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]: ...

    def get(self, account_id: str, profile_id: str, *, consistent: bool = False) -> Profile | None: ...

    def get_many(self, account_id: str, profile_ids: Sequence[str], *,
                 step_tag: str | None = None) -> tuple[dict[str, Profile], set[str]]: ...

    def find(self, account_id: str, kind: str, value: str) -> Profile | None: ...

    def iterate(self, account_id: str, page_size: int = 100) -> Iterator[Profile]: ...

    def shard_page(self, account_id: str, shard: int, start: dict[str, Any] | None,
                   limit: int) -> tuple[list[Profile], dict[str, Any] | None]: ...

    def page(self, account_id: str, *, limit: int, cursor: str | None) -> Page: ...

    def lease_ahead(self, account_id: str, owner: str) -> Ticket: ...

    def release(self, account_id: str, owner: str) -> None: ...

    def upsert_batch(self, account_id: str, records: Iterable[ProfileRecord], *, step_tag: str,
                     rules: Mapping[str, str] | None = None, default: str = "latest",
                     ticket: Ticket | None = None,
                     watermark: tuple[str, int] | None = None) -> list[str]: ...


class Runs(Protocol):
    """Runs of jobs, their logs and the activity series. A step's writes (`add_*`) go into
    the caller's unit of work; `acquire` and `mark_enqueued` are conditional on the lease
    and the step."""

    def add_new_run(self, tx: UnitOfWork, run: Run, lease_seconds: int | None = None) -> None: ...

    def open_window(self, account_id: str, job_id: str, at: datetime, started_at: str) -> str: ...

    def add_window_counts(self, tx: UnitOfWork, account_id: str, job_id: str, run_id: str, *, processed: int,
                          added: int, duplicates: int, omitted: dict[str, int]) -> None: ...

    def get(self, account_id: str, job_id: str, run_id: str) -> Run | None: ...

    def page(self, account_id: str, job_id: str, *, limit: int, cursor: str | None) -> Page: ...

    def acquire(self, run: Run, owner: str, lease_seconds: int) -> bool: ...

    def add_commit(self, tx: UnitOfWork, run: Run, owner: str, c: StepCommit, now: str) -> None: ...

    def add_status(self, tx: UnitOfWork, run: Run, status: RunStatus, *, error: str | None, now: str,
                   expect_step: int | None = None, origin: str | None = None) -> None: ...

    def mark_enqueued(self, run: Run, step: int) -> bool: ...

    def add_logs(self, tx: UnitOfWork, account_id: str, job_id: str, lines: list[LogLine],
                 at: datetime) -> None: ...

    def logs(self, account_id: str, job_id: str, *, limit: int, cursor: str | None,
             level: str | None) -> Page: ...

    def write_logs(self, account_id: str, job_id: str, lines: list[LogLine]) -> None: ...

    def add_activity(self, tx: UnitOfWork, account_id: str, job_id: str, at: datetime, added: int,
                     removed: int, omitted: int) -> None: ...

    def activity(self, account_id: str, job_id: str, granularity: str,
                 now: datetime | None = None) -> list[dict[str, Any]]: ...

    def add_requests(self, tx: UnitOfWork, account_id: str, auth_id: str, at: datetime, requests: int,
                     errors: int) -> None: ...

    def record_requests(self, account_id: str, auth_id: str, at: datetime, requests: int,
                        errors: int) -> None: ...

    def request_activity(self, account_id: str, auth_id: str, granularity: str,
                         now: datetime | None = None) -> list[dict[str, Any]]: ...


class AudienceMembers(Protocol):
    """Audiences' current members and their change logs (a head number per audience)."""

    def state(self, account_id: str, audience_id: str, profile_id: str) -> MemberState | None: ...

    def states(self, account_id: str, audience_id: str, profile_ids: list[str]) -> dict[str, MemberState]: ...

    def head(self, account_id: str, audience_id: str) -> int: ...

    def heads(self, audiences: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]: ...

    def changes(self, account_id: str, audience_id: str, *, after: int, upto: int,
                limit: int = 1000) -> list[Change]: ...

    def all_changes(self, account_id: str, audience_id: str, *, after: int, upto: int,
                    on_page: Callable[[], None] | None = None) -> list[Change]: ...

    def members(self, account_id: str, audience_id: str, page_size: int = 1000) -> Iterator[str]: ...

    def record(self, account_id: str, verdict: Verdict, change: str, *, was: MemberState | None,
               head: int, position: str, profile_version: int) -> int: ...

    def backfill(self, account_id: str, audience_id: str) -> BackfillState | None: ...

    def start_backfill(self, account_id: str, audience_id: str, audience_version: int) -> bool: ...

    def advance_backfill(self, account_id: str, audience_id: str, at: BackfillState,
                         shard: int, start: dict[str, Any] | None, done: bool) -> bool: ...


class Subscriptions(Protocol):
    """Real-time export jobs' subscriptions to audiences: a cursor in the audience's change
    log, advanced under a claim one sender holds at a time."""

    def add_subscribe(self, tx: UnitOfWork, account_id: str, audience_id: str, job_id: str) -> None: ...

    def add_unsubscribe(self, tx: UnitOfWork, account_id: str, audience_id: str, job_id: str) -> None: ...

    def jobs_of(self, account_id: str, audience_id: str) -> list[Subscription]: ...

    def sweep_page(self, shard: int, start: dict[str, Any] | None, *, limit: int = 100,
                   ) -> tuple[list[Subscription], dict[str, Any] | None]: ...

    def get(self, account_id: str, audience_id: str, job_id: str) -> Subscription | None: ...

    def claim(self, sub: Subscription, owner: str, now: float, seconds: float) -> bool: ...

    def advance(self, sub: Subscription, owner: str, frm: int, to: int, at: str) -> bool: ...

    def resync_progress(self, sub: Subscription, owner: str, resync_id: str, accepted: int, *,
                        done: bool) -> bool: ...

    def release(self, sub: Subscription, owner: str) -> bool: ...

    def drop(self, account_id: str, audience_id: str, job_id: str) -> None: ...


class Memberships(Protocol):
    """Export jobs' confirmed membership sets and run plans (the rows a run sends, written
    before its first send), kept under ids. `sweep` gives a TTL to every set of the job but
    `keep` (superseded, or never committed), `expire_set` to one set; they stay readable
    until it passes."""

    def write_set(self, account_id: str, job_id: str, generation: int, set_id: str,
                  ids: Iterable[str]) -> SetRef: ...

    def read_set(self, account_id: str, job_id: str, ref: SetRef) -> set[str]: ...

    def sweep(self, account_id: str, job_id: str, keep: SetRef | None) -> int: ...

    def expire_set(self, account_id: str, job_id: str, ref: SetRef) -> int: ...

    def write_plan(self, account_id: str, run_id: str, set_id: str, rows: Sequence[PlanRow]) -> PlanRef: ...

    def read_plan(self, account_id: str, run_id: str, ref: PlanRef, start: int, limit: int) -> list[PlanRow]: ...

    def delete_plan(self, account_id: str, run_id: str, ref: PlanRef) -> None: ...


class OAuthStates(Protocol):
    """OAuth flows in progress; `take` answers a state once."""

    def put(self, state: str, flow: FlowState) -> None: ...

    def take(self, state: str, nonce: str) -> FlowState: ...


class AlertSettingsStore(Protocol):
    """An account's alert settings (webhooks, e-mail), conditional on their version."""

    def get(self, account_id: str) -> AlertSettings: ...

    def save(self, s: AlertSettings, *, expected_version: int) -> AlertSettings: ...


class AlertClaims(Protocol):
    """One delivery per transition: a claim before sending, marked sent after."""

    def claim(self, account_id: str, detail_type: str, transition_id: str, *, now: float) -> bool: ...

    def sent(self, account_id: str, detail_type: str, transition_id: str, *, now: float) -> None: ...


class WriteKeys(Protocol):
    """The collect endpoint's write keys (hashes) and the job each is bound to."""

    def add_new(self, tx: UnitOfWork, key: WriteKey, created_at: str) -> None: ...

    def get(self, key_id: str) -> WriteKey | None: ...

    def put(self, key: WriteKey, created_at: str) -> None: ...

    def expire(self, key_id: str, not_after: float) -> None: ...

    def add_bind(self, tx: UnitOfWork, key_id: str, account_id: str, job_id: str, *,
                 replacing: str | None) -> None: ...


class CollectClaims(Protocol):
    """Collected messages' id claims, their hand-offs and each job's totals."""

    def claims(self, account_id: str, job_id: str, message_ids: Sequence[str], now: float) -> dict[str, str]: ...

    def put_claims(self, account_id: str, job_id: str, message_ids: Sequence[str], handoff: str,
                   now: float) -> None: ...

    def sequence(self, account_id: str, job_id: str, handoff: str, now: float) -> int | None: ...

    def add_applied(self, tx: UnitOfWork, account_id: str, job_id: str, handoff: str) -> None: ...

    def add_totals(self, tx: UnitOfWork, account_id: str, job_id: str, *, accepted: int, duplicates: int,
                   rejected: int, received_at: str) -> None: ...

    def totals(self, account_id: str, job_id: str) -> dict[str, Any]: ...


class RateBuckets(Protocol):
    """Rates shared by every process: slots a provider's requests reserve (what
    `providers.calls.SharedRates` asks for) and token buckets (the collect endpoint's per-job
    rate)."""

    def reserve(self, key: str, interval: float, now: float, latest: float) -> tuple[bool, float]: ...

    def take(self, key: str, rate: float, burst_seconds: float, cost: int, now: float) -> tuple[bool, float]: ...


class Secrets(Protocol):
    """Credentials, only ever in Secrets Manager. `read_known` raises `SecretMissing` or
    `SecretUnreadable` (store.secrets) instead of AWS's errors."""

    def name_for(self, account_id: str, auth_id: str) -> str: ...

    def create(self, name: str, value: dict[str, Any], *, tags: dict[str, str]) -> None: ...

    def read(self, name: str) -> dict[str, Any]: ...

    def read_known(self, name: str) -> dict[str, Any]: ...

    def put_version(self, name: str, value: dict[str, Any]) -> str: ...

    def schedule_deletion(self, name: str) -> None: ...

    def delete_now(self, name: str) -> None: ...


class RunMessages(Protocol):
    """The runs queue: a message names a job and a trigger, never credentials or config."""

    def send(self, message: dict[str, Any], *, delay_seconds: int = 0) -> None: ...


class HealthMessages(Protocol):
    """The daily health sweep's fan-out; answers how many messages went."""

    def send_batch(self, messages: list[dict[str, Any]]) -> int: ...


class BackfillMessages(Protocol):
    """Audience backfills, one message per page."""

    def send(self, message: dict[str, Any]) -> None: ...


class RealtimeMessages(Protocol):
    """Nudges of real-time export jobs (ids only)."""

    def send(self, message: dict[str, Any], *, delay_seconds: int = 0) -> None: ...

    def send_batch(self, messages: list[dict[str, Any]]) -> None: ...


class CollectMessages(Protocol):
    """The hand-off from the collect endpoint to the engine, in order per job."""

    def send(self, job_id: str, entries: list[dict[str, Any]], dedup_prefix: str) -> None: ...


class Schedules(Protocol):
    """A job's schedule, kept in line with the job: `sync` is idempotent and raises
    `domain.schedules.ScheduleError` for a schedule it cannot express; `remove` answers False
    when there was none."""

    def sync(self, account_id: str, job_id: str, schedule: Mapping[str, Any] | None, active: bool, *,
             now: datetime | None = None) -> SyncOutcome: ...

    def remove(self, account_id: str, job_id: str) -> bool: ...


class Events(Protocol):
    """Alert events on the stage's bus."""

    def publish(self, account_id: str, detail_type: str, detail: dict[str, Any]) -> None: ...


class AlertEmails(Protocol):
    """E-mail alerts: one topic per stage, each subscription filtered to one account."""

    def subscribe(self, account_id: str, email: str) -> str: ...

    def unsubscribe(self, subscription_arn: str) -> None: ...

    def publish(self, account_id: str, subject: str, message: str) -> None: ...


class UsagePlanKeys(Protocol):
    """API Gateway usage-plan keys for the collect endpoint's write keys."""

    def ensure(self, value: str) -> str: ...


__all__ = ["Accounts", "AlertClaims", "AlertEmails", "AlertRules", "AlertSettingsStore", "AudienceMembers",
           "Audiences", "AuditLog", "Authorizations", "BackfillMessages", "CollectClaims", "CollectMessages",
           "Events", "HealthMessages", "Jobs", "Memberships", "OAuthStates", "Profiles", "RateBuckets",
           "RealtimeMessages", "RunMessages", "Runs", "Schedules", "Secrets", "Subscriptions",
           "UsagePlanKeys", "WriteKeys"]
