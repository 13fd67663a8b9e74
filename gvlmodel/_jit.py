"""The one place that holds numba's compilation options.

Every compiled function in the package is decorated with :func:`jit`, so the
cache policy and floating-point semantics are decided here and nowhere else.
``fastmath`` stays off: the tests compare kernels against NumPy to ~1e-12 and
fast-math reassociation would make results depend on the compiler's choices.
"""
from __future__ import annotations

import numba

NUMBA_OPTIONS = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy"}


def jit(func=None, **overrides):
    """``numba.njit`` with the package's options (``cache=True``)."""
    options = {**NUMBA_OPTIONS, **overrides}
    if func is None:
        return lambda f: numba.njit(**options)(f)
    return numba.njit(**options)(func)
