"""The shape of chalicelib/'s imports, read with ast from every import statement: at module
level, under `if TYPE_CHECKING:` AND inside functions (either hides a cycle from the interpreter, not
from a reader).

Run as a script to print the figures:  python -m tests.test_import_graph
"""

from __future__ import annotations

import ast
import functools
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "chalicelib"

# Ceilings: these may only go down. Lower them when a change removes cycles or function-level
# imports; the target for cycles is zero.
MAX_CYCLES = 0
MAX_FUNCTION_IMPORTS = 33
MAX_PRIVATE_IMPORTS = 0
# Private names of chalicelib assigned from tests/, bench/, devserver/ and infra/
# (`aws._clients[...] = ...`): such a caller uses the module's public function instead.
MAX_PRIVATE_WRITES = 0
OUTSIDE = ("tests", "bench", "devserver", "infra")

# Every import inside a function, and why it stays there: importer -> the modules it loads
# late. Most keep a module off a cold start that does not need it (`import app` loads every
# blueprint, so the API and the authorizer would pay for each worker's and each rare route's
# modules). An import inside a function that is not listed here fails
# test_function_level_imports_are_listed; so does an entry nothing imports late any more.
COLD_START = "kept off `import app`: only the handler or route that needs it loads it"
FIRST_CALL = "kept off the routes that read a provider's spec: loaded at its first request"
DEFERRED: dict[str, dict[str, str]] = {
    # pydantic request models: pydantic is not imported by `import app` (tests/test_cold_start.py)
    "chalicelib.api.admin": {"chalicelib.api.schemas": COLD_START},
    "chalicelib.api.alerts": {"chalicelib.api.schemas": COLD_START},
    "chalicelib.api.audiences": {"chalicelib.api.audience_schemas": COLD_START},
    "chalicelib.api.authorizations": {"chalicelib.api.schemas": COLD_START},
    "chalicelib.api.jobs": {"chalicelib.api.job_schemas": COLD_START},
    "chalicelib.api.oauth": {"chalicelib.api.schemas": COLD_START},
    # worker Lambdas: Powertools' parser and batch (chalicelib/workers/events.py), and the run
    # engine (its stages, providers and pydantic)
    "chalicelib.workers.alerts": {"chalicelib.workers.events": COLD_START},
    "chalicelib.workers.health": {"chalicelib.workers.events": COLD_START},
    "chalicelib.workers.purge": {"chalicelib.workers.events": COLD_START},
    "chalicelib.workers.runner": {"chalicelib.runs.engine": COLD_START},
    # providers: the HTTP client (urllib3, ~35 ms of import) at a provider's first call; the
    # registry imports a provider for its spec alone on GET /providers and to validate a job's
    # or an authorization's settings, which send no request
    "chalicelib.providers.fullcontact": {"chalicelib.providers.http": FIRST_CALL},
    "chalicelib.providers.gtm": {"chalicelib.providers.http": FIRST_CALL},
    "chalicelib.providers.http_enrichment": {"chalicelib.providers.http": FIRST_CALL},
    "chalicelib.providers.mailchimp": {"chalicelib.providers.http": FIRST_CALL},
    # the webhook and OAuth HTTP client (urllib3), and Google's scopes with it
    "chalicelib.services.alerts": {"chalicelib.providers.http": COLD_START},
    "chalicelib.services.oauth": {"chalicelib.providers.http": COLD_START},
    "chalicelib.services.oauth_clients": {"chalicelib.providers.http": COLD_START,
                                          "chalicelib.providers.gtm": COLD_START},
}

# Packages from outside the project imported inside functions, and why, by the package's
# name (or the stdlib module's): the same single place for what is loaded late. Every heavy
# one is kept off `import app`, which tests/test_cold_start.py checks.
LATE_PACKAGES: dict[str, str] = {
    "boto3": COLD_START, "botocore": COLD_START,  # the store's and the connectors' AWS clients
    "pydantic": COLD_START,  # request, credential and settings models
    "aws_lambda_powertools": COLD_START,  # the Logger, metrics and the batch utility
    "urllib3": FIRST_CALL,  # the providers' HTTP transport and its errors
    "oauthlib": COLD_START,  # OAuth token requests, on the OAuth routes alone
    "cronsim": COLD_START,  # cron schedules, read when a schedule is computed
    "http.cookies": COLD_START,  # the OAuth callback alone reads a cookie
}


