"""The manuscript numbers: every number described, with a unit, a valid unique macro and its interval.

Built from the committed fixture results (``tests/fixtures/results/``) plus the result files the
fixtures lack (a scenario summary, a calibration report, a stop prediction, the full fit report's
Bayes factors, diagnostics and mechanistic answers), written here from the functions that write them.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from gvlmodel.analysis import numbers as gn
from gvlmodel.clinical.summary import median, rate

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "results"


def _band(m, lo, hi):
    return {"median": m, "q05": lo, "q95": hi, "n": 4}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    res = tmp_path_factory.mktemp("numbers") / "results"
    shutil.copytree(FIXTURES, res)
    rep = json.loads((res / "fit_hess2005" / "report.json").read_text())
    comp = rep["comparison"]["result"]
    comp["bayes_factors"] = {"H2:H0": 771.2, "H2:H1": "> 300 (no H1 particle left)"}
    rep["diagnostics"] = {v: {"lost_clone_extinct_at_stop": 0.25, "durable_short_follow_up": None,
                              "patients_at_bound": 0.01, "nontx_cmr_by_stop": 0.5} for v in rep["variants"]}
    rep["answers"]["result"]["hess_protocol"] = {
        "durable_fraction": _band(0.3, 0.1, 0.6), "median_im_days_durable": _band(270.0, 180.0, 400.0),
        "median_im_days_lost": _band(180.0, 150.0, 250.0), "eradicated_share_of_durable": _band(0.9, 0.5, 1.0),
        "durable_minus_lost_im_days": _band(90.0, -30.0, 200.0)}
    (res / "fit_hess2005" / "report.json").write_text(json.dumps(rep))
    summ = {"n_patients": 44, "rates": {"reached_cmr": rate(34, 44), "stopped": rate(10, 44),
                                        "durable_cmr_after_stop": rate(0, 10), "eradicated": rate(0, 0)},
            "medians_days": {"days_to_cmr": median([100.0, 200.0, 300.0, 400.0]), "days_stop_to_loss": median([])}}
    (res / "hess2005" / "summary.json").write_text(json.dumps(summ))
    cal = res / "calibrate_patients"
    cal.mkdir()
    (cal / "report.json").write_text(json.dumps({
        "noise_sd_log10": 0.31, "per_dataset": {"michor2005": {"residual_sd_log10_median": 0.28,
                                                               "residual_sd_log10_max": 0.9,
                                                               "share_residual_sd_le_0_5": 0.93, "failed": 0}},
        "michor_slopes": {"first_slope_per_day": -0.045, "second_slope_per_day": -0.009, "observed_first": -0.05,
                          "observed_second": -0.008, "source": "Michor et al., Nature 2005"},
        "stim1": {"simulated": {"molecular_relapse_free_6_months": 0.45, "molecular_relapse_free_12_months": 0.40},
                  "observed": {"molecular_relapse_free_6_months": 0.43, "molecular_relapse_free_12_months": 0.41},
                  "stopped_in_window": 120, "median_months_to_relapse": 2.7,
                  "lasting_tfr_share_eradicated": 0.95, "lasting_tfr_share_with_100_lsc": 0.0}}))
    from gvlmodel.inference.predict import summary as predict_summary

    pred = res / "predict_stop_hahnel2020"
    pred.mkdir()
    (pred / "predictions.csv").write_text("patient_id\n1\n")
    preds = [{"patient_id": "1", "status": "success", "message": "", "p_recurrence": 0.7, "in_mmr_at_stop": True},
             {"patient_id": "2", "status": "failed", "message": "x", "p_recurrence": None, "in_mmr_at_stop": False}]
    (pred / "summary.json").write_text(json.dumps(predict_summary(preds, 365.0, 0.1)))
    for d in res.iterdir():  # complete folders (the fixtures are truncated copies without their provenance)
        if d.is_dir() and not (d / "provenance.json").exists():
            (d / "provenance.json").write_text("{}")
    gn.write_numbers(res)
    return res


@pytest.fixture(scope="module")
def nums(results):
    return {n.name: n for n in gn.collect(results)}


def test_every_kind_of_result_gives_numbers(nums):
    folders = {name.split(".")[0] for name in nums}
    assert folders == {"fit_hess2005", "hess2005", "sensitivity_hess2005", "dynamics", "calibrate_patients",
                       "predict_stop_hahnel2020", "compare_hess2005"}


def test_compare_numbers_are_the_reports(nums, results):
    rep = json.loads((results / "compare_hess2005" / "report.json").read_text())
    h2 = rep["holdout"]["variants"]["H2"]
    assert nums["compare_hess2005.holdout.H2.log_score"].value == h2["log_score"]
    row = rep["robustness"][0]
    n = nums[f"compare_hess2005.robustness.{row['alternative']}.prob_H2"]
    assert n.value == row["p_H2"] and n.low == pytest.approx(max(0.0, row["p_H2"] - 1.96 * row["se_H2"]))


def test_every_number_has_a_description_a_unit_and_a_source_file(nums, results):
    for n in nums.values():
        assert n.description.strip() and n.unit.strip(), n.name
        assert (results / n.source).is_file(), (n.name, n.source)
        assert n.source.split("/")[0] == n.name.split(".")[0]
        if n.has_interval:
            assert n.interval_kind, n.name


def test_macros_are_valid_latex_command_names_and_unique(results):
    tex = (results / "numbers.tex").read_text()
    names = re.findall(r"\\newcommand\{\\([^}]*)\}", tex)
    assert names and all(re.fullmatch(r"[A-Za-z]+", m) for m in names)
    assert len(set(names)) == len(names)
    assert all(m.startswith("gvl") for m in names)


def test_markdown_table_lists_every_macro_and_the_json_every_number(results, nums):
    md = (results / "numbers.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    in_md = {re.search(r"\| `\\(gvl[A-Za-z]+)` \|", line).group(1) for line in rows}
    tex = (results / "numbers.tex").read_text()
    value_macros = {m for m in re.findall(r"\\newcommand\{\\([^}]*)\}", tex)}
    assert in_md == {n.macro for n in nums.values()}
    assert value_macros == {m for n in nums.values() for m in gn.macros(n)}
    assert len(rows) == len(nums)
    js = json.loads((results / "numbers.json").read_text())["numbers"]
    assert set(js) == set(nums)
    assert all(js[k]["unit"] and js[k]["description"] and js[k]["source"] for k in js)


def test_numbers_and_intervals_are_the_ones_in_their_sources(nums, results):
    rep = json.loads((results / "fit_hess2005" / "report.json").read_text())
    p = rep["comparison"]["result"]["probabilities"]["H2"]
    se = rep["comparison"]["result"]["se"]["H2"]
    n = nums["fit_hess2005.prob.H2"]
    assert n.macro == "gvlFitProbHTwo" and n.value == p
    assert n.low == pytest.approx(max(0.0, p - 1.96 * se)) and n.high == pytest.approx(min(1.0, p + 1.96 * se))
    e = rep["predictive"]["H1"]["median_im_days_lost"]
    n = nums["fit_hess2005.predictive.H1.median_im_days_lost"]
    assert (n.value, n.low, n.high, n.unit) == (e["median"], e["q05"], e["q95"], "days")
    assert nums["fit_hess2005.bayes_factor.H2vsH1"].value == "> 300 (no H1 particle left)"
    r = nums["hess2005.rates.reached_cmr"]
    assert r.macro == "gvlHessRateReachedCMR" and r.value == 34 / 44
    assert [r.low, r.high] == rate(34, 44)["ci95"] and "Clopper-Pearson" in r.interval_kind
    assert "hess2005.rates.eradicated" not in nums  # 0 of 0: no rate
    assert "hess2005.medians_days.days_stop_to_loss" not in nums
    row = rep["answers"]["result"]["tfr_by_im_days"]["transplanted"][-1]
    n = nums[f"fit_hess2005.answers.tfr.transplanted.d{int(row['stop_after_days'])}"]
    assert n.macro == "gvlFitTFRTxOneThousandNinetyFiveDays" and (n.low, n.high) == (row["q05"], row["q95"])
    assert nums["predict_stop_hahnel2020.failed"].value == 1
    assert nums["predict_stop_hahnel2020.expected_share_recurring"].value == pytest.approx(0.7)
    ind = json.loads((results / "sensitivity_hess2005" / "indices.json").read_text())
    o = ind["outputs"][0]
    top = ind["sobol"]["ranking"][o][0]
    assert nums[f"sensitivity_hess2005.sobol.{o}.1.factor"].value == top
    i = ind["problem"]["names"].index(top)
    st = nums[f"sensitivity_hess2005.sobol.{o}.1.ST"]
    assert st.value == ind["sobol"]["indices"][o]["ST"][i]
    assert st.high - st.value == pytest.approx(ind["sobol"]["indices"][o]["ST_conf"][i])


def test_latex_values_and_interval_macros(results, nums):
    tex = (results / "numbers.tex").read_text()
    n = nums["fit_hess2005.prob.H2"]
    assert f"\\newcommand{{\\{n.macro}}}{{{n.value:.3g}}}" in tex
    assert n.has_interval
    assert f"\\newcommand{{\\{n.macro}Lo}}{{{gn._fmt(n.low)}}}" in tex
    assert f"\\newcommand{{\\{n.macro}Hi}}{{{gn._fmt(n.high)}}}" in tex
    assert "\\ensuremath{2.50\\times 10^{-7}}" == gn._fmt(2.5e-7)
    assert gn._fmt(True) == "yes" and gn._fmt("log10_q_out") == "log10\\_q\\_out"


def test_name_scheme():
    assert gn.number_words(730) == "SevenHundredThirty"
    assert gn.number_words(1095) == "OneThousandNinetyFive"
    assert gn.number_words(40) == "Forty" and gn.number_words(0) == "Zero"
    assert gn.camel("median_im_days_durable", "H2") == "MedIMDaysDurableHTwo"
    assert gn.camel("log10_z_half") == "LogZHalf"
    assert gn.experiment_tag("fit_hess2005") == "Fit"
    assert gn.experiment_tag("my_run2") == "MyRunTwo"


def test_a_macro_collision_is_refused():
    a = gn.Number("a.x", "gvlAX", 1.0, "1", "a", "a/report.json")
    b = gn.Number("b.x", "gvlAX", 2.0, "1", "b", "b/report.json")
    with pytest.raises(ValueError, match="gvlAX"):
        gn.check([a, b])
    with pytest.raises(ValueError, match="letters only"):
        gn.check([gn.Number("a.y", "gvlA1", 1.0, "1", "a", "a/report.json")])
    with pytest.raises(ValueError, match="no description or unit"):
        gn.check([gn.Number("a.z", "gvlAZ", 1.0, "", "a", "a/report.json")])
    # an interval's bound macros collide too
    lo = gn.Number("a.w", "gvlAW", 1.0, "1", "a", "a/r.json", 0.0, 2.0, gn.CREDIBLE)
    with pytest.raises(ValueError, match="gvlAWLo"):
        gn.check([lo, gn.Number("a.v", "gvlAWLo", 1.0, "1", "a", "a/r.json")])


def test_no_results_gives_no_numbers(tmp_path):
    assert gn.collect(tmp_path / "missing") == []
    assert "| name | macro |" in gn.markdown_table([])


def test_first_crossing():
    from gvlmodel.clinical.summary import first_crossing

    assert first_crossing([90, 180, 365], [0.2, 0.4, 0.6], 0.5) == pytest.approx(180 + 0.5 * 185)
    assert first_crossing([90, 180], [0.6, 0.7], 0.5) == 90
    assert first_crossing([90, 180], [0.1, 0.2], 0.5) is None
    assert first_crossing([180, 90, 365], [0.4, float("nan"), 0.6], 0.5) == pytest.approx(272.5)


def test_safe_stop_is_where_the_median_reaches_the_level(nums, results):
    from gvlmodel.clinical.summary import first_crossing

    rep = json.loads((results / "fit_hess2005" / "report.json").read_text())
    for setting, rows in rep["answers"]["result"]["tfr_by_im_days"].items():
        n = nums[f"fit_hess2005.answers.safe_stop_days.{setting}"]
        days = [r["stop_after_days"] for r in rows]
        t = first_crossing(days, [r["median"] for r in rows], gn.SAFE_STOP_LEVEL)
        assert n.value == (f"> {max(days):g}" if t is None else pytest.approx(t, abs=0.05))
        assert n.unit == "days"


def test_a_folder_without_provenance_gives_no_numbers(results, tmp_path):
    """A run still going, killed or refused (no provenance.json, written last) contributed its numbers."""
    res = tmp_path / "results"
    shutil.copytree(results / "hess2005", res / "stale")
    assert any(n.name.startswith("stale.") for n in gn.collect(res))
    (res / "stale" / "provenance.json").unlink()
    assert gn.collect(res) == []


def test_folders_that_would_share_macros_are_refused_naming_both(results, tmp_path):
    """``my_run`` and ``myRun`` gave a bare ValueError after every reproduce step had run."""
    from gvlmodel.core.errors import InputError

    res = tmp_path / "results"
    for name in ("my_run", "myRun"):
        shutil.copytree(results / "hess2005", res / name)
    with pytest.raises(InputError, match="'myRun' and 'my_run'|'my_run' and 'myRun'"):
        gn.collect(res)
