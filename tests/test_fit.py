"""Inference: recovery of known parameters, model choice on synthetic data, resume, shipped sets."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gvlmodel.errors import InputError
from gvlmodel.fit import TrialModel, load_config, parse_config, posterior, run_abc, run_fit, weighted_quantiles
from gvlmodel.parameters import PARAMETER_SET_DIR, parameter_set_info
from gvlmodel.trial import STATISTICS, fit_parameter, run_trial, statistics

REPO = Path(__file__).resolve().parents[1]
FIT_CONFIG = REPO / "experiments" / "fit_hess2005.toml"


def small_config(variants, fitted, seed=7, pop=100, gens=3, **fit):
    cfg = {"fit": {"name": "synthetic", "seed": seed, "variants": variants, "population_size": pop,
                   "generations": gens, "comparison_population_size": pop, "comparison_generations": gens,
                   "predictive_draws": 10, "answer_draws": 2, "answer_cohort_size": 20, **fit},
           "trial": {"comparator_size": 10},
           "fitted": fitted,
           "answers": {"stop_days": [180, 365]}}
    return parse_config(cfg)


def synthetic_observed(cfg, variant, truth, seed):
    """Statistics of one Hess-sized trial simulated by the model itself at known values."""
    main, comp = run_trial(truth, tuple(fit_parameter(n) for n in _names(truth)), variant, cfg.design, seed)
    return {k: v for k, v in statistics(main, comp, cfg.design).items() if k in STATISTICS}


def _names(values):
    return ["stop_uptake" if k == "stop_uptake" else k.removeprefix("log10_") for k in values]


def test_recovers_known_hyperparameters(tmp_path):
    """H2 data at stop_uptake 0.5, z_expand_allo 0.3/day: both inside the posterior 90 % interval,
    stop_uptake within 0.15 of the truth and pinned (interval under half the prior width)."""
    truth = {"stop_uptake": 0.5, "log10_z_expand_allo": math.log10(0.3)}
    cfg = small_config(["H2"], {"H2": ["stop_uptake", "z_expand_allo"]}, pop=120, gens=4)
    cfg = replace(cfg, observed=synthetic_observed(cfg, "H2", truth, seed=123))
    h = run_abc(tmp_path / "abc.db", ["H2"], cfg, cfg.population_size, cfg.generations, 0, log=lambda m: None)
    x, w = posterior(h, 0, cfg.fitted["H2"])
    for j, p in enumerate(cfg.fitted["H2"]):
        q05, q50, q95 = weighted_quantiles(x[:, j], w, [0.05, 0.5, 0.95])
        assert q05 <= truth[p.key] <= q95, (p.key, q05, truth[p.key], q95)
        if p.key == "stop_uptake":
            assert abs(q50 - truth[p.key]) < 0.15
            lo, hi = p.prior_bounds
            assert (q95 - q05) / (hi - lo) < 0.5


@pytest.mark.parametrize("generating", ["H0", "H2"])
def test_model_comparison_picks_generating_variant(tmp_path, generating):
    """Joint ABC-SMC over H0 and H2 on a synthetic Hess-sized trial: the generating variant wins."""
    fitted = {"H0": ["stop_uptake", "im_kill_lsc"], "H2": ["stop_uptake", "im_kill_lsc", "z_expand_allo"]}
    cfg = small_config(["H0", "H2"], fitted, pop=200, gens=3)
    truth = {"stop_uptake": 0.9, "im_kill_lsc": 0.1}
    if generating == "H2":
        truth["log10_z_expand_allo"] = math.log10(0.3)
    cfg = replace(cfg, observed=synthetic_observed(cfg, generating, truth, seed=99))
    h = run_abc(tmp_path / "cmp.db", ["H0", "H2"], cfg, cfg.population_size, cfg.generations, 5, log=lambda m: None)
    probs = h.get_model_probabilities().iloc[-1]
    p_true = float(probs.get(["H0", "H2"].index(generating), 0.0))
    assert p_true > 0.5, (generating, probs.to_dict())


def test_resume_after_interruption_matches_uninterrupted(tmp_path, monkeypatch):
    cfg = small_config(["H0"], {"H0": ["stop_uptake", "im_kill_lsc"]}, pop=40, gens=3)
    run_fit(cfg, tmp_path / "whole", log=lambda m: None)

    # interrupted in the middle of generation 2, then resumed by re-running the same fit
    calls = {"n": 0}
    original = TrialModel.__call__

    def flaky(self, par):
        calls["n"] += 1
        if calls["n"] == 150:
            raise KeyboardInterrupt
        return original(self, par)

    monkeypatch.setattr(TrialModel, "__call__", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_fit(cfg, tmp_path / "resumed", log=lambda m: None)
    monkeypatch.setattr(TrialModel, "__call__", original)
    assert not (tmp_path / "resumed" / "report.json").exists()
    run_fit(cfg, tmp_path / "resumed", log=lambda m: None)

    for name in ("posterior_H0.csv", "predictive.csv"):
        assert (tmp_path / "whole" / name).read_text() == (tmp_path / "resumed" / name).read_text(), name
    a = json.loads((tmp_path / "whole" / "report.json").read_text())
    b = json.loads((tmp_path / "resumed" / "report.json").read_text())
    assert a["answers"]["result"] == b["answers"]["result"]


def test_resume_refuses_a_different_config(tmp_path):
    cfg = small_config(["H0"], {"H0": ["stop_uptake"]}, pop=20, gens=1)
    run_fit(cfg, tmp_path, log=lambda m: None)
    other = small_config(["H0"], {"H0": ["stop_uptake"]}, pop=20, gens=1, seed=8)
    with pytest.raises(InputError, match="different config"):
        run_fit(other, tmp_path, log=lambda m: None)


@pytest.mark.parametrize("cfg, match", [
    ({"fit": {"seed": 1}, "fited": {}}, "unknown table"),
    ({"fit": {"seed": 1, "popsize": 3}}, r"unknown key\(s\) \['popsize'\]"),
    ({"fit": {}}, "seed: required"),
    ({"fit": {"seed": 1, "variants": ["H3"]}}, "allowed: H0, H1, H2"),
    ({"fit": {"seed": 1, "variants": ["H0"]}, "fitted": {"H0": ["q_outt"]}}, "q_outt"),
    ({"fit": {"seed": 1, "variants": ["H0"]}, "fitted": {}}, r"\[fitted\] H0"),
    ({"fit": {"seed": 1, "variants": ["H0"], "generations": 0}, "fitted": {"H0": ["q_out"]}}, "generations"),
    ({"fit": {"seed": 1, "variants": ["H0"]}, "fitted": {"H0": ["q_out"]}, "distance": {"weights": {"x": 1}}},
     "unknown statistic"),
])
def test_bad_fit_config_names_the_field(cfg, match):
    with pytest.raises(InputError, match=match):
        parse_config(cfg)


def test_cli_bad_config_exits_2_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[fit]\nseed = 1\nvariants = ["H9"]\n')
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "gvlmodel.cli", "fit", str(bad), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "variant" in r.stderr
    assert not out.exists()


# --------------------------------------------------------------------------
# the shipped fits
# --------------------------------------------------------------------------
SHIPPED = sorted(p.stem for p in PARAMETER_SET_DIR.glob("hess2005_H*.toml"))


def test_shipped_sets_exist_and_come_from_the_committed_config():
    cfg = load_config(FIT_CONFIG)
    assert SHIPPED == [f"hess2005_{v}" for v in cfg.variants]
    best = tomllib.loads((PARAMETER_SET_DIR / "hess2005.toml").read_text())
    for name in SHIPPED:
        data = tomllib.loads((PARAMETER_SET_DIR / f"{name}.toml").read_text())
        assert data["fit_config_digest"] == cfg.digest, f"{name} was not produced by {FIT_CONFIG.name}"
    probs = {name: tomllib.loads((PARAMETER_SET_DIR / f"{name}.toml").read_text())["model_probability"]
             for name in SHIPPED}
    assert best["variant"] == max(probs, key=probs.get).split("_")[-1]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_set_reproduces_its_posterior_predictive_summary(name):
    """Fresh virtual trials from the shipped posterior sample (new seeds) match the stored
    predictive means within 4 Monte Carlo standard errors."""
    cfg = load_config(FIT_CONFIG)
    info = parameter_set_info(name)
    post, pred = info["posterior"], info["predictive"]
    variant = info["variant"]
    fitted = cfg.fitted[variant]
    assert post["keys"] == [p.key for p in fitted]
    k = 60
    sample = np.asarray(post["sample"])[:k]
    seeds = np.random.SeedSequence(31337).generate_state(k)
    sims = [statistics(*run_trial(dict(zip(post["keys"], row)), fitted, variant, cfg.design, int(s)), cfg.design)
            for row, s in zip(sample, seeds)]
    for stat in ("frac_cmr", "frac_stopped", "nontx_frac_relapse"):
        v = np.array([s[stat] for s in sims])
        v = v[v >= 0]
        ref = pred[stat]
        se = max(ref["sd"], 1e-3) * math.sqrt(1 / v.size + 1 / pred["draws"])
        assert abs(v.mean() - ref["mean"]) < 4 * se, (name, stat, v.mean(), ref["mean"], se)


def test_scenario_with_a_fitted_set_takes_its_variant_population_and_stop_uptake():
    from gvlmodel.scenario import parse_scenario

    info = parameter_set_info("hess2005")
    sc = parse_scenario({"cohort": {"size": 5, "seed": 1}, "parameters": {"set": "hess2005"}})
    assert sc.variant == info["variant"]
    assert sc.protocol.stop_uptake == pytest.approx(info["stop_uptake"])
    assert sc.population.sd_log == pytest.approx(info["population"])
    # the config overrides each of them
    sc = parse_scenario({"cohort": {"size": 5, "seed": 1}, "parameters": {"set": "hess2005", "variant": "H0"},
                         "treatment": {"stop_uptake": 1.0}, "population": {}})
    assert (sc.variant, sc.protocol.stop_uptake, sc.population.sd_log) == ("H0", 1.0, {})
