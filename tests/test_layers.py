"""The package's architecture, checked: layers in one order, no import cycle, every module in a layer.

``gvlmodel`` is split into subpackages, one per layer, lowest first (:data:`LAYERS`; the same
order is written down in the docstring of ``gvlmodel/__init__.py``).  A module may import from
its own layer and from lower ones, never from a higher one: module-level imports and imports
deferred into functions alike (a deferred import still makes the lower layer depend on the higher
one).  Module-level imports form no cycle; imports inside functions may be deferred on purpose
(start-up time, optional dependencies) and are counted, not forbidden.  The top-level
``gvlmodel/__init__.py`` re-exports the public API and is the top layer (``api``).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "gvlmodel"

#: the layers, lowest first: a module may import only from its own layer or one before it in this list
LAYERS = ("core", "model", "clinical", "analysis", "inference", "workflow", "api")
#: the layer of the top-level package module ``gvlmodel/__init__.py`` (the public API)
ROOT_LAYER = "api"
#: the imports deferred into a function because a module-level one would close an import cycle (and why)
DEFERRED_FOR_A_CYCLE = {
    ("gvlmodel.inference.fit", "gvlmodel.inference.report"): "the report reads fit.STAT_LABELS; fit writes the report",
}

_FUNCTION = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def module_files(pkg: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``pkg`` (a package's ``__init__.py`` is the package)."""
    out = {}
    for path in sorted(pkg.rglob("*.py")):
        parts = path.relative_to(pkg.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(tree: ast.Module):
    """``(node, deferred)`` for every import statement; ``deferred``: inside a function (runs when called)."""
    def walk(node, deferred):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, deferred
            yield from walk(child, deferred or isinstance(child, _FUNCTION))

    yield from walk(tree, False)


def import_edges(pkg: Path) -> list[tuple[str, str, bool]]:
    """``(importer, imported, deferred)`` for every import of one of ``pkg``'s modules by another.

    ``from X import name`` depends on module ``X.name`` where that is a module of the package
    (``from ..core import limits``), else on ``X`` itself.
    """
    files = module_files(pkg)
    top = pkg.name
    edges = []
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        package = mod if is_pkg else mod.rpartition(".")[0]
        for node, deferred in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    if not base:
                        raise ValueError(f"{path}:{node.lineno}: relative import beyond the top-level package")
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in files else origin for a in node.names]
            for target in targets:
                if target == top or target.startswith(top + "."):
                    while target not in files:  # import a.b.c where only a.b is a module of ours
                        target = target.rpartition(".")[0]
                    if target != mod:
                        edges.append((mod, target, deferred))
    return edges


def module_graph(edges, *, deferred: bool = False) -> dict[str, set[str]]:
    """Adjacency sets of the module-level imports (and the deferred ones too with ``deferred=True``)."""
    graph: dict[str, set[str]] = {}
    for a, b, d in edges:
        graph.setdefault(a, set())
        graph.setdefault(b, set())
        if deferred or not d:
            graph[a].add(b)
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


def cycle_breakers(edges) -> set[tuple[str, str]]:
    """The deferred imports that would close a cycle of the module-level imports if made module-level."""
    graph = module_graph(edges)
    out = set()
    for a, b, deferred in edges:
        if deferred and b not in graph[a]:
            trial = {k: set(v) for k, v in graph.items()}
            trial[a].add(b)
            if find_cycle(trial):
                out.add((a, b))
    return out


def layer_of(module: str, layers=LAYERS, root_layer: str = ROOT_LAYER) -> str | None:
    """The layer of a dotted module name: its subpackage under the top-level package (None: not in a layer)."""
    parts = module.split(".")
    if len(parts) == 1:
        return root_layer
    return parts[1] if parts[1] in layers and parts[1] != root_layer else None


def unassigned(modules, layers=LAYERS) -> list[str]:
    """The modules that belong to no layer (a top-level module other than the package, or an unknown subpackage)."""
    return sorted(m for m in modules if layer_of(m, layers) is None)


def layer_violations(edges, layers=LAYERS) -> list[str]:
    """Every import of a higher layer, as ``"a (layer) -> b (layer)"`` (deferred ones marked)."""
    rank = {name: i for i, name in enumerate(layers)}
    out = []
    for a, b, deferred in edges:
        la, lb = layer_of(a, layers), layer_of(b, layers)
        if la is None or lb is None or rank[lb] > rank[la]:
            out.append(f"{a} ({la}) -> {b} ({lb}){' [deferred]' if deferred else ''}")
    return sorted(set(out))


# --- the checks can fail: synthetic inputs --------------------------------------------------------------------

