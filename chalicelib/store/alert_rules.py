"""Metric threshold rules per job (docs/alerts.md): the rule items, their sweep index
entries and the conditional state changes that make a breach fire once.

Rule:    PK=ACCT#<a>  SK=RULE#<job>#<rule>   GSI2PK=RULES#<crc32(rule) % 16>  GSI2SK=<a>#<job>#<rule>
Counter: PK=ACCT#<a>  SK=RULE#<job>#         n = the job's rules (capped by a condition); one
         Query of the prefix reads the rules and their count together

`alert_state` is `ok` or `breached`; the evaluator moves it with an update conditional on
the state it read, so two evaluators cannot both fire (or re-arm) the same breach.
"""

from __future__ import annotations

import uuid
from typing import Any

from chalicelib.domain.alert_rules import AlertRule
from chalicelib.store import keys as K
from chalicelib.store.dynamo import (
    Table,
    TransactionFailed,
    now_iso,
    ser,
)
from chalicelib.store.unit_of_work import UnitOfWork

RULE_SHARDS = 16
MAX_RULES_PER_JOB = 10  # keeps a job's delete (rules + counter + job) one transaction


def rule_sk(job_id: str, rule_id: str) -> str:
    return f"RULE#{job_id}#{rule_id}"


def count_sk(job_id: str) -> str:
    return f"RULE#{job_id}#"


def _item(r: AlertRule) -> dict[str, Any]:
    return {
        "PK": K.account_pk(r.account_id),
        "SK": rule_sk(r.job_id, r.id),
        "type": "alert_rule",
        "id": r.id,
        "account_id": r.account_id,
        "job_id": r.job_id,
        "metric": r.metric,
        "granularity": r.granularity,
        "min": r.min,
        "max": r.max,
        "allowable_violations": r.allowable_violations,
        "created_at": r.created_at,
        "created_by": r.created_by,
        "alert_state": r.alert_state,
        "state_changed_at": r.state_changed_at,
        "pending_alert": r.pending_alert,
        "GSI2PK": K.sweep_shard("RULES", r.id, RULE_SHARDS),
        "GSI2SK": f"{r.account_id}#{r.job_id}#{r.id}",
    }


def _rule(row: dict[str, Any]) -> AlertRule:
    return AlertRule(
        account_id=row["account_id"], job_id=row["job_id"], metric=row["metric"],
        granularity=row["granularity"], min=row.get("min"), max=row.get("max"),
        allowable_violations=int(row.get("allowable_violations", 0)), id=row["id"],
        created_at=row["created_at"], created_by=row.get("created_by", ""),
        alert_state=row.get("alert_state", "ok"), state_changed_at=row.get("state_changed_at"),
        pending_alert=row.get("pending_alert") or None)


class RuleLimit(Exception):
    """The job already has MAX_RULES_PER_JOB rules."""


class JobGone(Exception):
    """The job was deleted (or never existed) when the rule was written."""


def commit_new_rule(tx: UnitOfWork, job_id: str) -> None:
    """Commit a rule's creation (writes named "job", "rule_count" and "rule"), turning a
    refusal into what it means: the job is gone, or it has its most rules."""
    try:
        tx.commit()
    except TransactionFailed as exc:
        if "job" in exc.refused:
            raise JobGone(job_id) from None
        if "rule_count" in exc.refused:
            raise RuleLimit(job_id) from None
        raise


def commit_rule_delete(tx: UnitOfWork) -> bool:
    """Commit a rule's delete (its write named "rule"); False if the rule was gone."""
    try:
        tx.commit()
    except TransactionFailed as exc:
        if "rule" in exc.refused:
            return False
        raise
    return True


