"""moto's answers in the benches' emulation, faster and the same: DynamoDB answers
serialized in a tenth of the time, byte for byte; SQS sends 17x faster.

moto (5.x) serializes every answer by walking botocore's output shapes. For each DynamoDB
attribute value (`{"S": "x"}`) it visits all ten members of the AttributeValue shape and,
for each, tries six alias rules to find the member in the value. One BatchGetItem of 100
items of 7 attributes took ~1 s of CPU on a loaded 2-core machine, most of it there. In the
benches' emulation (bench/awsnet.py) that CPU, not the modelled network, was most of what a
timed window held, and it grew with the number of attributes per item, which real
DynamoDB's latency barely does. The tests' moto installs it too (tests/conftest.py).

`install()` gives AttributeValue structures a short path: when the value is a plain dict
whose keys are all member names (always so for what moto's DynamoDB backend returns), only
the members present are serialized, each by the same per-type method, in the shape's
member order. The general path would pick the same values: for a dict it tries the
member's shape name first (never a key of such a dict), then the member name itself. Any
other value takes moto's own path. tests/test_moto_speed.py compares both paths' answers
for every attribute type, nested, and the operations the app uses.

SQS: each message moto stores reads the queue's attributes, which walks every message in
the queue calling a clock that builds two datetimes (~10 us idle, far more under load):
100 SendMessageBatch of 10 with a consumer took 79 s at load 10. The walk stays; the
clock becomes `time.time()`, the same wall clock moto's `utcnow()` reads (4.6 s).

Dispatch: for every request moto lists its own package folder (a stat per entry) and tries
its URL patterns to find the backend of the host, and lists the response class's methods
with `inspect.getmembers`. Both answers are fixed while moto runs, so they are looked up
once: a GetItem's CPU in moto goes from ~1.15 to ~0.68 ms, a 100-key BatchGetItem's from
~7 to ~6.3 ms (in-process, idle).

Update expressions: moto parses each one twice per update (the request's check, then the
backend), and its action-count check counts the clauses below every node of the tree again,
quadratic in the actions. The step commit's update (~20 `if_not_exists` additions) cost
~21 ms of moto CPU, ~12 now: parsed trees are kept by expression (the validator works on a
deep copy, never on the tree), and each subtree's clauses are counted once, with the same
checks in the same order. tests/test_moto_speed.py compares the answers, refusals included.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from moto.core import responses, serialize
from moto.dynamodb.exceptions import TooManyClauses
from moto.dynamodb.parsing import ast_nodes
from moto.dynamodb.parsing import expressions as expressions_module
from moto.dynamodb.parsing import validators as validators_module
from moto.moto_server import werkzeug_app
from moto.sqs import models as sqs_models

_ORIGINAL = serialize.BaseJSONSerializer._serialize_type_structure
_SQS_CLOCK = sqs_models.unix_time_millis
_BACKEND_FOR_HOST = werkzeug_app.DomainDispatcherApplication.get_backend_for_host
_METHOD_NAMES = responses.method_names_from_class
_HOST_CACHE_LIMIT = 1024
# moto's expression modules declare no types.
nodes: Any = ast_nodes
expressions: Any = expressions_module
validators: Any = validators_module
_PARSE = expressions.UpdateExpressionParser.make
_PARSE_ATTR = expressions.UpdateExpressionParser.__dict__["make"]  # the classmethod itself
_COUNT_ACTIONS_OWN = validators.ActionCountValidator.__dict__.get("traverse")  # None: inherited
_PARSED: dict[str, Any] = {}
_PARSED_LIMIT = 512


def _backend_for_host(self: Any, host: str | None) -> Any:
    # The answer depends on the host alone (moto's package folders and its URL patterns do not
    # change while it runs); moto lists its package folder and tries its patterns per request.
    cache = self.__dict__.setdefault("_switchyard_hosts", {})
    if host in cache:
        return cache[host]
    backend = _BACKEND_FOR_HOST(self, host)
    if len(cache) < _HOST_CACHE_LIMIT:
        cache[host] = backend
    return backend


def _sqs_clock(dt: Any = None) -> float:
    return time.time() * 1000.0 if dt is None else float(_SQS_CLOCK(dt))


def _attribute_value(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
    if (shape.name != "AttributeValue" or type(value) is not dict
            or getattr(self._value_picker, "response_transformers", None)
            or not value.keys() <= shape.members.keys()):
        _ORIGINAL(self, serialized, value, shape, key)
        return
    wrapper = self.MAP_TYPE() if key else serialized
    for member_key, member_shape in shape.members.items():
        member = value.get(member_key)
        if member is not None:
            member_shape.parent = shape  # as moto's path sets it (its alias rules read it)
            self._serialize(wrapper, member, member_shape, member_key)
    if key:
        self._default_serialize(serialized, wrapper, shape, key)


def _parsed_update(expression: str) -> Any:
    # Parsed twice per update (the request's check, then the backend) and the same few
    # expressions again and again. Nothing changes the tree: the validator deep-copies it.
    tree = _PARSED.get(expression)
    if tree is None:
        tree = _PARSE(expression)
        if len(_PARSED) >= _PARSED_LIMIT:
            _PARSED.clear()
        _PARSED[expression] = tree
    return tree


def _clauses(node: Any, kind: type, memo: dict[int, int]) -> int:
    """len(node.find_clauses([kind])), each subtree counted once."""
    key = id(node)
    if key not in memo:
        total = 0
        for child in node.children or []:
            if type(child) is kind:
                total += 1
            elif isinstance(child, nodes.Expression | nodes.UpdateExpressionFunction):
                total += _clauses(child, kind, memo)
        memo[key] = total
    return memo[key]


def _count_actions(self: Any, node: Any) -> Any:
    """moto's ActionCountValidator counts the clauses below every node of the tree again
    (quadratic in the actions: a 20-action update walked ~60,000 nodes); the same checks,
    nodes and order, with each subtree's counts kept."""
    memos: dict[type, dict[int, int]] = {kind: {} for kind in _ACTION_KINDS}

    def visit(n: Any) -> None:
        if not isinstance(n, nodes.Node):
            return
        for child in n.children or []:
            visit(child)
        if isinstance(n, nodes.UpdateExpression):
            for kind, word in _ACTION_KINDS.items():
                if _clauses(n, kind, memos[kind]) > 1:
                    raise TooManyClauses(word)

    visit(node)
    return node


