"""The numba cache is keyed by the package's source, so stale compiled code is never loaded."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numba
import pytest

from gvlmodel import _jit


def test_cache_folder_is_named_by_the_source_digest():
    if os.environ.get("NUMBA_CACHE_DIR"):
        pytest.skip("the user's NUMBA_CACHE_DIR takes precedence")
    assert Path(numba.config.CACHE_DIR).name == _jit.source_digest()


def test_digest_changes_with_any_source_file(tmp_path, monkeypatch):
    copy = tmp_path / "gvlmodel"
    shutil.copytree(Path(_jit.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__", "*.toml",
                                                                                   "*.csv", "*.json"))
    monkeypatch.setattr(_jit, "_PACKAGE", copy)
    before = _jit.source_digest()
    assert _jit.source_digest() == before  # deterministic
    solver = copy / "solver.py"
    solver.write_text(solver.read_text() + "\n# an edit\n")
    assert _jit.source_digest() != before


def test_cache_is_cold_until_a_kernel_is_cached(tmp_path, monkeypatch):
    import numba

    from gvlmodel._jit import cache_is_cold

    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path))
    assert cache_is_cold()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "model.rhs-1.py311.nbi").write_bytes(b"")
    assert not cache_is_cold()
