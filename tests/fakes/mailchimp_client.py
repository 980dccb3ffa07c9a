"""What the official Mailchimp Marketing client (the `mailchimp-marketing` package, a
test-only dependency) can send, used by the fake Mailchimp to refuse any other request:
an unknown path, a method the path does not take, a query parameter the method does not
take, a body sent to a method that takes none (or none sent to one that needs it), and a
body key the request schema does not have.

Paths, methods and query parameters are read from the client's generated API modules
(`mailchimp_marketing/api/*.py`, parsed, never imported or run): each
`<name>_with_http_info` method names its path template and HTTP method in its `call_api`
call, and appends each query parameter it takes to `query_params`.

The client ships no request models (only their names, in its docstrings), so the body
keys of the requests Switchyard sends are listed here from Mailchimp's API reference, by
the schema name the client gives; `BODIES` must name every body schema the provider uses
(tests/providers/test_mailchimp_contract.py checks it does).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

MEMBER_STATUS = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")

# Request schemas by the client's name for them: key -> nested schema, a tuple of allowed
# string values, or None (any value).
_MEMBER_KEYS: dict[str, Any] = {
    "email_address": None, "email_type": ("html", "text"), "merge_fields": None, "interests": None,
    "language": None, "vip": None, "location": None, "marketing_permissions": None, "ip_signup": None,
    "timestamp_signup": None, "ip_opt": None, "timestamp_opt": None, "tags": None,
}
BODIES: dict[str, dict[str, Any]] = {
    # POST /lists/{list_id}: batch subscribe or unsubscribe
    "MembersToSubscribeUnsubscribeTofromAListInBatch": {
        "members": [{**_MEMBER_KEYS, "status": MEMBER_STATUS}], "sync_tags": None, "update_existing": None,
    },
    # POST /lists/{list_id}/members/{subscriber_hash}/tags
    "MemberTags": {"tags": [{"name": None, "status": ("active", "inactive")}], "is_syncing": None},
    # POST /batches
    "Body": {"operations": [{"method": ("GET", "POST", "PUT", "PATCH", "DELETE"), "path": None,
                             "params": None, "body": None, "operation_id": None}]},
    # PUT /lists/{list_id}/members/{subscriber_hash}: add or update a member
    "AddListMembers2": {**_MEMBER_KEYS, "status": MEMBER_STATUS, "status_if_new": MEMBER_STATUS},
}


class Refused(Exception):
    """Mailchimp's answer to a request outside the API: status, title and detail."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


@dataclass(frozen=True)
class Method:
    id: str  # "ListsApi.get_list_members_info"
    http_method: str
    path: str  # the template, "/lists/{list_id}/members"
    pattern: re.Pattern[str]
    params: frozenset[str]  # query parameters
    body: str | None  # the request schema's name, when it takes a body

    @property
    def literal(self) -> int:
        """How much of the path is fixed text: the more specific template wins."""
        return len(re.sub(r"\{[^}]+\}", "", self.path))


def _methods_of(source: str, module: str) -> list[Method]:
    found: list[Method] = []
    for cls in ast.parse(source).body:
        if not isinstance(cls, ast.ClassDef):
            continue
        for fn in cls.body:
            if not (isinstance(fn, ast.FunctionDef) and fn.name.endswith("_with_http_info")):
                continue
            path = verb = None
            query: set[str] = set()
            takes_body = False
            for node in ast.walk(fn):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    args = node.args
                    if node.func.attr == "call_api" and len(args) >= 2 \
                            and all(isinstance(a, ast.Constant) for a in args[:2]):
                        path, verb = str(args[0].value), str(args[1].value)  # type: ignore[attr-defined]
                    elif node.func.attr == "append" and isinstance(node.func.value, ast.Name) \
                            and node.func.value.id == "query_params" and args \
                            and isinstance(args[0], ast.Tuple) and isinstance(args[0].elts[0], ast.Constant):
                        query.add(str(args[0].elts[0].value))
                elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "body_params"
                                                          for t in node.targets) \
                        and not (isinstance(node.value, ast.Constant) and node.value.value is None):
                    takes_body = True
            if path is None or verb is None:
                raise AssertionError(f"{module}.{cls.name}.{fn.name}: no call_api path and method found")
            body = None
            if takes_body:
                doc = ast.get_docstring(fn) or ""
                match = re.search(r":param (\w+) body:", doc)
                body = match.group(1) if match else "?"
            regex = "".join("[^/]+" if part.startswith("{") else re.escape(part)
                            for part in re.split(r"(\{[^}]+\})", path))
            name = fn.name.removesuffix("_with_http_info")
            found.append(Method(f"{cls.name}.{name}", verb.upper(), path, re.compile(regex), frozenset(query),
                                body))
    return found


@cache
def methods() -> tuple[Method, ...]:
    api = resources.files("mailchimp_marketing").joinpath("api")
    found: list[Method] = []
    for entry in sorted(api.iterdir(), key=lambda e: e.name):
        if entry.name.endswith("_api.py"):
            found.extend(_methods_of(entry.read_text(encoding="utf-8"), entry.name))
    return tuple(found)


def method_for(http_method: str, path: str) -> Method:
    """The client method a request is for (path after /3.0); Refused 404 or 405 otherwise."""
    same_path = sorted((m for m in methods() if m.pattern.fullmatch(path)), key=lambda m: -m.literal)
    for m in same_path:
        if m.http_method == http_method:
            return m
    if same_path:
        raise Refused(405, "Method Not Allowed", "The requested method and resource are not compatible. "
                                                 f"{http_method} is not allowed on {path}.")
    raise Refused(404, "Resource Not Found", "The requested resource could not be found.")


def check(http_method: str, path: str, query: dict[str, str], body: Any) -> Method:
    """Refuse the request as Mailchimp would, or return the client method it matches.

    A query parameter the client cannot send is refused (400) although Mailchimp itself
    may ignore it: ignored, a misspelt filter would silently widen a read."""
    m = method_for(http_method, path)
    unknown = sorted(set(query) - m.params)
    if unknown:
        raise Refused(400, "Invalid Resource", f"{m.id} takes no query parameter {unknown[0]!r}.")
    if m.body is None:
        if body is not None:
            raise Refused(400, "Invalid Resource", f"{m.id} takes no request body.")
        return m
    if body is None:
        raise Refused(400, "JSON Parse Exception", f"{m.id} needs a JSON request body.")
    schema = BODIES.get(m.body)
    if schema is None:
        raise Refused(400, "Invalid Resource", f"the body schema {m.body} of {m.id} is not known to the fake "
                                               "(add its keys to tests/fakes/mailchimp_client.py BODIES)")
    check_value(body, schema, "body")
    return m


def check_value(value: Any, schema: Any, where: str) -> None:
    """Refused(400) when `value` does not fit `schema` (see BODIES)."""
    if schema is None:
        return
    if isinstance(schema, tuple):
        if value not in schema:
            raise Refused(400, "Invalid Resource", f"{where}: {value!r} is not one of {', '.join(schema)}.")
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise Refused(400, "Invalid Resource", f"{where} must be an array.")
        for i, item in enumerate(value):
            check_value(item, schema[0], f"{where}[{i}]")
    elif isinstance(schema, dict):
        if not isinstance(value, dict):
            raise Refused(400, "Invalid Resource", f"{where} must be an object.")
        for key, item in value.items():
            if key not in schema:
                raise Refused(400, "Invalid Resource", f"{where}.{key} is not a field of this request.")
            check_value(item, schema[key], f"{where}.{key}")


__all__ = ["BODIES", "Method", "Refused", "check", "check_value", "method_for", "methods"]
