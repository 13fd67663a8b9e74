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

import contextlib
import hashlib
import os
import shutil
import time
from pathlib import Path

import numba
import numba.core.event

NUMBA_OPTIONS = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy"}

_PACKAGE = Path(__file__).resolve().parents[1]  # the gvlmodel package folder


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


#: every function the package compiles on its own, ``"module.name" -> dispatcher``, in definition order
#: (functions with ``inline="always"`` are left out: they are compiled into their callers)
KERNELS: dict = {}


def kernel_name(func) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def _register(dispatcher, options):
    if options.get("inline") != "always":
        KERNELS[kernel_name(dispatcher.py_func)] = dispatcher
    return dispatcher


def jit(func=None, **overrides):
    """``numba.njit`` with the package's options (``cache=True``); the function joins :data:`KERNELS`."""
    options = {**NUMBA_OPTIONS, **overrides}
    if func is None:
        return lambda f: _register(numba.njit(**options)(f), options)
    return _register(numba.njit(**options)(func), options)


def is_cached(dispatcher) -> bool:
    """Whether ``dispatcher`` has compiled code in the on-disk cache (for some signature)."""
    try:
        return Path(dispatcher._cache._cache_file._index_path).is_file()
    except (AttributeError, OSError):  # numba internals moved: judge by the whole cache
        return not cache_is_cold()


def uncached_kernels() -> list[str]:
    """Names of the :data:`KERNELS` not in the on-disk cache yet (they compile on first use)."""
    return [name for name, d in KERNELS.items() if not is_cached(d)]


class CompileListener(numba.core.event.Listener):
    """Calls ``on_compiled(name)`` when numba finishes compiling one of the :data:`KERNELS` (a cache
    miss; loading from the cache is not a compile)."""

    def __init__(self, on_compiled):
        self.on_compiled = on_compiled

    def on_start(self, event):
        pass

    def on_end(self, event):
        dispatcher = (event.data or {}).get("dispatcher")
        func = getattr(dispatcher, "py_func", None)
        if func is not None and kernel_name(func) in KERNELS:
            self.on_compiled(kernel_name(func))


@contextlib.contextmanager
def record_compiles():
    """Context manager yielding the list of kernel names compiled inside it, in order."""
    names: list[str] = []
    with numba.core.event.install_listener("numba:compile", CompileListener(names.append)):
        yield names
