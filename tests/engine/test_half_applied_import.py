"""An import step's profile BatchWriteItem held half-applied (DynamoDB applies a batch item by
item, and readers may see it part-way; the local emulator does the same and lets a test hold
it there): readers see each profile either as it was or as written, never a broken one; the
run's counters say nothing until the commit; and once the batch goes on, the step ends
exactly as if nothing had watched."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from devserver import emulator


class HoldOnce:
    """Holds the first BatchWriteItem of at least `total` items after its first item."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.reached, self.release = threading.Event(), threading.Event()
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))
        if done == 1 and total >= self.total and not self.reached.is_set():
            self.reached.set()
            assert self.release.wait(120), "the test never released the batch"


def test_readers_see_a_held_profile_batch_item_by_item_and_the_step_ends_exact(
        api: Any, deps: Any, tenant: Any, drain: Any, make_job: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    account = tenant.account_id
    make_job([{"email": "a@x.io", "plan": "free"}], name="seed")
    drain.run()
    assert deps.profiles.find(account, "email", "a@x.io").fields["plan"] == "free"
    # GIVEN an import that updates a@ and adds b@ and c@: one profile batch of three items
    job = make_job([{"email": "a@x.io", "plan": "pro"}, {"email": "b@x.io", "plan": "free"},
                    {"email": "c@x.io", "plan": "free"}], name="three")
    hold = HoldOnce(total=3)
    monkeypatch.setattr(emulator.AtomicDynamoDB, "between_items", hold)
    worker = threading.Thread(target=drain.run, daemon=True)
    worker.start()
    try:
        assert hold.reached.wait(120), f"no batch of 3 was written: {hold.calls}"
        # WHEN readers look while the batch is held after its first item
        a = deps.profiles.find(account, "email", "a@x.io")
        b = deps.profiles.find(account, "email", "b@x.io")
        c = deps.profiles.find(account, "email", "c@x.io")
        held_job = deps.jobs.get(account, job["id"], consistent=True)
        [held_run] = deps.runs.page(account, job["id"], limit=5, cursor=None).items
    finally:
        hold.release.set()
        worker.join(120)
    # THEN exactly one of the three writes is visible (the batch really was half-applied),
    # and each profile read is whole: as it was, or as the import writes it
    assert a is not None and (a.fields["plan"], a.version) in {("free", 1), ("pro", 2)}
    for p in (b, c):
        assert p is None or (p.fields["plan"] == "free" and p.version == 1)
    assert [a.fields["plan"] == "pro", b is not None, c is not None].count(True) == 1
    # AND the run's counters wait for the commit: nothing counted while the writes are under way
    assert held_job is not None and held_job.status.value == "running"
    assert held_run.status.value == "running" and held_run.added == 0
    # AND once released the step ends exactly: every profile written once, counted once
    assert not worker.is_alive() and drain.errors == []
    assert api.get(f"/jobs/{job['id']}").json["data"]["status"] == "completed"
    [run] = api.get(f"/jobs/{job['id']}/runs").json["data"]
    assert run["status"] == "succeeded" and run["added"] == 3, run
    after = {e: deps.profiles.find(account, "email", e) for e in ("a@x.io", "b@x.io", "c@x.io")}
    assert {e: (p.fields["plan"], p.version) for e, p in after.items() if p} == {
        "a@x.io": ("pro", 2), "b@x.io": ("free", 1), "c@x.io": ("free", 1)}
