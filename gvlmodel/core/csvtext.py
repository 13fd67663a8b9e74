"""Compiled CSV text for numeric table columns: the same bytes as Python's ``%.10g`` and ``%d``.

Writing a 100,000-patient ``patients.csv`` through Python's ``%`` formatting took about 1 s of
CPU, a tenth of the whole run.  Here floats and integers are formatted by compiled kernels (which
release the GIL) into fixed-width cells, and the rows are joined by a compiled loop.

Floats: ``%.10g`` is the value correctly rounded to 10 significant digits (CPython's ``dtoa``).
:func:`_digits10` scales the value by an exact power of ten (one correctly rounded
multiplication or division: an error below 2**-19 in units of the last digit) and rounds; when
the scaled value lies within 1e-5 of a rounding tie, or the power of ten is not exact
(``|exponent| > 22`` after scaling, e.g. subnormal or huge values), the float computation
cannot decide the rounding and the cell is left to Python (``fallback``), so every cell is
exactly Python's text.  ``tests/test_csvtext.py`` compares both on millions of values.
"""
from __future__ import annotations

import math

import numpy as np

from ._jit import jit

#: bytes reserved per numeric cell (``-1.234567891e-100`` has 17)
CELL = 24
_POW10 = np.array([10.0 ** k for k in range(23)])  # exact binary values: 10**k < 2**53 * 2**k
_ZERO, _MINUS, _DOT, _E, _PLUS, _COMMA, _NEWLINE = 48, 45, 46, 101, 43, 44, 10


@jit
def _digits10(a):
    """``(d, x, ok)`` for ``a > 0``: the 10 significant decimal digits of ``a`` correctly rounded, as an
    integer ``10**9 <= d < 10**10``, and the decimal exponent ``x`` (``a ~ d * 10**(x - 9)``); ``ok``
    is False when the rounding cannot be decided in floating point (near a tie, or out of range)."""
    e = int(math.floor(math.log10(a)))
    s = 0.0
    found = False
    for _ in range(3):  # log10 may be one off either way near powers of ten
        k = 9 - e
        if 0 <= k <= 22:
            s = a * _POW10[k]
        elif -22 <= k < 0:
            s = a / _POW10[-k]
        else:
            return 0, 0, False
        if s < 1e9:
            e -= 1
        elif s >= 1e10:
            e += 1
        else:
            found = True
            break
    if not found:
        return 0, 0, False
    r = math.floor(s)
    f = s - r  # exact
    if abs(f - 0.5) < 1e-5:
        return 0, 0, False
    d = int(r) + (1 if f > 0.5 else 0)
    if d == 10_000_000_000:
        d = 1_000_000_000
        e += 1
    return d, e, True


