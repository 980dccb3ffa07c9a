"""The account's profile write lease: an item per account that serialises its profile writes
(BatchWriteItem takes no condition), taken, renewed while writing, and given up."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from chalicelib.store.aws import Beside
from chalicelib.store.dynamo import Backoff, ConditionFailed, conditional
from chalicelib.store.profiles.items import attr_key, writer_key
from chalicelib.store.profiles.requests import ProfileRequests, StoreStats

LEASE_WAIT = Backoff(attempts=0, base=0.1, jitter=False)  # paces the wait; lease_wait_seconds bounds it


class ProfilesBusy(RuntimeError):
    """Another step holds the account's profile write lease (or took it over): retry later."""


class Ticket(Protocol):
    """The account's write lease, taken ahead of the batch that writes under it by the step
    `owner` names. A repository writes only under a ticket its own `lease_ahead` gave."""

    owner: str

    def hold(self, account_id: str, owner: str) -> None: ...

    def release(self) -> None: ...


class LeaseTicket:
    """The account's write lease being taken on another thread (ProfileRepo.lease_ahead)."""

    def __init__(self, repo: ProfileLease, account_id: str, owner: str, taken: Beside[float]) -> None:
        self.repo, self.account_id, self.owner, self._taken = repo, account_id, owner, taken

    def hold(self, account_id: str, owner: str) -> None:
        """Wait until the lease is held (ProfilesBusy when it never was), and write under it."""
        if (account_id, owner) != (self.account_id, self.owner):
            raise ValueError("the ticket was taken for another account or step")
        self.repo._lease = (account_id, owner, self._taken.result())

    def release(self) -> None:
        """Give the lease up once the take has finished (a take still in flight would
        otherwise leave it held); nothing to give up if it was never taken."""
        self.repo._lease = None
        if self._taken.exception() is None:
            self.repo._release(self.account_id, self.owner)


class ProfileLease(ProfileRequests):
    """Takes, renews and gives up the account's write lease."""

    @contextmanager
    def lease(self, account_id: str, owner: str) -> Iterator[None]:
        """Hold the account's profile write lease. The same owner (a redelivered step) takes
        it over at once; others wait up to lease_wait_seconds, then get ProfilesBusy."""
        self._lease = (account_id, owner, self._acquire(account_id, owner))
        try:
            yield
        finally:
            self._lease = None
            self._release(account_id, owner)

    def lease_ahead(self, account_id: str, owner: str) -> LeaseTicket:
        """Start taking the lease (as `lease` does) on another thread, while the caller reads
        what it will write: `upsert_batch(..., ticket=)` waits for it. The caller must end
        every path with `ticket.release()`."""
        self.last_stats = StoreStats()  # the step's upsert adds to these
        return LeaseTicket(self, account_id, owner, Beside(lambda: self._acquire(account_id, owner), "profile-lease"))

    def _acquire(self, account_id: str, owner: str) -> float:
        """Wait for the lease; returns when it was taken (its renewal counts from then)."""
        waited, attempt = 0.0, 0
        while not self._take(account_id, owner, "attribute_not_exists(PK) OR #u < :now OR #o = :me"):
            if waited >= self.lease_wait_seconds:
                raise ProfilesBusy("another import is writing this account's profiles; retry shortly")
            pause = LEASE_WAIT.delay(attempt)
            self.sleep(pause)
            waited += pause
            attempt += 1
        return self.clock()

    def _take(self, account_id: str, owner: str, condition: str) -> bool:
        now = self.clock()
        until = now + self.lease_seconds
        try:
            self._on_lease_item(
                "UpdateItem",
                account_id,
                UpdateExpression="SET #o = :me, #u = :until, #x = :x",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#o": "owner", "#u": "lease_until", "#x": "expires_at"},
                ExpressionAttributeValues={
                    ":me": {"S": owner},
                    ":until": {"N": f"{until:.3f}"},
                    ":x": {"N": str(int(until) + 86400)},  # TTL cleans up abandoned leases
                    **({":now": {"N": f"{now:.3f}"}} if ":now" in condition else {}),
                },
            )
        except ConditionFailed:
            return False
        return True

    def _keep_lease(self) -> None:
        """Renew the lease once a third of it has gone; refuse to write if it was lost."""
        if self._lease is None:
            raise RuntimeError("profile writes need the account's lease")
        account_id, owner, renewed = self._lease
        if self.clock() - renewed < self.lease_seconds / 3:
            return
        if not self._take(account_id, owner, "#o = :me"):
            raise ProfilesBusy("the profile write lease was taken over; this step will be retried")
        self._lease = (account_id, owner, self.clock())

    def release(self, account_id: str, owner: str) -> None:
        """Give up the account's write lease if `owner` still holds it: a replayed step
        that finds nothing left to write frees the lease its dead first attempt kept."""
        self._release(account_id, owner)

    def _release(self, account_id: str, owner: str) -> None:
        with contextlib.suppress(ConditionFailed):  # not (or no longer) ours: nothing to give up
            self._on_lease_item(
                "DeleteItem",
                account_id,
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":me": {"S": owner}},
            )

    def _on_lease_item(self, op: str, account_id: str, **kwargs: Any) -> None:
        """One conditional request on the account's lease item; ConditionFailed when refused."""
        conditional(self._call, op, write=True, TableName=self.t.name, Key=attr_key(writer_key(account_id)), **kwargs)
