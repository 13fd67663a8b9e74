"""`gvlmodel simulate` in parts (bounded memory) and Parquet output (issue 19): the files of a run in
parts are byte for byte those of one whole run; Parquet holds the same values as CSV."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gvlmodel.workflow.cli import main
from gvlmodel.clinical.scenario import load_scenario, run_and_write, write_results

SCENARIO = """
[cohort]
size = 2600
seed = 3
[treatment]
follow_up_days = 540
[output]
trajectories = [0, 1023, 1024, 2599]
time_step_days = 30
"""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    path = tmp_path_factory.mktemp("sc") / "s.toml"
    path.write_text(SCENARIO)
    return load_scenario(path)


@pytest.fixture(scope="module")
def whole(scenario, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    write_results(scenario, scenario.run(threads=2, progress=False), out)
    return out


def _summary(path: Path) -> dict:
    s = json.loads((path / "summary.json").read_text())
    s.pop("run")  # timings
    return s


@pytest.mark.parametrize("chunk, threads", [(700, 1), (1024, 2)])
def test_a_run_in_parts_writes_the_files_of_one_whole_run(scenario, whole, tmp_path, chunk, threads):
    """Parts that cut through the draws' blocks of 1024 patients (700) or along them, any thread count."""
    files, summary, run = run_and_write(scenario, tmp_path, threads=threads, progress=False, chunk=chunk)
    assert files == ["patients.csv", "trajectories.csv", "summary.json", "provenance.json"]
    for name in ("patients.csv", "trajectories.csv"):
        assert (tmp_path / name).read_bytes() == (whole / name).read_bytes(), name
    assert _summary(tmp_path) == _summary(whole)
    assert run.n == scenario.cohort.size
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)  # no temporary file left


def test_patients_drawn_in_a_range_are_those_of_the_whole_cohort(scenario):
    from gvlmodel.clinical.cohort import _resolve_base, prepare_cohort
    from gvlmodel.model.parameters import parse_variant, resolve_parameters

    base = resolve_parameters(_resolve_base(scenario.parameters))
    args = (scenario.cohort, scenario.protocol, base, parse_variant(scenario.variant), scenario.population,
            1e-6, 1e-6, 1.0, 1000)
    whole = prepare_cohort(*args)
    part = prepare_cohort(*args, patients=range(1000, 2100))
    for name in ("kp", "y0", "effects", "eps", "uu", "relapse_types", "bcr_abl_start", "would_stop"):
        np.testing.assert_array_equal(getattr(part, name), getattr(whole, name)[1000:2100], err_msg=name)


def test_memory_of_a_run_in_parts_is_bounded_by_the_part(tmp_path):
    path = tmp_path / "big.toml"
    path.write_text("[cohort]\nsize = 1000000\nseed = 1\n[output]\ntrajectories = 2000\n")
    sc = load_scenario(path)
    parts, whole = sc.memory_estimate()["total"], sc.memory_estimate(chunk=None)["total"]
    assert parts < 2 ** 30 < 4 * 2 ** 30 < whole
    sc.check_resources(available=2 * 2 ** 30)  # 10^6 patients run in parts on a 2 GiB machine


