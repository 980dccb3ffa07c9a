"""A source record that must be one JSON object (a JSON Lines line, a Kinesis record): the
object, or the plain-words reason the record is reported invalid."""

from __future__ import annotations

import json
from typing import Any


def json_object(data: bytes) -> dict[str, Any] | str:
    """The UTF-8 JSON object `data` holds, or why it holds none (a str)."""
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg} at column {exc.colno})"
    except RecursionError:
        return "JSON nested too deeply"
    if not isinstance(value, dict):
        return f"not a JSON object (a JSON {json_kind(value)})"
    return value


def json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