def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_layer_check_finds_an_upward_import():
    layers = ("low", "high", "api")
    edges = [("p.high.x", "p.low.y", False), ("p.low.y", "p.low.z", False)]
    assert layer_violations(edges, layers) == []
    assert layer_violations(edges + [("p.low.y", "p.high.x", True)], layers) == ["p.low.y (low) -> p.high.x (high) [deferred]"]
    assert layer_violations([("p.low.y", "p", False)], layers) == ["p.low.y (low) -> p (api)"]  # the API facade is on top
    assert layer_violations([("p.low.y", "p.misc.w", False)], layers) == ["p.low.y (low) -> p.misc.w (None)"]


def test_layer_assignment_finds_a_module_outside_the_layers():
    layers = ("low", "high", "api")
    assert unassigned(["p", "p.low", "p.low.a", "p.high.b"], layers) == []
    assert unassigned(["p", "p.loose", "p.misc.c", "p.api.d"], layers) == ["p.api.d", "p.loose", "p.misc.c"]


def test_import_graph_of_a_synthetic_package(tmp_path):
    """Relative and absolute imports resolve to modules; imports inside functions are marked deferred."""
    pkg = tmp_path / "p"
    for folder, files in {"low": {"a.py": "X = 1\n", "b.py": "from .a import X\nfrom . import a\n"},
                          "high": {"c.py": "import p.low.b\nfrom ..low import a, b\n\ndef f():\n    from ..low.a import X\n",
                                   "d.py": "class K:\n    from p.low.b import X\n"}}.items():
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
        for name, text in files.items():
            (pkg / folder / name).write_text(text)
    (pkg / "__init__.py").write_text("from .high.c import f\n")
    assert set(module_files(pkg)) == {"p", "p.low", "p.low.a", "p.low.b", "p.high", "p.high.c", "p.high.d"}
    assert sorted(set(import_edges(pkg))) == [
        ("p", "p.high.c", False),
        ("p.high.c", "p.low.a", False), ("p.high.c", "p.low.a", True), ("p.high.c", "p.low.b", False),
        ("p.high.d", "p.low.b", False),  # a class body runs at import
        ("p.low.b", "p.low.a", False),
    ]
    (pkg / "low" / "a.py").write_text("def g():\n    from ..high import c\n")
    edges = import_edges(pkg)
    assert layer_violations(edges, ("low", "high", "api")) == ["p.low.a (low) -> p.high.c (high) [deferred]"]
    assert find_cycle(module_graph(edges)) is None
    assert find_cycle(module_graph(edges, deferred=True)) == ["p.high.c", "p.low.a", "p.high.c"]
    assert cycle_breakers(edges) == {("p.low.a", "p.high.c")}


# --- the package -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def edges():
    return import_edges(PKG)


def test_every_module_belongs_to_exactly_one_layer():
    modules = module_files(PKG)
    assert {"gvlmodel.model.model", "gvlmodel.workflow.cli", "gvlmodel.inference.fit"} <= set(modules)
    assert unassigned(modules) == []
    # one folder per layer below the API, each a package (a layer is named once, so a module is in exactly one)
    assert len(set(LAYERS)) == len(LAYERS)
    folders = {p.parent.name for p in PKG.glob("*/*.py")}
    assert folders == set(LAYERS) - {ROOT_LAYER}
    assert all((PKG / name / "__init__.py").is_file() for name in folders)
    assert [p.name for p in PKG.glob("*.py")] == ["__init__.py"]  # no loose module at the top
    assert not list(PKG.glob("*/*/*.py"))  # no deeper subpackage a layer check would misread


def test_no_import_cycle_between_modules(edges):
    graph = module_graph(edges)
    assert len(graph) > 30
    assert find_cycle(graph) is None, find_cycle(graph)


def test_deferred_imports_hide_only_the_known_cycles(edges):
    """An import deferred into a function to dodge a cycle is listed in :data:`DEFERRED_FOR_A_CYCLE` with its
    reason (the other deferred imports, about 70 distinct ones, keep start-up fast or optional dependencies
    optional; a module-level import would work for them)."""
    assert cycle_breakers(edges) == set(DEFERRED_FOR_A_CYCLE)


def test_modules_import_only_their_own_or_lower_layers(edges):
    assert layer_violations(edges) == []


def test_layer_order_is_the_documented_one():
    """The order in the package docstring is the one checked here."""
    import gvlmodel

    doc = gvlmodel.__doc__
    positions = [doc.index(f"``{name}``") for name in LAYERS if name != ROOT_LAYER]
    assert positions == sorted(positions), "gvlmodel/__init__.py lists the layers in another order"
