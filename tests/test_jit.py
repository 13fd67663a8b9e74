"""The numba cache is keyed by the package's source, so stale compiled code is never loaded."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numba
import pytest

from gvlmodel.core import _jit


def test_cache_folder_is_named_by_the_source_digest():
    if os.environ.get("NUMBA_CACHE_DIR"):
        pytest.skip("the user's NUMBA_CACHE_DIR takes precedence")
    assert Path(numba.config.CACHE_DIR).name == _jit.source_digest()


def test_digest_changes_with_any_source_file(tmp_path, monkeypatch):
    copy = tmp_path / "gvlmodel"
    shutil.copytree(_jit._PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.toml", "*.csv", "*.json"))
    monkeypatch.setattr(_jit, "_PACKAGE", copy)
    before = _jit.source_digest()
    assert _jit.source_digest() == before  # deterministic
    solver = copy / "model" / "solver.py"  # a module of a subpackage counts too
    solver.write_text(solver.read_text() + "\n# an edit\n")
    assert _jit.source_digest() != before


def test_cache_is_cold_until_a_kernel_is_cached(tmp_path, monkeypatch):
    import numba

    from gvlmodel.core._jit import cache_is_cold

    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path))
    assert cache_is_cold()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "model.rhs-1.py311.nbi").write_bytes(b"")
    assert not cache_is_cold()


# --------------------------------------------------------------------------
# compiling with progress (gvlmodel.workflow.warmup, the CLI's first-run compile)
# --------------------------------------------------------------------------
def _jitted_in_source() -> set[str]:
    """``module.function`` of every function decorated with ``@jit`` / ``@jit(...)`` (not inline="always")."""
    import ast

    out = set()
    for path in _jit._PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(_jit._PACKAGE.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef):
                continue
            for d in node.decorator_list:
                call = d if isinstance(d, ast.Call) else None
                name = (call.func if call else d)
                if isinstance(name, ast.Name) and name.id == "jit":
                    inline = call and any(k.arg == "inline" and getattr(k.value, "value", None) == "always"
                                          for k in call.keywords)
                    if not inline:
                        out.add(f"{module}.{node.name}")
    return out


def test_kernel_registry_is_every_jitted_function():
    from gvlmodel.workflow.warmup import kernels_to_compile

    kernels_to_compile()  # imports every kernel module
    assert set(_jit.KERNELS) == _jitted_in_source()
    assert len(_jit.KERNELS) > 30


def test_compile_listener_records_each_fresh_compile():
    f = _jit.jit(cache=False)(lambda x: x + 1)
    name = _jit.kernel_name(f.py_func)
    try:
        assert name in _jit.KERNELS
        with _jit.record_compiles() as compiled:
            assert f(1) == 2
            assert f(2) == 3  # same signature: no compile
            assert f(1.5) == 2.5  # a new signature compiles again
        assert compiled == [name, name]
    finally:
        _jit.KERNELS.pop(name, None)


def test_progress_only_on_a_terminal_and_without_no_progress():
    import io

    from gvlmodel.core.progress import bar, wanted

    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert wanted(False, Tty()) and not wanted(True, Tty())
    assert not wanted(False, io.StringIO())
    b = bar(range(3), enabled=False, desc="x")
    assert b.disable and list(b) == [0, 1, 2]


@pytest.mark.parametrize("argv_tail,tty,expected", [([], True, True), (["--no-progress"], True, False),
                                                    ([], False, False)])
def test_cli_compiles_up_front_only_on_a_terminal(argv_tail, tty, expected, monkeypatch, tmp_path):
    import io
    import sys

    import gvlmodel.workflow.warmup as warmup
    from gvlmodel.workflow import cli

    class Err(io.StringIO):
        def isatty(self):
            return tty

    calls = []
    monkeypatch.setattr(sys, "stderr", Err())
    monkeypatch.setattr(warmup, "kernels_to_compile", lambda: ["gvlmodel.model.model.rhs"])
    monkeypatch.setattr(warmup, "compile_kernels", lambda progress=True, file=None: calls.append(progress) or [])
    # the compile comes before the command; this one then stops on its missing config (exit 2)
    code = cli.main(["dynamics", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o"), *argv_tail])
    assert code == 2
    assert calls == ([True] if expected else [])
    # commands that run no model never compile
    calls.clear()
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert cli.main(["parameters", *([] if not argv_tail else [])]) == 0
    assert calls == []


@pytest.mark.slow
def test_compile_kernels_compiles_every_kernel_into_an_empty_cache(tmp_path):
    """In a fresh process with an empty cache: every kernel of KERNELS is compiled, then none is left."""
    import json
    import subprocess
    import sys

    code = ("import json; from gvlmodel.workflow.warmup import compile_kernels, kernels_to_compile; "
            "from gvlmodel.core._jit import KERNELS; names = compile_kernels(progress=False); "
            "print(json.dumps({'kernels': sorted(KERNELS), 'compiled': sorted(set(names)), "
            "'left': kernels_to_compile()}))")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["compiled"] == got["kernels"] and got["left"] == []
