"""The package layout stays readable: no import cycle inside grader/, and class grading in grader/batch/.

Imports are read with ast, module-level and inside functions alike (a lazy import is still a
dependency); only those under `if TYPE_CHECKING:` are left out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

GRADER = Path(__file__).resolve().parent.parent / "grader"

# Grading a class lives in grader/batch/; these names at the top of grader/ mean it leaked back.
CLASS_MODULES = {"batch", "executors", "slurm", "staging", "intake", "unpack", "gradebook", "progress", "duplicates"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(GRADER.rglob("*.py")):
        parts = path.relative_to(GRADER.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every import statement that can run, with what it names."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _imports_of(child))
            continue
        yield from _imports_of(node)


def _imports_of(node: ast.AST):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    elif not (isinstance(node, ast.If) and _is_type_checking(node)):
        yield from _imports(node)


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _targets(module: str, path: Path, node, modules: dict[str, Path]) -> set[str]:
    """The grader modules one import statement runs: the module named, each submodule it names, and
    the packages above them that `module` is not itself inside (those are already importing)."""
    names = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = _package_of(module, path).split(".")
            base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
        names = [base] + [f"{base}.{alias.name}" for alias in node.names]
    found = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if not name.startswith("grader"):
            continue
        parts = name.split(".")
        for n in range(2, len(parts) + 1):
            above = ".".join(parts[:n])
            if above in modules and not (module == above or module.startswith(above + ".")):
                found.add(above)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[module] = set()
        for node in _imports(tree):
            graph[module] |= _targets(module, path, node, modules) - {module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycle_in_grader():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_lazy_imports_count():
    graph = import_graph()
    assert "grader.checks" in graph["grader.grading"]  # grading imports it at the top
    assert "grader.batch.job" in graph["grader.batch.executors"]  # the worker imports it inside a function


def test_class_grading_is_not_at_the_top_of_grader():
    top = {p.stem for p in GRADER.glob("*.py")} | {p.name for p in GRADER.iterdir() if p.is_dir()}
    leaked = sorted((top & CLASS_MODULES) - {"batch"})
    assert not leaked, f"class-grading modules at the top of grader/: {leaked} (they belong in grader/batch/)"
    assert (GRADER / "batch" / "__init__.py").is_file()


def test_every_grader_error_has_the_common_base():
    """The CLI reports any GraderError in one place; an exception class outside it would be a traceback."""
    import importlib

    from grader.errors import GraderError

    # Control flow inside the student's process, and pydantic's validation protocol, stay as they are.
    exempt = {"DataNotLoaded", "CellTimeout", "ImportStopped", "LocatedError"}
    missing = []
    for module, path in _modules().items():
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name not in exempt and any(
                    isinstance(b, ast.Name) and b.id.endswith(("Error", "Exception")) for b in node.bases):
                cls = getattr(importlib.import_module(module), node.name)
                if not issubclass(cls, GraderError):
                    missing.append(f"{module}.{node.name}")
    assert not missing, f"exceptions without GraderError as a base: {missing}"
    assert not any(n == "ReferenceError" for n in _class_names()), "ReferenceError shadows the builtin"


def _class_names():
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                yield node.name
