"""Patient-level calibration data: counts, conversions, provenance and the parser's errors."""
import csv
import inspect
import math
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import gvlmodel
from gvlmodel.clinical import datasets
from gvlmodel.clinical.datasets import (DATASETS, DAYS_PER_MONTH, PatientSeries, _parse_series, _read_csv, dataset,
                               load_hahnel2020, load_hess2005, load_michor2005, load_stim1, series_to_arrays)
from gvlmodel.core.errors import InputError

DATA_FILES = ("michor2005_imatinib.csv", "hahnel2020_on_tki.csv", "hahnel2020_cessation.csv",
              "stim1_2010.toml", "hess2005.toml", "README.md")


def _raw(name):
    """A shipped CSV read independently of the module, via the installed package."""
    with resources.files("gvlmodel").joinpath("data", name).open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_michor2005_counts_and_fields():
    series = load_michor2005()
    assert len(series) == 68
    assert sum(len(s) for s in series) == 435
    raw = _raw("michor2005_imatinib.csv")
    flat = series_to_arrays(series)
    np.testing.assert_array_equal(flat["day"], [float(r["day"]) for r in raw])  # day as given
    np.testing.assert_array_equal(flat["value"], [float(r["bcr_abl_percent"]) for r in raw])
    assert not flat["censored"].any()
    assert all(math.isnan(s.stop_day) for s in series)
    assert all(s.dataset == "michor2005" and s.transplant is False for s in series)
    assert flat["value"].max() > 100  # documented: BCR-ABL/BCR can exceed 100 % at the start


def test_hahnel2020_counts_censoring_and_day_conversion():
    assert DAYS_PER_MONTH == 365.25 / 12 == 30.4375
    series = load_hahnel2020()
    assert len(series) == 21
    assert sum(len(s) for s in series) == 474
    raw = _raw("hahnel2020_on_tki.csv")
    flat = series_to_arrays(series)
    np.testing.assert_array_equal(flat["censored"], [r["upper_limit"] == "1" for r in raw])
    assert flat["censored"].sum() == 137
    np.testing.assert_allclose(flat["day"], [float(r["month_from_diagnosis"]) * 30.4375 for r in raw], rtol=1e-15)
    assert [flat["patient_id"][i] for i in flat["patient"]] == [r["patient_id"] for r in raw]
    assert all(s.dataset == "hahnel2020" and s.transplant is False for s in series)


def test_hahnel2020_cessation_after_the_last_on_tki_sample():
    series = load_hahnel2020()
    months = {r["patient_id"]: float(r["cessation_month"]) for r in _raw("hahnel2020_cessation.csv")}
    assert len(months) == 21 and set(months) == {s.patient_id for s in series}
    before = {}
    for s in series:
        assert s.stop_day == pytest.approx(months[s.patient_id] * DAYS_PER_MONTH, rel=1e-15)
        if s.stop_day < s.day[-1]:
            before[s.patient_id] = (s.day[-1] - s.stop_day) / DAYS_PER_MONTH
    # reported in data/README.md: six patients stop up to 0.032 month before their last sample,
    # well inside the ±0.5 month digitization error; all others stop after it
    assert sorted(before, key=int) == ["6", "8", "11", "16", "18", "21"]
    assert max(before.values()) < 0.035


def test_stim1_fractions_and_derived_days():
    d = load_stim1()
    o = d["outcome"]
    assert (o["molecular_relapse_free_6_months"], o["molecular_relapse_free_12_months"],
            o["molecular_relapse_free_60_months"]) == (0.43, 0.41, 0.38)
    der = d["derived"]
    np.testing.assert_array_equal(der["relapse_free_months"], [6, 12, 60])
    np.testing.assert_allclose(der["relapse_free_days"], [182.625, 365.25, 1826.25])
    np.testing.assert_array_equal(der["relapse_free_fraction"], [0.43, 0.41, 0.38])
    assert der["median_days_to_relapse"] == pytest.approx(2.5 * 30.4375)
    assert d["eligibility"]["transplanted"] is False


def test_hess2005_and_dataset_registry():
    cmr = load_hess2005()["items"]["reached_cmr"]
    assert (cmr["k"], cmr["n"]) == (34, 44)
    assert set(DATASETS) == {"michor2005", "hahnel2020", "stim1_2010", "hess2005"}
    assert len(dataset("hahnel2020")) == 21
    assert dataset("stim1_2010")["outcome"]["patients"] == 100


@pytest.mark.parametrize("name", ["michor", "../data/hess2005", "", 5, None])
def test_unknown_dataset_name_lists_the_allowed_names(name):
    with pytest.raises(InputError, match=r"dataset: unknown name .*; allowed: hahnel2020, hess2005, "
                                         r"michor2005, stim1_2010"):
        dataset(name)


