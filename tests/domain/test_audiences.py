"""Audience filters: grammar, operators, validation paths, limits, estimates."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.domain.audiences import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_IN_VALUES,
    estimate,
    matches,
    parse_field,
    parse_filter,
)
from chalicelib.domain.errors import ErrorKind, Invalid
from chalicelib.domain.profiles import Profile


def profile(fields: dict[str, Any] | None = None, identifiers: dict[str, list[str]] | None = None,
            pid: str = "prof_1", created_at: str = "2024-03-01T10:00:00Z") -> Profile:
    return Profile(id=pid, account_id="acct_1", identifiers=identifiers or {}, fields=fields or {},
                   created_at=created_at, updated_at=created_at)


def cond(field: str, op: str, *value: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"field": field, "op": op}
    if value:
        c["value"] = value[0]
    return c


def one(c: dict[str, Any]) -> dict[str, Any]:
    return {"all": [c]}


def problems(raw: Any) -> dict[str, str]:
    with pytest.raises(Invalid) as err:
        parse_filter(raw)
    assert err.value.kind is ErrorKind.INVALID and err.value.code == "audience.invalid_filter"
    return err.value.fields


ADA = profile({"plan": "pro", "age": 36, "score": 7.5, "tags": ["VIP", "beta"], "city": "Paris",
               "signup": "2024-02-10", "zip": "75001", "active": True},
              {"email": ["ada@example.com"], "user_id": ["u1"]})


# -- operators ------------------------------------------------------------------------------


@pytest.mark.parametrize(("c", "expected"), [
    (cond("plan", "equals", "pro"), True),
    (cond("plan", "equals", "Pro"), False),  # text equality is exact ...
    (cond("email", "equals", "ADA@Example.com"), True),  # ... except for emails
    (cond("age", "equals", 36.0), True),  # 36 and 36.0 are the same number
    (cond("age", "equals", "36"), False),  # a string is not a number
    (cond("active", "equals", True), True),
    (cond("active", "equals", 1), False),  # true is not 1
    (cond("tags", "equals", "beta"), True),  # any element of a list
    (cond("plan", "not_equals", "free"), True),
    (cond("plan", "not_equals", "pro"), False),
    (cond("plan", "in", ["free", "pro"]), True),
    (cond("plan", "in", ["free", "team"]), False),
    (cond("age", "in", [35, 36]), True),
    (cond("plan", "exists"), True),
    (cond("phone", "exists"), False),
    (cond("phone", "not_exists"), True),
    (cond("plan", "not_exists"), False),
    (cond("age", "gt", 35), True),
    (cond("age", "gt", 36), False),
    (cond("age", "gte", 36), True),
    (cond("age", "lt", 37), True),
    (cond("age", "lte", 35), False),
    (cond("score", "gt", 7), True),
    (cond("zip", "gt", 1000), False),  # "75001" is text: compared only with text
    (cond("zip", "gt", "7"), True),
    (cond("signup", "gte", "2024-02-01"), True),  # ISO dates compare as strings
    (cond("signup", "lt", "2024-02-01"), False),
    (cond("plan", "gt", 3), False),  # text against a number: no match, no error
    (cond("city", "contains", "ARI"), True),  # case-insensitive substring
    (cond("city", "contains", "lyon"), False),
    (cond("tags", "contains", "vip"), True),  # membership in a list, case-insensitive
    (cond("tags", "contains", "vi"), False),  # ... not a substring of an element
    (cond("email", "contains", "@EXAMPLE.com"), True),  # identifiers are text values
    (cond("age", "contains", "3"), False),  # contains needs text or a list
])
def test_each_operator(c: dict[str, Any], expected: bool) -> None:
    # GIVEN a profile with text, number, boolean, list fields and identifiers
    # WHEN a single-condition filter is evaluated on it
    result = matches(one(c), ADA)
    # THEN it matches exactly when the operator's rule says so
    assert result is expected, c


@pytest.mark.parametrize("op", ["equals", "not_equals", "in", "gt", "gte", "lt", "lte", "contains", "exists"])
def test_a_missing_field_never_matches_except_not_exists(op: str) -> None:
    # GIVEN a profile without the field
    empty = profile({"other": 1})
    value = [1] if op == "in" else 1
    c = cond("plan", op) if op == "exists" else cond("plan", op, value)
    # WHEN / THEN every operator but not_exists is false
    assert matches(one(c), empty) is False
    assert matches(one(cond("plan", "not_exists")), empty) is True


def test_field_names_resolve_to_fields_then_identifiers_and_can_be_forced() -> None:
    # GIVEN a profile whose "email" is both a field and an identifier, and a user_id identifier
    both = profile({"email": "work@corp.example"}, {"email": ["home@mail.example"], "user_id": ["u9"]},
                   created_at="2023-01-05T00:00:00Z")
    # WHEN / THEN a plain name is the field when the profile has it, else the identifier
    assert matches(one(cond("email", "equals", "work@corp.example")), both)
    assert not matches(one(cond("email", "equals", "home@mail.example")), both)
    assert matches(one(cond("user_id", "equals", "u9")), both)
    # AND the prefixes force one or the other, or name the profile's own attributes
    assert matches(one(cond("identifier.email", "equals", "home@mail.example")), both)
    assert not matches(one(cond("field.user_id", "exists")), both)
    assert matches(one(cond("profile.created_at", "lt", "2024-01-01")), both)
    assert matches(one(cond("profile.id", "equals", "prof_1")), both)


def test_field_names_are_normalised_like_imported_columns() -> None:
    # GIVEN conditions written with column spellings
    compiled = parse_filter({"all": [cond("First Name", "equals", "Ada"), cond("Identifier.E-Mail", "exists")]})
    # THEN they are stored as the profile field names imports produce
    assert compiled.tree == {"all": [{"field": "first_name", "op": "equals", "value": "Ada"},
                                     {"field": "identifier.e_mail", "op": "exists"}]}
    assert compiled(profile({"first_name": "Ada"}, {"e_mail": ["x@y.z"]}))
    assert parse_field("plan") == ("", "plan")


def test_all_and_any_nest() -> None:
    # GIVEN (plan is pro OR team) AND (age >= 30 AND (no city OR city is not Lyon))
    tree = {"all": [
        {"any": [cond("plan", "equals", "pro"), cond("plan", "equals", "team")]},
        {"all": [cond("age", "gte", 30),
                 {"any": [cond("city", "not_exists"), cond("city", "not_equals", "Lyon")]}]},
    ]}
    f = parse_filter(tree)
    # WHEN / THEN each branch decides
    assert f(profile({"plan": "team", "age": 30}))
    assert f(profile({"plan": "pro", "age": 40, "city": "Paris"}))
    assert not f(profile({"plan": "pro", "age": 40, "city": "Lyon"}))
    assert not f(profile({"plan": "free", "age": 40}))
    assert not f(profile({"plan": "pro", "age": 29}))
    assert f.conditions == 5


def test_root_all_empty_selects_everyone_but_empty_groups_elsewhere_are_refused() -> None:
    # GIVEN the explicit "everyone" filter
    assert matches({"all": []}, profile())
    # WHEN an empty group appears anywhere else THEN it is refused with its path
    assert problems({"any": []}) == {"filter.any": "must hold at least one condition or group"}
    assert "filter.all[0].all" in problems({"all": [{"all": []}]})


# -- validation -----------------------------------------------------------------------------


def test_validation_names_the_path_of_every_problem() -> None:
    # GIVEN a filter with several mistakes at different depths
    raw = {"all": [
        cond("plan", "equals", "pro"),
        {"field": "plan", "op": "startswith", "value": "p"},
        {"any": [{"field": "age", "op": "gt"}, {"field": "", "op": "exists"}, "plan=pro"]},
        {"field": "x", "op": "exists", "value": 1, "negate": True},
        {"field": "x", "op": "in", "value": ["a", None, {"b": 1}]},
        {"all": [cond("a", "exists")], "field": "a"},
    ]}
    # WHEN it is validated
    fields = problems(raw)
    # THEN each problem is reported at its path
    assert fields["filter.all[1].op"].startswith("must be one of: equals")
    assert fields["filter.all[2].any[0].value"] == "required"
    assert fields["filter.all[2].any[1].field"].startswith("must name a profile field")
    assert fields["filter.all[2].any[2]"].startswith("must be an object")
    assert fields["filter.all[3].value"] == "exists takes no value"
    assert fields["filter.all[3].negate"].startswith("unknown key")
    assert fields["filter.all[4].value[1]"].startswith("must not be null")
    assert fields["filter.all[4].value[2]"] == "must be a string, a number or true/false"
    assert fields["filter.all[5]"].startswith("a group holds exactly one key")
    assert "filter.all[0]" not in " ".join(fields)


@pytest.mark.parametrize(("raw", "path", "message"), [
    (None, "filter", "must be a group"),
    ([cond("a", "exists")], "filter", "must be a group"),
    (cond("a", "exists"), "filter", "must be a group"),  # the root is a group, not a condition
    ({"all": "plan"}, "filter.all", "must be a list"),
    (one({"op": "exists"}), "filter.all[0].field", "required"),
    (one({"field": 3, "op": "exists"}), "filter.all[0].field", "must be a string"),
    (one({"field": "a"}), "filter.all[0].op", "required"),
    (one(cond("nested.x", "exists")), "filter.all[0].field", "unknown prefix"),
    (one(cond("profile.fields", "exists")), "filter.all[0].field", "profile. is followed by"),
    (one(cond("a" * 201, "exists")), "filter.all[0].field", "at most 200"),
    (one(cond("a", "equals", "")), "filter.all[0].value", "must not be empty"),
    (one(cond("a", "equals", ["x"])), "filter.all[0].value", "must be a string, a number"),
    (one(cond("a", "equals", float("inf"))), "filter.all[0].value", "finite"),
    (one(cond("a", "equals", "x" * 2049)), "filter.all[0].value", "at most 2048 bytes"),
    (one(cond("a", "in", "x")), "filter.all[0].value", "non-empty list"),
    (one(cond("a", "in", [])), "filter.all[0].value", "non-empty list"),
    (one(cond("a", "gt", True)), "filter.all[0].value", "number or a string"),
    (one(cond("a", "lte", None)), "filter.all[0].value", "number or a string"),
])
def test_malformed_filters_are_refused_at_their_path(raw: Any, path: str, message: str) -> None:
    # WHEN a malformed filter is validated THEN the error names the path and says why
    fields = problems(raw)
    assert path in fields, fields
    assert message in fields[path]


def test_in_takes_at_most_500_values() -> None:
    # GIVEN an "in" at the limit and one past it
    assert parse_filter(one(cond("a", "in", list(range(MAX_IN_VALUES)))))
    # WHEN / THEN one more value is refused
    fields = problems(one(cond("a", "in", list(range(MAX_IN_VALUES + 1)))))
    assert fields == {"filter.all[0].value": f"must hold at most {MAX_IN_VALUES} values (got 501)"}


def _nested(depth: int) -> dict[str, Any]:
    tree: dict[str, Any] = {"all": [cond("a", "exists")]}
    for _ in range(depth - 1):
        tree = {"any": [tree]}
    return tree


def test_groups_nest_at_most_five_deep() -> None:
    # GIVEN groups nested exactly MAX_DEPTH deep
    assert matches(_nested(MAX_DEPTH), profile({"a": 1}))
    # WHEN one more level is added THEN the innermost group is refused at its path
    fields = problems(_nested(MAX_DEPTH + 1))
    assert fields == {"filter.any[0].any[0].any[0].any[0].any[0]": f"groups nest at most {MAX_DEPTH} deep"}


def test_a_filter_holds_at_most_fifty_conditions() -> None:
    # GIVEN conditions spread over nested groups, at the limit
    half = MAX_CONDITIONS // 2
    ok = {"all": [{"any": [cond("a", "exists")] * half}, {"all": [cond("b", "exists")] * half}]}
    assert parse_filter(ok).conditions == MAX_CONDITIONS
    # WHEN one more condition is added anywhere THEN the whole filter is refused
    too_many = {"all": [{"any": [cond("a", "exists")] * half}, {"all": [cond("b", "exists")] * (half + 1)}]}
    assert problems(too_many) == {"filter": f"holds at most {MAX_CONDITIONS} conditions (got 51)"}


def test_a_filter_is_at_most_64_kb_as_json() -> None:
    # GIVEN "in" lists of long values that stay under every other limit
    long_values = ["v" * 2000 + str(i) for i in range(40)]
    fields = problems({"all": [cond("a", "in", long_values)]})
    # THEN the size is refused at the root
    assert list(fields) == ["filter"] and "64 KB" in fields["filter"]


def test_at_most_twenty_problems_are_reported() -> None:
    # GIVEN fifty broken conditions
    fields = problems({"all": [{"field": "a", "op": "nope"}] * MAX_CONDITIONS})
    # THEN the answer stays short
    assert len(fields) == 20


# -- estimates ------------------------------------------------------------------------------


def test_estimate_counts_members_and_samples_ten() -> None:
    # GIVEN 30 profiles, every third on the pro plan
    people = [profile({"plan": "pro" if i % 3 == 0 else "free"}, {"email": [f"p{i}@x.example"]}, pid=f"prof_{i}")
              for i in range(30)]
    f = parse_filter(one(cond("plan", "equals", "pro")))
    # WHEN estimating over all of them
    e = estimate(f, people)
    # THEN the size, the sample (ids and emails) and the profiles read are reported
    assert (e.size, e.scanned, e.truncated) == (10, 30, False)
    assert [(m.id, m.email) for m in e.sample] == [(f"prof_{i}", f"p{i}@x.example") for i in range(0, 30, 3)]
    # AND the sample stops at 10 when more match
    assert len(estimate(parse_filter({"all": []}), people).sample) == 10


def test_estimate_stops_at_the_scan_limit_and_says_so() -> None:
    # GIVEN an endless supply of profiles
    read: list[int] = []

    def endless() -> Any:
        i = 0
        while True:
            read.append(i)
            yield profile({"n": i}, pid=f"prof_{i}")
            i += 1

    # WHEN estimating with a limit of 100
    e = estimate(parse_filter(one(cond("n", "lt", 10))), endless(), max_scan=100)
    # THEN it reads 100 (plus one to know there is more) and says it was truncated
    assert (e.size, e.scanned, e.truncated) == (10, 100, True)
    assert len(read) == 101
    # AND exactly the limit is not truncated
    exact = estimate(parse_filter({"all": []}), [profile(pid=f"prof_{i}") for i in range(100)], max_scan=100)
    assert (exact.size, exact.scanned, exact.truncated) == (100, 100, False)


def test_sample_email_falls_back_to_the_email_field() -> None:
    # GIVEN a profile keyed by user_id that carries an email field
    e = estimate(parse_filter({"all": []}), [profile({"email": "f@x.example"}, {"user_id": ["u1"]}),
                                             profile({}, {"user_id": ["u2"]}, pid="prof_2")])
    # THEN the sample shows that email, or none
    assert [m.email for m in e.sample] == ["f@x.example", None]
