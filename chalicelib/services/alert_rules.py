"""Metric threshold rules per job (docs/alerts.md).

A rule bounds one of a job's activity metrics (added, removed, omitted) per hour, day or
week. The hourly evaluator reads each rule's series (RunRepo.activity), counts the
consecutive violating buckets ending at the last complete one, and fires `Metric
Threshold Breached` once when they exceed the allowable count; the rule stays `breached`
(no new alert) until a complete bucket is back in range, which re-arms it.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from chalicelib.domain.access import Capability, Principal
from chalicelib.domain.alert_rules import AlertRule
from chalicelib.domain.audit import AuditEvent
from chalicelib.domain.errors import Conflict, Invalid, not_found
from chalicelib.domain.ids import new_transition_id
from chalicelib.services import alerts, jobs
from chalicelib.store.alert_rules import (
    MAX_RULES_PER_JOB,
    RULE_SHARDS,
    JobGone,
    RuleLimit,
)

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.services.needs import AlertRulesNeeds
    from chalicelib.store.protocols import AlertRules
    from chalicelib.store.unit_of_work import UnitOfWork

log = logging.getLogger("switchyard.alert_rules")

METRICS = ("added", "removed", "omitted")
SPAN = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}
# A series holds 48 hours, 30 days or 12 weeks; a streak longer than that cannot be seen.
MAX_ALLOWABLE = {"hour": 46, "day": 28, "week": 10}


def _audited(d: AlertRulesNeeds, p: Principal, action: str, rule: AlertRule) -> UnitOfWork:
    """A transaction holding the audit event of a user's change to a rule, for the change."""
    fields = {"job_id": rule.job_id, "metric": rule.metric, "granularity": rule.granularity,
              "min": rule.min, "max": rule.max, "allowable_violations": rule.allowable_violations}
    changes = {k: ({"before": None, "after": v} if action == "created" else {"before": v, "after": None})
               for k, v in fields.items() if v is not None}
    tx = d.transaction()
    d.audit.add(tx, AuditEvent(p.account_id, p.user_id, action, "alert_rule", rule.id, rule.describe(), changes))
    return tx


