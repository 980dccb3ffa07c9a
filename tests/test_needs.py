"""chalicelib/services/needs.py is an exact map: each protocol declares the adapters its
module's own code uses, no more and no fewer, and extends the protocols of the modules it
hands its `d` to (or ones that include them), and no others. mypy checks that code uses
nothing its protocol lacks; this checks the other direction, which mypy cannot see (a
protocol that still lists what its module stopped using), and that the map's edges are
real calls. And the edges (routes, workers) read no adapter off `Deps`: they hand it to a
service. Read with ast, like tests/test_import_graph.py."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEEDS = ROOT / "chalicelib" / "services" / "needs.py"
# How a module refers to the `d` it was handed: as a parameter, or kept by the engine and
# its control (the run's stages read `ctl.d`).
HOLDERS = {"d", "self.d", "ctl.d", "self.ctl.d"}


@dataclass
class Need:
    name: str
    where: str  # "services/jobs.py" or "runs/"
    bases: list[str]
    members: set[str]


@dataclass
class Use:
    adapters: set[str] = field(default_factory=set)
    callees: set[str] = field(default_factory=set)  # services modules handed `d`
    typed: set[str] = field(default_factory=set)  # how each parameter `d` is annotated


def read_needs(source: str) -> dict[str, Need]:
    needs = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name.endswith("Needs"):
            doc = ast.get_docstring(node) or ""
            where = re.match(r"(services/\w+\.py|runs/)", doc)
            assert where, f"{node.name}'s docstring starts with the module it is for"
            needs[node.name] = Need(node.name, where.group(1),
                                    [b.id for b in node.bases if isinstance(b, ast.Name) and b.id != "Protocol"],
                                    {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
                                    | {f.target.id for f in node.body
                                       if isinstance(f, ast.AnnAssign) and isinstance(f.target, ast.Name)})
    return needs


def read_use(sources: list[str]) -> Use:
    use = Use()
    for source in sources:
        tree = ast.parse(source)
        modules = {}  # local name -> services module it stands for
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("chalicelib.services"):
                for alias in node.names:
                    local = alias.asname or alias.name
                    if node.module == "chalicelib.services":
                        modules[local] = alias.name
                    elif node.module != "chalicelib.services.needs":
                        modules[local] = node.module.rsplit(".", 1)[1]
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and ast.unparse(node.value) in HOLDERS:
                use.adapters.add(node.attr)
            elif isinstance(node, ast.Call) and any(ast.unparse(a) in HOLDERS for a in node.args):
                f = node.func
                target = f.value if isinstance(f, ast.Attribute) else f
                if isinstance(target, ast.Name) and target.id in modules:
                    use.callees.add(modules[target.id])
            elif isinstance(node, ast.arg) and node.arg == "d":
                use.typed.add(ast.unparse(node.annotation) if node.annotation else "nothing")
    return use


def module_of(need: Need) -> str:
    return need.where[len("services/"):-len(".py")] if need.where.startswith("services/") else "runs"


def ancestors(needs: dict[str, Need], name: str) -> set[str]:
    found: set[str] = set()
    for base in needs[name].bases:
        found |= {base} | ancestors(needs, base)
    return found


def problems(needs: dict[str, Need], uses: dict[str, Use]) -> list[str]:
    by_module = {module_of(n): n for n in needs.values()}
    found = []
    for need in needs.values():
        use = uses[module_of(need)]
        if need.members - use.adapters:
            found.append(f"{need.name} declares what {need.where} does not use: {sorted(need.members - use.adapters)}")
        # What it uses but does not declare, mypy reports; listed here so the map is whole.
        if use.adapters - need.members:
            found.append(f"{need.name} lacks what {need.where} uses: {sorted(use.adapters - need.members)}")
        calls = {by_module[c].name for c in use.callees if c in by_module and c != module_of(need)}
        if calls - ancestors(needs, need.name):
            found.append(f"{need.name} does not extend the protocols of what it calls: {sorted(calls - ancestors(needs, need.name))}")
        if set(need.bases) - calls:
            found.append(f"{need.name} extends protocols of modules it does not call: {sorted(set(need.bases) - calls)}")
        implied = {b for b in need.bases for other in need.bases if b in ancestors(needs, other)}
        if implied:
            found.append(f"{need.name} extends what another of its bases already includes: {sorted(implied)}")
        if use.typed - {need.name}:
            found.append(f"{need.where} types a `d` otherwise than {need.name}: {sorted(use.typed - {need.name})}")
    return found


def project_uses(needs: dict[str, Need]) -> dict[str, Use]:
    uses = {}
    for need in needs.values():
        paths = sorted((ROOT / "chalicelib" / need.where).glob("*.py")) if need.where.endswith("/") \
            else [ROOT / "chalicelib" / need.where]
        uses[module_of(need)] = read_use([p.read_text() for p in paths])
    return uses


def test_every_protocol_is_exactly_what_its_module_uses_and_calls() -> None:
    needs = read_needs(NEEDS.read_text())
    # positive control: the map covers the services that take a `d` and the run pipeline
    assert {"JobsNeeds", "AlertsNeeds", "RunNeeds"} <= set(needs)
    uses = project_uses(needs)
    assert {"jobs", "secrets"} <= uses["jobs"].adapters and "realtime" in uses["jobs"].callees
    assert problems(needs, uses) == []


def test_every_service_module_taking_d_has_a_protocol() -> None:
    needs = read_needs(NEEDS.read_text())
    mapped = {n.where for n in needs.values()}
    taking_d = {f"services/{p.name}" for p in (ROOT / "chalicelib" / "services").glob("*.py")
                if p.name != "needs.py" and read_use([p.read_text()]).adapters}
    assert "services/jobs.py" in taking_d  # positive control
    assert taking_d - mapped == set()


def test_each_kind_of_drift_is_reported() -> None:
    # GIVEN a map of two modules, and code that matches it
    needs = read_needs('''
class AlertsNeeds(Protocol):
    """services/alerts.py"""
    @property
    def topic(self) -> T: ...
class JobsNeeds(AlertsNeeds, Protocol):
    """services/jobs.py"""
    @property
    def jobs(self) -> T: ...
''')
    alerts = "def send(d: AlertsNeeds) -> None:\n    d.topic.send()\n"
    jobs = ("from chalicelib.services import alerts\n"
            "def edit(d: JobsNeeds) -> None:\n    d.jobs.get()\n    alerts.send(d)\n")

    def found(jobs_source: str, in_map: dict[str, Need] = needs, **others: str) -> list[str]:
        sources = {"alerts": alerts, "jobs": jobs_source, **others}
        return problems(in_map, {module: read_use([text]) for module, text in sources.items()})

    assert found(jobs) == []
    # WHEN the code drifts from the map in each way THEN each is reported
    unused = jobs.replace("    d.jobs.get()\n", "")
    assert found(unused) == [
        "JobsNeeds declares what services/jobs.py does not use: ['jobs']"]
    undeclared = jobs.replace("d.jobs.get()", "d.jobs.get()\n    d.secrets.read()")
    assert found(undeclared) == [
        "JobsNeeds lacks what services/jobs.py uses: ['secrets']"]
    no_call = jobs.replace("    alerts.send(d)\n", "")
    assert found(no_call) == [
        "JobsNeeds extends protocols of modules it does not call: ['AlertsNeeds']"]
    flat = needs | {"JobsNeeds": Need("JobsNeeds", "services/jobs.py", [], {"jobs"})}
    assert found(jobs, flat) == [
        "JobsNeeds does not extend the protocols of what it calls: ['AlertsNeeds']"]
    borrowed = jobs.replace("def edit(d: JobsNeeds)", "def edit(d: AlertsNeeds)")
    assert found(borrowed) == [
        "services/jobs.py types a `d` otherwise than JobsNeeds: ['AlertsNeeds']"]
    untyped = jobs.replace("def edit(d: JobsNeeds)", "def edit(d)")
    assert found(untyped) == [
        "services/jobs.py types a `d` otherwise than JobsNeeds: ['nothing']"]
    both = needs | {"JobsNeeds": Need("JobsNeeds", "services/jobs.py", ["AlertsNeeds", "LogNeeds"], {"jobs"}),
                    "LogNeeds": Need("LogNeeds", "services/log.py", ["AlertsNeeds"], set())}
    log = "from chalicelib.services import alerts\ndef write(d: LogNeeds) -> None:\n    alerts.send(d)\n"
    with_log = jobs + "from chalicelib.services import log\ndef more(d: JobsNeeds) -> None:\n    log.write(d)\n"
    assert found(with_log, both, log=log) == [
        "JobsNeeds extends what another of its bases already includes: ['AlertsNeeds']"]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    # `from chalicelib import bootstrap` names the module as package + name
    return {m for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
            for m in (n.module, *(f"{n.module}.{a.name}" for a in n.names))} | \
        {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}


def test_no_service_or_run_module_imports_the_composition_root() -> None:
    # positive control: the routes do, to take the process's `Deps` at their edge
    assert "chalicelib.bootstrap" in imports_of(ROOT / "chalicelib" / "api" / "jobs.py")
    inner = [*(ROOT / "chalicelib" / "services").glob("*.py"), *(ROOT / "chalicelib" / "runs").glob("*.py")]
    assert [p.name for p in inner if "chalicelib.bootstrap" in imports_of(p)] == []


def adapters_read_at_the_edge(source: str) -> list[str]:
    """`name.attr` for each adapter a route or worker reads off the process's `Deps`
    (`deps().jobs`, or `d.jobs` after `d = deps()`) instead of handing `Deps` to a service."""
    tree = ast.parse(source)
    holders = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) and ast.unparse(n.value) == "deps()"
               for t in n.targets if isinstance(t, ast.Name)}
    return sorted(f"{ast.unparse(n.value)}.{n.attr}" for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                  and (ast.unparse(n.value) == "deps()" or (isinstance(n.value, ast.Name) and n.value.id in holders)))


def test_routes_and_workers_reach_adapters_only_through_services() -> None:
    # positive control: both ways of reaching past a service are seen
    planted = "def f():\n    deps().jobs.get()\n    d = deps()\n    d.runs.write_logs()\n    svc.get(d)\n"
    assert adapters_read_at_the_edge(planted) == ["d.runs", "deps().jobs"]
    edges = [*(ROOT / "chalicelib" / "api").glob("*.py"), *(ROOT / "chalicelib" / "workers").glob("*.py")]
    assert len(edges) > 10
    found = {p.name: adapters_read_at_the_edge(p.read_text()) for p in edges}
    assert {name: reads for name, reads in found.items() if reads} == {}
