"""The import graph of the library: no cycles between modules, and packages import only downwards.

The graph is read from the source with ``ast`` (nothing is imported): every ``import`` and
``from ... import`` of an ``mlclipsim`` module counts, at module level or inside a function.
:data:`MAY_IMPORT` below is the one layer table; README.md's "Layout" section mirrors it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1] / "mlclipsim"

# What each package may import (README.md's "Layout" section draws the same table). A package
# not listed here fails the test: a new package takes its place in the table first.
_GROUND = {"core", "eval", "weights"}  # core: image I/O, weight resolution, registry; eval: statistics on arrays;
# weights: the small learned files that ship with the package and their reader
_ENGINE = _GROUND | {"backbones", "models", "metrics", "machine", "distortions"}
MAY_IMPORT: dict[str, set[str]] = {
    "core": set(),
    "eval": set(),
    "weights": set(),
    "backbones": {"core"},
    "models": {"core", "backbones"},
    "metrics": _GROUND | {"backbones", "models"},
    "machine": {"core", "backbones"},
    "distortions": {"core"},
    "coding": _GROUND | {"backbones", "models", "metrics", "distortions"},
    "data": _ENGINE | {"coding"},  # codecs as distortion types (data/codec_distortions.py)
    "training": _ENGINE | {"coding", "data"},
    "rate_task": _ENGINE | {"coding", "data"},
    "cli": _ENGINE | {"coding", "data", "training", "rate_task", "commands"},
    "commands": _ENGINE | {"coding", "data", "training", "rate_task"},
    "mlclipsim": {"metrics"},  # mlclipsim/__init__.py: the public names
}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def library_modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def imported_modules(path: Path, modules: dict[str, Path], root: Path = ROOT) -> set[str]:
    """The library modules ``path`` imports, anywhere in the file.

    ``from package import name`` counts as importing ``package.name`` when that is a module,
    else as importing ``package`` (its ``__init__`` provides the name).
    """
    this = module_name(path, root)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = this.split(".") if is_package else this.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source not in modules:
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in modules else source)
    found.discard(this)
    return found


def import_graph(root: Path = ROOT) -> nx.DiGraph:
    modules = library_modules(root)
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        graph.add_edges_from((name, target) for target in imported_modules(path, modules, root))
    return graph


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def cycles(graph: nx.DiGraph) -> list[list[str]]:
    """Strongly connected components with more than one module, each sorted."""
    return sorted(sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1)


def layer_violations(graph: nx.DiGraph) -> list[str]:
    out = []
    for source, target in sorted(graph.edges):
        importer, imported = package_of(source), package_of(target)
        if importer == imported:
            continue
        if importer not in MAY_IMPORT:
            out.append(f"{source}: package {importer!r} is not in the layer table")
        elif imported not in MAY_IMPORT[importer]:
            out.append(f"{source} imports {target}: {importer!r} may import only {sorted(MAY_IMPORT[importer])}")
    return out


def test_no_import_cycles_between_library_modules():
    found = cycles(import_graph())
    assert not found, "import cycles (strongly connected components):\n" + "\n".join(" <-> ".join(c) for c in found)


def test_packages_import_only_packages_below_them():
    violations = layer_violations(import_graph())
    assert not violations, "\n".join(violations)


def test_the_layer_table_names_every_package():
    packages = {package_of(m) for m in library_modules()}
    assert packages == set(MAY_IMPORT), f"packages {sorted(packages ^ set(MAY_IMPORT))} differ from the table"
    for package, allowed in MAY_IMPORT.items():  # a table with a cycle could not be layered
        assert package not in allowed
    table = nx.DiGraph([(p, q) for p, allowed in MAY_IMPORT.items() for q in allowed])
    assert nx.is_directed_acyclic_graph(table)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "mlclipsim" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "mlclipsim"


@pytest.mark.parametrize("lazy", [False, True])
def test_the_checks_see_cycles_and_upward_imports_also_inside_functions(tmp_path, lazy):
    statement = "from mlclipsim.metrics import thing\n"
    importing = f"def f():\n    {statement}" if lazy else statement
    root = _write(tmp_path, {
        "__init__.py": "",
        "backbones/__init__.py": "",
        "backbones/registry.py": importing,
        "metrics/__init__.py": "from .score import thing\n",
        "metrics/score.py": "from mlclipsim.backbones import registry\nthing = 1\n",
    })
    graph = import_graph(root)
    assert set(graph.edges) == {("mlclipsim.backbones.registry", "mlclipsim.metrics"),
                                ("mlclipsim.metrics", "mlclipsim.metrics.score"),
                                ("mlclipsim.metrics.score", "mlclipsim.backbones.registry")}
    assert cycles(graph) == [["mlclipsim.backbones.registry", "mlclipsim.metrics", "mlclipsim.metrics.score"]]
    assert layer_violations(graph) == [
        "mlclipsim.backbones.registry imports mlclipsim.metrics: 'backbones' may import only ['core']"]


def _readme_table() -> dict[str, set[str]]:
    """The "Layout" block of README.md read as a table: ``name/ ... -> nothing | a, b | all above [but x]``."""
    text = (ROOT.parent / "README.md").read_text()
    block = text[text.index("## Layout"):].split("```")[1]
    table: dict[str, set[str]] = {}
    above: list[str] = []
    for line in block.splitlines():
        if not line.startswith("  ") or "->" not in line:
            continue
        name = line.split()[0].rstrip("/").removesuffix(".py")
        name = "mlclipsim" if name == "__init__" else name
        rule = line.rsplit("->", 1)[1].strip()
        if rule == "nothing":
            allowed: set[str] = set()
        elif rule.startswith("all above"):
            allowed = set(above) - {p.strip() for p in rule.removeprefix("all above").removeprefix(" but").split(",")}
        elif rule.startswith("the ") and rule.endswith(" above"):
            count = ["one", "two", "three", "four", "five", "six"].index(rule.split()[1]) + 1
            allowed = set(above[-count:])
        else:
            allowed = {p.strip() for p in rule.split(",")}
        table[name] = allowed
        above.append(name)
    return table


def test_the_readme_layout_mirrors_the_table():
    assert _readme_table() == MAY_IMPORT
