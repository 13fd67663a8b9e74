"""The package's module-level imports form no cycle (imports inside functions are deferred on purpose)."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "gvlmodel"


def module_level_imports() -> dict[str, set[str]]:
    graph = {}
    for path in PKG.glob("*.py"):
        name = path.stem
        deps = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # top level only
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:
                    deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gvlmodel."):
                deps.add(node.module.split(".")[1])
        graph[name] = deps - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` (a list of nodes, first == last) or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if d not in graph:
                continue
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle_between_modules():
    graph = module_level_imports()
    assert {"model", "cli", "calibrate", "predict"} <= set(graph)
    assert find_cycle(graph) is None, find_cycle(graph)
