"""Profile mapping, identifier normalization, reason codes and merge rules (domain/profiles.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from chalicelib.domain.profiles import (
    MAX_SET_VALUES,
    PROFILE_ID,
    Mapping,
    Omitted,
    ProfileRecord,
    field_name,
    map_record,
    merge,
    normalize_identifier,
    parse_identifier,
    profile_id_for,
)


def mapped(row: dict, mapping: Mapping | None = None) -> ProfileRecord:
    out = map_record(row, mapping or Mapping(), "file.csv#1")
    assert isinstance(out, ProfileRecord), out
    return out


def omitted(row: dict, mapping: Mapping | None = None) -> Omitted:
    out = map_record(row, mapping or Mapping(), "file.csv#1")
    assert isinstance(out, Omitted), out
    return out


# -- mapping ------------------------------------------------------------------------------


def test_mapped_columns_are_renamed_and_unmapped_ones_keep_a_snake_case_name() -> None:
    # GIVEN a mapping of two columns, and a row with more columns than that
    mapping = Mapping(field_mapping={"Mail": "email", "Given Name": "first_name"})
    row = {"Mail": "Ada@Example.com", "Given Name": "Ada", "Last Name": "Lovelace", "Prénom": "x",
           "2nd Phone": "555"}

    # WHEN the row is mapped
    rec = mapped(row, mapping)

    # THEN mapped columns take their target, the others their snake_case name
    assert rec.identifiers == {"email": "ada@example.com"}
    assert rec.fields == {"first_name": "Ada", "last_name": "Lovelace", "prenom": "x", "f_2nd_phone": "555"}
    assert rec.ref == "file.csv#1"


def test_a_column_mapped_to_none_is_dropped_and_mapping_matches_normalized_names() -> None:
    # GIVEN a mapping written with a different spelling of the column, and one dropped column
    mapping = Mapping(field_mapping={"e-mail address": "email", "Internal Notes": None})

    # WHEN a row with "E-Mail Address" and "Internal Notes" is mapped
    rec = mapped({"E-Mail Address": "a@b.co", "Internal Notes": "secret", "plan": "pro"}, mapping)

    # THEN the column is found by its normalized name and the dropped one is gone
    assert rec.identifiers == {"email": "a@b.co"}
    assert rec.fields == {"plan": "pro"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [("First Name", "first_name"), ("E-mail", "e_mail"), ("  ID  ", "id"), ("Prénom", "prenom"),
     ("2nd", "f_2nd"), ("###", ""), ("A" * 100, "a" * 64)],
)
def test_field_names_are_lower_snake_case(name: str, expected: str) -> None:
    # GIVEN / WHEN a column name is turned into a field name / THEN
    assert field_name(name) == expected


def test_from_config_reads_identifier_field_through_the_mapping() -> None:
    # GIVEN an S3 import config naming its identifier by the source column
    config = {"bucket": "b", "identifier_field": "Customer Email",
              "field_mapping": {"Customer Email": "email"}}

    # WHEN a mapping is built from it
    m = Mapping.from_config(config)

    # THEN the identifier is the profile field the column maps to; rules default to latest
    assert m.identifier_fields == ("email",)
    assert m.merge_rules == {}
    assert mapped({"Customer Email": " ADA@example.com "}, m).identifiers == {"email": "ada@example.com"}


def test_from_config_accepts_several_identifier_fields_and_merge_rules() -> None:
    # GIVEN a config with two identifiers and merge rules
    config = {"identifier_fields": ["user_id", "email"], "merge_rules": {"tags": "append", "source": "first"}}

    # WHEN a mapping is built / THEN order and rules are kept
    m = Mapping.from_config(config)
    assert m.identifier_fields == ("user_id", "email")
    assert m.merge_rules == {"tags": "append", "source": "first"}
    # AND without any identifier setting, email identifies
    assert Mapping.from_config({}).identifier_fields == ("email",)


@pytest.mark.parametrize(
    "kwargs",
    [{"identifier_fields": ()}, {"merge_rules": {"tags": "sum"}},
     {"merge_rules": {"email": "append"}}, {"identifier_fields": tuple(f"k{i}" for i in range(9))},
     {"field_mapping": {"x": "###"}}],
)
def test_bad_mappings_are_refused(kwargs: dict) -> None:
    # GIVEN / WHEN a mapping breaks a rule / THEN it is refused at construction
    with pytest.raises(ValueError):
        Mapping(**kwargs)


def test_identifiers_follow_the_mapping_order_and_both_are_kept() -> None:
    # GIVEN a mapping where user_id comes first
    m = Mapping(identifier_fields=("user_id", "email"))

    # WHEN a row lists email before user_id
    rec = mapped({"email": "A@B.CO", "user_id": " u-1 ", "name": "Ada"}, m)

    # THEN identifiers are ordered by priority and normalized; they are not fields too
    assert list(rec.identifiers.items()) == [("user_id", "u-1"), ("email", "a@b.co")]
    assert rec.fields == {"name": "Ada"}


# -- normalization ------------------------------------------------------------------------


def test_identifier_normalization() -> None:
    # GIVEN / WHEN identifiers of several kinds are normalized / THEN
    assert normalize_identifier("email", "  Ada@Example.COM ") == "ada@example.com"
    assert normalize_identifier("work_email", "X@Y.Z") == "x@y.z"
    assert normalize_identifier("user_id", "  AbC ") == "AbC"  # only emails are lower-cased
    assert normalize_identifier("customer_id", 42) == "42"
    assert normalize_identifier("phone", "   ") is None
    assert normalize_identifier("phone", None) is None
    for kind, bad in (("email", "no-at-sign"), ("email", "a@"), ("email", "a b@c.d"),
                      ("user_id", 1.5), ("user_id", True), ("user_id", ["x"]), ("user_id", "x" * 513)):
        with pytest.raises(ValueError):
            normalize_identifier(kind, bad)


def test_parse_identifier_query() -> None:
    # GIVEN / WHEN "kind:value" strings are parsed / THEN
    assert parse_identifier("email:Ada@Example.com") == ("email", "ada@example.com")
    assert parse_identifier("user_id:a:b") == ("user_id", "a:b")  # the value may hold ':'
    for bad in ("ada@example.com", "email:", ":x", "Bad Kind:x", "email:nope"):
        with pytest.raises(ValueError):
            parse_identifier(bad)


def test_values_are_stripped_and_empty_values_dropped() -> None:
    # GIVEN a row with padded, empty and typed values
    row = {"email": "a@b.co", "name": "  Ada ", "empty": "", "blank": "   ", "none": None,
           "age": 36, "score": 1.5, "vip": True, "ltv": Decimal("12.50"), "n": Decimal("3")}

    # WHEN mapped / THEN
    assert mapped(row).fields == {"name": "Ada", "age": 36, "score": 1.5, "vip": True, "ltv": 12.5, "n": 3}


# -- reason codes -------------------------------------------------------------------------


def test_missing_identifier() -> None:
    # GIVEN rows without a usable identifier value / WHEN mapped / THEN omitted as such
    for row in ({"name": "Ada"}, {"email": "", "name": "Ada"}, {"email": "   "}, {"email": None}):
        out = omitted(row)
        assert (out.reason, out.field, out.ref) == ("missing_identifier", "email", "file.csv#1")


@pytest.mark.parametrize(
    ("row", "culprit"),
    [({"email": "not-an-email"}, "email"),
     ({"email": "a@b.co", "bio": "x" * 2049}, "bio"),
     ({"email": "a@b.co", "address": {"city": "Paris"}}, "address"),
     ({"email": "a@b.co", "tags": ["a", "b"]}, "tags"),  # a list where one value is expected
     ({"email": "a@b.co", "score": float("nan")}, "score"),
     ({"email": ["a@b.co"]}, "email")],
)
def test_invalid_values_omit_the_record_and_name_the_field_not_the_value(row: dict, culprit: str) -> None:
    # GIVEN / WHEN a row with one unusable value is mapped
    out = omitted(row)

    # THEN it is omitted as invalid, naming the field but never quoting the value
    assert out.reason == "invalid" and out.field == culprit
    assert "a@b.co" not in out.detail and "not-an-email" not in out.detail


def test_a_2kb_value_is_fine_and_a_record_over_64kb_is_invalid() -> None:
    # GIVEN a value of exactly 2 KB, and a record with forty of them
    ok = mapped({"email": "a@b.co", "bio": "x" * 2048})
    big = omitted({"email": "a@b.co", **{f"c{i}": "x" * 2048 for i in range(40)}})

    # THEN the first maps, the second is invalid as a whole
    assert len(ok.fields["bio"]) == 2048
    assert big.reason == "invalid"


def test_lists_are_accepted_for_append_fields() -> None:
    # GIVEN an append rule on "tags" / WHEN a row carries a list with duplicates and blanks
    m = Mapping(merge_rules={"tags": "append"})
    rec = mapped({"email": "a@b.co", "tags": ["vip", " beta ", "vip", ""]}, m)

    # THEN the field is the sorted set of its values
    assert rec.fields == {"tags": ["beta", "vip"]}


def test_a_row_that_is_not_an_object_is_invalid() -> None:
    # GIVEN / WHEN a JSON line that is a list is mapped / THEN
    out = map_record(["a@b.co"], Mapping(), "f.jsonl#3")  # type: ignore[arg-type]
    assert isinstance(out, Omitted) and out.reason == "invalid"


# -- merge rules --------------------------------------------------------------------------


def test_latest_wins_by_default() -> None:
    # GIVEN a stored profile / WHEN a record brings a new value for one field
    merged, changed = merge({"plan": "free", "city": "Paris"}, {"plan": "pro"}, {})

    # THEN it replaces the stored value; other fields stay
    assert (merged, changed) == ({"plan": "pro", "city": "Paris"}, True)


def test_first_keeps_a_stored_non_empty_value() -> None:
    # GIVEN a "first" rule on source
    rules = {"source": "first"}

    # WHEN records bring another value, or fill an empty one
    kept, changed_kept = merge({"source": "ads"}, {"source": "web"}, rules)
    filled, changed_filled = merge({"source": ""}, {"source": "web"}, rules)
    new, changed_new = merge({}, {"source": "web"}, rules)

    # THEN the first non-empty value stays
    assert (kept, changed_kept) == ({"source": "ads"}, False)
    assert (filled, changed_filled) == ({"source": "web"}, True)
    assert (new, changed_new) == ({"source": "web"}, True)


def test_append_keeps_a_sorted_set() -> None:
    # GIVEN an append rule and a stored scalar (the field used to be "latest")
    rules = {"tags": "append"}

    # WHEN values are appended, twice the same
    once, changed_once = merge({"tags": "vip"}, {"tags": ["beta", "alpha"]}, rules)
    again, changed_again = merge(once, {"tags": "beta"}, rules)

    # THEN the field is a sorted unique list, and repeating a value changes nothing
    assert (once, changed_once) == ({"tags": ["alpha", "beta", "vip"]}, True)
    assert (again, changed_again) == ({"tags": ["alpha", "beta", "vip"]}, False)


def test_append_sets_are_capped_and_keep_what_they_had() -> None:
    # GIVEN a full set
    full = [f"v{i:03d}" for i in range(MAX_SET_VALUES)]

    # WHEN one more value comes / THEN nothing is dropped and nothing is added
    merged, changed = merge({"tags": full}, {"tags": "a-new-one"}, {"tags": "append"})
    assert merged["tags"] == full and not changed


def test_unchanged_means_the_same_stored_json() -> None:
    # GIVEN a stored 1 / WHEN the same, then 1.0 and True arrive
    assert merge({"n": 1}, {"n": 1}, {})[1] is False
    # THEN values equal in Python but stored differently count as changes
    assert merge({"n": 1}, {"n": 1.0}, {})[1] is True
    assert merge({"n": 1}, {"n": True}, {})[1] is True


# -- ids ----------------------------------------------------------------------------------


def test_profile_ids_derive_from_the_creating_identifier_and_are_unique_otherwise() -> None:
    # GIVEN / WHEN ids are derived for the same and for different inputs
    a = profile_id_for("acct_1", "email", "a@b.co")

    # THEN the same identifier always gets the same id, anything else another one
    assert a == profile_id_for("acct_1", "email", "a@b.co")
    assert PROFILE_ID.match(a) and len(a) == 31
    others = {profile_id_for("acct_2", "email", "a@b.co"),
              profile_id_for("acct_1", "user_id", "a@b.co"),
              profile_id_for("acct_1", "email", "b@b.co")}
    assert a not in others and len(others) == 3
