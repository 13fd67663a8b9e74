"""Error types and the small validators every config reader shares.

Bad user input raises :class:`InputError`, naming the field and what is allowed.
"""
import math
import numbers
from itertools import chain

import numpy as np


class InputError(ValueError):
    """A config value or call argument is invalid; the message names the field."""


class SolverError(RuntimeError):
    """A failed solve: raised by the API on request (``raise_on_failure=True``), and by ``gvlmodel reproduce``
    when its example solve fails (the commands report a cohort's failures per patient)."""


#: largest config file read (a config is a few kilobytes; parameter sets with posteriors ~100 KB)
MAX_CONFIG_BYTES = 16 * 2 ** 20


def read_toml(path, label: str = "config") -> dict:
    """Parse a TOML file; a missing or malformed file is an :class:`InputError` naming it."""
    import tomllib

    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)  # (a device such as /dev/zero never ends)
        if len(data) > MAX_CONFIG_BYTES:
            raise InputError(f"{label} {path}: larger than {MAX_CONFIG_BYTES // 2 ** 20} MiB; a config is a few "
                             "kilobytes of TOML")
        return tomllib.loads(data.decode("utf-8"))
    except FileNotFoundError:
        raise InputError(f"{label}: file not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{label}: {path} is a folder; expected a TOML file") from None
    except OSError as exc:
        raise InputError(f"{label}: cannot read {path} ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{label} {path}: not valid TOML ({exc})") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise InputError(f"{label} {path}: arrays or tables nested too deeply to read; a config needs at "
                         "most a few levels") from None


def check_tables(cfg: dict, tables: dict, source: str, allowed_text=None) -> None:
    """Config tables and their keys against ``tables`` (name -> allowed keys); the error names the
    table and key.  ``allowed_text(table, allowed)`` may phrase the allowed keys of a table."""
    unknown = set(cfg) - set(tables)
    if unknown:
        raise InputError(f"{source}: unknown table(s) {sorted(unknown)}; allowed: {sorted(tables)}")
    for table, allowed in tables.items():
        sub = cfg.get(table, {})
        if not isinstance(sub, dict):
            raise InputError(f"[{table}]: expected a table, got {type(sub).__name__}")
        bad = set(sub) - allowed
        if bad:
            text = allowed_text(table, allowed) if allowed_text else ", ".join(sorted(allowed))
            raise InputError(f"[{table}]: unknown key(s) {sorted(bad)}; allowed: {text}")


def output_folder(path, field: str = "--out"):
    """``path`` as an output folder: new or existing, but not an existing file."""
    from pathlib import Path

    if not str(path).strip():
        fail(field, "empty; expected a folder path (new or existing)")
    path = Path(path)
    if path.exists() and not path.is_dir():
        fail(field, f"{path} is a file; expected a folder (new or existing)")
    probe = path if path.is_dir() else None
    for parent in path.parents:  # a file on the way would fail only at the first write, after the work
        if probe is None and parent.exists():
            if not parent.is_dir():
                fail(field, f"{path} cannot be created: {parent} is a file")
            probe = parent
            break
    if probe is not None:  # a read-only folder or file system would fail only at the first write, too
        import tempfile

        try:
            with tempfile.TemporaryFile(dir=probe):
                pass
        except OSError as exc:
            fail(field, f"{path} cannot be written: {probe} is not writable ({exc.strerror or exc}); "
                 "choose another folder")
    return path


def fail(field: str, message: str):
    """Raise :class:`InputError` for ``field``."""
    raise InputError(f"{field}: {message}")


def real(field: str, v, lo=None, hi=None, lo_open: bool = False) -> float:
    """A finite real number (not a bool) in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not _finite(v):
        fail(field, f"expected a finite number, got {_shown(v)}")
    v = float(v)
    if lo is not None and (v < lo or (lo_open and v == lo)):
        fail(field, f"must be {'>' if lo_open else '>='} {lo:g}, got {v:g}")
    if hi is not None and v > hi:
        fail(field, f"must be <= {hi:g}, got {v:g}")
    return v


def _finite(v) -> bool:
    """Whether the number ``v`` is finite as a float (an integer too large for a float is not)."""
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _shown(v) -> str:
    """``repr(v)``, an integer of more than 30 digits shortened to its magnitude."""
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10 ** 30:
        return f"an integer of {len(str(abs(v)))} digits"
    return repr(v)


def parse_number(field: str, text: str) -> float:
    """A finite number from text (a CSV cell, a command-line value); the error names ``field``."""
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"{field}: expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise InputError(f"{field}: expected a finite number, got {text!r}")
    return v


def real_array(field: str, v, what: str = "numbers") -> np.ndarray:
    """``v`` (a number, sequence or array of numbers) as a new float array.

    Strings, booleans and other objects are refused, naming ``field``: NumPy
    alone would turn ``"100"`` into 100.0 and ``True`` into 1.0.
    """
    if isinstance(v, np.ndarray) and v.dtype.kind in "iuf":
        return v.astype(float)
    try:
        a = np.asarray(v)
    except (TypeError, ValueError):  # ragged nesting
        fail(field, f"expected {what}; got nested sequences of unequal length")
    if a.dtype.kind in "iuf":  # numbers, but NumPy also turns True into 1 inside a list of numbers
        _no_bools(field, v, what)
        return a.astype(float)
    for x in np.array(v, dtype=object).reshape(-1):  # the caller's own objects, for the message
        if isinstance(x, (list, tuple, np.ndarray)):
            fail(field, f"expected {what}; got nested sequences of unequal length")
        if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
            fail(field, f"expected {what}, got {x!r}")
        if not _finite(x) and isinstance(x, numbers.Integral):  # beyond float range (NumPy: OverflowError)
            fail(field, f"expected finite {what}, got {_shown(x)}")
    return a.astype(float)


def _no_bools(field: str, v, what: str) -> None:
    """Refuse a boolean anywhere in (regularly) nested lists/tuples, level by level at C speed."""
    level = [v]
    while True:
        types = set(map(type, level))
        if bool in types or np.bool_ in types:
            fail(field, f"expected {what}, got a boolean")
        if not types & {list, tuple}:
            return
        level = list(chain.from_iterable(x for x in level if type(x) in (list, tuple)))


def integer(field: str, v, lo: int = 0, hi: int | None = None) -> int:
    """An integer (not a bool) in ``[lo, hi]``."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        fail(field, f"expected an integer, got {v!r}")
    if v < lo or (hi is not None and v > hi):
        fail(field, f"must be an integer in [{lo}, {hi if hi is not None else 'inf'}], got {_shown(v)}")
    return int(v)


def boolean(field: str, v) -> bool:
    """``true`` or ``false``."""
    if not isinstance(v, (bool, np.bool_)):
        fail(field, f"expected true or false, got {v!r}")
    return bool(v)