_ACTION_KINDS: dict[type, str] = {nodes.UpdateExpressionAddClause: "ADD",
                                  nodes.UpdateExpressionRemoveClause: "REMOVE",
                                  nodes.UpdateExpressionSetClause: "SET"}


def install() -> None:
    """Process-wide; idempotent."""
    serialize.BaseJSONSerializer._serialize_type_structure = _attribute_value  # type: ignore[method-assign]
    sqs_models.unix_time_millis = _sqs_clock
    werkzeug_app.DomainDispatcherApplication.get_backend_for_host = _backend_for_host  # type: ignore[method-assign]
    # A class's methods are looked up with inspect.getmembers on every request.
    responses.method_names_from_class = functools.cache(_METHOD_NAMES)
    expressions.UpdateExpressionParser.make = staticmethod(_parsed_update)
    validators.ActionCountValidator.traverse = _count_actions


def uninstall() -> None:
    serialize.BaseJSONSerializer._serialize_type_structure = _ORIGINAL  # type: ignore[method-assign]
    sqs_models.unix_time_millis = _SQS_CLOCK
    werkzeug_app.DomainDispatcherApplication.get_backend_for_host = _BACKEND_FOR_HOST  # type: ignore[method-assign]
    responses.method_names_from_class = _METHOD_NAMES
    expressions.UpdateExpressionParser.make = _PARSE_ATTR
    if _COUNT_ACTIONS_OWN is None:
        if "traverse" in vars(validators.ActionCountValidator):
            del validators.ActionCountValidator.traverse  # inherited again
    else:
        validators.ActionCountValidator.traverse = _COUNT_ACTIONS_OWN
    _PARSED.clear()


def installed() -> bool:
    return serialize.BaseJSONSerializer._serialize_type_structure is _attribute_value  # type: ignore[comparison-overlap]
