"""Fresh tables for the membership tests: the main table, and a profiles table with its
stream (NEW_AND_OLD_IMAGES, as infra/template.json declares it), read by the local stream
poller (devserver/streams.py) that stands in for Lambda's event source mapping."""

from __future__ import annotations

import itertools
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.tables import clone

_tags = itertools.count()


@dataclass
class Stack:
    deps: Any
    poller: Any
    stop: threading.Event

    def deliver(self) -> int:
        """What Lambda's mapping would deliver now, delivered (synchronously)."""
        return int(self.poller.poll_once())

    def next_test(self) -> None:
        """For a stack that outlives a test: moto's shard iterators are cleared before each
        test (tests/moto_state.py), so the poller asks for new ones from its checkpoints."""
        for source in self.poller.sources:
            for shard in source.shards.values():
                shard.iterator = None


def streamed_profiles_table(base: Any) -> str:
    ddb = base.client
    desc = ddb.describe_table(TableName=base.name)["Table"]
    name = f"{base.name}-{secrets.token_hex(4)}"
    ddb.create_table(TableName=name, KeySchema=desc["KeySchema"], BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=desc["AttributeDefinitions"],
                     StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    return name


@pytest.fixture()
def stack(aws_endpoint: str) -> Iterator[Stack]:
    yield from streamed_stack()


def streamed_stack() -> Iterator[Stack]:
    """Fresh tables, the profiles table with its stream, in use while the generator runs;
    a fixture of any scope yields from it (needs the session's moto server)."""
    from app import app
    from chalicelib.bootstrap import Deps, use
    from chalicelib.config import PROFILES_STREAM_ARN
    from chalicelib.store import aws
    from chalicelib.store.dynamo import Table
    from chalicelib.workers import STREAM_PARTIAL_BATCH_RESPONSES
    from devserver.events import LambdaContext
    from devserver.streams import StreamPoller

    base = Deps()
    d = Deps(table=Table(clone(base.table)), profiles_table=Table(streamed_profiles_table(base.profiles_table)))
    use(d)
    stop = threading.Event()
    poller = StreamPoller(app, stop, {PROFILES_STREAM_ARN: d.profiles_table.name},
                          context_for=lambda h: LambdaContext(h, 60, 512, "us-east-1", "123456789012"),
                          region="us-east-1", partial=STREAM_PARTIAL_BATCH_RESPONSES, client=aws.client)
    yield Stack(d, poller, stop)
    stop.set()
    use(None)
    for t in (d.table, d.profiles_table):
        t.client.delete_table(TableName=t.name)


def upsert(deps: Any, account_id: str, email: str, **fields: Any) -> str:
    """Write one profile the way an import step does; returns its id."""
    from chalicelib.domain.profiles import ProfileRecord

    deps.profiles.upsert_batch(account_id, [ProfileRecord(identifiers={"email": email}, fields=fields, ref="t")],
                               step_tag=f"t#{next(_tags)}")
    found = deps.profiles.find(account_id, "email", email)
    assert found is not None
    return str(found.id)


class Crash(Exception):
    """A process dying at a chosen point (seeded crash tests)."""


def dying(real: Any, rng: Any, crashes: dict[str, int], *, before: tuple[str, float],
          after: tuple[str, float] | None = None) -> Any:
    """`real` (a function or an unbound method) wrapped to die before it runs or after it
    returned, counting each kind in `crashes`. The first call dies before it, and the first
    call that runs it dies after it (so each kind happens whatever the seed: the second call
    may itself die before); then each kind with its chance, drawn from the seeded `rng`
    (before, then after: the replay of a seed draws the same)."""
    calls = 0
    died_after = False

    def wrapped(*args: Any, **kw: Any) -> Any:
        nonlocal calls, died_after
        calls += 1
        kind, chance = before
        if calls == 1 or rng.random() < chance:
            crashes[kind] += 1
            raise Crash(f"died before {real.__name__} ({kind})")
        out = real(*args, **kw)
        if after is not None:
            kind, chance = after
            if not died_after or rng.random() < chance:
                died_after = True
                crashes[kind] += 1
                raise Crash(f"died after {real.__name__} ({kind})")
        return out

    return wrapped
