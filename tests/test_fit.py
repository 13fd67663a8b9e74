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

from gvlmodel.core.errors import InputError
from gvlmodel.inference.fit import (TrialBatch, TrialModel, load_config, parse_config, posterior, run_abc, run_fit,
                          weighted_quantiles)
from gvlmodel.model.parameters import PARAMETER_SET_DIR, parameter_set_info
from gvlmodel.clinical.trial import (STATISTICS, TrialDesign, TrialSpec, diagnostics, fit_parameter, model_inputs, run_trial,
                            simulate_trials, statistics)

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


@pytest.mark.parametrize("generating", [pytest.param("H0", marks=pytest.mark.slow), "H2"])
def test_model_comparison_picks_generating_variant(tmp_path, generating):
    """Joint ABC-SMC over H0 and H2 on a synthetic Hess-sized trial: the generating variant wins."""
    fitted = {"H0": ["stop_uptake", "im_kill_lsc"], "H2": ["stop_uptake", "im_kill_lsc", "z_expand_allo"]}
    cfg = small_config(["H0", "H2"], fitted, pop=200, gens=3)
    truth = {"stop_uptake": 0.9, "log10_im_kill_lsc": math.log10(0.4)}
    if generating == "H2":
        truth["log10_z_expand_allo"] = math.log10(0.3)
    cfg = replace(cfg, observed=synthetic_observed(cfg, generating, truth, seed=99))
    h = run_abc(tmp_path / "cmp.db", ["H0", "H2"], cfg, cfg.population_size, cfg.generations, 5, log=lambda m: None)
    probs = h.get_model_probabilities().iloc[-1]
    p_true = float(probs.get(["H0", "H2"].index(generating), 0.0))
    assert p_true > 0.5, (generating, probs.to_dict())


@pytest.mark.parametrize("batched", [True, pytest.param(False, marks=pytest.mark.slow)],
                         ids=["batched", "one_at_a_time"])
