"""Audiences: saved filters over profiles, their validation and their evaluation.

Pure: no I/O, no boto3, no pydantic. A filter is a tree of groups and conditions (the
grammar, and every choice below, is in docs/audiences.md):

    {"all": [cond_or_group, ...]}          every member holds
    {"any": [cond_or_group, ...]}          at least one member holds
    {"field": "plan", "op": "equals", "value": "pro"}

`parse_filter` validates a tree once, naming the path of every problem
("filter.all[1].op"), and compiles it into a predicate over `Profile`s; evaluating the
predicate does no parsing, no normalisation of the filter and no allocation per group.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib.domain.errors import Invalid
from chalicelib.domain.profiles import MAX_VALUE_BYTES, Profile, field_name

# -- limits -------------------------------------------------------------------------------

MAX_DEPTH = 5  # groups nested in groups, the root group counting as 1
MAX_CONDITIONS = 50  # conditions in the whole tree
MAX_IN_VALUES = 500  # values of one "in" condition
MAX_FILTER_BYTES = 64 * 1024  # the normalised filter as JSON (it is stored in one item)
MAX_FIELD_CHARS = 200  # a field reference as written, before normalisation
MAX_ERRORS = 20  # problems reported for one filter
MAX_SCAN = 20_000  # profiles one size estimate reads before it stops (capped: `truncated`)
SAMPLE_SIZE = 10  # members shown by a size estimate

GROUPS = ("all", "any")
OPS = ("equals", "not_equals", "in", "exists", "not_exists", "gt", "gte", "lt", "lte", "contains")
NO_VALUE_OPS = frozenset({"exists", "not_exists"})
PROFILE_ATTRS = ("id", "created_at", "updated_at")
NAMESPACES = ("field", "identifier", "profile")


# -- objects ------------------------------------------------------------------------------


@dataclass
class Audience:
    id: str
    account_id: str
    name: str
    description: str
    filter: dict[str, Any]  # normalised (see parse_filter)
    owner: str
    created_at: str
    updated_at: str
    version: int = 1
    export_jobs: int = 0  # export jobs that send it (deletion waits until none)


Predicate = Callable[[Profile], bool]


@dataclass(frozen=True)
class CompiledFilter:
    """A validated filter: `tree` is its normalised form (what is stored and shown),
    calling it tells whether a profile is a member."""

    tree: dict[str, Any]
    predicate: Predicate
    conditions: int

    def __call__(self, profile: Profile) -> bool:
        return self.predicate(profile)


@dataclass(frozen=True)
class SampleMember:
    id: str
    email: str | None


@dataclass(frozen=True)
class Estimate:
    """How many profiles match, among how many read; `truncated` when reading stopped at
    the scan limit with profiles left unread (then `size` counts only those read).
    `computed_at` is when the profiles were read; `cached` when this is a kept answer."""

    size: int
    sample: list[SampleMember]
    scanned: int
    truncated: bool
    computed_at: str = ""
    cached: bool = False


# -- field references ---------------------------------------------------------------------

# A resolved value: the values to test and whether they come from a list field (where
# "contains" means membership). None when the profile has no value there.
Resolved = tuple[tuple[Any, ...], bool] | None
Getter = Callable[[Profile], Resolved]


def _is_email_kind(name: str) -> bool:
    return name == "email" or name.endswith("_email")


def _from_field(value: Any) -> Resolved:
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, list):
        return tuple(value), True
    return (value,), False


def _from_identifier(values: Any) -> Resolved:
    # An identifier kind holds one or more linked values; each is tested on its own
    # ("any of them"), as text: "contains" is a substring test, not membership.
    return (tuple(values), False) if values else None


def _getter(namespace: str, name: str) -> Getter:
    if namespace == "field":
        return lambda p: _from_field(p.fields.get(name))
    if namespace == "identifier":
        return lambda p: _from_identifier(p.identifiers.get(name))
    if namespace == "profile":
        return lambda p: _from_field(getattr(p, name))

    def either(p: Profile) -> Resolved:  # a field of that name, else the identifier kind
        found = _from_field(p.fields.get(name))
        return found if found is not None else _from_identifier(p.identifiers.get(name))

    return either


def parse_field(raw: str) -> tuple[str, str]:
    """'plan' -> ('', 'plan'); 'identifier.email' -> ('identifier', 'email');
    'First Name' -> ('', 'first_name'). ValueError (a sentence) when unusable."""
    if len(raw) > MAX_FIELD_CHARS:
        raise ValueError(f"must be at most {MAX_FIELD_CHARS} characters")
    head, dot, rest = raw.partition(".")
    namespace = head.strip().lower() if dot else ""
    if dot and namespace not in NAMESPACES:
        raise ValueError(f"unknown prefix {head.strip()[:40]!r}: use {', '.join(n + '.' for n in NAMESPACES)} or none")
    name = field_name(rest if dot else raw)
    if not name:
        raise ValueError("must name a profile field or identifier, e.g. plan or identifier.email")
    if namespace == "profile" and name not in PROFILE_ATTRS:
        raise ValueError(f"profile. is followed by one of: {', '.join(PROFILE_ATTRS)}")
    return namespace, name


def _spell(namespace: str, name: str) -> str:
    return f"{namespace}.{name}" if namespace else name


# -- values -------------------------------------------------------------------------------


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _key(v: Any, fold: bool) -> tuple[str, Any]:
    """Equality key: 1 and 1.0 are equal, True and 1 are not, "1" and 1 are not."""
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, int | float):
        return ("n", v)
    if isinstance(v, str):
        return ("s", v.casefold() if fold else v)
    return ("o", json.dumps(v, sort_keys=True, default=str))


def _scalar_problem(v: Any) -> str | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return None if math.isfinite(v) else "must be a finite number"
    if isinstance(v, str):
        if not v.strip():
            return "must not be empty (use the not_exists operator for missing values)"
        if len(v.encode()) > MAX_VALUE_BYTES:
            return f"must be at most {MAX_VALUE_BYTES} bytes"
        return None
    if v is None:
        return "must not be null (use the not_exists operator for missing values)"
    return "must be a string, a number or true/false"


def _value_problems(op: str, value: Any, path: str) -> list[tuple[str, str]]:
    if op == "in":
        if not isinstance(value, list) or not value:
            return [(path, "must be a non-empty list of values")]
        if len(value) > MAX_IN_VALUES:
            return [(path, f"must hold at most {MAX_IN_VALUES} values (got {len(value)})")]
        return [(f"{path}[{i}]", msg) for i, v in enumerate(value) if (msg := _scalar_problem(v))]
    if op in ("gt", "gte", "lt", "lte") and (isinstance(value, bool) or not isinstance(value, int | float | str)):
        return [(path, "must be a number or a string (e.g. an ISO date)")]
    msg = _scalar_problem(value)
    return [(path, msg)] if msg else []


# -- compiling conditions -----------------------------------------------------------------


def _compile_condition(namespace: str, name: str, op: str, value: Any) -> Predicate:
    get = _getter(namespace, name)
    fold = _is_email_kind(name)  # emails compare case-insensitively, as identifiers store them

    if op == "exists":
        return lambda p: get(p) is not None
    if op == "not_exists":
        return lambda p: get(p) is None
    if op in ("equals", "not_equals", "in"):
        keys = frozenset(_key(v, fold) for v in (value if op == "in" else [value]))

        def hit(p: Profile) -> bool | None:
            found = get(p)
            if found is None:
                return None
            return any(_key(x, fold) in keys for x in found[0])

        if op == "not_equals":
            return lambda p: hit(p) is False
        return lambda p: bool(hit(p))
    if op in ("gt", "gte", "lt", "lte"):
        return _compile_comparison(get, op, value)
    if op == "contains":
        return _compile_contains(get, value)
    raise AssertionError(f"unhandled operator {op}")  # parse_filter refuses unknown ones


def _compile_comparison(get: Getter, op: str, bound: Any) -> Predicate:
    test: Callable[[Any], bool] = {
        "gt": lambda x: x > bound,
        "gte": lambda x: x >= bound,
        "lt": lambda x: x < bound,
        "lte": lambda x: x <= bound,
    }[op]
    # Numbers compare with numbers, strings with strings (ISO dates sort as text);
    # a string that looks like a number is still a string.
    same_kind: Callable[[Any], bool] = _is_number if _is_number(bound) else (lambda x: isinstance(x, str))

    def compare(p: Profile) -> bool:
        found = get(p)
        return found is not None and any(same_kind(x) and test(x) for x in found[0])

    return compare


def _compile_contains(get: Getter, value: Any) -> Predicate:
    needle = value.casefold() if isinstance(value, str) else None
    member = _key(value, True)

    def contains(p: Profile) -> bool:
        found = get(p)
        if found is None:
            return False
        values, is_list = found
        if is_list:  # membership; text compares case-insensitively
            return any(_key(x, True) == member for x in values)
        return needle is not None and any(isinstance(x, str) and needle in x.casefold() for x in values)

    return contains


def _compile_group(kind: str, members: list[Predicate]) -> Predicate:
    if not members:  # only the root {"all": []}: every profile
        return lambda p: True
    if len(members) == 1:
        return members[0]
    if kind == "all":
        return lambda p: all(m(p) for m in members)
    return lambda p: any(m(p) for m in members)


# -- parsing ------------------------------------------------------------------------------


class _Parser:
    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []
        self.conditions = 0

    def bad(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def node(self, raw: Any, path: str, depth: int) -> tuple[dict[str, Any], Predicate] | None:
        if not isinstance(raw, dict):
            self.bad(path, "must be an object: a condition (field, op and value) or a group (all or any)")
            return None
        groups = [k for k in GROUPS if k in raw]
        if groups:
            if len(raw) != 1:
                extra = sorted(set(raw) - {groups[0]})
                self.bad(path, f"a group holds exactly one key, 'all' or 'any' (also found: {', '.join(map(str, extra))[:80]})")
                return None
            return self.group(groups[0], raw[groups[0]], path, depth)
        return self.condition(raw, path)

    def group(self, kind: str, members: Any, path: str, depth: int) -> tuple[dict[str, Any], Predicate] | None:
        here = f"{path}.{kind}"
        if depth > MAX_DEPTH:
            self.bad(path, f"groups nest at most {MAX_DEPTH} deep")
            return None
        if not isinstance(members, list):
            self.bad(here, "must be a list of conditions and groups")
            return None
        if not members and not (depth == 1 and kind == "all"):
            self.bad(here, "must hold at least one condition or group")
            return None
        out: list[dict[str, Any]] = []
        preds: list[Predicate] = []
        for i, member in enumerate(members):
            parsed = self.node(member, f"{here}[{i}]", depth + 1)
            if parsed is not None:
                out.append(parsed[0])
                preds.append(parsed[1])
        return {kind: out}, _compile_group(kind, preds)

    def condition(self, raw: dict[str, Any], path: str) -> tuple[dict[str, Any], Predicate] | None:
        self.conditions += 1
        before = len(self.problems)
        for key in sorted(set(raw) - {"field", "op", "value"}, key=str):
            self.bad(f"{path}.{key}", "unknown key: a condition has field, op and value")
        field_raw, op = raw.get("field"), raw.get("op")
        namespace = name = ""
        if "field" not in raw:
            self.bad(f"{path}.field", "required")
        elif not isinstance(field_raw, str):
            self.bad(f"{path}.field", "must be a string")
        else:
            try:
                namespace, name = parse_field(field_raw)
            except ValueError as exc:
                self.bad(f"{path}.field", str(exc))
        if "op" not in raw:
            self.bad(f"{path}.op", "required")
        elif op not in OPS:
            self.bad(f"{path}.op", f"must be one of: {', '.join(OPS)}")
        elif op in NO_VALUE_OPS:
            if "value" in raw:
                self.bad(f"{path}.value", f"{op} takes no value")
        elif "value" not in raw:
            self.bad(f"{path}.value", "required")
        else:
            for where, msg in _value_problems(op, raw["value"], f"{path}.value"):
                self.bad(where, msg)
        if len(self.problems) > before:
            return None
        assert isinstance(op, str)
        tree: dict[str, Any] = {"field": _spell(namespace, name), "op": op}
        if op not in NO_VALUE_OPS:
            tree["value"] = raw["value"]
        return tree, _compile_condition(namespace, name, op, raw.get("value"))


def parse_filter(raw: Any, *, path: str = "filter") -> CompiledFilter:
    """Validate a filter tree and compile it. Raises Invalid naming every problem's path
    (at most MAX_ERRORS of them) in `fields`, e.g. {"filter.all[1].op": "must be one of: ..."}."""
    parser = _Parser()
    parsed = None
    if not isinstance(raw, dict) or not any(k in raw for k in GROUPS):
        parser.bad(path, "must be a group: an object with all or any, holding a list of conditions")
    else:
        parsed = parser.node(raw, path, 1)
    if parser.conditions > MAX_CONDITIONS:
        parser.bad(path, f"holds at most {MAX_CONDITIONS} conditions (got {parser.conditions})")
    if parsed is not None and not parser.problems:
        size = len(json.dumps(parsed[0], separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_FILTER_BYTES:
            parser.bad(path, f"must be at most {MAX_FILTER_BYTES // 1024} KB as JSON (got {size // 1024} KB)")
    if parser.problems or parsed is None:
        fields: dict[str, str] = {}
        for where, msg in parser.problems:
            if len(fields) >= MAX_ERRORS:
                break
            fields.setdefault(where, msg)
        said = " ".join(f"{_where(k)} {v}." for k, v in list(fields.items())[:3])
        raise Invalid(
            f"Check the filter: {said}",
            code="audience.invalid_filter",
            fields=fields,
        )
    return CompiledFilter(tree=parsed[0], predicate=parsed[1], conditions=parser.conditions)


_PART_WORDS = {"op": "operator", "field": "field", "value": "value"}


def _where(path: str) -> str:
    """`filter.all[0].any[1].op` -> "Condition 1.2, operator": where a problem is, in words."""
    numbers = [str(int(i) + 1) for i in re.findall(r"\[(\d+)\]", path)]
    last = path.rsplit(".", 1)[-1]
    part = _PART_WORDS.get(last, "")
    where = f"Condition {'.'.join(numbers)}" if numbers else "The filter"
    return f"{where}, {part}" if part and numbers else where


def matches(filter_: CompiledFilter | dict[str, Any], profile: Profile) -> bool:
    """Whether `profile` is a member. Compile once with parse_filter when testing many."""
    compiled = filter_ if isinstance(filter_, CompiledFilter) else parse_filter(filter_)
    return compiled(profile)


# -- size estimates -----------------------------------------------------------------------


def sample_email(profile: Profile) -> str | None:
    emails = profile.identifiers.get("email") or []
    if emails:
        return str(emails[0])
    value = profile.fields.get("email")
    return value if isinstance(value, str) else None


def estimate(
    predicate: Callable[[Profile], bool],
    profiles: Iterable[Profile],
    *,
    max_scan: int = MAX_SCAN,
    sample_size: int = SAMPLE_SIZE,
) -> Estimate:
    """Count members among `profiles`, reading at most `max_scan` of them.

    One more profile is pulled past the limit only to tell "exactly max_scan profiles"
    from "more than that" (truncated); it is not counted.
    """
    return estimate_many([predicate], profiles, max_scan=max_scan, sample_size=sample_size)[0]


def estimate_many(
    predicates: Sequence[Callable[[Profile], bool]],
    profiles: Iterable[Profile],
    *,
    max_scan: int = MAX_SCAN,
    sample_size: int = SAMPLE_SIZE,
) -> list[Estimate]:
    """`estimate` of several filters in one pass over the profiles: the reads are shared."""
    sizes = [0] * len(predicates)
    samples: list[list[SampleMember]] = [[] for _ in predicates]
    scanned = 0
    truncated = False
    for profile in profiles:
        if scanned >= max_scan:
            truncated = True
            break
        scanned += 1
        for i, predicate in enumerate(predicates):
            if predicate(profile):
                sizes[i] += 1
                if len(samples[i]) < sample_size:
                    samples[i].append(SampleMember(profile.id, sample_email(profile)))
    return [Estimate(n, sample, scanned, truncated) for n, sample in zip(sizes, samples, strict=True)]


def filter_key(tree: dict[str, Any]) -> str:
    """A stable name of a normalised filter: equal filters, equal keys (size caching)."""
    text = json.dumps(tree, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


__all__ = [
    "MAX_CONDITIONS",
    "MAX_DEPTH",
    "MAX_FILTER_BYTES",
    "MAX_IN_VALUES",
    "MAX_SCAN",
    "OPS",
    "SAMPLE_SIZE",
    "Audience",
    "CompiledFilter",
    "Estimate",
    "SampleMember",
    "estimate",
    "estimate_many",
    "filter_key",
    "matches",
    "parse_field",
    "parse_filter",
    "sample_email",
]