def test_a_run_that_would_fill_the_disk_exits_2_before_running(tmp_path, capsys, monkeypatch):
    from gvlmodel.core import limits

    monkeypatch.setattr(limits, "free_disk", lambda folder: 2.0 ** 20)
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO)
    out = tmp_path / "out"
    assert main(["simulate", str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "GiB of tables" in err and "reduce [cohort] size" in err
    assert not out.exists()


def test_parquet_holds_the_values_of_the_csv_tables(tmp_path, whole):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow.csv as pcsv

    path = tmp_path / "s.toml"
    path.write_text(SCENARIO.replace("[output]", '[output]\nformat = "parquet"'))
    out = tmp_path / "out"
    out.mkdir()
    (out / "patients.csv").write_text("stale\n")  # an earlier CSV run's table goes
    assert main(["simulate", str(path), "--out", str(out), "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["patients.parquet", "provenance.json", "summary.json",
                                                    "trajectories.parquet"]
    for name in ("patients", "trajectories"):
        got = pq.read_table(out / f"{name}.parquet")
        ref = pcsv.read_csv(whole / f"{name}.csv")
        assert got.column_names == ref.column_names
        for col in got.column_names:
            a, b = got[col].to_pylist(), ref[col].to_pylist()
            if got[col].type == "double":
                np.testing.assert_allclose(np.array(a, dtype=float), np.array(b, dtype=float), rtol=1e-9,
                                           err_msg=col)  # CSV keeps 10 significant digits
            else:
                assert [None if x == "" else x for x in a] == [None if x == "" else x for x in b], col
    assert json.loads((out / "provenance.json").read_text())["resolved"]["output_format"] == "parquet"


def test_parquet_without_pyarrow_exits_2_naming_the_extra(tmp_path, capsys, monkeypatch):
    import importlib.util

    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else find(name, *a))
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO.replace("[output]", '[output]\nformat = "parquet"'))
    out = tmp_path / "out"
    assert main(["simulate", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "output.format" in err and "gvlmodel[parquet]" in err
    assert not out.exists()


def test_an_unknown_format_exits_2_naming_the_allowed_ones(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO.replace("[output]", '[output]\nformat = "xlsx"'))
    out = tmp_path / "out"
    assert main(["simulate", str(path), "--out", str(out)]) == 2
    assert "output.format" in capsys.readouterr().err
    assert not out.exists()


def test_table_csv_writes_each_cell_as_the_cell_formatter_does():
    """The row-format fast path (finite floats, integers) gives the text of formatting every cell alone."""
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    from gvlmodel.clinical.scenario import _fmt, table_csv

    floats = hnp.arrays(float, 7, elements=st.floats(allow_nan=True, allow_infinity=True))
    finite = hnp.arrays(float, 7, elements=st.floats(allow_nan=False, allow_infinity=False))
    ints = hnp.arrays(np.int64, 7)
    bools = hnp.arrays(bool, 7)
    texts = st.lists(st.one_of(st.none(), st.text(max_size=5)), min_size=7, max_size=7)

    @settings(max_examples=60, deadline=None)
    @given(floats, finite, ints, bools, texts)
    def check(f, g, i, b, t):
        cols = {"f": f, "g": g, "i": i, "b": b, "t": np.array(t, dtype=object)}
        rows = [",".join(_fmt(cols[k][r]) for k in cols) for r in range(7)]
        assert table_csv(cols) == "f,g,i,b,t\n" + "\n".join(rows) + "\n"

    check()


def test_streamed_patients_csv_equals_a_cell_by_cell_table_of_the_one_patient_engine(scenario, tmp_path,
                                                                                     monkeypatch):
    """The fast path end to end - lock-step engine in blocks, parts of a streamed run, column-wise CSV -
    against a reference that shares none of it: the one-patient-at-a-time engine
    (:func:`gvlmodel.clinical.protocol.run_cohort`) on the whole cohort, every cell formatted on its own."""
    import gvlmodel.clinical.lanes as lanes
    import gvlmodel.clinical.scenario as scen
    from gvlmodel.clinical.protocol import run_cohort
    from gvlmodel.clinical.scenario import _fmt, patient_table

    files, _, _ = run_and_write(scenario, tmp_path / "fast", threads=2, progress=False, chunk=700)
    fast = (tmp_path / "fast" / "patients.csv").read_text()

    class OnePatientEngine:  # run_inputs calls the lock-step engine on listed rows: the scalar engine runs them
        signatures = [None]

        def __call__(self, kp, y0, effects, pp, eps, uu, measured, res_f, res_i, rows, block):
            m, f, i = measured[rows], res_f[rows], res_i[rows]
            run_cohort(kp[rows], y0[rows], effects[rows], pp, eps[rows], uu[rows], m, f, i)
            measured[rows], res_f[rows], res_i[rows] = m, f, i

    monkeypatch.setattr(lanes, "run_rows_lanes", OnePatientEngine())
    ref = patient_table(scenario.run(threads=1, progress=False))
    names = list(ref)
    rows = [",".join(_fmt(ref[k][r]) for k in names) for r in range(scenario.cohort.size)]
    assert fast == ",".join(names) + "\n" + "\n".join(rows) + "\n"
    assert fast.count("\n") == scenario.cohort.size + 1
    assert scen.STREAM_CHUNK % 1024 == 0  # parts of a streamed run keep to the draws' blocks


def test_integral_float_columns_are_written_as_the_cell_formatter_does():
    """Visit days (integral floats, some missing): the same text as ``%.10g``, also for -0.0, values of
    10 digits and the first value that %.10g writes in exponent form."""
    from gvlmodel.clinical.scenario import _fmt, format_column, table_csv

    cases = [np.array([0.0, 30.0, 1800.0, np.nan, -60.0]), np.array([-0.0, 30.0]), np.array([9999999999.0, 1.0]),
             np.array([1e10, 2.0]), np.array([np.nan, np.inf]), np.array([3.0, 0.5]), np.array([7.0, 7.0])]
    for a in cases:
        assert format_column(a) == [_fmt(v) for v in a], a
        assert table_csv({"a": a}, header=False) == "".join(_fmt(v) + "\n" for v in a), a
