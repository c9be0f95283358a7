"""The import graph of the package: no circle, and every import points down the layers.

Read from the source (ast), not by importing: an import inside a function counts as much as one
at the top of a module, since it runs as soon as the function does. Imports under
``if TYPE_CHECKING:`` are left out: they never run, and exist only for annotations.
"""

from __future__ import annotations

import ast
from pathlib import Path

import resnet_cifar

SOURCE = Path(resnet_cifar.__file__).parent
PACKAGE = "resnet_cifar"
BENCHMARKS = SOURCE.parents[1] / "benchmarks"

# Low to high: a module may import its own layer and those below it, never one above. A
# package's __init__ sits with its package; the top-level __init__ is the public API, above every
# module it re-exports, and only the CLI (and the entry point) may import it.
LAYERS = (
    ("errors", "version", "atomic", "log"),
    ("config_files",),
    ("config", "models"),
    ("data",),
    ("engine",),
    ("seeds",),  # which runs are seeds of one recipe, and their statistics
    ("viz",),
    ("compare",),
    ("export_check",),  # the data export checks its parity on
    ("bench_pipelines",),  # what `resnet-cifar bench` times
    ("predict", "export", "bench"),
    ("report", "publish"),  # publish: a run's weights evaluated into the registry
    ("",),  # resnet_cifar/__init__.py: the public API
    ("cli", "__main__"),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
# The one import up the layers, at use: a training run draws its own curves.png with the drawing
# that `plot` uses (engine/report.py's draw_curves says so).
UPWARD = {(f"{PACKAGE}.engine.report", f"{PACKAGE}.viz.curves")}


def module_name(path: Path, root: Path = SOURCE) -> str:
    parts = [PACKAGE, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_nodes(tree: ast.AST):
    """Every Import and ImportFrom in ``tree``, at any depth, but under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """The modules ``path`` (module ``name``) imports, by full name. ``from a import b`` is an
    import of module a.b where there is one, else of a."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:  # relative: from the package, up level - 1
            anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            found.add(sub if sub in known else base)
    return found


def import_graph() -> dict[str, set[str]]:
    """{module: the modules of this package it imports}."""
    known = set(modules())
    return {name: {m for m in imported(path, name, known) if m in known and m != name}
            for name, path in modules().items()}


def layer(module: str) -> int:
    top = module.removeprefix(PACKAGE).removeprefix(".").split(".")[0]
    return RANK[top]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None (depth-first search, colouring)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_every_module_has_a_layer():
    unplaced = [m for m in modules() if m.removeprefix(PACKAGE).removeprefix(".").split(".")[0]
                not in RANK]
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_point_down_the_layers():
    upward = sorted(f"{m} (layer {layer(m)}) imports {dep} (layer {layer(dep)})"
                    for m, deps in import_graph().items() for dep in deps
                    if layer(dep) > layer(m) and (m, dep) not in UPWARD)
    assert not upward, "\n".join(upward)


def test_only_the_cli_imports_the_cli_and_nothing_imports_the_benchmarks():
    cli = f"{PACKAGE}.cli"
    offenders = []
    sources = [(module_name(p), p) for p in sorted(SOURCE.rglob("*.py"))]
    sources += [(f"benchmarks.{p.stem}", p) for p in sorted(BENCHMARKS.glob("*.py"))]
    for name, path in sources:
        is_cli = name == cli or name.startswith(cli + ".") or name == f"{PACKAGE}.__main__"
        for dep in imported(path, name, set(modules())):
            if (dep == cli or dep.startswith(cli + ".")) and not is_cli:
                offenders.append(f"{name} imports {dep}")
            if name.startswith(PACKAGE) and dep.split(".")[0] == "benchmarks":
                offenders.append(f"{name} imports {dep}")
    assert not offenders, "\n".join(offenders)


def test_the_checker_sees_a_cycle_and_an_upward_import():
    # the checks above pass on an empty answer, so prove they would see one
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    graph = import_graph()
    assert f"{PACKAGE}.engine.rundir" in graph[f"{PACKAGE}.viz.curves"]  # a real edge is seen
    assert layer(f"{PACKAGE}.viz.curves") > layer(f"{PACKAGE}.engine.rundir")
    assert layer(f"{PACKAGE}.cli.viz_cmd") > layer(PACKAGE) > layer(f"{PACKAGE}.report")
