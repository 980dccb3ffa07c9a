"""Turn pydantic validation errors into the domain's Invalid, in plain words.

`fields` keeps the path of each field the client sent (`credentials.access_key_id`) so a
form can mark it; the words next to it, and the message, are sentences a person can act on:
no validator wording ("String should match pattern ..."), no regular expressions, no paths.

Input values are never copied into the message: credentials pass through here.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from chalicelib.domain.errors import Invalid

M = TypeVar("M")

# What each pattern the models use means, in words. A pattern missing here still gets a
# plain "is not in the expected format"; a test checks that every model's pattern is here.
PATTERN_WORDS: dict[str, str] = {
    r"^(AKIA|ASIA)[A-Z0-9]{16}$": "must be an AWS access key ID: AKIA or ASIA followed by 16 capital letters or digits",
    r"^[a-z]{2}(-[a-z]+)+-\d$": "must be an AWS region such as us-east-1",
    r"^arn:aws[a-z\-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_\-/]+$":
        "must be the ARN of an IAM role, such as arn:aws:iam::123456789012:role/SwitchyardAccess",
    r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$":
        "must be an S3 bucket name: 3 to 63 lower-case letters, digits, dots or hyphens",
    r"^[a-z][a-z0-9_]{0,63}$":
        "must be a field name: a lower-case letter, then lower-case letters, digits or _ (64 at most)",
    r"^[0-9]{1,20}$": "must be a number made of digits only",
    r"^https?://[A-Za-z0-9.\-:\[\]]+/\d{12}/[A-Za-z0-9_\-]{1,80}(\.fifo)?$":
        "must be an SQS queue URL, such as https://sqs.us-east-1.amazonaws.com/123456789012/my-queue",
    r"^[a-z]{2,4}[0-9]{1,3}$": "must be a Mailchimp data center such as us21",
    r"^[A-Za-z0-9]{1,32}$": "must be a Mailchimp audience ID: up to 32 letters or digits",
    r"^[A-Z0-9_]{1,10}$": "must be a Mailchimp merge tag: up to 10 capital letters, digits or _",
    r"^[A-Za-z0-9_\-]+$": "must hold only letters, digits, _ or -",
    r"^([01]\d|2[0-3]):[0-5]\d$": "must be a time of day as HH:MM (24 h), such as 09:30",
    r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,63}$": "must be an e-mail address",
    r"^[^@\s]+@[^@\s]+\.[^@\s]+$": "must be an e-mail address",
    r"^https?://": "must be a web address starting with https:// or http://",
    r"^(https?://|whk_)": "must be a web address starting with https://, or the id of a webhook to keep",
    r"^[^:]*$": "must not contain a colon (:)",
    r"^[a-zA-Z0-9_.\-]+$": "must hold only letters, digits, _, . or -",
    r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+){0,5}$":
        "must be a path of up to 6 names joined by dots, such as person.employment.title",
    r"^[!-~]+$": "must be printable ASCII without spaces",
}

# Words that never reach a user: the validator's own phrasing and its debugging aids.
_JARGON = re.compile(r"should|pattern|validation|Value error|Assertion failed|Input |[\^$\\{}\[\]]")
_ACRONYMS = {"id": "ID", "ids": "IDs", "url": "URL", "urls": "URLs", "aws": "AWS", "arn": "ARN",
             "api": "API", "iam": "IAM", "sqs": "SQS", "s3": "S3", "dc": "data center", "tz": "time zone"}


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _quoted_choices(expected: str) -> str:
    return expected.replace("'", "")


def _words(err: dict[str, Any]) -> str:
    """The words for one error, starting with a verb: "must be ...", "is required"."""
    kind = str(err.get("type", ""))
    ctx: dict[str, Any] = err.get("ctx") or {}
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "string_pattern_mismatch":
        return PATTERN_WORDS.get(str(ctx.get("pattern")), "is not in the expected format")
    if kind == "string_too_short":
        n = int(ctx.get("min_length", 1))
        return "must not be empty" if n <= 1 else f"must be at least {_plural(n, 'character', 'characters')}"
    if kind == "string_too_long":
        return f"must be at most {_plural(int(ctx.get('max_length', 0)), 'character', 'characters')}"
    if kind in ("too_short", "too_long"):
        # The same error for lists and for secrets (SecretStr says "Value").
        unit = ("entry", "entries") if ctx.get("field_type") in _COLLECTIONS else ("character", "characters")
        if kind == "too_long":
            return f"can hold at most {_plural(int(ctx.get('max_length', 0)), *unit)}"
        n = int(ctx.get("min_length", 1))
        verb = "must have" if unit[0] == "entry" else "must be"
        return "must not be empty" if n <= 1 else f"{verb} at least {_plural(n, *unit)}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = {"greater_than_equal": ("ge", "at least"), "greater_than": ("gt", "more than"),
                 "less_than_equal": ("le", "at most"), "less_than": ("lt", "less than")}[kind]
        return f"must be {bound[1]} {ctx.get(bound[0])}"
    if kind == "multiple_of":
        return f"must be a multiple of {ctx.get('multiple_of')}"
    if kind in ("literal_error", "enum"):
        return f"must be one of: {_quoted_choices(str(ctx.get('expected', '')))}"
    if kind == "union_tag_invalid":
        return f"must be one of: {_quoted_choices(str(ctx.get('expected_tags', '')))}"
    if kind == "union_tag_not_found":
        return f"needs a {ctx.get('discriminator', 'type')!s}".replace("'", "")
    if kind in ("value_error", "assertion_error"):
        text = str(ctx.get("error") or err.get("msg", ""))
        text = text.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        return text if text and not _JARGON.search(text) else "is not valid"
    simple = _SIMPLE.get(kind) or next((words for prefix, words in _FAMILIES if kind.startswith(prefix)), None)
    return simple or "is not valid"


_SIMPLE: dict[str, str] = {
    "string_type": "must be text",
    "string_unicode": "must be text",
    "string_not_ascii": "must hold only ASCII characters",
    "none_required": "must be null",
    "json_invalid": "is not valid JSON",
    "json_type": "must be JSON text",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "mapping_type": "must be an object",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "set_type": "must be a list",
    "frozen_set_type": "must be a list",
    "iterable_type": "must be a list",
    "is_instance_of": "is not valid",
    "frozen_field": "cannot be changed",
    "frozen_instance": "cannot be changed",
    "finite_number": "must be a finite number",
    "decimal_type": "must be a number",
    "decimal_parsing": "must be a number",
    "uuid_type": "must be a UUID",
    "uuid_parsing": "must be a UUID",
}
_FAMILIES: tuple[tuple[str, str], ...] = (
    ("int_", "must be a whole number"),
    ("float_", "must be a number"),
    ("bool_", "must be true or false"),
    ("datetime_", "must be a date and time such as 2026-05-01T09:00:00Z"),
    ("timezone_", "must be a date and time with its offset, such as 2026-05-01T09:00:00Z"),
    ("date_", "must be a date such as 2026-05-01"),
    ("time_", "must be a time such as 09:30"),
    ("url_", "must be a web address such as https://example.com"),
    ("bytes_", "must be text"),
    ("dict_", "must be an object"),
    ("list_", "must be a list"),
)


_COLLECTIONS = {"List", "Tuple", "Set", "Frozenset", "Dictionary", "Iterable"}
# Field names that read badly alone, said in words; GENERIC ones also need their parent.
_NAMES = {"at": "time", "timezone": "time zone", "every_minutes": "minutes between runs", "op": "operator",
          "expression": "cron expression",
          "dc": "data center", "failure_window_hours": "hours of errors before failing"}
_GENERIC = {"start", "end", "value", "field", "min", "max", "type", "day", "at", "op", "name"}
# Discriminated unions put the member's tag in the error's location; it is never a field.
_UNION_TAGS = {"once", "interval", "daily", "weekly", "cron"}


def _humanize(part: str) -> str:
    if part in _NAMES:
        return _NAMES[part]
    return " ".join(_ACRONYMS.get(w.lower(), w.lower()) for w in part.split("_") if w)


def _label(path: str, prefix: str) -> str:
    """`credentials.access_key_id` -> "Access key ID"; `config.fields.0` -> "Fields, entry 1";
    `schedule.daily.quiet_hours.start` -> "Quiet hours start"."""
    parts = [p for p in path.split(".") if p and p not in _UNION_TAGS and "[" not in p]
    if prefix and parts[:1] == [prefix] and len(parts) > 1:
        parts = parts[1:]
    entries = [f"entry {int(p) + 1}" for p in parts if p.isdigit()]
    names = [p for p in parts if not p.isdigit()]
    if not names:
        return "The body"
    words = _humanize(names[-1])
    if names[-1] in _GENERIC and len(names) > 1:
        words = f"{_humanize(names[-2])} {words}"
    if entries:
        words = f"{words}, {', '.join(entries)}"
    return words[:1].upper() + words[1:]


def field_errors(exc: Any, prefix: str = "") -> dict[str, str]:
    fields: dict[str, str] = {}
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        name = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "body")
        fields.setdefault(name, _words(err))
    return fields


def sentence(path: str, words: str, prefix: str = "") -> str:
    """One field's problem as a sentence naming the field in words."""
    label = _label(path, prefix)
    if words == "required":
        return f"{label} is required."
    if words == "unknown field":
        return f"{label} is not a field here; remove it."
    return f"{label} {words}."


def plain_message(fields: dict[str, str], *, prefix: str = "", what: str = "request", limit: int = 3) -> str:
    """The message of an Invalid: what to fix, in sentences, the first `limit` fields."""
    names = sorted(fields)
    said = " ".join(sentence(n, fields[n], prefix) for n in names[:limit])
    more = len(names) - limit
    tail = f" {_plural(more, 'other field needs', 'other fields need')} fixing too." if more > 0 else ""
    return f"Check the {what}: {said}{tail}"


def validate(model: type[M], data: Any, *, prefix: str = "", what: str = "request") -> M:
    from pydantic import ValidationError

    try:
        return model.model_validate(data)  # type: ignore[attr-defined,no-any-return]
    except ValidationError as exc:
        fields = field_errors(exc, prefix)
        raise Invalid(plain_message(fields, prefix=prefix, what=what), code="validation.invalid",
                      fields=fields) from None
