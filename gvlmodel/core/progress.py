"""One way to show progress: a ``tqdm`` bar on stderr, or nothing.

Commands show bars when stderr is a terminal and ``--no-progress`` is not given
(:func:`wanted`); library functions take ``progress: bool`` and pass it to
:func:`bar`, which returns a disabled bar (same interface, prints nothing) otherwise.
"""
from __future__ import annotations

import sys


def wanted(no_progress: bool = False, stream=None) -> bool:
    """Whether a command should show progress: not ``--no-progress`` and stderr is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return not no_progress and stream.isatty()
    except (AttributeError, ValueError):  # closed or unusual streams
        return False


def bar(iterable=None, *, enabled: bool, total=None, desc: str = "", unit: str = "it", leave: bool = False):
    """A ``tqdm`` bar over ``iterable`` (or ``total`` steps, ``update()`` by hand) on stderr; disabled (silent)
    unless ``enabled``."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=not enabled, file=sys.stderr,
                dynamic_ncols=True)