class AlertRuleRepo:
    def __init__(self, table: Table) -> None:
        self.t = table

    def _key(self, account_id: str, sk: str) -> dict[str, Any]:
        return {"PK": {"S": K.account_pk(account_id)}, "SK": {"S": sk}}

    def create(self, rule: AlertRule, *, tx: UnitOfWork) -> AlertRule:
        """One transaction: the job still exists, the job's count stays under the cap, the
        rule, and what the caller added to `tx` (its audit event)."""
        rule.id = rule.id or uuid.uuid4().hex[:12]
        rule.created_at = rule.created_at or now_iso()
        tx.add("job", {"ConditionCheck": {
            "TableName": self.t.name, "Key": self._key(rule.account_id, K.job_sk(rule.job_id)),
            "ConditionExpression": "attribute_exists(PK)"}})
        tx.add("rule_count", {"Update": {
            "TableName": self.t.name, "Key": self._key(rule.account_id, count_sk(rule.job_id)),
            "UpdateExpression": "ADD n :one",
            "ConditionExpression": "attribute_not_exists(n) OR n < :max",
            "ExpressionAttributeValues": {":one": {"N": "1"}, ":max": {"N": str(MAX_RULES_PER_JOB)}}}})
        tx.put("rule", _item(rule), condition="attribute_not_exists(PK)")
        commit_new_rule(tx, rule.job_id)
        return rule

    def _rows(self, account_id: str, job_id: str) -> tuple[list[AlertRule], int | None]:
        rows, _ = self.t.query(key_condition="PK = :pk AND begins_with(SK, :p)", names={},
                               values={":pk": K.account_pk(account_id), ":p": count_sk(job_id)},
                               limit=MAX_RULES_PER_JOB + 2, forward=True)
        counter = next((int(r.get("n", 0)) for r in rows if r["SK"] == count_sk(job_id)), None)
        return [_rule(r) for r in rows if r["SK"] != count_sk(job_id)], counter

    def list_for_job(self, account_id: str, job_id: str) -> list[AlertRule]:
        return self._rows(account_id, job_id)[0]

    def get(self, account_id: str, job_id: str, rule_id: str) -> AlertRule | None:
        row = self.t.get(K.account_pk(account_id), rule_sk(job_id, rule_id), consistent=True)
        return _rule(row) if row else None

    def delete(self, rule: AlertRule, *, tx: UnitOfWork) -> bool:
        """Delete one rule and move the job's count, with what the caller added to `tx` (its
        audit event); False if it was already gone."""
        tx.add("rule", {"Delete": {
            "TableName": self.t.name, "Key": self._key(rule.account_id, rule_sk(rule.job_id, rule.id)),
            "ConditionExpression": "attribute_exists(PK)"}})
        tx.add("rule_count", {"Update": {
            "TableName": self.t.name, "Key": self._key(rule.account_id, count_sk(rule.job_id)),
            "UpdateExpression": "ADD n :m", "ExpressionAttributeValues": {":m": {"N": "-1"}}}})
        return commit_rule_delete(tx)

    def add_deletes_for_job(self, tx: UnitOfWork, account_id: str, job_id: str) -> None:
        """Delete a job's rules with the job, in its transaction. The counter is deleted on
        the count read, so a rule created meanwhile fails the transaction (the caller's
        concurrent-change conflict) instead of outliving its job."""
        rules, count = self._rows(account_id, job_id)
        for r in rules:
            tx.add(f"rule:{r.id}", {"Delete": {"TableName": self.t.name,
                                               "Key": self._key(account_id, rule_sk(job_id, r.id))}})
        key = self._key(account_id, count_sk(job_id))
        if count is None:
            tx.add("rule_count", {"ConditionCheck": {"TableName": self.t.name, "Key": key,
                                                     "ConditionExpression": "attribute_not_exists(PK)"}})
        else:
            tx.add("rule_count", {"Delete": {"TableName": self.t.name, "Key": key, "ConditionExpression": "n = :n",
                                             "ExpressionAttributeValues": {":n": {"N": str(count)}}}})

    def sweep_page(self, shard: int, start: dict[str, Any] | None, *, limit: int = 100
                   ) -> tuple[list[AlertRule], dict[str, Any] | None]:
        """One Query of the sparse sweep index (keys only) and one BatchGetItem of the rules
        it names: never a Scan; the cost grows with the number of rules only."""
        items, last = self.t.sweep_page("RULES", shard, start, limit=limit)
        rows = self.t.batch_get([{"PK": i["PK"]["S"], "SK": i["SK"]["S"]} for i in items], consistent=True)
        rules = [_rule(row) for row in rows]
        return rules, last

    def move_state(self, rule: AlertRule, to: str, at: str, *, alert: dict[str, Any] | None = None) -> bool:
        """Move the rule's alert state from the one read to `to`; False if another
        evaluator (or a delete) got there first. `alert` is left pending on the rule in the
        same write (sent, then cleared, by `clear_alert`)."""
        values = {":to": {"S": to}, ":at": {"S": at}, ":from": {"S": rule.alert_state}}
        update = "SET alert_state = :to, state_changed_at = :at"
        if alert is not None:
            update += ", pending_alert = :alert"
            values[":alert"] = ser({"a": alert})["a"]
        if not self.t.write_if(
                "update_item", Key=self._key(rule.account_id, rule_sk(rule.job_id, rule.id)),
                UpdateExpression=update,
                ConditionExpression="attribute_exists(PK) AND alert_state = :from",
                ExpressionAttributeValues=values):
            return False
        rule.alert_state, rule.state_changed_at = to, at
        if alert is not None:
            rule.pending_alert = alert
        return True

    def clear_alert(self, rule: AlertRule, transition_id: str) -> None:
        """The rule's pending alert of this transition is out (a newer one is left alone)."""
        self.t.write_if(
            "update_item", Key=self._key(rule.account_id, rule_sk(rule.job_id, rule.id)),
            UpdateExpression="REMOVE pending_alert",
            ConditionExpression="pending_alert.transition_id = :t",
            ExpressionAttributeValues={":t": {"S": transition_id}})
        rule.pending_alert = None


__all__ = ["MAX_RULES_PER_JOB", "RULE_SHARDS", "AlertRuleRepo", "JobGone", "RuleLimit", "commit_new_rule",
           "commit_rule_delete"]
