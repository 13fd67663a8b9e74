"""The Hess data model's alternatives, the joint-calibration priors, the statistic screen and
`gvlmodel compare` (robustness, held-out STIM1 score, decisiveness)."""
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from gvlmodel.clinical.cohort import Protocol
from gvlmodel.clinical.trial import TrialDesign, base_spreads, follow_up_by_patient, outcome_groups
from gvlmodel.core.errors import InputError
from gvlmodel.inference import calibrate, compare
from gvlmodel.inference.fit import _truncnorm_rv_class, load_config, parse_config, screen_statistics, shared_priors
from gvlmodel.model.indices import PP
from gvlmodel.model.parameters import parameter_set

ROOT = Path(__file__).resolve().parents[1]
FIT = ROOT / "experiments" / "fit_hess2005.toml"
COMPARE = ROOT / "experiments" / "compare_hess2005.toml"


# ---------------------------------------------------------------- the Hess data model
def test_fixed_follow_up_is_the_same_for_everybody():
    assert np.all(follow_up_by_patient(TrialDesign(), 44) == 1095.0)


def test_staggered_follow_up_spreads_evenly_and_ignores_order():
    d = TrialDesign(follow_up_min_days=365.0, follow_up_days=1095.0)
    f = follow_up_by_patient(d, 44)
    assert f.min() > 365.0 and f.max() < 1095.0
    expected = 365.0 + 730.0 * (np.arange(44) + 0.5) / 44
    np.testing.assert_allclose(np.sort(f), expected, rtol=0, atol=1e-9)
    assert np.median(f) == pytest.approx(730.0)
    # not sorted by patient index (relapse types are assigned in blocks of the index)
    assert abs(np.corrcoef(np.arange(44), f)[0, 1]) < 0.5
    np.testing.assert_array_equal(f, follow_up_by_patient(d, 44))  # the same in every trial


def _columns(**kw):
    n = len(next(iter(kw.values())))
    base = {"solver_status": np.zeros(n, int), "reached_cmr": np.ones(n, bool), "days_to_cmr": np.full(n, 100.0),
            "stopped": np.ones(n, bool), "stop_day": np.full(n, 300.0), "lost_cmr": np.zeros(n, bool),
            "days_stop_to_loss": np.full(n, np.nan), "last_day_reached": np.full(n, 1095.0)}
    base.update({k: np.asarray(v) for k, v in kw.items()})
    return base


def test_staggered_follow_up_hides_what_happens_after_a_patients_end():
    d = TrialDesign(size=4, follow_up_min_days=365.0, follow_up_days=1095.0)
    f = follow_up_by_patient(d, 4)
    i = int(np.argmin(f))  # the patient followed shortest (456 days)
    c = _columns(days_to_cmr=[100.0] * 4, stop_day=[300.0] * 4, lost_cmr=[True] * 4,
                 days_stop_to_loss=[f[i] - 300.0 + 1.0] * 4)  # the loss comes one day after this patient's end
    g = outcome_groups(c, d)
    assert g["stopped"][i] and not g["lost"][i] and g["durable"][i]
    others = np.arange(4) != i
    assert np.all(g["lost"][others])
    # a CMR confirmed (two visits after the first negative) only after the end does not count
    c2 = _columns(days_to_cmr=[f[i] - 59.0] * 4, stopped=[False] * 4, stop_day=[np.nan] * 4)
    assert not outcome_groups(c2, d)["cmr"][i]


def test_fixed_follow_up_counts_losses_within_the_window_only():
    d = TrialDesign(size=2)
    c = _columns(stop_day=[300.0, 300.0], lost_cmr=[True, True], days_stop_to_loss=[494.0, 495.0])
    g = outcome_groups(c, d)
    assert list(g["lost"]) == [True, False] and list(g["durable"]) == [False, True]


