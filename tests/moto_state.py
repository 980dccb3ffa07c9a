"""Empty the in-process moto's data between tests, keeping its resources.

Each xdist worker runs one moto for the whole session, and moto's cost per request grows
with what earlier tests left behind. Its Query sorted every item of the table before picking
the partition's (devserver/queries.py now reads the partition alone, for a table's key; an
index Query still passes over the whole table), and its TransactWriteItems deep-copied each
table it named (devserver/transactions.py keeps only the named items). Without this
clearing a file ran 5-100 times slower late in the suite than alone:
tests/api/test_profiles.py took 4 s on empty tables and 426 s after tests/engine/test_engine.py
had left 11,000 profiles and 11,600 stream records behind. Real DynamoDB's costs do not grow
so, and tests lose nothing when they start with empty tables: the tables, queues, secrets,
schedules and usage plan stay; their data goes.

So every module starts with no data at all, and every test with empty stack tables (the
ones infra/ deploys; a module's own tables, queues and datapoints may hold what its
module-scoped fixtures wrote for all its tests). Every test builds its own tenant: no test
reads what another wrote.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Cleared:
    items: int
    stream_records: int
    messages: int
    datapoints: int


def clear_tables(names: Collection[str]) -> Cleared:
    """Drop the items and stream records of the named tables only (the stack's, before each
    test: a module's own tables and queues may hold what its module-scoped fixtures wrote)."""
    return clear_data(names, everything=False)


def clear_data(tables: Collection[str] = (), *, everything: bool = True) -> Cleared:
    """Drop every DynamoDB item and stream record, SQS message and CloudWatch datapoint of
    this process's moto (without `everything`, only the items and records of `tables`).
    Stream sequence numbers go on from where they were, so a later record never reuses an
    earlier one's number."""
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodbstreams.models import dynamodbstreams_backends
    from moto.sqs.models import sqs_backends

    from devserver.emulator import AtomicDynamoDB

    items = records = messages = datapoints = 0
    with AtomicDynamoDB.lock:  # the emulator applies DynamoDB requests under it: none is halfway
        for regions in dynamodb_backends.values():
            for backend in regions.values():
                for table in backend.tables.values():
                    if not everything and table.name not in tables:
                        continue
                    items += sum(len(v) if isinstance(v, dict) else 1 for v in table.items.values())
                    table.items.clear()
                    shard = table.stream_shard
                    if shard is not None:
                        records += len(shard.items)
                        shard.starting_sequence_number += len(shard.items)
                        shard.items = []
        for regions in dynamodbstreams_backends.values():
            for streams in regions.values():
                streams.shard_iterators.clear()
        AtomicDynamoDB.committed.clear()
    if not everything:
        return Cleared(items, records, 0, 0)
    for regions in sqs_backends.values():
        for sqs in regions.values():
            for queue in sqs.queues.values():
                messages += len(queue._messages)
                queue._messages.clear()
                queue._pending_messages.clear()
    for regions in cloudwatch_backends.values():
        for cloudwatch in regions.values():
            datapoints += len(cloudwatch.metric_data)
            cloudwatch.metric_data.clear()
            cloudwatch.paged_metric_data.clear()
    return Cleared(items, records, messages, datapoints)


def stack_tables_missing(names: Sequence[str]) -> str:
    """'' when every named table is in this process's moto and the app's own DynamoDB client
    finds it; else what is wrong (moto lost it, or the app's client asks somewhere else)."""
    import os

    from moto.dynamodb.models import dynamodb_backends

    from chalicelib.store import aws

    homes = {name: {(account, region) for account, regions in dynamodb_backends.items()
                    for region, backend in regions.items() if name in backend.tables} for name in names}
    lost = sorted(name for name, where in homes.items() if not where)
    if lost:
        return f"moto no longer has {lost}"
    first, *others = names
    apart = sorted(name for name in others if not homes[name] & homes[first])
    if apart:
        return f"moto holds {apart} in another account or region than {first}"
    # One request, not one per table (it runs after every test): the tables share moto's
    # account and region (checked above), so a client that finds the first finds them all.
    client = aws.client("dynamodb")
    try:
        client.describe_table(TableName=first)
    except client.exceptions.ResourceNotFoundException:
        return (f"the app's DynamoDB client does not find {first} (endpoint {client.meta.endpoint_url}, "
                f"region {client.meta.region_name}; AWS_ENDPOINT_URL={os.environ.get('AWS_ENDPOINT_URL')})")
    return ""
