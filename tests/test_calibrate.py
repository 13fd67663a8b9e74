"""Patient-level calibration: likelihood, recovery of known parameters, the CLI, and the data checks."""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gvlmodel.inference import calibrate as cal
from gvlmodel.clinical.datasets import PatientSeries
from gvlmodel.model.parameters import default_parameters

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "experiments" / "calibrate_patients.toml"


def small_config(**over):
    raw = {"calibrate": {"name": "t", "seed": 1, "iterations": 2, "max_nfev": 200, "variant": "H2", **over},
           "fitted": {"start_bcr_abl": 0.3, "im_kill_lsc": 0.5, "q_out": 0.5}}
    return cal.parse_config(raw)


def synthetic_patient(theta_true, cfg, *, days, noise, rng, limit=1e-3):
    s = PatientSeries("syn", np.asarray(days, float), np.ones(len(days)), np.zeros(len(days), bool), dataset="syn")
    ratio, res = cal.patient_model(np.log10(theta_true), cfg.fitted, default_parameters(), s, cfg)
    assert res.success
    obs = ratio * 10.0 ** (noise * rng.standard_normal(ratio.size))
    cens = obs < limit
    obs = np.where(cens, limit, obs)
    return PatientSeries("syn", np.asarray(days, float), obs, cens, dataset="syn")


def test_censored_sample_contributes_only_when_the_model_is_above_its_limit():
    cfg = small_config()
    theta = np.log10([60.0, 0.4, 0.004])
    s0 = PatientSeries("c", np.array([1500.0]), np.array([1e-3]), np.array([True]), dataset="c")
    ratio, _ = cal.patient_model(theta, cfg.fitted, default_parameters(), s0, cfg)
    mu, omega = theta.copy(), np.ones(3)
    for limit, expect_small in ((ratio[0] * 1e3, True), (ratio[0] * 1e-3, False)):
        s = PatientSeries("c", np.array([1500.0]), np.array([limit]), np.array([True]), dataset="c")
        r = cal.residuals(theta, cfg.fitted, default_parameters(), s, cfg, mu, omega, 0.2)
        # the data residual is sqrt(-2 log Phi(z)), z = (log10 limit - log10 model) / sigma
        z = (math.log10(limit) - math.log10(ratio[0])) / 0.2
        from scipy.stats import norm
        assert r[0] == pytest.approx(math.sqrt(-2.0 * norm.logcdf(z)), rel=1e-9)
        assert (r[0] < 1e-6) == expect_small
        assert np.all(r[1:] == 0.0)  # the prior terms vanish at the prior mean


def test_patient_fit_recovers_known_parameters_from_synthetic_data():
    """Noise 0.1 log10, monthly then quarterly samples over 4 years, undetectable below 1e-3 %: the MAP
    lies within 3 Laplace posterior SDs of the truth and within 0.25 log10 (a factor 1.8) for every fitted
    quantity (measured: at most 0.16 log10, on the imatinib kill rate, which trades off against q_out)."""
    rng = np.random.default_rng(5)
    days = np.concatenate((np.arange(0, 361, 30.0), np.arange(450, 1461, 90.0)))
    # H2 patients whose load enters the immune window mid-course drop by a step there, which makes the
    # likelihood rugged (a known identifiability problem of window models); the second case is H1
    for variant, truth in (("H2", [70.0, 0.8, 0.004]), ("H1", [40.0, 0.25, 0.0015])):
        cfg = small_config(variant=variant)
        s = synthetic_patient(truth, cfg, days=days, noise=0.1, rng=rng)
        mu = np.log10(truth) + np.array([0.15, -0.3, 0.3])  # a prior centred off the truth
        f = cal.fit_patient(s, cfg.fitted, default_parameters(), cfg, mu, np.full(3, 1.0), 0.1, mu)
        assert f["status"] == "success"
        err = np.abs(f["theta"] - np.log10(truth))
        assert np.all(err < 0.25), (truth, 10 ** f["theta"])
        assert np.all(err < 3 * f["post_sd"] + 0.02)
        assert f["residual_sd_log10"] < 0.2


def test_bad_config_names_the_key():
    with pytest.raises(cal.InputError, match="unknown key.*itrations"):
        cal.parse_config({"calibrate": {"itrations": 3}})
    with pytest.raises(cal.InputError, match="datasets"):
        cal.parse_config({"calibrate": {"datasets": ["stim1_2010"]}})
    with pytest.raises(cal.InputError, match="unknown parameter 'im_fold_b'"):
        cal.parse_config({"fitted": {"im_fold_b": 0.5}})
    with pytest.raises(cal.InputError, match="linear-scale"):
        cal.parse_config({"fitted": {"im_kill_progenitor": 0.5}})


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "gvlmodel.workflow.cli", *args], capture_output=True, text=True, cwd=ROOT)