def late_package_imports(source: str) -> set[str]:
    """The modules from outside the project that `source` imports inside a function."""
    found = set()
    for fn in ast.walk(ast.parse(source)):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    found |= {a.name for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module)
    return {m for m in found if m != PACKAGE and not m.startswith(PACKAGE + ".")}


def unlisted_late_packages(found: set[str]) -> set[str]:
    return {m for m in found if not any(m == p or m.startswith(p + ".") for p in LATE_PACKAGES)}


@dataclass
class Graph:
    edges: dict[str, set[str]] = field(default_factory=dict)
    # import statements inside functions that name at least one of our modules: (module, line)
    function_imports: list[tuple[str, int]] = field(default_factory=list)
    # the same, as (importer, each of our modules it names)
    deferred: set[tuple[str, str]] = field(default_factory=set)
    # private names of another module, imported or reached as `module._name`: (module, line, "mod._name")
    private_imports: list[tuple[str, int, str]] = field(default_factory=list)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _walk(tree: ast.AST) -> Iterator[tuple[ast.AST, bool]]:
    """Every node with whether it sits inside a function body."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, inside = stack.pop()
        yield node, inside
        nested = inside or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        stack.extend((child, nested) for child in ast.iter_child_nodes(node))


@functools.cache
def build(root: Path = ROOT) -> Graph:
    files = sorted((root / PACKAGE).rglob("*.py"))
    modules = {module_name(f, root): f for f in files}
    graph = Graph(edges={m: set() for m in modules})

    def own(name: str) -> str | None:
        # the longest prefix that is one of our modules (`from a.b import c` may name module a.b.c)
        while name:
            if name in modules:
                return name
            name = name.rpartition(".")[0]
        return None

    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        aliases: dict[str, str] = {}  # local name -> our module it is bound to
        imported: dict[str, str] = {}  # local name -> "module.Name" taken from our modules
        for node, inside in _walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node)
                if own(base) not in (None, module):
                    imported.update((a.asname or a.name, f"{base}.{a.name}") for a in node.names)
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            targets: list[tuple[str, str | None]] = []  # (module imported, name taken from it)
            if isinstance(node, ast.Import):
                targets = [(alias.name, None) for alias in node.names]
                aliases.update((a.asname, a.name) for a in node.names if a.asname and a.name in modules)
            else:
                base = _resolve(module, is_package, node)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if sub in modules:
                        targets.append((sub, None))
                        aliases[alias.asname or alias.name] = sub
                    else:
                        targets.append((base, alias.name))
            named_own = False
            for name, taken in targets:
                target = own(name)
                if target is None or target == module:
                    continue
                named_own = True
                if inside:
                    graph.deferred.add((module, target))
                graph.edges[module].add(target)
                if taken and _private(taken):
                    graph.private_imports.append((module, node.lineno, f"{target}.{taken}"))
            if inside and named_own:
                graph.function_imports.append((module, node.lineno))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and _private(node.attr)):
                graph.private_imports.append((module, node.lineno, f"{aliases[node.value.id]}.{node.attr}"))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                # a parameter typed with another module's class: `engine: Engine` then `engine._x`
                typed = {a.arg: imported[_annotation(a)] for a in node.args.args + node.args.kwonlyargs
                         if _annotation(a) in imported}
                graph.private_imports.extend(
                    (module, n.lineno, f"{typed[n.value.id]}.{n.attr}") for n in ast.walk(node)
                    if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                    and n.value.id in typed and _private(n.attr))
    return graph


def _annotation(arg: ast.arg) -> str:
    ann = arg.annotation
    if isinstance(ann, ast.Constant) and isinstance(ann.value, str):
        return ann.value
    return ann.id if isinstance(ann, ast.Name) else ""


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def largest_module(root: Path = ROOT) -> tuple[int, str]:
    return max((len(p.read_text().splitlines()), str(p.relative_to(root))) for p in (root / PACKAGE).rglob("*.py"))


# ---------------------------------------------------------------------------------------------


def test_the_cycle_finder_finds_a_planted_cycle_and_nothing_else() -> None:
    # GIVEN a -> b -> c -> a, plus d -> a outside the cycle
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    # THEN exactly one component, without d
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def planted(tmp_path: Path, files: dict[str, str]) -> Graph:
    """The graph of a package made of `files` (path under the package -> source), each
    folder a package."""
    pkg = tmp_path / PACKAGE
    for name, source in {"__init__.py": "", **files}.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for folder in path.relative_to(pkg).parents:
            init = pkg / folder / "__init__.py"
            if not init.exists():
                init.write_text("")
        path.write_text(source)
    return build(tmp_path)


def test_function_level_imports_are_seen(tmp_path: Path) -> None:
    # GIVEN a package whose only cycle runs through an import inside a function
    # WHEN the graph is built
    graph = planted(tmp_path, {
        "a.py": "from chalicelib import b\n",
        "b.py": "def f():\n    from chalicelib.a import _x\n    return _x\n",
        "c.py": "from chalicelib import a\nfrom chalicelib.a import A\n\ndef g(x: A):\n    return a._y, x._z\n",
    })
    # THEN the cycle, the function-level import and the private name are all reported
    assert cycles(graph.edges) == [["chalicelib.a", "chalicelib.b"]]
    assert graph.function_imports == [("chalicelib.b", 2)]
    assert sorted(n for _, _, n in graph.private_imports) == ["chalicelib.a.A._z", "chalicelib.a._x", "chalicelib.a._y"]


def test_imports_for_type_checking_count_as_edges(tmp_path: Path) -> None:
    # GIVEN a package whose only cycle runs through an import under `if TYPE_CHECKING:`
    # (it never runs, but the two modules still depend on each other: a type that belongs
    # to neither should move to a third)
    # WHEN the graph is built
    graph = planted(tmp_path, {
        "a.py": "from chalicelib.b import B\n\nclass A:\n    pass\n",
        "b.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
                "    from chalicelib.a import A\n\nclass B:\n    a: 'A'\n",
    })
    # THEN the cycle is reported, and the import is not counted as one inside a function
    assert cycles(graph.edges) == [["chalicelib.a", "chalicelib.b"]]
    assert graph.function_imports == []


def test_import_cycles_do_not_grow() -> None:
    found = cycles(build().edges)
    assert len(found) <= MAX_CYCLES, found


def test_function_level_imports_do_not_grow() -> None:
    graph = build()
    assert len(graph.function_imports) <= MAX_FUNCTION_IMPORTS, len(graph.function_imports)


def test_function_level_imports_are_listed() -> None:
    listed = {(importer, target) for importer, targets in DEFERRED.items() for target in targets}
    found = build().deferred
    # positive control: the workers' late imports are seen
    assert ("chalicelib.workers.runner", "chalicelib.runs.engine") in found
    assert sorted(found - listed) == [], "an import inside a function: move it up, or list it in DEFERRED"
    assert sorted(listed - found) == [], "listed in DEFERRED but no longer imported late: remove it"


def test_late_imports_of_other_packages_are_listed() -> None:
    # positive control: a late import of a listed package and of an unlisted one
    planted = late_package_imports("import json\ndef f():\n    import boto3\n    from yaml import safe_load\n")
    assert planted == {"boto3", "yaml"} and unlisted_late_packages(planted) == {"yaml"}
    found: set[str] = set()
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        found |= late_package_imports(path.read_text())
    assert "botocore.exceptions" in found
    assert sorted(unlisted_late_packages(found)) == [], "a late import: move it up, or list its package"
    unused = {p for p in LATE_PACKAGES if not any(m == p or m.startswith(p + ".") for m in found)}
    assert sorted(unused) == [], "listed in LATE_PACKAGES but imported late nowhere: remove it"


def test_private_names_taken_across_modules_do_not_grow() -> None:
    private = build().private_imports
    assert len(private) <= MAX_PRIVATE_IMPORTS, private


def private_writes(source: str, path: str) -> list[tuple[str, int, str]]:
    """(path, line, "module._name") of each assignment to a private name of a chalicelib
    module bound by an import in `source`, subscripts included (`m._cache[k] = v`)."""
    tree = ast.parse(source)
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
            bound.update((a.asname or a.name, f"{node.module}.{a.name}") for a in node.names)
        elif isinstance(node, ast.Import):
            bound.update((a.asname, a.name) for a in node.names if a.asname and a.name.startswith(PACKAGE))
    found: list[tuple[str, int, str]] = []
    for node in ast.walk(tree):
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        for target in targets:
            while isinstance(target, ast.Subscript):
                target = target.value
            if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                    and target.value.id in bound and _private(target.attr)):
                found.append((path, node.lineno, f"{bound[target.value.id]}.{target.attr}"))
    return found


def test_private_writes_are_seen() -> None:
    # Positive control: a write through a subscript, a plain one and an augmented one are
    # seen; a public name, a read and an object that is not one of our modules are not.
    src = ("from chalicelib.store import aws\nimport chalicelib.config as cfg\nother = object()\n"
           "aws._clients['dynamodb'] = 1\ncfg._cached = None\naws._n += 1\n"
           "aws.public = 1\nx = aws._clients\nother._y = 2\n")
    assert private_writes(src, "x.py") == [("x.py", 4, "chalicelib.store.aws._clients"),
                                           ("x.py", 5, "chalicelib.config._cached"),
                                           ("x.py", 6, "chalicelib.store.aws._n")]


def test_private_names_of_chalicelib_written_from_outside_do_not_grow() -> None:
    found = [w for top in OUTSIDE for f in sorted((ROOT / top).rglob("*.py"))
             for w in private_writes(f.read_text(), f.relative_to(ROOT).as_posix())]
    assert len(found) <= MAX_PRIVATE_WRITES, found


def test_the_store_takes_no_private_name_from_another_module() -> None:
    private = [p for p in build().private_imports if p[0].startswith(f"{PACKAGE}.store")]
    assert private == []


RUN_PATH = ("chalicelib.runs", "chalicelib.runs.engine", "chalicelib.runs.imports",
            "chalicelib.runs.export", "chalicelib.runs.enrichment", "chalicelib.runs.tasks")


def test_the_run_path_is_in_no_cycle_and_takes_no_private_name() -> None:
    graph = build()
    # positive control: the engine does reach its stages and the commit
    assert {"chalicelib.runs.export", "chalicelib.runs.commit"} <= graph.edges["chalicelib.runs.engine"]
    in_cycles = [m for component in cycles(graph.edges) for m in component if m.startswith(RUN_PATH)]
    assert in_cycles == []
    assert [p for p in graph.private_imports if p[0].startswith(RUN_PATH)] == []


# The layers, lowest first: a module may import its own layer or a lower one. The two
# adapters (store: Switchyard's own AWS; providers: the customers' systems) sit side by
# side and import neither each other; the run pipeline uses services as the edges do.
LAYERS = {"domain": 0, "store": 1, "providers": 1, "services": 2, "runs": 3, "api": 4, "workers": 4}
APART = {("store", "providers"), ("providers", "store")}


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs where a lower layer imports a higher one, or one adapter
    the other."""
    def part(module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else ""

    return sorted((m, t) for m, targets in edges.items() for t in targets
                  if part(m) in LAYERS and part(t) in LAYERS
                  and (LAYERS[part(t)] > LAYERS[part(m)] or (part(m), part(t)) in APART))


def test_an_import_up_the_layers_is_seen(tmp_path: Path) -> None:
    # GIVEN a package where a service imports the run pipeline inside a function and a
    # connector imports the store, beside imports that go down
    graph = planted(tmp_path, {
        "domain/models.py": "",
        "store/jobs.py": "from chalicelib.domain import models\n",
        "runs/export.py": "from chalicelib.store import jobs\n",
        "services/realtime.py": "def f():\n    from chalicelib.runs.export import g\n",
        "providers/s3.py": "from chalicelib.store.jobs import JobRepo\n",
    })
    # THEN exactly the two are reported
    assert upward(graph.edges) == [("chalicelib.providers.s3", "chalicelib.store.jobs"),
                                            ("chalicelib.services.realtime", "chalicelib.runs.export")]


def test_no_import_runs_up_the_layers() -> None:
    assert upward(build().edges) == []


def main() -> None:
    graph = build()
    found = cycles(graph.edges)
    size, path = largest_module()
    print(f"import cycles (strongly connected components): {len(found)}")
    for component in found:
        print("   ", " <-> ".join(component))
    print(f"imports of own modules inside functions: {len(graph.function_imports)}")
    print(f"private names imported across modules: {len(graph.private_imports)}")
    for module, line, name in graph.private_imports:
        print(f"    {module}:{line} {name}")
    print(f"largest module: {path} ({size} lines)")


if __name__ == "__main__":
    sys.exit(main())