@jit
def format_g10(values, cells, lens, fallback):
    """``'%.10g' % x`` of each finite ``values[i]`` into ``cells[i, :lens[i]]`` (ASCII); non-finite values
    are empty (``lens[i] = 0``); ``fallback[i]`` is set where Python must format the value."""
    dig = np.empty(10, dtype=np.uint8)
    for i in range(values.shape[0]):
        x = values[i]
        fallback[i] = False
        lens[i] = 0
        if not np.isfinite(x):
            continue
        p = 0
        if math.copysign(1.0, x) < 0.0:
            cells[i, 0] = _MINUS
            p = 1
        a = abs(x)
        if a == 0.0:
            cells[i, p] = _ZERO
            lens[i] = p + 1
            continue
        d, xe, ok = _digits10(a)
        if not ok:
            fallback[i] = True
            continue
        for j in range(9, -1, -1):
            dig[j] = _ZERO + d % 10
            d //= 10
        n_dig = 10
        while n_dig > 1 and dig[n_dig - 1] == _ZERO:  # %g drops trailing zeros
            n_dig -= 1
        if -4 <= xe < 10:  # fixed notation
            if xe >= 0:
                for j in range(xe + 1):
                    cells[i, p] = dig[j] if j < n_dig else _ZERO
                    p += 1
                if n_dig > xe + 1:
                    cells[i, p] = _DOT
                    p += 1
                    for j in range(xe + 1, n_dig):
                        cells[i, p] = dig[j]
                        p += 1
            else:
                cells[i, p] = _ZERO
                cells[i, p + 1] = _DOT
                p += 2
                for j in range(-xe - 1):
                    cells[i, p] = _ZERO
                    p += 1
                for j in range(n_dig):
                    cells[i, p] = dig[j]
                    p += 1
        else:  # exponent notation, at least two exponent digits
            cells[i, p] = dig[0]
            p += 1
            if n_dig > 1:
                cells[i, p] = _DOT
                p += 1
                for j in range(1, n_dig):
                    cells[i, p] = dig[j]
                    p += 1
            cells[i, p] = _E
            cells[i, p + 1] = _MINUS if xe < 0 else _PLUS
            p += 2
            ax = abs(xe)
            if ax >= 100:
                cells[i, p] = _ZERO + ax // 100
                p += 1
            cells[i, p] = _ZERO + (ax // 10) % 10
            cells[i, p + 1] = _ZERO + ax % 10
            p += 2
        lens[i] = p


@jit
def format_int(values, cells, lens, fallback):
    """``'%d' % v`` of each ``values[i]`` (int64) into ``cells[i, :lens[i]]``; ``fallback[i]`` for the one
    value whose magnitude has no int64 (``-2**63``)."""
    for i in range(values.shape[0]):
        v = values[i]
        fallback[i] = False
        p = 0
        if v < 0:
            if v == -v:  # -2**63
                fallback[i] = True
                lens[i] = 0
                continue
            cells[i, 0] = _MINUS
            p = 1
            v = -v
        n = 1
        t = v
        while t >= 10:
            t //= 10
            n += 1
        for j in range(n - 1, -1, -1):
            cells[i, p + j] = _ZERO + v % 10
            v //= 10
        lens[i] = p + n


@jit
def join_rows(tab, tab_base, width, lens, lens_base, idx, out):
    """Rows of a CSV body into ``out``: cell ``(i, c)`` is row ``idx[c, i]`` of column ``c``'s table
    (``lens[lens_base[c] + r]`` bytes at ``tab[tab_base[c] + r * width[c]]``); cells separated by commas,
    rows ended by a newline.  Returns the number of bytes written."""
    n_cols, n = idx.shape
    p = 0
    for i in range(n):
        for c in range(n_cols):
            r = idx[c, i]
            m = lens[lens_base[c] + r]
            src = tab_base[c] + r * width[c]
            for j in range(m):
                out[p + j] = tab[src + j]
            p += m
            out[p] = _COMMA if c < n_cols - 1 else _NEWLINE
            p += 1
    return p


def numeric_cells(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(cells, lens)`` of a float or integer column: the text of ``'%.10g'`` (floats, non-finite
    empty) or ``'%d'`` (integers) of every entry, as Python writes it."""
    n = a.shape[0]
    cells = np.empty((n, CELL), dtype=np.uint8)
    lens = np.empty(n, dtype=np.int64)
    fallback = np.empty(n, dtype=np.bool_)
    if a.dtype.kind == "f":  # contiguous float64 / int64: the one compiled signature (a column view of a
        format_g10(np.ascontiguousarray(a, dtype=np.float64), cells, lens, fallback)  # table is strided)
        fmt = "{:.10g}".format
    else:
        format_int(np.ascontiguousarray(a, dtype=np.int64), cells, lens, fallback)
        fmt = "{:d}".format
    for i in np.flatnonzero(fallback).tolist():
        text = fmt(a[i].item()).encode("ascii")
        if len(text) > CELL:
            raise ValueError(f"numeric_cells: {text!r} is longer than {CELL} bytes")
        cells[i, :len(text)] = np.frombuffer(text, dtype=np.uint8)
        lens[i] = len(text)
    return cells, lens


def text_cells(texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(table, lens, index)`` of a column of ready texts: each distinct text once (UTF-8, padded rows)."""
    codes: dict[str, int] = {}
    index = np.fromiter((codes.setdefault(t, len(codes)) for t in texts), dtype=np.int64, count=len(texts))
    encoded = [t.encode("utf-8") for t in codes]
    width = max([1] + [len(b) for b in encoded])
    table = np.zeros((len(encoded), width), dtype=np.uint8)
    lens = np.zeros(len(encoded), dtype=np.int64)
    for r, b in enumerate(encoded):
        table[r, :len(b)] = np.frombuffer(b, dtype=np.uint8)
        lens[r] = len(b)
    return table, lens, index


def csv_body(columns: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]], n: int) -> bytes:
    """CSV rows from per-column ``(table, lens, index)`` (``index`` None: row ``i`` is entry ``i``)."""
    if not columns or n == 0:
        return b""
    tabs, bases, widths, all_lens, lens_bases, idx = [], [], [], [], [], np.empty((len(columns), n), dtype=np.int64)
    at = at_lens = 0
    size = n * len(columns)  # separators
    for c, (table, lens, index) in enumerate(columns):
        tabs.append(table.reshape(-1))
        bases.append(at)
        widths.append(table.shape[1])
        all_lens.append(lens)
        lens_bases.append(at_lens)
        at += table.size
        at_lens += lens.size
        idx[c] = np.arange(n) if index is None else index
        size += int(lens.sum() if index is None else lens[index].sum())
    out = np.empty(size, dtype=np.uint8)
    used = join_rows(np.concatenate(tabs), np.array(bases, dtype=np.int64), np.array(widths, dtype=np.int64),
                     np.concatenate(all_lens), np.array(lens_bases, dtype=np.int64), idx, out)
    return out[:used].tobytes()
