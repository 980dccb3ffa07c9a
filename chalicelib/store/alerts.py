"""Alerts: the account's delivery settings, the EventBridge bus, the SNS topic (docs/alerts.md).

Settings item: PK=ACCT#<a>  SK=ALERTS   emails (with their SNS subscription ARNs), webhooks
by id and host, version. A webhook's URL (which may carry a token) and its signing secret
live in Secrets Manager (`<prefix>/<account>/alerts-<webhook id>`), never here. Items saved
before that rule hold the URLs themselves (read as legacy webhooks, signed with the
account's one secret `<prefix>/<account>/alerts`) until the next save moves them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from chalicelib.config import settings
from chalicelib.domain.errors import stale_version
from chalicelib.store import aws
from chalicelib.store import keys as K
from chalicelib.store.dynamo import ConditionFailed, Table, error_code, now_iso, ser

SOURCE = "switchyard"


@dataclass(frozen=True)
class Webhook:
    id: str
    host: str
    created_at: str | None = None
    legacy_url: str | None = None  # only for items saved before URLs moved to Secrets Manager


def host_of(url: str) -> str:
    return urlsplit(url).hostname or "?"  # never user:password@, path or query


def _webhook(value: Any) -> Webhook:
    if isinstance(value, str):  # a legacy URL: a stable id derived from it
        return Webhook(id="whk_legacy_" + hashlib.sha256(value.encode()).hexdigest()[:16], host=host_of(value),
                       legacy_url=value)
    return Webhook(id=value["id"], host=value["host"], created_at=value.get("created_at"))


@dataclass
class AlertSettings:
    account_id: str
    emails: dict[str, str] = field(default_factory=dict)  # address -> SNS subscription ARN
    webhooks: list[Webhook] = field(default_factory=list)
    updated_at: str | None = None
    version: int = 0  # 0: never saved


class AlertSettingsRepo:
    def __init__(self, table: Table) -> None:
        self.t = table

    def get(self, account_id: str) -> AlertSettings:
        row = self.t.get(K.account_pk(account_id), "ALERTS", consistent=True)
        if not row:
            return AlertSettings(account_id)
        return AlertSettings(account_id, json.loads(row.get("emails_json") or "{}"),
                             [_webhook(w) for w in json.loads(row.get("webhooks_json") or "[]")],
                             row.get("updated_at"),
                             int(row.get("version", 1)))

    def save(self, s: AlertSettings, *, expected_version: int) -> AlertSettings:
        """Conditional on the version read (0 = not saved yet): no lost update."""
        at = now_iso()
        item = {"PK": K.account_pk(s.account_id), "SK": "ALERTS", "type": "alert_settings",
                "emails_json": json.dumps(s.emails, sort_keys=True),
                "webhooks_json": json.dumps([{"id": w.id, "host": w.host, "created_at": w.created_at}
                                             for w in s.webhooks]), "updated_at": at,
                "version": expected_version + 1}
        cond: dict[str, Any] = ({"ConditionExpression": "attribute_not_exists(PK)"} if expected_version == 0 else
                                {"ConditionExpression": "version = :v",
                                 "ExpressionAttributeValues": {":v": {"N": str(expected_version)}}})
        try:
            self.t.write("put_item", Item=ser(item), **cond)
        except ConditionFailed:
            raise stale_version("alert settings", expected_version) from None
        return AlertSettings(s.account_id, s.emails, s.webhooks, at, expected_version + 1)


DELIVERY_LEASE_SECONDS = 150  # under the alerts queue's 180 s visibility timeout
DELIVERY_TTL_DAYS = 7  # repeats come within minutes (a redelivered step, the next check)


class AlertDeliveries:
    """One delivery per transition: the alerts worker claims `PK=ACCT#<a>#ALERTSENT,
    SK=<type>#<transition id>` before sending and marks it sent after. A repeat of the same
    transition finds the claim and is dropped; a claim whose worker died (still `sending`
    after its lease) may be taken over by the redelivered message, which sends it then."""

    def __init__(self, table: Table) -> None:
        self.t = table

    def _key(self, account_id: str, detail_type: str, transition_id: str) -> dict[str, Any]:
        return {"PK": f"{K.account_pk(account_id)}#ALERTSENT", "SK": f"{detail_type}#{transition_id}"}

    def claim(self, account_id: str, detail_type: str, transition_id: str, *, now: float) -> bool:
        item = {**self._key(account_id, detail_type, transition_id), "type": "alert_delivery",
                "delivery": "sending", "lease_until": int(now) + DELIVERY_LEASE_SECONDS,
                "expires_at": int(now) + DELIVERY_TTL_DAYS * 86400}
        return self.t.write_if(
            "put_item", Item=ser(item),
            ConditionExpression="attribute_not_exists(PK) OR (delivery = :sending AND lease_until < :now)",
            ExpressionAttributeValues={":sending": {"S": "sending"}, ":now": {"N": str(int(now))}})

    def sent(self, account_id: str, detail_type: str, transition_id: str, *, now: float) -> None:
        self.t.client.put_item(TableName=self.t.name, Item=ser({
            **self._key(account_id, detail_type, transition_id), "type": "alert_delivery",
            "delivery": "sent", "sent_at": now_iso(), "expires_at": int(now) + DELIVERY_TTL_DAYS * 86400}))


class EventBus:
    """Alert events on the stage's EventBridge bus (the alerts rule routes them to SQS)."""

    def publish(self, account_id: str, detail_type: str, detail: dict[str, Any]) -> None:
        resp = aws.client("events").put_events(Entries=[{
            "Source": SOURCE, "DetailType": detail_type, "EventBusName": settings().event_bus_name,
            "Detail": json.dumps({"account_id": account_id, **detail}, sort_keys=True, default=str),
        }])
        if resp.get("FailedEntryCount"):
            raise RuntimeError(f"EventBridge refused the event: {resp['Entries'][0].get('ErrorCode')}")


class AlertTopic:
    """E-mail delivery: one SNS topic per stage, each subscription filtered to one account."""

    # The stage's own AWS account, read once per process (GetCallerIdentity needs no permission).
    _account: str | None = None

    def _arn(self) -> str:
        if AlertTopic._account is None:
            AlertTopic._account = str(aws.client("sts").get_caller_identity()["Account"])
        return f"arn:aws:sns:{settings().region}:{AlertTopic._account}:{settings().alerts_topic_name}"

    def subscribe(self, account_id: str, email: str) -> str:
        resp = aws.client("sns").subscribe(
            TopicArn=self._arn(), Protocol="email", Endpoint=email, ReturnSubscriptionArn=True,
            Attributes={"FilterPolicy": json.dumps({"account_id": [account_id]})})
        return str(resp["SubscriptionArn"])

    def unsubscribe(self, subscription_arn: str) -> None:
        from botocore.exceptions import ClientError

        try:
            aws.client("sns").unsubscribe(SubscriptionArn=subscription_arn)
        except ClientError as exc:
            if error_code(exc) not in ("NotFound", "InvalidParameter"):
                raise

    def publish(self, account_id: str, subject: str, message: str) -> None:
        aws.client("sns").publish(
            TopicArn=self._arn(), Subject=subject[:100], Message=message,
            MessageAttributes={"account_id": {"DataType": "String", "StringValue": account_id}})


__all__ = ["AlertDeliveries", "AlertSettings", "AlertSettingsRepo", "AlertTopic", "EventBus"]