def test_a_fit_stopped_by_the_evaluation_cap_is_reported_as_not_converged():
    """An optimiser that stops at ``max_nfev`` did not converge (its estimate depends on its path, down to
    rounding): the fit says so, and the tables and summary count it, beside the converged fits."""
    rng = np.random.default_rng(5)
    days = np.concatenate((np.arange(0, 361, 30.0), np.arange(450, 1461, 90.0)))
    truth = [70.0, 0.8, 0.004]
    mu = np.log10(truth) + np.array([0.15, -0.3, 0.3])
    fits = {}
    for cap in (5, 200):
        cfg = small_config(max_nfev=cap)
        s = synthetic_patient(truth, cfg, days=days, noise=0.1, rng=rng)
        fits[cap] = cal.fit_patient(s, cfg.fitted, default_parameters(), cfg, mu, np.full(3, 1.0), 0.1, mu)
    assert fits[5]["status"] == "success" and fits[5]["nfev"] >= 5 and not fits[5]["converged"]
    assert fits[200]["converged"] and fits[200]["nfev"] < 200
    result = {"series": [s, s], "fits": [fits[5], fits[200]], "fitted": cfg.fitted}
    rows = cal.patients_table(result).splitlines()
    assert rows[0].endswith(",nfev,optimizer_converged")
    assert rows[1].endswith(",false") and rows[2].endswith(",true")


def test_cli_quick_run_writes_fits_population_report_and_provenance_last(tmp_path):
    out = tmp_path / "cal"
    r = run_cli("calibrate", str(CONFIG), "--out", str(out), "--quick", "--stim-size", "0")
    assert r.returncode == 0, r.stderr
    for name in ("patients.csv", "fitted_curves.csv", "population.json", "report.json", "report.md",
                 "provenance.json"):
        assert (out / name).is_file(), name
    rows = (out / "patients.csv").read_text().splitlines()
    assert len(rows) == 1 + 8  # 4 Michor + 4 Hähnel patients in quick mode, each reported
    bad = tmp_path / "bad.toml"
    bad.write_text("[calibrate]\niterations = 0\n")
    r = run_cli("calibrate", str(bad), "--out", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "iterations" in r.stderr
    assert not (tmp_path / "nothing").exists()


@pytest.fixture(scope="module")
def full_calibration():
    cfg = cal.load_config(CONFIG)
    result = cal.calibrate(cfg, log=lambda m: None)
    return cfg, result, cal.summary(result, cfg)


def test_per_patient_fits_reproduce_the_series(full_calibration):
    """Issue target: residual SD of log10 BCR-ABL <= 0.5 per patient. Measured (this config): median
    0.21 (Michor) and 0.31 (Hähnel); 96 % and 95 % of patients <= 0.5; no failed fit."""
    _, _, s = full_calibration
    for ds in ("michor2005", "hahnel2020"):
        v = s["per_dataset"][ds]
        assert v["failed"] == 0
        assert 0 <= v["not_converged"] <= v["patients"]
        assert v["not_converged"] == sum(1 for x, f in zip(full_calibration[1]["series"], full_calibration[1]["fits"])
                                         if x.dataset == ds and not f["converged"])
        assert v["residual_sd_log10_median"] <= 0.5
        assert v["share_residual_sd_le_0_5"] >= 0.9


def test_population_median_course_has_michors_two_phases(full_calibration):
    """Michor 2005 report natural-log slopes of about -0.05/day, then about -0.008/day. The population
    median gives -0.043 and -0.0044 (measured): the first within 20 %, the second within a factor 2
    (a slower second phase than reported; the digitised data's median falls 0.3 log10 from day 180 to 365,
    about -0.004/day)."""
    cfg, result, s = full_calibration
    m = s["michor_slopes"]
    assert -0.06 < m["first_slope_per_day"] < -0.04
    assert -0.016 < m["second_slope_per_day"] < -0.004 * 0.9
    assert m["first_slope_per_day"] < 5 * m["second_slope_per_day"]  # two distinct phases


def test_prior_residuals_whiten_a_full_covariance():
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 3))
    om = a @ a.T + 0.1 * np.eye(3)
    mu = np.array([0.1, -0.2, 0.3])
    x1, x2 = rng.standard_normal(3), rng.standard_normal(3)
    r1, r2 = cal.prior_residuals(x1, mu, om), cal.prior_residuals(x2, mu, om)
    # half the squared norm is -log N(x; mu, om) up to one constant
    d = -0.5 * (r1 @ r1 - r2 @ r2)
    assert math.isclose(d, multivariate_normal(mu, om).logpdf(x1) - multivariate_normal(mu, om).logpdf(x2),
                        rel_tol=1e-10)
    np.testing.assert_allclose(cal.prior_residuals(x1, mu, np.sqrt(np.diag(om))),
                               (x1 - mu) / np.sqrt(np.diag(om)), rtol=1e-14)