def test_resume_after_interruption_matches_uninterrupted(tmp_path, monkeypatch, batched):
    cfg = small_config(["H0"], {"H0": ["stop_uptake", "im_kill_lsc"]}, pop=40, gens=3, batched=batched)
    run_fit(cfg, tmp_path / "whole", log=lambda m: None)

    # interrupted in the middle of the ABC run (a trial of generation 2, or the third batch), then resumed
    # by re-running the same fit
    calls = {"n": 0}
    cls, stop_at = (TrialBatch, 3) if batched else (TrialModel, 150)
    original = cls.__call__

    def flaky(self, par):
        calls["n"] += 1
        if calls["n"] == stop_at:
            raise KeyboardInterrupt
        return original(self, par)

    monkeypatch.setattr(cls, "__call__", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_fit(cfg, tmp_path / "resumed", log=lambda m: None)
    monkeypatch.setattr(cls, "__call__", original)
    assert not (tmp_path / "resumed" / "report.json").exists()
    assert not (tmp_path / "resumed" / "provenance.json").exists()  # written last: an interrupted fit has none
    run_fit(cfg, tmp_path / "resumed", log=lambda m: None)
    assert (tmp_path / "resumed" / "provenance.json").is_file()

    for name in ("posterior_H0.csv", "predictive.csv"):
        assert (tmp_path / "whole" / name).read_text() == (tmp_path / "resumed" / name).read_text(), name
    a = json.loads((tmp_path / "whole" / "report.json").read_text())
    b = json.loads((tmp_path / "resumed" / "report.json").read_text())
    assert a["answers"]["result"] == b["answers"]["result"]


def _populations(h, n_models):
    """Everything a run's populations hold but wall times: per generation epsilon, simulation count,
    model probabilities, and each model's particles, weights and summary statistics."""
    pops = h.get_all_populations()[["t", "epsilon", "samples"]]
    out = {"populations": pops.to_dict("list"), "probabilities": h.get_model_probabilities().to_dict()}
    for t in range(h.max_t + 1):
        for m in range(n_models):
            df, w = h.get_distribution(m=m, t=t)
            out[(t, m)] = (df.to_dict("list"), list(w))
        out[("sum_stats", t)] = [sorted(x.items()) for x in h.get_weighted_sum_stats(t=t)[1]]
    return out


BATCH_FITTED = {"H0": ["stop_uptake", "im_kill_lsc"], "H2": ["stop_uptake", "im_kill_lsc", "z_expand_allo"]}


def test_batched_sampling_gives_the_one_at_a_time_populations(tmp_path):
    """Proposals and trial seeds come from the seeded stream in the same order and the count stops at the
    n-th acceptance, so the batched sampler's populations equal pyabc's SingleCoreSampler's exactly,
    whatever the batch size (model comparison over two variants: model moves included)."""
    runs = {}
    for name, kw in {"single": {"batched": False}, "batched": {}, "batch_of_3": {"batch_size": 3}}.items():
        cfg = small_config(["H0", "H2"], BATCH_FITTED, pop=16, gens=2, **kw)
        h = run_abc(tmp_path / f"{name}.db", ["H0", "H2"], cfg, 16, 2, 4, log=lambda m: None)
        runs[name] = _populations(h, 2)
    assert runs["single"]["populations"]["samples"][1] > 16  # some proposals were rejected
    assert runs["batched"] == runs["single"]
    assert runs["batch_of_3"] == runs["single"]


def test_uniform_prior_draws_and_densities_equal_pyabc_scipy_uniform():
    """The fit's uniform prior (no SciPy call per proposal) takes the same numbers from NumPy's global
    generator and gives the same densities, inside, on and outside the bounds, as pyabc.RV("uniform")."""
    import pyabc

    from gvlmodel.inference.fit import _uniform_rv_class

    uniform = _uniform_rv_class()
    for p in [fit_parameter(n) for n in ("stop_uptake", "q_out", "sd_q_out", "z_kill")]:
        lo, hi = p.prior_bounds
        ours, ref = uniform(lo, hi - lo), pyabc.RV("uniform", lo, hi - lo)
        draws = {}
        for name, rv in (("ours", ours), ("ref", ref)):
            np.random.seed(11)
            draws[name] = [rv.rvs() for _ in range(40)] + [np.random.random_sample()]  # and the stream after
        assert draws["ours"] == draws["ref"]
        points = [lo, hi, np.nextafter(lo, -np.inf), np.nextafter(hi, np.inf), lo - 1.0, hi + 1.0, *draws["ours"]]
        assert [ours.pdf(x) for x in points] == [ref.pdf(x) for x in points]
        assert [ours.cdf(x) for x in points] == [ref.cdf(x) for x in points]


def test_simulate_trials_equals_run_trial():
    """A batch of trials of several variants (one compiled run for every enrolled cohort, one for every
    comparator) gives each trial the statistics and diagnostics of run_trial with its seed."""
    cfg = small_config(["H0", "H2"], BATCH_FITTED)
    rng = np.random.default_rng(5)
    trials = []
    for j in range(7):
        v = ("H0", "H2")[j % 2]
        fitted = cfg.fitted[v]
        trials.append(TrialSpec(v, fitted, {p.key: float(rng.uniform(*p.prior_bounds)) for p in fitted},
                                int(rng.integers(2**31 - 1))))
    rows, engine_s = simulate_trials(trials, cfg.design, threads=2, diagnostics_too=True)
    assert len(rows) == len(trials) and engine_s > 0
    assert simulate_trials(trials, cfg.design, threads=1, diagnostics_too=True)[0] == rows
    for tr, (st, dg) in zip(trials, rows):
        main, comp = run_trial(tr.values, tr.fitted, tr.variant, cfg.design, tr.seed, threads=1)
        assert st == statistics(main, comp, cfg.design)
        assert dg == diagnostics(main, comp, cfg.design)


def test_batched_predictive_checks_and_answers_equal_the_one_at_a_time_ones():
    """Posterior predictive trials and the mechanistic answers' cohorts, simulated together, give the
    rows and answers of one cohort at a time."""
    from gvlmodel.inference.fit import mechanistic_answers, predictive

    cfg = small_config(["H0", "H2"], BATCH_FITTED)
    rng = np.random.default_rng(8)
    draws = np.array([[rng.uniform(*p.prior_bounds) for p in cfg.fitted["H2"]] for _ in range(3)])
    one = replace(cfg, batched=False)
    assert predictive(cfg, "H2", draws, 17) == predictive(one, "H2", draws, 17)
    assert mechanistic_answers(cfg, "H2", draws, 19, log=lambda m: None) == \
        mechanistic_answers(one, "H2", draws, 19, log=lambda m: None)


def test_a_failing_solve_in_a_batch_is_reported_not_dropped(tmp_path, monkeypatch):
    """With a step limit some patients' solves fail: every trial of the batch still gets its statistics
    (failed patients count as not reaching CMR, as in run_trial) and the sampler reports the failures."""
    from gvlmodel.clinical import trial

    monkeypatch.setattr(trial, "MAX_STEPS", 300)
    cfg = small_config(["H2"], {"H2": BATCH_FITTED["H2"]}, pop=10, gens=1)
    fitted = cfg.fitted["H2"]
    rng = np.random.default_rng(3)
    trials = [TrialSpec("H2", fitted, {p.key: float(rng.uniform(*p.prior_bounds)) for p in fitted}, j)
              for j in range(6)]
    rows, _ = simulate_trials(trials, cfg.design, threads=1)
    fails = [r["n_solver_failures"] for r in rows]
    assert len(rows) == 6 and any(f > 0 for f in fails) and any(f == 0 for f in fails)
    for tr, row in zip(trials, rows):
        assert row == statistics(*run_trial(tr.values, fitted, "H2", cfg.design, tr.seed), cfg.design)

    logs, stats = [], {}
    h = run_abc(tmp_path / "abc.db", ["H2"], cfg, 10, 1, 0, log=logs.append, stats=stats)
    assert stats["failed_patients"] > 0 and stats["failed_trials"] > 0
    assert any(f"{stats['failed_patients']} patients' solves failed" in m for m in logs), logs
    assert len(h.get_distribution(m=0, t=0)[0]) == 10


def test_fit_on_a_dask_local_cluster_equals_local(tmp_path):
    """`gvlmodel fit --scheduler ADDRESS`: the batches run as Dask tasks; the fit's files are identical."""
    distributed = pytest.importorskip("distributed")
    cfg = small_config(["H0", "H2"], BATCH_FITTED, pop=15, gens=1, predictive_draws=4, answer_draws=2,
                       answer_cohort_size=10)
    import pyabc

    local = run_fit(cfg, tmp_path / "local", log=lambda m: None)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as lc:
        remote = run_fit(cfg, tmp_path / "remote", log=lambda m: None, scheduler=lc.scheduler_address)
    assert remote["comparison"]["result"]["simulated"] > remote["comparison"]["result"]["total_simulations"] / 2
    for name in ("posterior_H0.csv", "posterior_H2.csv", "predictive.csv", "parameter_sets/synthetic_H2.toml"):
        assert (tmp_path / "local" / name).read_text() == (tmp_path / "remote" / name).read_text(), name
    assert local["comparison"]["result"]["probabilities"] == remote["comparison"]["result"]["probabilities"]
    assert local["answers"]["result"] == remote["answers"]["result"]
    for db in ("abc_H0.db", "abc_comparison.db"):
        a, b = (pyabc.History(f"sqlite:///{tmp_path / where / db}") for where in ("local", "remote"))
        n = 1 if db == "abc_H0.db" else 2
        assert _populations(a, n) == _populations(b, n), db


def test_sampler_settings_do_not_change_the_digest_and_are_validated(tmp_path):
    base = _committed()
    digests = {parse_config(_committed(fit={"batched": b, "batch_size": n})).digest
               for b in (True, False) for n in (1, 512)}
    assert digests == {parse_config(base).digest}
    cfg = small_config(["H0"], {"H0": ["stop_uptake"]}, pop=5, gens=1, batched=False)
    with pytest.raises(InputError, match="--scheduler: .*batched = false"):
        run_fit(cfg, tmp_path / "out", scheduler="tcp://127.0.0.1:1", log=lambda m: None)
    assert not (tmp_path / "out").exists()


def test_cli_fit_bad_scheduler_exits_2_before_writing(tmp_path, capsys):
    from gvlmodel.workflow.cli import main

    out = tmp_path / "out"
    assert main(["fit", str(FIT_CONFIG), "--out", str(out), "--quick", "--scheduler", " "]) == 2
    assert "--scheduler" in capsys.readouterr().err
    assert not out.exists()


def test_resume_refuses_a_different_config(tmp_path):
    cfg = small_config(["H0"], {"H0": ["stop_uptake"]}, pop=20, gens=1)
    run_fit(cfg, tmp_path, log=lambda m: None)
    other = small_config(["H0"], {"H0": ["stop_uptake"]}, pop=20, gens=1, seed=8)
    with pytest.raises(InputError, match="different config"):
        run_fit(other, tmp_path, log=lambda m: None)


def test_resume_refuses_a_fit_made_on_other_base_set_values(tmp_path):
    """A folder from before a recalibration of the base set must not be resumed as if current."""
    cfg = small_config(["H0"], {"H0": ["stop_uptake"]}, pop=20, gens=1)
    state = {"digest": cfg.digest, "base_set_digest": "0" * 16, "config": cfg.raw}
    (tmp_path / "fit_state.json").write_text(json.dumps(state))
    with pytest.raises(InputError, match="other values of the base set"):
        run_fit(cfg, tmp_path, log=lambda m: None)


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
    r = subprocess.run([sys.executable, "-m", "gvlmodel.workflow.cli", "fit", str(bad), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "variant" in r.stderr
    assert not out.exists()


def _committed(**tables):
    """The committed fit config with keys of some tables replaced (``None`` removes a key)."""
    cfg = tomllib.loads(FIT_CONFIG.read_text())
    for table, keys in tables.items():
        for key, value in keys.items():
            if value is None:
                cfg[table].pop(key, None)
            else:
                cfg.setdefault(table, {})[key] = value
    return cfg


BAD_FIT_CONFIGS = [  # (config mutation, expected field text)
    ({"trial": {"size": -1}}, r"\[trial\] size: must be an integer in \[1, 10000000\]"),
    ({"trial": {"size": 0}}, r"\[trial\] size"),
    ({"trial": {"size": "44"}}, r"\[trial\] size: expected an integer"),
    ({"trial": {"size": 1.5}}, r"\[trial\] size: expected an integer"),
    ({"trial": {"relapse_mix": {"molecular": 18, "chronic": 2}}}, r"\[trial\] relapse_mix: unknown relapse type "
                                                                  r"'chronic'; allowed: molecular"),
    ({"trial": {"relapse_mix": {"molecular": -1}}}, r"\[trial\] relapse_mix\.molecular: must be >= 0"),
    ({"trial": {"relapse_mix": 5}}, r"\[trial\] relapse_mix: expected a table"),
    ({"trial": {"relapse_mix": {"molecular": 0}}}, r"\[trial\] relapse_mix: .*not all be zero"),
    ({"trial": {"comparator_size": "x"}}, r"\[trial\] comparator_size: expected an integer"),
    ({"trial": {"comparator_size": 1.5}}, r"\[trial\] comparator_size: expected an integer"),
    ({"trial": {"comparator_size": -1}}, r"\[trial\] comparator_size: must be an integer in \[0, 10000000\]"),
    ({"trial": {"comparator_window_days": -1}}, r"\[trial\] comparator_window_days: must be > 0"),
    ({"trial": {"comparator_course_days": 36400}}, r"\[trial\] comparator_window_days: .*<= 36500"),
    ({"trial": {"base_set": "nope"}}, r"\[trial\] base_set: unknown parameter set 'nope'; allowed: default"),
    ({"trial": {"base_set": 5}}, r"\[trial\] base_set: .*allowed: default"),
    ({"trial": {"follow_up_after_stop_days": "x"}}, r"\[trial\] follow_up_after_stop_days: expected a finite"),
    ({"trial": {"follow_up_after_stop_days": -1}}, r"\[trial\] follow_up_after_stop_days: must be > 0"),
    ({"trial": {"follow_up_after_stop_days": 5000}}, r"\[trial\] follow_up_after_stop_days: must be <= 1095"),
    ({"trial": {"follow_up_after_stop_days": math.nan}}, r"\[trial\] follow_up_after_stop_days: expected a finite"),
    ({"trial": {"follow_up_days": 0}}, r"\[trial\] follow_up_days: must be > 0"),
    ({"trial": {"visit_interval_days": 2000}}, r"\[trial\] visit_interval_days: must be <= 1095"),
    ({"trial": {"restart": "yes"}}, r"\[trial\] restart: expected true or false"),
    ({"trial": {"escalated_dose_mg": 0}}, r"\[trial\] escalated_dose_mg: must be > 0"),
    ({"trial": {"detection_limit": 2}}, r"\[trial\] detection_limit: must be <= 1"),
    ({"trial": {"noise_sd_log": -0.1}}, r"\[trial\] noise_sd_log: must be >= 0"),
    ({"trial": {"sizes": 44}}, r"\[trial\]: unknown key\(s\) \['sizes'\]; allowed: .*size"),
    ({"fit": {"threads": 1000}}, r"\[fit\] threads: must be an integer in \[1, \d+\]"),
    ({"fit": {"threads": 0}}, r"\[fit\] threads"),
    ({"fit": {"min_acceptance_rate": 5}}, r"\[fit\] min_acceptance_rate: must be <= 1"),
    ({"fit": {"min_acceptance_rate": 0}}, r"\[fit\] min_acceptance_rate: must be > 0"),
    ({"fit": {"variants": ["H2", "H2"]}}, r"\[fit\] variants: each variant at most once.*allowed: H0, H1, H2"),
    ({"fit": {"variants": ["H3"]}}, r"\[fit\] variants: unknown variant 'H3'; allowed: H0, H1, H2"),
    ({"fit": {"variants": [2]}}, r"\[fit\] variants: unknown variant 2"),
    ({"fit": {"variants": "H2"}}, r"\[fit\] variants: expected a non-empty list"),
    ({"fit": {"data": "../parameter_sets/hess2005"}}, r"\[fit\] data: unknown data set .*allowed: hess2005"),
    ({"fit": {"data": 5}}, r"\[fit\] data: unknown data set 5"),
    ({"fit": {"population_size": 0}}, r"\[fit\] population_size: must be an integer in \[1, inf\]"),
    ({"fit": {"generations": "x"}}, r"\[fit\] generations: expected an integer"),
    ({"fit": {"name": "a b"}}, r"\[fit\] name"),
    ({"fit": {"seed": -1}}, r"\[fit\] seed"),
    ({"fitted": {"H1": ["foo"]}}, r"\[fitted\] H1: .*'foo': unknown; allowed"),
    ({"fitted": {"H0": "q_out"}}, r"\[fitted\] H0: expected a non-empty list"),
    ({"fitted": {"H0": ["q_out", "q_out"]}}, r"\[fitted\] H0: duplicate"),
    ({"distance": {"weights": {"frac_cmr": math.nan}}}, r"\[distance\] weights\.frac_cmr: expected a finite number"),
    ({"distance": {"weights": {"frac_cmr": math.inf}}}, r"\[distance\] weights\.frac_cmr: expected a finite number"),
    ({"distance": {"weights": {"frac_cmr": -1}}}, r"\[distance\] weights\.frac_cmr: must be >= 0"),
    ({"distance": {"weights": {k: 0 for k in STATISTICS}}}, r"\[distance\] weights: at least one"),
    ({"distance": {"weights": 5}}, r"\[distance\] weights: expected a table of statistic = number"),
    ({"distance": {"scales": 5}}, r"\[distance\] scales: expected a table of statistic = number"),
    ({"distance": {"scales": {"frac_cmr": 0}}}, r"\[distance\] scales\.frac_cmr: must be > 0"),
    ({"distance": {"scales": {"frac": 1}}}, r"\[distance\] scales: unknown statistic.*allowed"),
    ({"answers": {"stop_days": 90}}, r"\[answers\] stop_days: expected a non-empty list"),
    ({"answers": {"stop_days": []}}, r"\[answers\] stop_days: expected a non-empty list"),
    ({"answers": {"stop_days": [90, -1]}}, r"\[answers\] stop_days: must be > 0"),
    ({"answers": {"stop_days": [90, 90]}}, r"\[answers\] stop_days: .*distinct"),
    ({"answers": {"tfr_window_days": 36500}}, r"\[answers\] tfr_window_days: .*<= 36500"),
    ({"quick": {"generations": 0}}, r"\[quick\] generations: must be an integer in \[1, 1000\]"),
    ({"fit": {"batched": "yes"}}, r"\[fit\] batched: expected true or false"),
    ({"fit": {"batch_size": 0}}, r"\[fit\] batch_size: must be an integer in \[1, 100000\]"),
    ({"fit": {"batch_size": 2.5}}, r"\[fit\] batch_size: expected an integer"),
    ({"quick": {"population_size": "x"}}, r"\[quick\] population_size: expected an integer"),
]


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
@pytest.mark.parametrize("change, match", BAD_FIT_CONFIGS)
def test_bad_committed_fit_config_names_table_and_key(change, match, quick):
    """Every table is validated with its table path, the full-size [fit] sizes and the [quick] ones alike,
    whether or not --quick applies."""
    with pytest.raises(InputError, match=match):
        parse_config(_committed(**change), quick=quick)


def test_committed_config_is_valid_full_and_quick():
    full, quick = parse_config(_committed()), parse_config(_committed(), quick=True)
    assert (full.population_size, quick.population_size) == (500, 60)
    assert full.design == quick.design and full.design.comparator_size == 20


@pytest.mark.parametrize("change, match", [
    ({"trial": {"size": -1}}, r"\[trial\] size"),
    ({"fit": {"threads": 1000}}, r"\[fit\] threads"),
    ({"distance": {"weights": {"frac_cmr": math.nan}}}, r"\[distance\] weights\.frac_cmr"),
    ({"fit": {"generations": 0}}, r"\[fit\] generations"),
])
@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
def test_cli_fit_bad_config_exits_2_and_leaves_out_untouched(tmp_path, capsys, change, match, quick):
    """The whole config is validated before --out is created or written: no fit_state.json, provenance.json
    or abc_*.db, so a corrected re-run into the same folder is not refused."""
    import re

    from gvlmodel.workflow.cli import main

    cfg = _committed(**change)
    lines = []
    for table, keys in cfg.items():
        lines.append(f"[{table}]")
        for key, value in keys.items():
            lines.append(f"{key} = {_toml(value)}")
    path = tmp_path / "bad.toml"
    path.write_text("\n".join(lines) + "\n")
    assert tomllib.loads(path.read_text()).keys() == cfg.keys()
    out = tmp_path / "out"
    assert main(["fit", str(path), "--out", str(out)] + (["--quick"] if quick else [])) == 2
    assert re.search(match, capsys.readouterr().err)
    assert not out.exists()
    existing = tmp_path / "existing"  # a folder that already exists stays empty
    existing.mkdir()
    assert main(["fit", str(path), "--out", str(existing)] + (["--quick"] if quick else [])) == 2
    assert list(existing.iterdir()) == []


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return "{" + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + "}"


@pytest.mark.parametrize("name", ["../parameter_sets/hess2005", "hess2006", 5])
def test_calibration_data_is_named_not_a_path(name):
    from gvlmodel.clinical.calibration import load_calibration

    with pytest.raises(InputError, match=r"calibration data: unknown set .*; allowed: hess2005"):
        load_calibration(name)


def test_run_fit_refuses_an_out_path_that_is_a_file(tmp_path):
    cfg = parse_config(_committed(), quick=True)
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(InputError, match="--out: .* is a file; expected a folder"):
        run_fit(cfg, target, log=lambda m: None)
    assert target.read_text() == "x"


# --------------------------------------------------------------------------
# the trial API (a backstop for calls that do not come from a config)
# --------------------------------------------------------------------------
@pytest.mark.parametrize("kw, match", [
    ({"size": -1}, r"TrialDesign\.size: must be an integer in \[1, 10000000\]"),
    ({"size": 1.5}, r"TrialDesign\.size: expected an integer"),
    ({"rtol": 0}, r"TrialDesign\.rtol: must be >= 1e-13"),
    ({"atol": 0}, r"TrialDesign\.atol: must be >= 1e-20"),
    ({"relapse_mix": {"molecular": True}}, r"TrialDesign\.relapse_mix\.molecular: expected a finite number"),
    ({"comparator_size": -1}, r"TrialDesign\.comparator_size"),
    ({"follow_up_after_stop_days": math.nan}, r"TrialDesign\.follow_up_after_stop_days"),
    ({"comparator_window_days": -1}, r"TrialDesign\.comparator_window_days: must be > 0"),
    ({"base_set": "../data/hess2005"}, r"TrialDesign\.base_set: unknown parameter set .*allowed: default"),
    ({"restart": 1}, r"TrialDesign\.restart: expected true or false"),
])
def test_trial_design_validates_its_fields(kw, match):
    with pytest.raises(InputError, match=match):
        TrialDesign(**kw)


def test_trial_design_from_table_names_the_table():
    assert TrialDesign.from_table({"size": 10}, "[cohort]").size == 10
    with pytest.raises(InputError, match=r"\[cohort\] size"):
        TrialDesign.from_table({"size": 0}, "[cohort]")
    with pytest.raises(InputError, match=r"\[cohort\]: unknown key\(s\) \['siz'\]"):
        TrialDesign.from_table({"siz": 10}, "[cohort]")


@pytest.mark.parametrize("call, match", [
    (lambda: run_trial({}, (), "H2", TrialDesign(), -1), r"run_trial seed: must be an integer in \[0, 9223372036854775807\]"),
    (lambda: run_trial({}, (), "H2", TrialDesign(), 1.5), r"run_trial seed: expected an integer"),
    (lambda: run_trial({}, (), "H2", TrialDesign(), 1, size=0), r"run_trial size"),
    (lambda: run_trial({}, (), "H2", TrialDesign(), 1, comparator_size=-1), r"run_trial comparator_size"),
    (lambda: run_trial({}, (), "H2", {"size": 44}, 1), r"run_trial design: expected a TrialDesign"),
    (lambda: model_inputs({"stop_uptake": 7}, (fit_parameter("stop_uptake"),)),
     r"values\['stop_uptake'\].*: must be <= 1, got 7"),
    (lambda: model_inputs({"stop_uptake": -0.1}, (fit_parameter("stop_uptake"),)), r"values\['stop_uptake'\]"),
    (lambda: model_inputs({"sd_q_out": 9}, (fit_parameter("sd_q_out"),)), r"values\['sd_q_out'\].*<= 5"),
    (lambda: model_inputs({"log10_q_out": math.nan}, (fit_parameter("q_out"),)),
     r"values\['log10_q_out'\]: expected a finite number"),
    (lambda: model_inputs({"log10_q_out": 400.0}, (fit_parameter("q_out"),)), r"values\['log10_q_out'\]"),
    (lambda: model_inputs({}, (fit_parameter("q_out"),)), r"values: missing fitted quantity 'log10_q_out'"),
    (lambda: model_inputs({}, (), stop_uptake=2), r"stop_uptake: must be <= 1"),
])
def test_trial_api_rejects_bad_arguments(call, match):
    with pytest.raises(InputError, match=match):
        call()


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
    from gvlmodel.clinical.scenario import parse_scenario

    info = parameter_set_info("hess2005")
    sc = parse_scenario({"cohort": {"size": 5, "seed": 1}, "parameters": {"set": "hess2005"}})
    assert sc.variant == info["variant"]
    assert sc.protocol.stop_uptake == pytest.approx(info["stop_uptake"])
    assert sc.population.sd_log == pytest.approx(info["population"])
    # the config overrides each of them
    sc = parse_scenario({"cohort": {"size": 5, "seed": 1}, "parameters": {"set": "hess2005", "variant": "H0"},
                         "treatment": {"stop_uptake": 1.0}, "population": {}})
    assert (sc.variant, sc.protocol.stop_uptake, sc.population.sd_log) == ("H0", 1.0, {})


def test_derived_stages_are_recomputed_when_their_inputs_change(tmp_path, monkeypatch):
    """Predictive and answer stages are cached under a key of config, package source, draws and seed:
    a re-run into the same folder after any of these changed must not reuse the old result."""
    from gvlmodel.inference import fit

    cfg = load_config(FIT_CONFIG, quick=True)
    draws = np.arange(6.0).reshape(3, 2)
    calls = []

    def compute():
        calls.append(1)
        return {"n": len(calls)}

    key = fit._stage_key(cfg, "predictive_H2", draws, 5)
    assert fit._stage(tmp_path, "predictive_H2", compute, key=key)["result"] == {"n": 1}
    assert fit._stage(tmp_path, "predictive_H2", compute, key=key)["result"] == {"n": 1}  # same inputs: reused
    changed = [fit._stage_key(cfg, "predictive_H2", draws + 1e-12, 5), fit._stage_key(cfg, "predictive_H2", draws, 6),
               fit._stage_key(load_config(FIT_CONFIG, quick=False), "predictive_H2", draws, 5)]
    monkeypatch.setattr(fit, "package_digest", lambda: "edited-source")
    changed.append(fit._stage_key(cfg, "predictive_H2", draws, 5))
    assert len(set(changed) | {key}) == 5
    for n, k in enumerate(changed, 2):
        assert fit._stage(tmp_path, "predictive_H2", compute, key=k)["result"] == {"n": n}
    # ABC stages (no key) resume by name, as the resume test above requires
    assert fit._stage(tmp_path, "predictive_H2", compute)["result"] == {"n": 5}


def test_diagnostics_count_washout_censoring_bounds_and_comparator_cmr():
    """Hand-built cohort columns: each diagnostic counts exactly the patients it describes."""
    from types import SimpleNamespace

    from gvlmodel.inference.fit import pooled_diagnostics
    from gvlmodel.clinical.trial import diagnostics

    nan = np.nan
    design = TrialDesign(follow_up_days=1095.0, follow_up_after_stop_days=494.0)
    # patients: 0 lost, clone extinct before stop | 1 lost, clone alive | 2 durable, long follow-up |
    #           3 durable, stopped late (short follow-up) | 4 never stopped | 5 solver failure
    cols = {"solver_status": np.array([0, 0, 0, 0, 0, 3]), "reached_cmr": np.ones(6, bool),
            "days_to_cmr": np.full(6, 90.0),
            "stopped": np.array([True, True, True, True, False, True]),
            "lost_cmr": np.array([True, True, False, False, False, False]),
            "days_stop_to_loss": np.array([60.0, 90.0, nan, nan, nan, nan]),
            "eradicated": np.array([True, False, True, False, False, False]),
            "days_to_eradication": np.array([100.0, nan, 400.0, nan, nan, nan]),
            "stop_day": np.array([200.0, 300.0, 210.0, 900.0, nan, 100.0]),
            "last_day_reached": np.array([1095.0] * 5 + [150.0])}
    from gvlmodel.model.parameters import PARAMETER_TABLE

    hi = PARAMETER_TABLE["im_kill_lsc"].upper  # a draw clipped to the bound
    main = SimpleNamespace(columns=cols, n=6, patient_parameters={"im_kill_lsc": np.array([hi, 0.1, 0.1, hi, 0.2, 0.1])})
    comp = SimpleNamespace(columns={"solver_status": np.zeros(3, int), "stopped": np.array([True, True, False]),
                                    "reached_cmr": np.array([True, True, True]),
                                    # first negative at 340: CMR confirmed at 400, after the stop at 365
                                    "days_to_cmr": np.array([300.0, 340.0, 100.0]),
                                    "stop_day": np.array([365.0, 365.0, nan])})
    d = diagnostics(main, comp, design)
    assert {k: d[k] for k in d if k != "at_bound"} == {
        "n_stopped": 4, "n_lost": 2, "n_lost_clone_extinct_at_stop": 1, "n_durable": 2,
        "n_durable_short_follow_up": 1, "n_patients": 6, "n_patients_at_bound": 2,
        "nontx_n_stopped": 2, "nontx_n_cmr_by_stop": 1,
        "median_follow_up_after_stop_days": pytest.approx(840.0)}  # 895, 795, 885, 195 days after the stops
    assert d["at_bound"] == {"im_kill_lsc": 2}
    pooled = pooled_diagnostics([{"diagnostics": d}, {"diagnostics": d}])
    assert pooled["counts"]["n_lost"] == 4
    assert pooled["lost_clone_extinct_at_stop"] == pytest.approx(0.5)
    assert pooled["durable_short_follow_up"] == pytest.approx(0.5)
    assert pooled["at_bound"] == {"im_kill_lsc": pytest.approx(2 / 6)}
    assert pooled["nontx_cmr_by_stop"] == pytest.approx(0.5)


def test_design_options_censor_short_follow_up_and_cmr_comparator():
    """The review's design options: off by default (the shipped fits), each doing what it says when on."""
    from gvlmodel.clinical.trial import comparator_stopped, outcome_groups

    nan = np.nan
    cols = {"solver_status": np.zeros(4, int), "reached_cmr": np.ones(4, bool), "days_to_cmr": np.full(4, 90.0),
            "stopped": np.array([True, True, True, False]),
            "lost_cmr": np.array([True, False, False, False]), "days_stop_to_loss": np.array([60.0, nan, nan, nan]),
            "stop_day": np.array([200.0, 300.0, 900.0, nan]), "last_day_reached": np.full(4, 1095.0)}
    d0 = TrialDesign()
    assert (d0.population_bounds, d0.censor_short_follow_up, d0.comparator_stop) == ("clip", False, "after_days")
    g0 = outcome_groups(cols, d0)
    assert g0["durable"].tolist() == [False, True, True, False] and not g0["censored"].any()
    g1 = outcome_groups(cols, TrialDesign(censor_short_follow_up=True))
    assert g1["durable"].tolist() == [False, True, False, False]  # stopped at 900: 195 < 494 days followed
    assert g1["censored"].tolist() == [False, False, True, False]
    assert g1["lost"].tolist() == g0["lost"].tolist()

    _, comp = TrialDesign().protocols(0.5)
    assert comp.stop == {"after_days": 365.0}
    d_cmr = TrialDesign(comparator_stop="cmr", comparator_course_days=1825.0)
    _, comp_c = d_cmr.protocols(0.5)
    assert comp_c.stop == "hess2005" and comp_c.stop_uptake == 1.0 and not comp_c.escalate
    cc = {"solver_status": np.zeros(3, int), "stopped": np.array([True, True, False]),
          "stop_day": np.array([400.0, 1900.0, nan])}
    assert comparator_stopped(cc, d_cmr).tolist() == [True, False, False]  # a stop after the course: no window
    assert comparator_stopped(cc, d0).tolist() == [True, True, False]


def test_trial_statistics_on_hand_built_cohorts():
    """The calibration statistics' definitions, on columns whose answers are known by hand."""
    from types import SimpleNamespace

    from gvlmodel.clinical.trial import statistics

    nan = np.nan
    # six patients: lost at 60 d; lost only at 600 d (after the 494-day window: durable); durable; durable but
    # stopped late (followed 195 d: censored when asked); never stopped; a solver failure
    cols = {"solver_status": np.array([0, 0, 0, 0, 0, 3]),
            "reached_cmr": np.array([True, True, True, True, False, True]),
            "stopped": np.array([True, True, True, True, False, True]),
            "lost_cmr": np.array([True, True, False, False, False, False]),
            "days_stop_to_loss": np.array([60.0, 600.0, nan, nan, nan, nan]),
            "days_on_im_at_stop": np.array([150.0, 250.0, 300.0, 400.0, nan, 500.0]),
            "stop_day": np.array([200.0, 250.0, 300.0, 900.0, nan, 500.0]),
            "last_day_reached": np.array([1095.0, 1095.0, 1095.0, 1095.0, 1095.0, 600.0])}
    main = SimpleNamespace(columns=cols, n=6)
    comp = SimpleNamespace(n=4, columns={
        "solver_status": np.zeros(4, int), "stopped": np.array([True, True, True, False]),
        "lost_cmr": np.array([True, True, False, False]), "days_stop_to_loss": np.array([60.0, 100.0, nan, nan]),
        "stop_day": np.array([365.0, 365.0, 365.0, nan])})
    st = statistics(main, comp, TrialDesign())
    assert st["frac_cmr"] == 4 / 6 and st["frac_stopped"] == 4 / 6  # the failure counts as neither
    assert st["frac_durable"] == 3 / 4  # the loss at 600 days lies outside the 494-day window
    assert st["median_im_days_durable"] == 300.0 and st["median_im_days_lost"] == 150.0
    assert st["nontx_frac_relapse"] == 1 / 3  # the relapse at 100 days lies outside the 90-day window
    assert st["n_solver_failures"] == 1.0
    cen = statistics(main, comp, TrialDesign(censor_short_follow_up=True))
    assert cen["frac_durable"] == 2 / 3  # the censored patient leaves the denominator
    assert cen["median_im_days_durable"] == 275.0


def test_a_set_fitted_with_truncated_draws_says_so_and_scenarios_use_it(monkeypatch, tmp_path):
    import tomllib

    from gvlmodel.clinical import scenario
    from gvlmodel.inference.fit import parameter_set_toml, predictive_table
    from gvlmodel.clinical.trial import observed

    cfg = small_config(["H0"], {"H0": ["stop_uptake", "sd_im_kill_lsc"]})
    x = np.array([[0.3, 1.2], [0.4, 1.0]])
    w = np.array([0.5, 0.5])
    rows = [{**{k: 0.5 for k in STATISTICS}, "n_solver_failures": 0.0}] * 3
    pred = predictive_table(rows, observed())
    clip_text = parameter_set_toml(cfg, "H0", x, w, pred, None, 1)
    assert "population_bounds" not in clip_text  # sets fitted with the default are unchanged
    cfg_t = replace(cfg, design=replace(cfg.design, population_bounds="truncate"))
    data = tomllib.loads(parameter_set_toml(cfg_t, "H0", x, w, pred, None, 1))
    assert data["population_bounds"] == "truncate"

    info = {"parameters": parameter_set_info("default")["parameters"], "variant": "H0",
            "population": data["population"], "stop_uptake": 0.3, "posterior": None, "predictive": None,
            "population_bounds": data["population_bounds"]}
    monkeypatch.setattr(scenario, "parameter_set_info", lambda name: info)
    cfg_file = tmp_path / "s.toml"
    cfg_file.write_text('[cohort]\nsize = 5\nseed = 1\n[parameters]\nset = "default"\n')
    assert scenario.load_scenario(cfg_file).population.bounds == "truncate"
