"""ProfileRepo: the profile store's one entry point, its parts put together."""

from __future__ import annotations

from chalicelib.store.profiles.writes import ProfileWrites


class ProfileRepo(ProfileWrites):
    """Profiles of one table. Keep one instance per step: `last_stats` is per call.

    `checkpoint(writes_done)` is called before the first write request (0) and after each
    one; raising there simulates a crash at that point (tests inject it; no patching).

    `parallel` > 1 keeps that many batch requests in flight at once: a step's time is mostly
    waiting on DynamoDB, one request after another. Identifier writes still all finish
    before the first profile write; within one kind the items are independent, so any
    subset written before a crash is a state the replay completes. The lease is checked
    before each request is sent, so at most `parallel - 1` requests already sent finish
    after the lease was lost (one request with `parallel` 1).
    """
