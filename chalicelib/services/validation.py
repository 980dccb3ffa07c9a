"""Turn pydantic validation errors into the domain's Invalid, naming each field.

Input values are never copied into the message: credentials pass through here.
"""

from __future__ import annotations

from typing import Any, TypeVar

from chalicelib.domain.errors import Invalid

M = TypeVar("M")


def field_errors(exc: Any, prefix: str = "") -> dict[str, str]:
    fields: dict[str, str] = {}
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        name = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "body")
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        elif err.get("type") == "missing":
            msg = "required"
        fields.setdefault(name, msg)
    return fields


def validate(model: type[M], data: Any, *, prefix: str = "", what: str = "request") -> M:
    from pydantic import ValidationError

    try:
        return model.model_validate(data)  # type: ignore[attr-defined,no-any-return]
    except ValidationError as exc:
        fields = field_errors(exc, prefix)
        names = ", ".join(sorted(fields))
        raise Invalid(
            f"the {what} is not valid: {names}",
            code="validation.invalid",
            fields=fields,
        ) from None
