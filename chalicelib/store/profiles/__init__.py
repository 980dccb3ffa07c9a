"""The profile store: profiles per account, found by their identifiers (docs/profiles.md).

Where things are: items.py (keys, the JSON attribute), requests.py (request counting, batch
reads), reads.py (get, find, listing, lookups), planner.py (resolving and merging a batch,
pure), lease.py (the account's write lease), writes.py (the upsert), repo.py (ProfileRepo).

An import step upserts a batch in a bounded number of requests: BatchGetItem (100 keys)
for the profiles its identifiers create, BatchGetItem for the identifier items of the
others (and for the profiles those name), BatchWriteItem (25 items) for new identifier
items first, then for the profiles. BatchWriteItem has no conditions, so the account's
profile writes are serialised by a lease, and exactly-once under redelivery comes from the
data itself:

* a new profile's id is derived from (account, creating identifier), so a replayed step
  mints the same id;
* identifier items are written before any profile item, so a crash leaves at worst
  identifiers pointing at a profile not written yet, which the replay then writes;
* each written profile remembers the outcomes of the last steps that wrote it, so a
  replayed step reports them instead of merging twice;
* a step applied in order within its job (a collection job's hand-offs) also gives a
  watermark (job, sequence): the profile keeps, per such job, the highest sequence that
  wrote it and its outcomes, so its replay is found however many other steps came between.
"""

from chalicelib.store.dynamo import IncompleteBatch
from chalicelib.store.profiles.items import (
    DATA,
    SHARDS,
    account_of_profiles_pk,
    identifier_key,
    profile_from_image,
    profile_key,
    profiles_pk,
    shard_of,
    writer_key,
)
from chalicelib.store.profiles.lease import LeaseTicket, ProfilesBusy
from chalicelib.store.profiles.repo import ProfileRepo
from chalicelib.store.profiles.requests import StoreStats
from chalicelib.store.profiles.writes import STEP_HISTORY

__all__ = [
    "DATA",
    "SHARDS",
    "STEP_HISTORY",
    "IncompleteBatch",
    "LeaseTicket",
    "ProfileRepo",
    "ProfilesBusy",
    "StoreStats",
    "account_of_profiles_pk",
    "identifier_key",
    "profile_from_image",
    "profile_key",
    "profiles_pk",
    "shard_of",
    "writer_key",
]