def test_stop_rule_minimum_reaches_the_engine():
    rule, lo, window = Protocol(stop={"min_days": 120}).stop_rule()
    assert (lo, window) == (120.0, 90.0) and rule == Protocol().stop_rule()[0]
    pp = Protocol(stop={"min_days": 120}).kernel_vector(1e-6, 1e-6, 1.0, 1000)
    assert pp[PP.STOP_MIN_DAYS] == 120.0
    assert TrialDesign(stop_min_days=120.0).protocols(1.0)[0].stop == {"min_days": 120.0}
    assert TrialDesign().protocols(1.0)[0].stop == "hess2005"


@pytest.mark.parametrize("key,value", [("follow_up_min_days", -1.0), ("follow_up_min_days", 5000.0),
                                       ("stop_min_days", -5.0)])
def test_bad_design_values_are_named(key, value):
    with pytest.raises(InputError, match=key):
        TrialDesign(**{key: value})


# ---------------------------------------------------------------- joint calibration: priors
def test_shared_priors_are_centred_on_the_calibrated_set():
    cfg = load_config(FIT)
    base = parameter_set("patients")
    mu, sd = cfg.shared_prior["log10_im_kill_lsc"]
    assert mu == pytest.approx(math.log10(base["im_kill_lsc"])) and sd == 0.3
    assert cfg.shared_prior["sd_im_kill_lsc"][0] == pytest.approx(base_spreads("patients")["im_kill_lsc"])
    assert "stop_uptake" not in cfg.shared_prior and "log10_z_expand_allo" not in cfg.shared_prior
    # the calibrated spreads reach the virtual trials (q_in and dormancy_in vary between patients)
    assert {"q_in", "dormancy_in"} <= set(base_spreads("patients"))


@pytest.mark.parametrize("shared,match", [(["nope"], "not fitted"), (["stop_uptake"], "protocol"),
                                          ("im_kill_lsc", "list")])
def test_bad_shared_prior_names_the_key(shared, match):
    fitted = load_config(FIT).fitted
    with pytest.raises(InputError, match=match):
        shared_priors({"shared": shared}, fitted, "patients")


def test_truncated_normal_prior_matches_scipy_and_stays_in_bounds():
    rv = _truncnorm_rv_class()(0.2, 0.3, -0.5, 0.4)
    ref = stats.truncnorm((-0.5 - 0.2) / 0.3, (0.4 - 0.2) / 0.3, loc=0.2, scale=0.3)
    for x in (-0.6, -0.5, -0.1, 0.2, 0.39, 0.41):
        assert rv.pdf(x) == pytest.approx(ref.pdf(x), rel=1e-9, abs=1e-12)
        assert rv.cdf(x) == pytest.approx(ref.cdf(x), rel=1e-9, abs=1e-12)
    np.random.seed(3)
    x = np.array([rv.rvs() for _ in range(4000)])
    assert x.min() >= -0.5 and x.max() <= 0.4
    assert stats.kstest(x, ref.cdf).pvalue > 1e-3


def test_screen_drops_the_unreachable_lost_median():
    """With the 6-month minimum no simulated median imatinib duration of the lost group can be 151 days."""
    cfg = load_config(FIT, quick=True)
    s = screen_statistics(cfg, trials=8, log=lambda m: None)
    e = s["statistics"]["median_im_days_lost"]
    assert e["status"] == "unreachable" and e["min"] >= 180.0 and s["weights"]["median_im_days_lost"] == 0.0
    assert s["statistics"]["frac_cmr"]["status"] == "used" and s["weights"]["frac_cmr"] == 1.0


# ---------------------------------------------------------------- compare: exact pieces
def test_stim_counts_are_the_observed_intervals():
    counts, obs = calibrate.stim_counts()
    assert counts.tolist() == [57.0, 2.0, 3.0, 38.0] and obs["patients"] == 100


def test_multinomial_log_pmf_matches_scipy():
    k, p = np.array([57.0, 2.0, 3.0, 38.0]), np.array([0.5, 0.05, 0.05, 0.4])
    assert calibrate.multinomial_logpmf(k, p) == pytest.approx(stats.multinomial.logpmf(k, 100, p))


