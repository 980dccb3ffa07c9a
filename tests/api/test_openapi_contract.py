"""The API contract is a file: docs/openapi.json is the OpenAPI document the app serves, so
any change to what the API accepts or answers shows in review as a diff of that file, and
a refactoring that changes it by accident fails here.

After a deliberate change, write the file again and commit it with the change:

    SWITCHYARD_WRITE_OPENAPI=1 .venv/bin/pytest tests/api/test_openapi_contract.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import app  # noqa: F401  (importing the app registers every route the document lists)
from chalicelib.api.openapi import document

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def rendered(doc: dict[str, Any]) -> str:
    # Sorted keys, one space of indent: stable, and a change reads as a short diff.
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def differences(committed: dict[str, Any], served: dict[str, Any]) -> list[str]:
    """What differs, named the way a reviewer looks for it: operations, then schemas."""
    def ops(doc: dict[str, Any]) -> dict[str, Any]:
        return {f"{m.upper()} {p}": op for p, item in doc.get("paths", {}).items() for m, op in item.items()}

    found = []
    for kind, a, b in (("operation", ops(committed), ops(served)),
                       ("schema", committed.get("components", {}).get("schemas", {}),
                        served.get("components", {}).get("schemas", {}))):
        found += [f"{kind} added: {k}" for k in sorted(set(b) - set(a))]
        found += [f"{kind} removed: {k}" for k in sorted(set(a) - set(b))]
        found += [f"{kind} changed: {k}" for k in sorted(set(a) & set(b)) if a[k] != b[k]]
    rest = {k for k in set(committed) | set(served) if k not in ("paths", "components")
            and committed.get(k) != served.get(k)}
    return found + [f"top-level {k} changed" for k in sorted(rest)]


def test_the_served_document_is_the_committed_contract() -> None:
    served = document()
    if os.environ.get("SWITCHYARD_WRITE_OPENAPI") == "1":
        CONTRACT.write_text(rendered(served))
    committed = json.loads(CONTRACT.read_text())
    # positive control: the contract holds the routes a user relies on
    assert {"post", "get"} <= set(committed["paths"]["/api/v1/jobs"])
    assert differences(committed, served) == [], (
        "the OpenAPI document changed: if meant, write docs/openapi.json again (this file's docstring says how)")
    assert CONTRACT.read_text() == rendered(served)  # the same, byte for byte


def test_a_change_is_named_by_operation_and_schema() -> None:
    base = {"openapi": "3.1.0", "paths": {"/a": {"get": {"operationId": "get_a"}}},
            "components": {"schemas": {"A": {"type": "object"}}}}
    assert differences(base, base) == []
    changed = {"openapi": "3.1.1",
               "paths": {"/a": {"get": {"operationId": "read_a"}}, "/b": {"post": {}}},
               "components": {"schemas": {"B": {}}}}
    assert differences(base, changed) == [
        "operation added: POST /b", "operation changed: GET /a",
        "schema added: B", "schema removed: A", "top-level openapi changed"]
