"""A real-time Kinesis export whose delivery dies after Kinesis accepted the records, before
its cursor moved: the nudge that comes back sends the same records again, with the same
partition keys, event ids and bytes (Kinesis keeps both copies; consumers drop the repeat by
event id), and nothing after that. The webhook and SQS versions are in
test_realtime_exports.py.
"""

from __future__ import annotations

import boto3
import pytest

from tests.membership.conftest import upsert
from tests.membership.test_realtime_exports import World, world  # noqa: F401  (the fixture)


def stream_records(name: str) -> list[tuple[str, bytes]]:
    """(partition key, data) of every record in the Kinesis stream `name`, shard by shard."""
    kinesis = boto3.client("kinesis", region_name="us-east-1")
    out = []
    for shard in kinesis.list_shards(StreamName=name)["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while (resp := kinesis.get_records(ShardIterator=it, Limit=10000))["Records"]:
            out += [(r["PartitionKey"], bytes(r["Data"])) for r in resp["Records"]]
            it = resp["NextShardIterator"]
    return out


def test_a_crash_after_kinesis_accepted_resends_the_same_keys_and_ids_once(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    import json

    from chalicelib.services.realtime import Nudge, deliver

    d = world.d
    name = f"rt-crash-{world.account_id[-10:]}"
    aud, job, kinesis = world.kinesis_job(name)
    # GIVEN kim and lou join, then kim leaves
    kim = upsert(d, world.account_id, "kim@example.com", plan="pro")
    lou = upsert(d, world.account_id, "lou@example.com", plan="pro")
    world.stack.deliver()
    upsert(d, world.account_id, "kim@example.com", plan="free")
    world.stack.deliver()
    nudge = Nudge(world.account_id, aud.id, job["id"])
    # WHEN the delivery dies after Kinesis accepted every record, before the cursor's write
    world.die_before_the_cursor_moves(nudge, monkeypatch)
    first = stream_records(name)
    assert len(first) == 3  # the dying delivery did send them
    # AND the nudge comes back (the dying delivery's finally released the lease)
    again = deliver(d, nudge)
    assert (again.status, again.delivered, again.cursor) == ("caught_up", 3, 3)
    # THEN each record went out twice, the copy identical: same partition key, same bytes
    # (so the same event id)
    stored = stream_records(name)
    assert len(stored) == 6
    assert sorted(stored) == sorted(first * 2)
    by_id: dict[str, set[tuple[str, bytes]]] = {}
    for key, data in stored:
        by_id.setdefault(json.loads(data)["event_id"], set()).add((key, data))
    assert len(by_id) == 3 and all(len(copies) == 1 for copies in by_id.values())
    # AND once a consumer drops repeats by event id, each change is there once, keyed by its profile
    events = [(key, json.loads(data)) for [(key, data)] in by_id.values()]
    assert sorted((e["type"], e["profile_id"]) for _, e in events) == sorted(
        [("audience.entered", kim), ("audience.entered", lou), ("audience.exited", kim)])
    assert all(key == e["profile_id"] for key, e in events)
    # AND a further nudge sends nothing (the cursor moved with the resend)
    last = deliver(d, nudge)
    assert (last.status, last.delivered, last.cursor) == ("caught_up", 0, 3)
    assert len(stream_records(name)) == 6
    kinesis.delete_stream(StreamName=name)
