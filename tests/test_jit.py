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
