"""Fresh, empty copies of the app's tables for one test.

moto's TransactWriteItems takes no lock and deep-copies every table it touches for each
item; on the session's shared table (it grows with every test) that copy outlasts a GIL
time slice, so two concurrent conditional transactions can interleave and both "win" —
which real DynamoDB never lets happen. Tests about concurrency, and tests that commit many
transactions, use small tables of their own (tests/engine/test_s3_export.py does the same
for speed).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any


def clone(table: Any) -> str:
    """A new empty table with `table`'s keys and indexes; returns its name."""
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
    """Body of a `deps` fixture: Deps on fresh main and profile tables, dropped after."""
    from chalicelib.bootstrap import Deps, use
    from chalicelib.services.accounts import token_cache
    from chalicelib.store.dynamo import Table

    base = Deps()
    d = Deps(table=Table(clone(base.table)), profiles_table=Table(clone(base.profiles_table)))
    token_cache.clear()
    use(d)
    yield d
    use(None)
    for t in (d.table, d.profiles_table):
        t.client.delete_table(TableName=t.name)
