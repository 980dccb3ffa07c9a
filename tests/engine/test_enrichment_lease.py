"""An enrichment step that dies after writing its merges but before letting go of the
account's profile write lease (found by tests/proof/test_crash_redelivery.py): its replay
finds nothing left to write, so before the fix it never took the lease back and never
released it; the next step waited 20 s, failed ProfilesBusy, and every import of the account
was blocked until the lease lapsed. The replay now frees it."""

from __future__ import annotations

from chalicelib.store.profiles import ProfileRepo
from tests.engine.test_enrichment import _fc_auth, _job, _people, _runs, _seed, _state, deps, fake  # noqa: F401


class Died(RuntimeError):
    """The process died here (the Drain makes the message visible again, as SQS would)."""


def test_a_step_killed_before_releasing_the_write_lease_does_not_block_the_next(
        api, deps, tenant, drain, options, fake, monkeypatch) -> None:  # noqa: F811
    # GIVEN 20 people FullContact knows, 10 lookups a step, and a runner that dies the first
    # time a step lets go of the profile write lease (its merges are written by then)
    _seed(deps, tenant.account_id, _people(20, 0, 0))
    for i in range(20):
        fake.know(f"known{i}@example.com")
    options.max_records = 10
    real_release = ProfileRepo._release
    died: list[str] = []

    def release(self: ProfileRepo, account_id: str, owner: str) -> None:
        if not died and not owner.startswith("seed"):
            died.append(owner)
            raise Died("killed before the lease was released")
        real_release(self, account_id, owner)

    # AND every refusal of the lease is kept (a refused step waits, then fails ProfilesBusy)
    real_take = ProfileRepo._take
    refused: list[str] = []

    def take(self: ProfileRepo, account_id: str, owner: str, condition: str) -> bool:
        taken = real_take(self, account_id, owner, condition)
        if not taken:
            refused.append(owner)
        return taken

    monkeypatch.setattr(ProfileRepo, "_release", release)
    monkeypatch.setattr(ProfileRepo, "_take", take)
    job = _job(api, _fc_auth(api)["id"])
    # WHEN the run is delivered, the dead step redelivered
    drain.run()
    # THEN the run finished without waiting for the lease to lapse (no step was ever refused
    # it), and counted each once
    assert died and _state(api, job["id"])["status"] == "completed"
    assert [type(e).__name__ for e in drain.errors] == ["Died"], drain.errors
    assert refused == []
    [run] = _runs(api, job["id"])
    assert (run["status"], run["added"]) == ("succeeded", 20), run
