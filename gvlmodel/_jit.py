"""The one place that holds numba's compilation options and its on-disk cache.

Every compiled function in the package is decorated with :func:`jit`, so the
cache policy and floating-point semantics are decided here and nowhere else.
``fastmath`` stays off: the tests compare kernels against NumPy to ~1e-12, the
lock-step cohort engine must equal the one-patient engine bit for bit, and
fast-math reassociation would make results depend on the compiler's choices.

**Cache keyed by the package's source.**  numba checks a cached function
against the time stamp of *its own* file only; a kernel that calls a function
from another module (``protocol.run_cohort`` calling ``solver.integrate_ws``
calling ``model.rhs``) keeps running the old callee after that module changes,
e.g. after a ``git pull`` into an editable install.  So, unless the user sets
``NUMBA_CACHE_DIR``, the cache lives in a folder named by a digest of every
source file of the package and of the numba version: any change to the
package compiles afresh, and stale code can never be loaded.  Folders of other
digests older than a day are removed.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import numba

NUMBA_OPTIONS = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy"}

_PACKAGE = Path(__file__).resolve().parent


def source_digest() -> str:
    """Digest of the package's Python sources and the numba version (16 hex digits)."""
    h = hashlib.sha256(numba.__version__.encode())
    for path in sorted(_PACKAGE.rglob("*.py")):
        h.update(path.relative_to(_PACKAGE).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
        return True
    except OSError:
        return False


def _cache_root() -> Path:
    in_tree = _PACKAGE / "__pycache__" / "numba"
    if _writable(in_tree):
        return in_tree
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "gvlmodel" / "numba"


def _configure_cache() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return  # the user decides
    root = _cache_root()
    digest = source_digest()
    numba.config.CACHE_DIR = str(root / digest)
    cutoff = time.time() - 86400.0
    try:
        for old in root.iterdir():
            if old.is_dir() and old.name != digest and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
    except OSError:
        pass


_configure_cache()


def cache_is_cold() -> bool:
    """True when no compiled kernel is cached for this source yet (the next run compiles, ~1 min)."""
    folder = Path(numba.config.CACHE_DIR) if numba.config.CACHE_DIR else None
    try:
        return folder is None or not any(folder.rglob("*.nbi"))
    except OSError:
        return True


def jit(func=None, **overrides):
    """``numba.njit`` with the package's options (``cache=True``)."""
    options = {**NUMBA_OPTIONS, **overrides}
    if func is None:
        return lambda f: numba.njit(**options)(f)
    return numba.njit(**options)(func)
