"""The house rules of the code's shape, read from the source (docs/architecture.md).

Every import is read with ``ast`` (those inside functions and ``TYPE_CHECKING`` blocks
too), so a rule broken anywhere fails here, not in a reviewer's head.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("orchestrator", "orchestrator_sim")
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[str]:
    """The library modules ``name`` imports (``from a import b`` counts ``a.b`` if a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from package import submodule`` imports the submodule; any other name
            # comes from the package itself
            targets = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t for t in targets if t in MODULES] or [base]
        else:
            continue
        for dotted in targets:
            target = dotted
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def _graph() -> nx.DiGraph[str]:
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(MODULES)
    for name, path in MODULES.items():
        graph.add_edges_from((name, target) for target in _imports(name, path))
    return graph


GRAPH = _graph()


def _room(module: str) -> str:
    """A module's room: its subpackage (``orchestrator.store``), or itself at the top."""
    parts = module.split(".")
    if parts[0] == "orchestrator_sim":
        return "orchestrator_sim"
    path = MODULES[module]
    return ".".join(parts[:2]) if len(parts) > 2 or path.name == "__init__.py" else module


def test_no_import_cycle_between_modules() -> None:
    # The package roots re-export their modules; a module never imports its package root.
    graph = GRAPH.subgraph(m for m in MODULES if m not in PACKAGES)
    cycles = sorted(nx.simple_cycles(graph), key=len)
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_no_import_cycle_between_rooms() -> None:
    rooms: nx.DiGraph[str] = nx.DiGraph()
    for source, target in GRAPH.edges:
        if source in PACKAGES or target in PACKAGES:
            continue
        a, b = _room(source), _room(target)
        if a != b:
            rooms.add_edge(a, b)
    assert not list(nx.simple_cycles(rooms)), list(nx.simple_cycles(rooms))[:5]


def test_no_module_imports_its_package_root() -> None:
    offenders = [m for m in MODULES if m not in PACKAGES and m.split(".")[0] in GRAPH[m]]
    assert not offenders, offenders


def test_the_simulator_knows_only_the_wire_conventions_of_the_core() -> None:
    for module in (m for m in MODULES if m.startswith("orchestrator_sim")):
        core = {t for t in GRAPH[module] if not t.startswith("orchestrator_sim")}
        assert core <= {"orchestrator.wire"}, (module, core)
    assert not list(GRAPH["orchestrator.wire"])  # the floor stands on nothing


def test_only_the_cli_reaches_the_simulator() -> None:
    for module in (m for m in MODULES if m.startswith("orchestrator.")):
        if not module.startswith("orchestrator.cli"):
            assert not any(t.startswith("orchestrator_sim") for t in GRAPH[module]), module


_SDK_MODULES = {"orchestrator.models.anthropic", "orchestrator.models.anthropic_batches"}
"""The Messages API and the Message Batches API: the only modules that import the SDK."""


def test_the_vendor_sdk_stays_in_its_modules() -> None:
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and not node.level
        }
        if "anthropic" in imported:
            assert name in _SDK_MODULES, name


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_500_lines(module: str) -> None:
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module].relative_to(ROOT)}: {lines} lines"