def test_durable_power_is_exact_at_the_extremes():
    same = compare.durable_power(np.array([0.4, 0.4]), np.array([0.4]), 20, 10.0)
    assert same["p_decisive"] == 0.0 and same["p_misleading"] == 0.0 and same["median_log10_bf"] == pytest.approx(0.0)
    apart = compare.durable_power(np.array([0.9]), np.array([0.1]), 20, 10.0)
    assert apart["p_decisive"] > 0.999
    # more patients never make a separated pair less decidable
    p = [compare.durable_power(np.array([0.5, 0.6]), np.array([0.3, 0.35]), m, 10.0)["p_decisive"]
         for m in (10, 40, 160)]
    assert p[0] <= p[1] <= p[2] and p[2] > 0.9


def test_effector_power_separates_distinct_kinetics_and_not_equal_ones():
    rng = np.random.default_rng(1)
    up = [rng.normal(1.0, 0.2, 200) for _ in range(3)]
    flat = [rng.normal(0.0, 0.2, 200) for _ in range(3)]
    assert compare.effector_power(up, flat, 10, 0.3, 10.0, 100, 5)["p_decisive"] > 0.95
    same = compare.effector_power(flat, flat, 10, 0.3, 10.0, 100, 5)
    assert same["p_decisive"] == 0.0 and same["median_log10_bf"] == pytest.approx(0.0)
    assert compare.effector_power([np.array([])], flat, 10, 0.3, 10.0, 100, 5)["p_decisive"] is None


# ---------------------------------------------------------------- compare: config and run
def test_compare_config_checks_alternatives(tmp_path):
    text = COMPARE.read_text().replace('fit = "fit_hess2005.toml"', f'fit = "{FIT.as_posix()}"')
    bad = text + '\n[alternatives.broken]\ntrial = { follow_up_min_days = -3 }\n'
    (tmp_path / "c.toml").write_text(bad)
    with pytest.raises(InputError, match=r"alternatives.broken.*follow_up_min_days"):
        compare.load_config(tmp_path / "c.toml")
    (tmp_path / "d.toml").write_text(text + '\n[alternatives.typo]\ntrail = { size = 3 }\n')
    with pytest.raises(InputError, match=r"alternatives.typo.*trail"):
        compare.load_config(tmp_path / "d.toml")
    (tmp_path / "e.toml").write_text(text.replace('fit = "', 'fit = "missing_'))
    with pytest.raises(InputError, match=r"\[compare\] fit"):
        compare.load_config(tmp_path / "e.toml")


def test_every_committed_alternative_is_a_valid_fit():
    cfg = compare.load_config(COMPARE)
    assert {"default", "fixed_follow_up", "stops_from_4_months", "other_as_cytogenetic",
            "uniform_priors"} <= set(cfg.alternatives)
    for name, alt in cfg.alternatives.items():
        fcfg = parse_config(compare._merged(cfg.fit_raw, alt["overrides"], cfg.refit), source=name)
        assert fcfg.population_size == cfg.refit["population_size"]
    assert parse_config(compare._merged(cfg.fit_raw, cfg.alternatives["uniform_priors"]["overrides"],
                                        cfg.refit)).shared_prior == {}


def test_compare_without_refits_writes_every_table(tmp_path):
    cfg = compare.load_config(COMPARE, quick=True)
    cfg = compare.CompareConfig(**{**cfg.__dict__, "holdout_draws": 2, "decisive_draws": 2, "stim_size": 40,
                                   "cohort_size": 30, "monte_carlo": 10, "trial_sizes": (10, 40)})
    rep = compare.run_compare(cfg, tmp_path / "c", robustness=False, log=lambda m: None)
    for f in ("report.md", "report.json", "holdout.json", "decisive.csv", "provenance.json"):
        assert (tmp_path / "c" / f).is_file(), f
    assert not (tmp_path / "c" / "robustness.csv").exists()
    assert set(rep["holdout"]["variants"]) == {"H0", "H1", "H2"}
    rows = (tmp_path / "c" / "decisive.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 2 * 2 * 2  # ordered pairs x measurements x trial sizes
    assert "Not run here" in (tmp_path / "c" / "report.md").read_text()
