"""No DynamoDB Scan in chalicelib/: every request, run and sweep reads by key or Query.

Read with ast from every module: a `.scan` attribute (client.scan(...), a resource's
table.scan) or the operation's name as a string ("scan"/"Scan": get_paginator("scan"),
getattr(client, "Scan")) anywhere in chalicelib/ fails. The one Scan of the project, the
operator's migration giving accounts made before the account index their entry, lives in
infra/index_accounts.py, out of every deployed path (docs/security.md).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def scans_in(source: str, path: str) -> set[tuple[str, str]]:
    """(path, enclosing function's qualified name) of every Scan the source names."""
    found: set[tuple[str, str]] = set()

    def visit(node: ast.AST, scope: list[str]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scope = [*scope, node.name]
        is_attr = isinstance(node, ast.Attribute) and node.attr.lower() == "scan"
        is_name = isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lower() == "scan"
        if is_attr or is_name:
            found.add((path, ".".join(scope) or "<module>"))
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(ast.parse(source), [])
    return found


def test_the_detector_finds_every_spelling_of_a_scan() -> None:
    # Positive control: each way of asking DynamoDB for a Scan is seen, a Query is not.
    src = '''
class Repo:
    def a(self):
        return self.t.client.scan(TableName="t")
    def b(self, client):
        return client.get_paginator("scan")
    def c(self, client):
        return getattr(client, "Scan")(TableName="t")
    def d(self):
        return self.t.client.query(TableName="t", ScanIndexForward=False)
'''
    assert scans_in(src, "x.py") == {("x.py", "Repo.a"), ("x.py", "Repo.b"), ("x.py", "Repo.c")}


def test_the_detector_finds_the_operator_migrations_scan() -> None:
    # Positive control on a real file: the Scan moved out of chalicelib/ is still seen where it is.
    path = "infra/index_accounts.py"
    assert scans_in((ROOT / path).read_text(), path) == {(path, "index_accounts")}


def test_chalicelib_sends_no_scan() -> None:
    files = sorted((ROOT / "chalicelib").rglob("*.py"))
    assert len(files) > 50  # the package was read, not an empty folder
    found: set[tuple[str, str]] = set()
    for file in files:
        found |= scans_in(file.read_text(), file.relative_to(ROOT).as_posix())
    assert found == set()