def test_files_come_from_the_installed_package():
    pkg = Path(gvlmodel.__file__).resolve().parent
    assert datasets.DATA_DIR == pkg / "data"
    for name in DATA_FILES:
        assert resources.files("gvlmodel").joinpath("data", name).is_file(), name
    source = inspect.getsource(datasets)
    assert "shared" not in source
    readme = (pkg / "data" / "README.md").read_text(encoding="utf-8")
    assert "shared" not in readme and "../" not in readme
    for csv_name in DATA_FILES[:3]:  # plain CSV: the first line is the header, no comment lines
        first = (pkg / "data" / csv_name).read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("patient_id,"), csv_name
    pyproject = pkg.parent / "pyproject.toml"
    if pyproject.is_file():  # a source checkout: the package data must ship the new files
        text = pyproject.read_text(encoding="utf-8")
        assert '"data/*.csv"' in text and '"data/*.md"' in text


def test_series_are_read_only_and_flatten():
    s = load_michor2005()[0]
    with pytest.raises(ValueError):
        s.day[0] = 1.0
    with pytest.raises(AttributeError):
        s.stop_day = 3.0
    flat = series_to_arrays(load_michor2005()[:3])
    assert flat["patient"].tolist() == sum(([i] * len(x) for i, x in enumerate(load_michor2005()[:3])), [])
    empty = series_to_arrays([])
    assert empty["day"].shape == (0,) and empty["patient"].shape == (0,)
    with pytest.raises(InputError, match="item 0 is a dict"):
        series_to_arrays([{}])


# ---- malformed files -----------------------------------------------------------------------------

HEADER = "patient_id,month_from_diagnosis,bcr_abl_percent,upper_limit\n"


@pytest.mark.parametrize("body, match", [
    ("patient_id,month,bcr_abl_percent,upper_limit\n1,0,1,0\n", r"row 1 \(header\): unknown column\(s\) \['month'\]"),
    ("patient_id,month_from_diagnosis,bcr_abl_percent\n1,0,1\n", r"row 1 \(header\): missing column\(s\) \['upper_limit'\]"),
    (HEADER + "1,0,1,0\n1,2,abc,0\n", r"row 3, column 'bcr_abl_percent': expected a number, got 'abc'"),
    (HEADER + "1,0,0,0\n", r"row 2, column 'bcr_abl_percent': must be > 0"),
    (HEADER + "1,0,-1e-3,0\n", r"row 2, column 'bcr_abl_percent': must be > 0"),
    (HEADER + "1,nan,1,0\n", r"row 2, column 'month_from_diagnosis': expected a finite number"),
    (HEADER + "1,-1,1,0\n", r"row 2, column 'month_from_diagnosis': must be >= 0"),
    (HEADER + "1,0,1,2\n", r"row 2, column 'upper_limit': expected 0 or 1, got '2'"),
    (HEADER + ",0,1,0\n", r"row 2, column 'patient_id': empty"),
    (HEADER + "1,0,1,0\n1,3,1\n", r"row 3: 3 field\(s\), expected 4"),
    (HEADER + "1,0,1,0\n1,5,1,0\n1,4,1,0\n", r"row 4, column 'month_from_diagnosis': patient 1 is not sorted"),
    (HEADER, r"no data rows"),
    ("", r"empty file"),
])
def test_malformed_csv_names_file_row_and_column(tmp_path, body, match):
    bad = tmp_path / "bad.csv"
    bad.write_text(body)
    with pytest.raises(InputError, match=r"bad\.csv") as err:
        _parse_series(bad, "month_from_diagnosis", DAYS_PER_MONTH, "upper_limit", "test")
    assert err.match(match)


def test_parser_reads_a_good_file_and_refuses_a_missing_one(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "7,0,50,0\n7,1,0.01,1\n\n")  # a trailing blank line is fine
    (s,) = _parse_series(good, "month_from_diagnosis", DAYS_PER_MONTH, "upper_limit", "test")
    assert isinstance(s, PatientSeries) and s.patient_id == "7"
    np.testing.assert_array_equal(s.day, [0, DAYS_PER_MONTH])
    np.testing.assert_array_equal(s.censored, [False, True])
    with pytest.raises(InputError, match="data file not found: .*missing.csv"):
        _read_csv(tmp_path / "missing.csv", {"patient_id": "id"})


def test_cessation_file_must_match_the_series(tmp_path):
    series = tmp_path / "s.csv"
    series.write_text(HEADER + "1,0,1,0\n2,0,1,0\n")
    with pytest.raises(InputError, match=r"s\.csv: patients \['2'\] appear in only one"):
        _parse_series(series, "month_from_diagnosis", DAYS_PER_MONTH, "upper_limit", "t", {"1": 10.0})
    cess = tmp_path / "c.csv"
    cess.write_text("patient_id,cessation_month\n1,10\n1,11\n")
    with pytest.raises(InputError, match=r"c\.csv: row 3, column 'patient_id': patient 1 appears twice"):
        datasets._parse_cessation(cess)