def create(d: AlertRulesNeeds, p: Principal, job_id: str, *, metric: str, granularity: str, min_: int | None,
           max_: int | None, allowable_violations: int, now: datetime | None = None) -> AlertRule:
    p.require(Capability.MANAGE_INTEGRATIONS)
    jobs.get(d, p, job_id)
    if min_ is None and max_ is None:
        raise Invalid("a rule needs min, max or both", fields={"min": "min or max is required"})
    if min_ is not None and max_ is not None and min_ > max_:
        raise Invalid("min is greater than max", fields={"min": "must not exceed max"})
    if allowable_violations > MAX_ALLOWABLE[granularity]:
        raise Invalid(f"at most {MAX_ALLOWABLE[granularity]} allowable violations per {granularity}",
                      fields={"allowable_violations": f"at most {MAX_ALLOWABLE[granularity]}"})
    rule = AlertRule(p.account_id, job_id, metric, granularity, min_, max_, allowable_violations,
                     id=uuid.uuid4().hex[:12], created_by=p.user_id,
                     created_at=(now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    try:
        return d.alert_rules.create(rule, tx=_audited(d, p, "created", rule))
    except JobGone:
        raise not_found("job", job_id) from None
    except RuleLimit:
        raise Conflict(f"a job has at most {MAX_RULES_PER_JOB} alert rules",
                       code="alert_rule.limit") from None


def list_(d: AlertRulesNeeds, p: Principal, job_id: str) -> list[AlertRule]:
    jobs.get(d, p, job_id)
    return d.alert_rules.list_for_job(p.account_id, job_id)


def delete(d: AlertRulesNeeds, p: Principal, job_id: str, rule_id: str) -> None:
    p.require(Capability.MANAGE_INTEGRATIONS)
    rule = d.alert_rules.get(p.account_id, job_id, rule_id)
    if rule is None or not d.alert_rules.delete(rule, tx=_audited(d, p, "deleted", rule)):
        raise not_found("alert_rule", rule_id)


# -- evaluation ------------------------------------------------------------------------------


def _parse(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def watched(rule: AlertRule, series: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The complete buckets the rule watched end to end (a bucket that began before the
    rule existed is not held against it), oldest first."""
    span, since = SPAN[rule.granularity], _parse(rule.created_at)
    return [p for p in series if _parse(p["start"]) >= since and _parse(p["start"]) + span <= now]


def violations(rule: AlertRule, buckets: list[dict[str, Any]]) -> int:
    """Consecutive violating buckets ending at the last one."""
    streak = 0
    for point in reversed(buckets):
        value = int(point[rule.metric])
        if (rule.min is not None and value < rule.min) or (rule.max is not None and value > rule.max):
            streak += 1
        else:
            break
    return streak


@dataclass
class Evaluation:
    rules: int = 0
    fired: int = 0
    rearmed: int = 0
    queries: int = 0


def evaluate(d: AlertRulesNeeds, now: datetime | None = None) -> Evaluation:
    """Evaluate every rule once (the hourly schedule). Rules are found through the sparse
    sweep index, a Query per 100 and one BatchGetItem each; each job's series is read once
    per granularity."""
    now = now or datetime.now(UTC)
    repo = d.alert_rules
    out = Evaluation()
    series: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for shard in range(RULE_SHARDS):
        start: dict[str, Any] | None = None
        while True:
            rules, start = repo.sweep_page(shard, start)
            out.queries += 1
            for rule in rules:
                out.rules += 1
                key = (rule.account_id, rule.job_id, rule.granularity)
                if key not in series:
                    series[key] = d.runs.activity(rule.account_id, rule.job_id, rule.granularity, now=now)
                    out.queries += 1
                _evaluate_one(d, repo, rule, series[key], now, out)
            if not start:
                break
    log.info("alert rules evaluated", extra={"rules": out.rules, "fired": out.fired, "rearmed": out.rearmed})
    return out


def _evaluate_one(d: AlertRulesNeeds, repo: AlertRules, rule: AlertRule, series: list[dict[str, Any]],
                  now: datetime, out: Evaluation) -> None:
    if rule.pending_alert:
        # An earlier evaluator moved the rule to `breached` and died (or EventBridge
        # refused) before its alert left: the rule was read anyway, so this costs nothing.
        _send(d, rule)
    buckets = watched(rule, series, now)
    if not buckets:
        return
    streak = violations(rule, buckets)
    at = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    if rule.alert_state == "ok" and streak > rule.allowable_violations:
        if repo.move_state(rule, "breached", at, alert=_breach(d, rule, buckets[-1]["start"], streak)):
            out.fired += 1
            _send(d, rule)
    elif rule.alert_state == "breached" and streak == 0 and repo.move_state(rule, "ok", at):
        out.rearmed += 1


def _breach(d: AlertRulesNeeds, rule: AlertRule, last_bucket: str, streak: int) -> dict[str, Any]:
    """The breach alert, recorded with the move to `breached` (at least once, docs/alerts.md)."""
    job = d.jobs.get(rule.account_id, rule.job_id)
    return {"transition_id": new_transition_id(), "type": alerts.METRIC_BREACHED,
            "detail_json": json.dumps({
                "job_id": rule.job_id, "label": job.label if job else rule.job_id, "rule_id": rule.id,
                "metric": rule.metric, "granularity": rule.granularity, "min": rule.min, "max": rule.max,
                "allowable_violations": rule.allowable_violations, "violations": streak,
                "reason": f"{streak} {rule.granularity}(s) in a row outside {rule.describe()}",
                "last_bucket": last_bucket}, sort_keys=True)}


def _send(d: AlertRulesNeeds, rule: AlertRule) -> None:
    """Put the rule's pending alert on the bus, then clear it; if EventBridge refused, the
    next hourly evaluation sends it (the same `transition_id`: the alerts worker delivers one)."""
    pending = rule.pending_alert
    if not pending:
        return
    tid = str(pending["transition_id"])
    if alerts.emit(d, rule.account_id, alerts.METRIC_BREACHED, {**json.loads(pending["detail_json"]),
                                                            "transition_id": tid}):
        d.alert_rules.clear_alert(rule, tid)


__all__ = ["METRICS", "Evaluation", "create", "delete", "evaluate", "list_", "violations", "watched"]
