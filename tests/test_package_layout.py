"""The package layout (docs: "How it works"): imports among ``lotan`` modules run one way,
down the layers below, no module uses another's private names, and files stay small
enough to read. Every import counts — lazy ones inside functions and the ones under
``TYPE_CHECKING`` too — since a cycle hidden in a function is still a cycle; only the rule on
pyspark counts the imports that run (a type annotation of a session passed through is not a
dependency on Spark)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "lotan"
#: Files allowed past MAX_LINES, and why: within a tenth of the limit, one concept.
LONG_FILES: dict[str, str] = {
    "lotan.graph_engine.kernels": "the aggregation kernels and their row-parallel driver "
    "(518 lines)",
}
MAX_LINES = 500


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module(p): p for p in sorted(ROOT.rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """The ids of the nodes under an ``if TYPE_CHECKING:`` block."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def _third_party(path: Path, package: str) -> bool:
    """Whether ``path`` imports ``package`` (or a module of it) outside ``TYPE_CHECKING``."""
    tree = ast.parse(path.read_text())
    typing_only = _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        else:
            continue
        if any(n.split(".")[0] == package for n in names):
            return True
    return False


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every ``lotan`` import in ``path``; a ``from package import
    name`` of a submodule counts as an import of that submodule."""
    out: list[tuple[str, list[str]]] = []
    me = _module(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "lotan"]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative import
                pkg = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + [node.module])
            if base.split(".")[0] != "lotan":
                continue
            subs = [a.name for a in node.names if f"{base}.{a.name}" in modules]
            out += [(f"{base}.{s}", []) for s in subs]
            rest = [a.name for a in node.names if a.name not in subs]
            if rest:
                out.append((base, rest))
    return [(m, names) for m, names in out if m in modules and m != me]


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: {dep for dep, _ in _imports(p, modules)} for m, p in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, else None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for dep in sorted(graph[m]):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_checker_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles() -> None:
    assert _cycle(_graph()) is None


#: The layers, from the bottom: a module imports only modules of its own layer or below.
#: The faces (the package itself, the API, model selection, the estimator, the command line,
#: jobs, the quickstart, GraphFrames in and out) sit on a run, which trains through the
#: engines; the engines run the runtime's stage functions; the runtime is built of the
#: planner's plans and the two numeric engines; all speak the language of ``ir``.
LAYERS: list[tuple[str, ...]] = [
    ("lotan.errors",),
    ("lotan.ir",),
    ("lotan.planner", "lotan.graph_engine", "lotan.nn_engine"),
    ("lotan.runtime",),
    ("lotan.options",),
    ("lotan.engines",),
    ("lotan.graph", "lotan.training"),
    ("lotan.datasets",),
    ("lotan.run",),
    ("lotan",),  # every face: lotan, lotan.api, lotan.selection, lotan.ml, lotan.cli, ...
]
#: Packages of one layer that must not import each other (or the layer's other members).
APART = [
    ("lotan.planner", "lotan.graph_engine"),
    ("lotan.planner", "lotan.nn_engine"),
    ("lotan.graph_engine", "lotan.nn_engine"),
    ("lotan.graph", "lotan.training"),
]
#: Who may import pyspark (outside TYPE_CHECKING): the Spark engine, and the faces and
#: loaders that take or make Spark DataFrames.
PYSPARK = (
    "lotan.engines.spark",
    "lotan.graph",
    "lotan.datasets",
    "lotan.ml",
    "lotan.graphframes",
)


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _layer(module: str) -> int:
    found = [i for i, layer in enumerate(LAYERS) for p in layer if _in(module, p) and p != "lotan"]
    return max(found) if found else len(LAYERS) - 1


def test_imports_run_down_the_layers() -> None:
    graph = _graph()
    up = sorted((m, d) for m, deps in graph.items() for d in deps if _layer(d) > _layer(m))
    assert not up, f"imports that run up a layer: {up}"
    across = sorted(
        (m, d)
        for m, deps in graph.items()
        for d in deps
        for a, b in APART
        if (_in(m, a) and _in(d, b)) or (_in(m, b) and _in(d, a))
    )
    assert not across, f"imports between packages kept apart: {across}"


def test_ir_imports_nothing_but_errors() -> None:
    graph = _graph()
    bad = {(m, d) for m, deps in graph.items() if _in(m, "lotan.ir") for d in deps}
    bad = {(m, d) for m, d in bad if not (_in(d, "lotan.ir") or d == "lotan.errors")}
    assert not bad, bad


def test_the_planner_knows_no_engine() -> None:
    graph = _graph()
    engines = ("lotan.graph_engine", "lotan.nn_engine", "lotan.runtime", "lotan.engines")
    bad = {
        (m, d)
        for m, deps in graph.items()
        if _in(m, "lotan.planner")
        for d in deps
        if any(_in(d, e) for e in engines)
    }
    assert not bad, bad


def test_only_the_spark_engine_and_the_faces_for_dataframes_import_pyspark() -> None:
    bad = [
        m
        for m, path in _modules().items()
        if _third_party(path, "pyspark") and not any(_in(m, p) for p in PYSPARK)
    ]
    assert not bad, f"modules that import pyspark: {bad}"
    numeric = [m for m in bad if _in(m, "lotan.graph_engine") or _in(m, "lotan.nn_engine")]
    assert not numeric


def test_the_layout_checks_can_fail() -> None:
    assert _layer("lotan.ir.ops") < _layer("lotan.planner.physical") < _layer("lotan.runtime")
    assert _layer("lotan.api") == _layer("lotan") > _layer("lotan.run")
    assert _layer("lotan.engines.spark.session") == _layer("lotan.engines")
    src = (
        "import typing\nif typing.TYPE_CHECKING:\n    pass\nif TYPE_CHECKING:\n    import pyspark\n"
    )
    assert len(_type_checking_nodes(ast.parse(src))) == 2


def test_no_module_imports_another_modules_private_names() -> None:
    modules = _modules()
    bad = [
        (m, dep, name)
        for m, path in modules.items()
        for dep, names in _imports(path, modules)
        for name in names
        if name.startswith("_")
    ]
    assert not bad, bad


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: _module(p))
def test_files_stay_readable(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES or _module(path) in LONG_FILES, (
        f"{path.relative_to(ROOT.parent)} has {lines} lines; split it by concern or add it to "
        "LONG_FILES with the reason"
    )
