"""The composition root: chalicelib/bootstrap.py builds every adapter, once per `Deps`."""

from __future__ import annotations

import ast
from pathlib import Path

from chalicelib.bootstrap import Deps
from chalicelib.store.dynamo import Table

ROOT = Path(__file__).resolve().parent.parent
ADAPTER_SUFFIXES = ("Repo", "Store", "Queue", "Bus", "Topic", "Deliveries", "Table")


def adapters_built_outside_the_store(root: Path = ROOT) -> list[str]:
    """`module:line Class` for each call of an adapter class of chalicelib/store/ made in
    chalicelib/ outside the store and the bootstrap."""
    found = []
    for path in sorted((root / "chalicelib").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("chalicelib/store/") or rel == "chalicelib/bootstrap.py":
            continue
        tree = ast.parse(path.read_text())
        adapters = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    and (node.module or "").startswith("chalicelib.store") for a in node.names
                    if a.name.endswith(ADAPTER_SUFFIXES)}
        found += [f"{rel}:{node.lineno} {node.func.id}" for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in adapters]
    return found


def test_no_module_but_the_bootstrap_builds_an_adapter() -> None:
    assert adapters_built_outside_the_store() == []


def test_the_check_sees_a_service_building_its_own_repository(tmp_path: Path) -> None:
    # positive control: a service that builds its repository is reported
    (tmp_path / "chalicelib" / "services").mkdir(parents=True)
    (tmp_path / "chalicelib" / "services" / "x.py").write_text(
        "from chalicelib.store.alerts import AlertSettingsRepo, AlertSettings\n\n"
        "def get(d):\n    AlertSettings('a')\n    return AlertSettingsRepo(d.table).get('a')\n")
    assert adapters_built_outside_the_store(tmp_path) == ["chalicelib/services/x.py:5 AlertSettingsRepo"]


def test_a_deps_builds_each_repository_once_and_another_deps_its_own() -> None:
    # GIVEN two Deps on named tables (nothing is sent to AWS: adapters are built lazily)
    d = Deps(table=Table("t-one"), profiles_table=Table("t-profiles"))
    other = Deps(table=Table("t-two"), profiles_table=Table("t-profiles"))
    # THEN each repository is built once per Deps, on its own table
    for name in ("accounts", "auths", "jobs", "audit", "audiences", "runs", "memberships", "oauth_states",
                 "write_keys", "collect",
                 "alert_settings", "alert_deliveries", "alert_rules", "shared_rates"):
        first = getattr(d, name)
        assert getattr(d, name) is first, name
        assert getattr(other, name) is not first, name
    assert d.profiles is d.profiles
    assert d.jobs.t is d.table and other.jobs.t is other.table
