"""Domain errors: a stable code, a human sentence, the fields at fault.

They carry a *kind*, never an HTTP status: the API layer maps kinds to statuses, so a
worker or a script can raise and catch the same errors without HTTP vocabulary.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    BAD_REQUEST = "bad_request"  # malformed JSON, query or cursor
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    INVALID = "invalid"  # well-formed but breaks a rule or a schema
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA = "unsupported_media"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class AppError(Exception):
    kind: ErrorKind = ErrorKind.INVALID
    code: str = "invalid"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        fields: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
        kind: ErrorKind | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if kind is not None:
            self.kind = kind
        self.fields = fields or {}
        self.details = details or {}


class BadRequest(AppError):
    kind = ErrorKind.BAD_REQUEST
    code = "request.malformed"


class Unauthenticated(AppError):
    kind = ErrorKind.UNAUTHENTICATED
    code = "auth.unauthenticated"


class Forbidden(AppError):
    kind = ErrorKind.FORBIDDEN
    code = "auth.forbidden"


class NotFound(AppError):
    kind = ErrorKind.NOT_FOUND
    code = "not_found"


class Conflict(AppError):
    kind = ErrorKind.CONFLICT
    code = "conflict"


class Invalid(AppError):
    kind = ErrorKind.INVALID
    code = "validation.invalid"


class TooLarge(AppError):
    kind = ErrorKind.TOO_LARGE
    code = "request.too_large"


class Unavailable(AppError):
    kind = ErrorKind.UNAVAILABLE
    code = "service.unavailable"


def not_found(kind: str, ident: str) -> NotFound:
    # Same answer whether the object is missing or belongs to another account.
    return NotFound(f"{kind} {ident!r} was not found", code=f"{kind}.not_found")


def stale_version(kind: str, given: int | None) -> Conflict:
    return Conflict(
        f"the {kind} was changed by someone else since version {given}; reload it and retry",
        code="conflict.stale_version",
        fields={"version": "stale"},
    )
