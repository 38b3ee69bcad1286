"""The package layout (README "Package layout"): imports among ``lotan`` modules run one way,
no module uses another's private names, the two engines never import each other, and files
stay small enough to read. Every import counts — lazy ones inside functions and the ones
under ``TYPE_CHECKING`` too — since a cycle hidden in a function is still a cycle."""

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


def test_the_engines_never_import_each_other() -> None:
    graph = _graph()
    for a, b in (("graph_engine", "nn_engine"), ("nn_engine", "graph_engine")):
        bad = {(m, d) for m, deps in graph.items() for d in deps if f".{a}" in m and f".{b}" in d}
        assert not bad, bad


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