def test_population_covariance_is_the_em_update_and_stays_positive_definite():
    rng = np.random.default_rng(1)
    th = rng.standard_normal((50, 3)) @ np.array([[0.3, 0, 0], [0.2, 0.2, 0], [0, 0, 0.1]])
    pc = np.array([np.diag([0.01, 0.02, 0.005])] * 50)
    om = cal.population_covariance(th, pc)
    np.testing.assert_allclose(om, np.cov(th.T, ddof=0) + pc.mean(axis=0), rtol=1e-2, atol=1e-4)
    # perfectly collinear MAPs and no posterior spread: still positive definite, SDs floored
    line = np.outer(np.linspace(-1, 1, 20), [1.0, -1.0, 0.0])
    om = cal.population_covariance(line, np.zeros((20, 3, 3)))
    assert np.all(np.linalg.eigvalsh(om) > 0) and np.sqrt(om[2, 2]) >= 0.02 - 1e-12


# ---------------------------------------------------------------- STIM1 stage
def test_stim1_stage_config_names_the_key_and_the_allowed_values():
    with pytest.raises(cal.InputError, match=r"stim1_parameter.*z_expand_auto.*'z_death'"):
        cal.parse_config({"calibrate": {"stim1_parameter": "z_death"}})
    with pytest.raises(cal.InputError, match="stim1_grid_points"):
        cal.parse_config({"calibrate": {"stim1_parameter": "z_expand_auto", "stim1_grid_points": 2}})
    assert cal.parse_config({"calibrate": {}}).stim1_parameter == ""  # off unless asked for
    with pytest.raises(cal.InputError, match="stim1_profile: parameter"):
        cal.stim1_profile({}, {}, "H2", parameter="q_in")


def test_stim1_profile_recovers_a_known_expansion_rate_from_synthetic_counts():
    """Counts of 100 patients drawn from a STIM1-like trial at z_expand_auto = 0.2 (one seed); the profile,
    run with other virtual patients (another seed) from a grid centred on 0.14, must cover 0.2 with its
    95 % interval and land within 25 % of it."""
    from gvlmodel.model.parameters import parameter_set_info

    info = parameter_set_info("patients")
    truth = 0.2
    trial = cal.stim_check({**info["parameters"], "z_expand_auto": truth}, info["population"], "H2", size=3000,
                           seed=7, correlation=info["correlation"])
    free = [trial["simulated"][f"molecular_relapse_free_{m}_months"] for m in cal.STIM_EDGES_MONTHS]
    rng = np.random.default_rng(3)
    counts = rng.multinomial(100, np.clip([1 - free[0], free[0] - free[1], free[1] - free[2], free[2]], 0, 1))
    prof = cal.stim1_profile({**info["parameters"], "z_expand_auto": 0.14}, info["population"], "H2",
                             parameter="z_expand_auto", size=2000, grid_points=9, grid_factor=2.0, seed=11,
                             correlation=info["correlation"], counts=counts, log=lambda m: None)
    assert prof["method"] == "parabola vertex"
    assert prof["ci95"][0] < truth < prof["ci95"][1], prof
    assert abs(prof["estimate"] / truth - 1) < 0.25, prof
    # the likelihood is a likelihood: the observed counts are least likely at the grid's far ends
    ll = np.array(prof["log_likelihood"])
    assert ll.argmax() not in (0, ll.size - 1)


def test_shipped_patients_set_records_the_stim1_estimate_and_the_series_value():
    from gvlmodel.model.parameters import parameter_set, parameter_set_info

    s = parameter_set_info("patients")["stim1_calibration"]
    assert s["parameter"] == "z_expand_auto"
    assert parameter_set("patients")["z_expand_auto"] == pytest.approx(s["estimate"], rel=1e-12)
    assert s["ci95_low"] < s["estimate"] < s["ci95_high"]
    assert s["series_median"] != pytest.approx(s["estimate"], rel=0.05)  # STIM1 moved it: the data mattered
