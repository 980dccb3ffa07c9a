"""Fresh tables per test and seeding helpers for the event-destination engine tests
(test_kinesis.py, test_sqs_export.py). test_s3_export.py explains why: moto answers a
Query or a transaction in time proportional to the whole table, and keeps a copy of the
table per transaction item for its dashboard unless told to forget them.

A test module declares its fixtures from the generators here:

    @pytest.fixture()
    def deps(aws_endpoint): yield from fresh_deps()

    @pytest.fixture(autouse=True)
    def _moto_copies(): yield from forget_moto_copies()
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from typing import Any

from chalicelib.domain.profiles import ProfileRecord

_tags = itertools.count()


def forget_moto_models() -> None:
    from moto.core.model_instances import reset_model_data

    reset_model_data()


def forget_moto_copies() -> Iterator[None]:
    forget_moto_models()
    yield
    forget_moto_models()


def _clone(table: Any) -> str:
    ddb = table.client
    desc = ddb.describe_table(TableName=table.name)["Table"]
    name = f"{table.name}-{secrets.token_hex(4)}"
    extra: dict[str, Any] = {}
    if desc.get("GlobalSecondaryIndexes"):
        extra["GlobalSecondaryIndexes"] = [{k: g[k] for k in ("IndexName", "KeySchema", "Projection")}
                                           for g in desc["GlobalSecondaryIndexes"]]
    ddb.create_table(TableName=name, KeySchema=desc["KeySchema"], BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=desc["AttributeDefinitions"], **extra)
    return name


def fresh_deps() -> Iterator[Any]:
    """Like tests/conftest.py's `deps`, on fresh tables with the main and profile tables' keys
    (needs the session's moto server: take `aws_endpoint` in the fixture)."""
    from chalicelib.bootstrap import Deps, use
    from chalicelib.services.accounts import token_cache
    from chalicelib.store.dynamo import Table

    base = Deps()
    d = Deps(table=Table(_clone(base.table)), profiles_table=Table(_clone(base.profiles_table)))
    token_cache.clear()
    use(d)
    yield d
    use(None)
    for t in (d.table, d.profiles_table):
        t.client.delete_table(TableName=t.name)


def person(i: int, plan: str = "pro", **extra: Any) -> dict[str, Any]:
    return {"email": f"p{i}@example.com", "first_name": f"P{i}", "plan": plan, **extra}


def seed(deps: Any, account_id: str, people: list[dict[str, Any]]) -> None:
    """Upsert profiles the way an import step does (email identifies, the rest are fields)."""
    for start in range(0, len(people), 1000):
        records = [ProfileRecord(identifiers={"email": p["email"]},
                                 fields={k: v for k, v in p.items() if k != "email"}, ref="seed")
                   for p in people[start:start + 1000]]
        deps.profiles.upsert_batch(account_id, records, step_tag=f"seed#{next(_tags)}")


def profile_ids(deps: Any, account_id: str) -> dict[str, str]:
    """email -> profile id, read from the store."""
    return {e: p.id for p in deps.profiles.iterate(account_id, page_size=1000)
            for e in p.identifiers.get("email", ())}


def audience(api: Any, plan: str = "pro") -> str:
    r = api.post("/audiences", {"name": f"{plan} customers",
                                "filter": {"all": [{"field": "plan", "op": "equals", "value": plan}]}})
    assert r.status_code == 201, r.body
    return str(r.json["data"]["id"])


def app_items(deps: Any) -> list[str]:
    """Every item of the app's tables as text, binary attributes (zlib chunks of
    memberships and plans) inflated (a test may scan; the app never does)."""
    import json
    import zlib

    def text(value: Any) -> str:
        if isinstance(value, bytes):
            try:
                return zlib.decompress(value).decode("utf-8", "replace")
            except zlib.error:
                return value.decode("utf-8", "replace")
        return repr(value)

    items: list[str] = []
    for table in (deps.table, deps.profiles_table):
        for page in table.client.get_paginator("scan").paginate(TableName=table.name):
            items += [json.dumps(item, default=text) for item in page["Items"]]
    return items


class Recorder:
    """Wraps a test's Api: every response body is kept (the canary looks for secrets in them)."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.bodies: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.api, name)

        def call(*args: Any, **kw: Any) -> Any:
            resp = method(*args, **kw)
            self.bodies.append(resp.body.decode() if isinstance(resp.body, bytes) else str(resp.body))
            return resp

        return call


def record_messages(drain: Any) -> list[str]:
    """Bodies of every runs-queue message the drain delivers to the engine."""
    import json

    seen: list[str] = []
    handle = drain.engine.handle

    def recording(delivery: Any) -> None:
        seen.append(json.dumps(delivery.body))
        handle(delivery)

    drain.engine.handle = recording
    return seen
