"""The compiled CSV formatter writes exactly Python's ``%.10g`` / ``%d`` text (gvlmodel.core.csvtext)."""
import numpy as np
import pytest

from gvlmodel.core.csvtext import CELL, format_g10, numeric_cells


def _texts(a):
    cells, lens = numeric_cells(a)
    return [bytes(cells[i, :lens[i]]).decode("ascii") for i in range(a.shape[0])]


def _python(a):
    if a.dtype.kind == "f":
        return ["" if not np.isfinite(x) else "%.10g" % x for x in a.tolist()]
    return ["%d" % x for x in a.tolist()]


EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, 1.5, 2.5, 0.1, 0.2, 0.3, 1e-4, 1e-5, 9.999999999e-5, 0.0001234567891, 1e9, 1e10,
         9999999999.0, 9999999999.5, 99999999995.0, 12345678905.0, 123456789050.0, 1234567890.5, 1e16, 1e22, 1e23,
         1.23456789012e-300, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, np.nan, np.inf, -np.inf,
         1800.0, 30.0, -60.0, 3.0000000005, 0.30000000005, 7.0000000004999]


@pytest.mark.parametrize("seed", [0, 1])
def test_floats_are_written_as_python_writes_them(seed):
    """Random magnitudes from 1e-30 to 1e30 (both signs), integers as floats, 10-to-12-digit decimals,
    the edge cases (ties, powers of ten, subnormal, huge, non-finite): every cell equals ``'%.10g' % x``,
    non-finite ones empty."""
    rng = np.random.default_rng(seed)
    n = 200_000
    a = np.concatenate([10.0 ** rng.uniform(-30, 30, n) * rng.choice([-1.0, 1.0], n),
                        rng.integers(-10 ** 6, 10 ** 6, n // 4).astype(float),
                        rng.integers(0, 10 ** 12, n // 4) / 10.0 ** rng.integers(0, 12, n // 4),
                        rng.standard_normal(n // 4), np.array(EDGES)])
    assert _texts(a) == _python(a)


def test_near_ties_and_out_of_range_values_are_left_to_python():
    """The float computation cannot decide a rounding tie or scale by an inexact power of ten: those
    cells are flagged, and the others are not (the shortcut does the work for ordinary numbers)."""
    a = np.array([12345678905.0, 1234567890.5, 1e-300, 1e300, 0.1234567891, 42.0, 1e-7])
    cells = np.empty((a.size, CELL), dtype=np.uint8)
    lens = np.empty(a.size, dtype=np.int64)
    fallback = np.empty(a.size, dtype=bool)
    format_g10(a, cells, lens, fallback)
    assert fallback.tolist() == [True, True, True, True, False, False, False]
    assert _texts(a) == _python(a)  # 1.23456789e+10 (half to even), 1234567890 ...


def test_integers_are_written_as_python_writes_them():
    rng = np.random.default_rng(3)
    a = rng.integers(-2 ** 63, 2 ** 63 - 1, 100_000, dtype=np.int64)
    a[:6] = [-2 ** 63, 2 ** 63 - 1, 0, -1, 9, -10]
    assert _texts(a) == _python(a)
    assert _texts(np.array([3, 255], dtype=np.uint8)) == ["3", "255"]


def test_strided_columns_use_the_compiled_signature():
    """A column that is a view of a table (strided) is formatted without compiling a second signature."""
    from gvlmodel.core.csvtext import format_g10, format_int

    table = np.arange(12.0).reshape(4, 3) / 7.0
    ints = np.arange(12).reshape(4, 3)
    numeric_cells(np.array([0.5]))
    numeric_cells(np.array([5]))
    before = (len(format_g10.signatures), len(format_int.signatures))
    assert _texts(table[:, 1]) == _python(table[:, 1])
    assert _texts(ints[:, 2]) == _python(ints[:, 2])
    assert (len(format_g10.signatures), len(format_int.signatures)) == before


def test_tables_equal_the_cell_formatter_row_by_row():
    """A table with every kind of column (floats with gaps, integers, booleans, text with commas, quotes
    and non-ASCII letters, None, mixed objects) is the cell formatter's text joined by commas and lines."""
    from gvlmodel.clinical.scenario import _fmt, table_csv, table_csv_bytes

    rng = np.random.default_rng(4)
    n = 3000
    f = rng.lognormal(0.0, 5.0, n)
    f[::7] = np.nan
    cols = {"f": f, "days": np.where(rng.random(n) < 0.3, np.nan, rng.integers(0, 60, n) * 30.0),
            "i": rng.integers(-5, 5, n), "b": rng.random(n) < 0.5,
            "t": np.array([["a,b", 'say "hi"', "Hähnel", "plain"][k] for k in rng.integers(0, 4, n)], dtype=object),
            "o": [None if k == 0 else (1.5 if k == 1 else "x") for k in rng.integers(0, 3, n)],
            "f32": rng.random(n).astype(np.float32)}
    rows = [",".join(_fmt(cols[k][r]) for k in cols) for r in range(n)]
    text = table_csv(cols)
    assert text == ",".join(cols) + "\n" + "\n".join(rows) + "\n"
    assert table_csv_bytes(cols, header=False) == ("\n".join(rows) + "\n").encode("utf-8")
    assert table_csv({"a": np.empty(0), "t": []}) == "a,t\n"
    with pytest.raises(ValueError, match="unequal length"):
        table_csv({"a": np.zeros(2), "b": np.zeros(3)})
