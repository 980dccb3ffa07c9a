"""Planning an upsert batch, pure: each record resolved to a profile and merged into it, in
batch order, and its outcome ("added", "updated", "unchanged"), or a replay's recorded one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.domain import profiles as P

LETTER = {"added": "a", "updated": "u", "unchanged": "n"}
_OUTCOME = {v: k for k, v in LETTER.items()}


@dataclass
class Group:
    """One profile and the records of the batch that resolved to it, in batch order."""

    id: str
    new: bool
    identifiers: dict[str, list[str]]
    fields: dict[str, Any]
    created_at: str | None
    version: int
    steps: list[list[str]]
    marks: dict[str, list[Any]]  # job -> [highest sequence applied, its outcome letters]
    recorded: str | None  # outcome letters this step already wrote (a replay)
    members: list[int] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    new_links: list[tuple[str, str]] = field(default_factory=list)
    dirty: bool = False

    @classmethod
    def start(cls, pid: str, data: Mapping[str, Any] | None, step_tag: str,
              watermark: tuple[str, int] | None) -> Group:
        if data is None:
            # Never written, or its identifiers were linked just before a crash.
            return cls(pid, True, {}, {}, None, 0, [], {}, None)
        steps = data.get("steps") or []
        marks = {str(k): list(v) for k, v in (data.get("marks") or {}).items()}
        recorded = next((letters for tag, letters in steps if tag == step_tag), None)
        mark = marks.get(watermark[0]) if watermark is not None and recorded is None else None
        if watermark is not None and mark is not None and int(mark[0]) >= watermark[1]:
            # Applied already, though other steps have since pushed its tag out of `steps`.
            # A higher mark would be a later step of the job: it reports nothing new.
            recorded = str(mark[1]) if int(mark[0]) == watermark[1] else ""
        return cls(
            pid,
            False,
            {k: list(v) for k, v in (data.get("identifiers") or {}).items()},
            dict(data.get("fields") or {}),
            data["created_at"],
            int(data.get("version", 1)),
            steps,
            marks,
            recorded,
        )

    def has(self, kind: str, value: str) -> bool:
        return value in self.identifiers.get(kind, ())

    def link(self, kind: str, value: str) -> None:
        self.identifiers[kind] = sorted({*self.identifiers.get(kind, ()), value})


class Planner:
    """Resolves every record to a profile and merges it in, in batch order. Pure.

    A record joins the profile of its first identifier (mapping order) that is known,
    in the store or earlier in this batch; its unknown identifiers are linked to that
    profile (an identifier item, unless the profile's id derives from it). A record with
    no known identifier creates the profile its first identifier derives. An identifier
    already pointing at another profile is never moved.

    Resumable, so that planning overlaps the reads still in flight: `plan_read` takes
    the records, in order, whose every identifier derives a profile already read. Such a
    record resolves the same whatever arrives later: `known` holds a derived id found in
    the store before any identifier item is looked up, and the records before it are
    planned first. The first record that needs more stops it; `plan_rest` takes the
    others once every read and lookup is in.
    """

    def __init__(self, account_id: str, *, step_tag: str, rules: Mapping[str, str], default: str,
                 watermark: tuple[str, int] | None = None) -> None:
        self.account_id, self.step_tag, self.rules, self.default = account_id, step_tag, rules, default
        self.watermark = watermark
        self.records: list[P.ProfileRecord] = []
        self.derived: dict[tuple[str, str], str] = {}  # the profile id each identifier would create
        self.stored: dict[str, Mapping[str, Any]] = {}  # profiles read, by id
        self.known: dict[tuple[str, str], str] = {}  # identifier -> the stored profile it reaches
        self.in_batch: dict[tuple[str, str], str] = {}
        self.groups: dict[str, Group] = {}
        self.planned = 0

    def plan_read(self, upto: int) -> None:
        """Plan records[planned:upto] while each one reaches only profiles already read."""
        while self.planned < upto:
            rec = self.records[self.planned]
            pids = [(k, self.derived[k]) for k in rec.identifiers.items()]
            if not all(pid in self.stored for _, pid in pids):
                return
            self.known.update(pids)
            self._merge(self.planned, rec)
            self.planned += 1

    def plan_rest(self) -> tuple[dict[str, Group], list[str]]:
        """The records not planned yet, then each record's outcome."""
        for i in range(self.planned, len(self.records)):
            self._merge(i, self.records[i])
        self.planned = len(self.records)
        outcomes: list[str] = ["unchanged"] * len(self.records)
        for g in self.groups.values():
            if g.recorded is not None:
                letters = g.recorded
                for n, i in enumerate(g.members):
                    outcomes[i] = _OUTCOME.get(letters[n], "unchanged") if n < len(letters) else "unchanged"
            else:
                for i, outcome in zip(g.members, g.outcomes, strict=True):
                    outcomes[i] = outcome
        return self.groups, outcomes

    def _merge(self, i: int, rec: P.ProfileRecord) -> None:
        keys = list(rec.identifiers.items())
        resolved = [(k, self.known.get(k) or self.in_batch.get(k)) for k in keys]
        target = next((pid for _, pid in resolved if pid), None)
        if target is None:
            target = self.derived[keys[0]]
        g = self.groups.get(target)
        if g is None:
            g = self.groups[target] = Group.start(target, self.stored.get(target), self.step_tag, self.watermark)
        g.members.append(i)
        if g.recorded is not None:
            return
        linked = False
        for (kind, value), pid in resolved:
            if pid is None:
                if len(g.identifiers.get(kind, ())) >= P.MAX_VALUES_PER_KIND:
                    continue
                self.in_batch[(kind, value)] = target
                if self.derived[(kind, value)] != target:
                    g.new_links.append((kind, value))  # found through an identifier item
                g.link(kind, value)
                linked = True
            elif pid == target and not g.has(kind, value):
                g.link(kind, value)  # its identifier item was written before a crash
                linked = True
        g.fields, changed = P.merge(g.fields, rec.fields, self.rules, self.default)
        if g.new and not g.outcomes:
            outcome = "added"
        elif linked or changed:
            outcome = "updated"
        else:
            outcome = "unchanged"
        g.outcomes.append(outcome)
        g.dirty = g.dirty or outcome != "unchanged"
