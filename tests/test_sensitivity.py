"""Sensitivity studies: SALib wrapper truth (Ishigami), evaluation invariances, resume, Dask, config errors."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gvlmodel.analysis import sensitivity as sens
from gvlmodel.core.errors import InputError, read_toml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "experiments" / "sensitivity_hess2005.toml"
ISHIGAMI = {"num_vars": 3, "names": ["x1", "x2", "x3"], "bounds": [[-math.pi, math.pi]] * 3}


def small_config(**tables) -> dict:
    cfg = copy.deepcopy(read_toml(CONFIG))
    cfg["study"].update({"methods": ["sobol"], "outputs": ["p_cmr", "t_cmr_days", "p_durable", "t_loss_days"],
                         "chunk_samples": 4})
    # the shipped v2 patient-level calibration over the table's bounds: no fitted hess2005 set needed
    cfg["parameters"].update({"set": "patients", "ranges": "table",
                              "factors": ["im_kill_lsc", "z_expand_allo", "z_kill"]})
    cfg["cohort"]["size"] = 30
    cfg["sobol"].update({"n": 8, "convergence": [4, 8], "bootstrap": 50})
    cfg["local"]["enabled"] = False
    for k, v in tables.items():
        cfg.setdefault(k, {}).update(v)
    return cfg


def test_ishigami_indices_through_the_evaluate_path(tmp_path):
    """Known Ishigami indices (a = 7, b = 0.1) within SALib's own test tolerances and the bootstrap CIs."""
    X = sens.sample("sobol", ISHIGAMI, n=1024, seed=1)
    Y = sens.evaluate(X, sens.IshigamiEvaluator(), tmp_path / "chunks", chunk_samples=700, progress=False)
    r = sens.analyze_sobol(ISHIGAMI, Y[:, 0], bootstrap=200, conf_level=0.95, seed=2)
    a, b = 7.0, 0.1
    v = a**2 / 8 + b * math.pi**4 / 5 + b**2 * math.pi**8 / 18 + 0.5
    v1 = 0.5 * (1 + b * math.pi**4 / 5) ** 2
    v2 = a**2 / 8
    v13 = 8 * b**2 * math.pi**8 / 225
    s1 = np.array([v1 / v, v2 / v, 0.0])
    st = np.array([(v1 + v13) / v, v2 / v, v13 / v])
    np.testing.assert_allclose(r["S1"], s1, atol=5e-2)
    np.testing.assert_allclose(r["ST"], st, atol=5e-2)
    assert np.all(np.abs(np.array(r["ST"]) - st) <= 3 * np.array(r["ST_conf"]) + 1e-2)
    # every chunk is a checkpoint; a second call reads them instead of evaluating
    assert len(list((tmp_path / "chunks").glob("chunk_*.npz"))) == math.ceil(X.shape[0] / 700)

    class Boom:
        def __call__(self, X):
            raise AssertionError("re-evaluated a checkpointed chunk")

    np.testing.assert_array_equal(sens.evaluate(X, Boom(), tmp_path / "chunks", chunk_samples=700, progress=False), Y)


def test_morris_screens_ishigami():
    X = sens.sample("morris", ISHIGAMI, n=60, seed=3, levels=4)
    Y = sens.evaluate(X, sens.IshigamiEvaluator(), None, chunk_samples=100, progress=False)
    r = sens.analyze_morris(ISHIGAMI, X, Y[:, 0], levels=4, bootstrap=100, conf_level=0.95, seed=4)
    # x3 acts only through its interaction with x1: small mean effect, large spread relative to it
    assert r["mu_star"][0] > r["mu_star"][2] and r["mu_star"][1] > r["mu_star"][2]
    assert abs(r["mu"][2]) < r["sigma"][2]


def test_local_coefficients_of_a_power_law_are_exact():
    """Y = prod(theta_j ** a_j) has d ln Y / d ln theta_j = a_j; the central differences converge to it as O(h^2)."""
    cfg = sens.parse_config(small_config(parameters={"factors": ["im_kill_lsc", "im_kill_progenitor"]},
                                         local={"enabled": True}), source="test")
    point = sens.fitted_point(cfg)
    Xl, _ = sens.local_design(cfg, point)
    lo, hi = cfg.factors[0].prior_bounds  # the log factor's steps must be unclipped for the closed form
    assert np.all((Xl[:, 0] > lo) & (Xl[:, 0] < hi))
    a = np.array([0.7, -1.3])
    theta = np.column_stack([10.0 ** Xl[:, 0], Xl[:, 1]])
    Y = np.prod(theta ** a, axis=1)[:, None]
    out = sens.local_coefficients(dataclasses.replace(cfg, outputs=("p_cmr",)), point, Y, ("p_cmr",))
    c = out["p_cmr"]["coefficients"]
    # log factor: theta -> theta exp(+-h), so the central difference of Y over 2h is sinh(a h) / h exactly
    for h, v in c["log10_im_kill_lsc"]["by_step"].items():
        assert v == pytest.approx(math.sinh(0.7 * float(h)) / float(h), rel=1e-9)
    assert c["log10_im_kill_lsc"]["by_step"]["0.01"] == pytest.approx(0.7, rel=1e-4)
    assert c["im_kill_progenitor"]["by_step"]["0.01"] == pytest.approx(-1.3, rel=1e-3)


def test_local_steps_stay_inside_the_prior_bounds_and_divide_by_the_step_taken():
    """Near a bound the step on that side is shortened to the bound (never outside, where the model
    would refuse the value or clip every patient), and the coefficient uses the log-distance taken."""
    cfg = sens.parse_config(small_config(parameters={"factors": ["im_kill_lsc", "im_kill_progenitor"]},
                                         local={"enabled": True}), source="test")
    point = sens.fitted_point(cfg).copy()
    point[1] = 4.8  # im_kill_progenitor (linear), bounds [0, 5]: a 30 % step up would reach 6.24
    X, meta = sens.local_design(cfg, point)
    for j, f in enumerate(cfg.factors):
        lo, hi = f.prior_bounds
        assert np.all((X[:, j] >= lo) & (X[:, j] <= hi))
    up = meta.index((1, 0.3, 1))
    assert X[up, 1] == 5.0
    a = -1.3
    Y = (X[:, 1] ** a)[:, None]
    c = sens.local_coefficients(dataclasses.replace(cfg, outputs=("p_cmr",)), point, Y, ("p_cmr",))
    by = c["p_cmr"]["coefficients"]["im_kill_progenitor"]["by_step"]
    down = meta.index((1, 0.3, -1))
    assert by["0.3"] == pytest.approx((Y[up, 0] - Y[down, 0]) / math.log(5.0 / (4.8 * 0.7)) / Y[0, 0], rel=1e-12)
    assert by["0.01"] == pytest.approx(a, rel=1e-3)  # unclipped steps as before


def test_stacked_samples_equal_one_at_a_time_and_the_cohort_engine():
    """Evaluating samples together changes nothing (common random numbers, one kernel call), and one
    sample's p_cmr is the fraction in CMR of the same cohort run by simulate_cohort."""
    from gvlmodel.clinical.cohort import CohortSpec, Population, simulate_cohort
    from gvlmodel.clinical.trial import model_inputs
    from gvlmodel.model.parameters import parameter_set_info

    cfg = sens.parse_config(small_config(), source="test")
    ev = sens.CohortEvaluator(cfg)
    X = sens.sample("sobol", cfg.problem, n=2, seed=5)[:3]
    Y = ev(X)
    Y1 = np.vstack([ev(X[i:i + 1]) for i in range(3)])
    np.testing.assert_array_equal(Y, Y1)
    info = parameter_set_info(cfg.set_name)
    values = dict(zip([f.key for f in cfg.factors], X[1]))
    params, pop, _ = model_inputs(values, cfg.factors, cfg.set_name, population_sd=info["population"])
    hess, _ = cfg.design.protocols(1.0)
    r = simulate_cohort(CohortSpec(size=cfg.design.size, seed=cfg.cohort_seed, relapse_mix=cfg.design.relapse_mix),
                        hess, params, variant=cfg.variant, progress=False,
                        population=Population(sd_log=pop.sd_log, bounds=info["population_bounds"]))
    c = r.columns
    assert Y[1, ev.output_names.index("p_cmr")] == pytest.approx(float((c["reached_cmr"] & ~r.failed).mean()))


def test_dask_local_cluster_equals_local():
    distributed = pytest.importorskip("distributed")
    cfg = sens.parse_config(small_config(), source="test")
    ev = sens.CohortEvaluator(cfg)
    X = sens.sample("sobol", cfg.problem, n=2, seed=6)
    local = sens.evaluate(X, ev, None, chunk_samples=3, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as lc:
        with distributed.Client(lc) as client:
            remote = sens.evaluate(X, ev, None, chunk_samples=3, scheduler=client, progress=False)
            remote_addr = sens.evaluate(X, ev, None, chunk_samples=3, scheduler=lc.scheduler_address, progress=False)
    np.testing.assert_array_equal(local, remote)
    np.testing.assert_array_equal(local, remote_addr)


def _indices(path: Path) -> dict:
    r = json.loads((path / "indices.json").read_text())
    r.pop("timings")
    return r


@pytest.fixture
def study_toml(tmp_path):
    def write(cfg: dict) -> Path:
        p = tmp_path / "study.toml"
        p.write_text(_toml(cfg))
        return p
    return write


def _toml(d: dict) -> str:
    """Minimal TOML writer for the test configs (tables of scalars, lists and inline tables)."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
        return repr(v)
    lines = []
    for table, body in d.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {val(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "gvlmodel.workflow.cli", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_kill_and_resume_equals_uninterrupted(tmp_path, study_toml):
    cfg_path = study_toml(small_config(cohort={"size": 300}, sobol={"n": 32, "convergence": [8, 32]}))
    whole, part = tmp_path / "whole", tmp_path / "part"
    p = _cli("sensitivity", cfg_path, "--out", whole, "--no-progress")
    assert p.wait(timeout=300) == 0, p.stderr.read()
    # a second run, killed (SIGKILL) once a few chunks are on disk, then resumed
    p = _cli("sensitivity", cfg_path, "--out", part, "--no-progress")
    chunks = part / "evaluations" / "sobol"
    t0 = time.time()
    while time.time() - t0 < 120 and p.poll() is None and len(list(chunks.glob("chunk_*.npz"))) < 3:
        time.sleep(0.01)
    assert p.poll() is None, "the study finished before it could be killed; make it bigger"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    n_done = len(list(chunks.glob("chunk_*.npz")))
    assert 3 <= n_done < 25 and not (part / "indices.json").exists()
    p = _cli("sensitivity", cfg_path, "--out", part, "--no-progress")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert "already done" in out
    assert _indices(part) == _indices(whole)


def test_reanalysis_never_reruns_the_model(tmp_path, monkeypatch):
    cfg = small_config()
    first = sens.run_study(sens.parse_config(cfg, source="t"), tmp_path, progress=False, log=lambda m: None)
    monkeypatch.setattr(sens.CohortEvaluator, "__call__", lambda self, X: (_ for _ in ()).throw(
        AssertionError("model re-run")))
    cfg["sobol"]["bootstrap"] = 60  # analysis setting only
    second = sens.run_study(sens.parse_config(cfg, source="t"), tmp_path, progress=False, log=lambda m: None)
    assert second["sobol"]["ranking"] == first["sobol"]["ranking"]
    cfg["cohort"]["size"] = 31  # changes the model evaluations: refused
    with pytest.raises(InputError, match="different study"):
        sens.run_study(sens.parse_config(cfg, source="t"), tmp_path, progress=False, log=lambda m: None)
    # a re-analysis interrupted before its results are written leaves no provenance claiming its settings
    cfg["cohort"]["size"] = first["cohort_size"]
    cfg["sobol"]["bootstrap"] = 70
    monkeypatch.setattr(sens, "summary_markdown", lambda r: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        sens.run_study(sens.parse_config(cfg, source="t"), tmp_path, progress=False, log=lambda m: None)
    assert not (tmp_path / "provenance.json").exists()


@pytest.mark.parametrize("table,key,value,match", [
    ("study", "colour", 1, r"\[study\]: unknown key\(s\) \['colour'\]"),
    ("study", "methods", ["sobol", "fast"], "methods: unknown value"),
    ("study", "outputs", ["p_cure"], "outputs: unknown value"),
    ("parameters", "factors", ["z_kil"], r"\[parameters\] factors: fitted parameter 'z_kil': unknown; allowed"),
    ("parameters", "factors", ["foo"], r"\[parameters\] factors: fitted parameter 'foo': unknown"),
    ("parameters", "factors", [3], r"\[parameters\] factors: fitted parameter: expected a name"),
    ("parameters", "variant", "H3", r"\[parameters\] variant: unknown variant 'H3'; allowed: H0, H1, H2"),
    ("parameters", "ranges", "posterior", r"ranges = \"posterior\": set 'patients' has no posterior sample"),
    ("parameters", "ranges", "prior", "ranges: unknown 'prior'; allowed: posterior, table"),
    ("sobol", "n", 100, "power of 2"),
    ("cohort", "size", 0, r"\[cohort\] size"),
    ("min_im", "stop_days", [365, 180], "strictly increasing"),
    # every [treatment] / [cohort] value that goes into TrialDesign
    ("treatment", "follow_up_after_stop_days", "x", r"\[treatment\] follow_up_after_stop_days: expected a finite"),
    ("treatment", "follow_up_after_stop_days", -1, r"\[treatment\] follow_up_after_stop_days: must be > 0"),
    ("treatment", "follow_up_after_stop_days", 0, r"\[treatment\] follow_up_after_stop_days: must be > 0"),
    ("treatment", "follow_up_after_stop_days", math.nan, r"\[treatment\] follow_up_after_stop_days: expected a finite"),
    ("treatment", "follow_up_after_stop_days", 1096, r"\[treatment\] follow_up_after_stop_days: must be <= 1095, got 1096"),
    ("treatment", "follow_up_days", "x", r"\[treatment\] follow_up_days: expected a finite"),
    ("treatment", "follow_up_days", 0, r"\[treatment\] follow_up_days: must be > 0"),
    ("treatment", "visit_interval_days", 0.5, r"\[treatment\] visit_interval_days: must be >= 1"),
    ("treatment", "visit_interval_days", 2000, r"\[treatment\] visit_interval_days: must be <= 1095"),
    ("treatment", "restart", "yes", r"\[treatment\] restart: expected true or false"),
    ("treatment", "escalated_dose_mg", 6000, r"\[treatment\] escalated_dose_mg: must be <= 1000"),
    ("treatment", "escalated_dose_mg", "600 mg", r"\[treatment\] escalated_dose_mg: expected a finite"),
    ("treatment", "detection_limit", 0, r"\[treatment\] detection_limit: must be > 0"),
    ("treatment", "noise_sd_log", math.inf, r"\[treatment\] noise_sd_log: expected a finite"),
    ("treatment", "stop_uptake", 2, r"\[treatment\] stop_uptake: must be <= 1"),
    ("cohort", "relapse_mix", {"molecular": 1, "blastic": 2}, r"\[cohort\] relapse_mix: unknown relapse type"),
    ("cohort", "relapse_mix", {"molecular": "x"}, r"\[cohort\] relapse_mix\.molecular: expected a finite"),
    ("cohort", "relapse_mix", {"molecular": 0}, r"\[cohort\] relapse_mix: counts or fractions must not all be zero"),
    ("cohort", "relapse_mix", 18, r"\[cohort\] relapse_mix: expected a table"),
    # [morris] conf_level is the level of the Morris mu* bootstrap intervals
    ("morris", "conf_level", 5, r"\[morris\] conf_level: must be <= 0.999"),
    ("morris", "conf_level", "x", r"\[morris\] conf_level: expected a finite"),
    ("sobol", "conf_level", 0.2, r"\[sobol\] conf_level: must be >= 0.5"),
])
def test_bad_config_names_the_field(table, key, value, match):
    cfg = small_config()
    cfg.setdefault(table, {})[key] = value
    with pytest.raises(InputError, match=match):
        sens.parse_config(cfg, source="test")


def test_factor_not_fitted_in_the_set_has_no_posterior_range():
    """ranges = "posterior" takes each factor's range from the fitted set's posterior sample (needs the
    shipped H2 fit: z_influx_allo is fitted only for H1)."""
    cfg = small_config(parameters={"set": "hess2005_H2", "ranges": "posterior", "factors": ["z_influx_allo"]})
    with pytest.raises(InputError, match=r"\[parameters\] factors: 'log10_z_influx_allo' was not fitted in set"):
        sens.parse_config(cfg, source="test")


# a full-size value and its [quick] replacement are both checked, whichever size runs
@pytest.mark.parametrize("quick", [True, False], ids=["quick", "full"])
@pytest.mark.parametrize("table,key,value,match", [
    ("sobol", "n", 3, r"\[sobol\] n: expected a power of 2"),
    ("sobol", "n", "x", r"\[sobol\] n: expected an integer"),
    ("cohort", "size", "x", r"\[cohort\] size: expected an integer"),
    ("morris", "trajectories", "x", r"\[morris\] trajectories: expected an integer"),
    ("local", "cohort_size", "x", r"\[local\] cohort_size: expected an integer"),
    ("study", "chunk_samples", 0, r"\[study\] chunk_samples: must be an integer in \[1, inf\]"),
    ("study", "chunk_samples", "x", r"\[study\] chunk_samples: expected an integer"),
    ("quick", "sobol_n", 12, r"\[quick\] sobol_n: expected a power of 2"),
    ("quick", "sobol_n", "x", r"\[quick\] sobol_n: expected an integer"),
    ("quick", "cohort_size", 0, r"\[quick\] cohort_size: must be an integer in \[1, 10000000\]"),
    ("quick", "morris_trajectories", 1, r"\[quick\] morris_trajectories: must be an integer in \[2, inf\]"),
    ("quick", "local_cohort_size", "x", r"\[quick\] local_cohort_size: expected an integer"),
    ("quick", "chunk_samples", 0, r"\[quick\] chunk_samples: must be an integer in \[1, inf\]"),
    ("quick", "colour", 1, r"\[quick\]: unknown key\(s\) \['colour'\]"),
])
def test_quick_table_hides_no_bad_value(table, key, value, match, quick):
    cfg = small_config()
    cfg.setdefault(table, {})[key] = value
    with pytest.raises(InputError, match=match):
        sens.parse_config(cfg, quick=quick, source="test")


def test_quick_values_replace_the_full_sizes():
    cfg = small_config(local={"cohort_size": 500}, morris={"trajectories": 10})
    full = sens.parse_config(cfg, source="test")
    q = sens.parse_config(cfg, quick=True, source="test")
    assert (full.sobol_n, full.design.size, full.morris_trajectories, full.local_cohort_size,
            full.chunk_samples) == (8, 30, 10, 500, 4)
    qt = cfg["quick"]
    assert (q.sobol_n, q.design.size, q.morris_trajectories, q.local_cohort_size, q.chunk_samples) == (
        qt["sobol_n"], qt["cohort_size"], qt["morris_trajectories"], qt["local_cohort_size"], qt["chunk_samples"])


def test_treatment_values_reach_the_design():
    cfg = sens.parse_config(small_config(treatment={"follow_up_after_stop_days": 365, "restart": False,
                                                    "noise_sd_log": 0.3}), source="test")
    d = cfg.design
    assert (d.follow_up_after_stop_days, d.restart, d.noise_sd_log, d.follow_up_days) == (365.0, False, 0.3, 1095.0)


def test_morris_intervals_use_the_morris_conf_level(tmp_path, monkeypatch):
    """[morris] conf_level sets the level of the mu* bootstrap intervals (default: [sobol] conf_level)."""
    assert sens.parse_config(small_config(), source="t").morris_conf_level == 0.95
    assert sens.parse_config(small_config(sobol={"conf_level": 0.9}), source="t").morris_conf_level == 0.9
    cfg = sens.parse_config(small_config(study={"methods": ["morris"]}, morris={"trajectories": 4, "conf_level": 0.8},
                                         sobol={"conf_level": 0.9}), source="t")
    assert (cfg.morris_conf_level, cfg.conf_level) == (0.8, 0.9)

    def fake_model(self, X):  # no model run: outputs from the samples, no solver failures
        Y = np.zeros((len(X), len(self.output_names)))
        Y[:, :len(self.outputs)] = np.asarray(X).sum(axis=1, keepdims=True)
        return Y

    seen = []

    def fake_analyze(problem, X, Y, **kw):
        seen.append(kw["conf_level"])
        return {"status": "undefined", "message": "not analysed in this test"}

    monkeypatch.setattr(sens.CohortEvaluator, "__call__", fake_model)
    monkeypatch.setattr(sens, "analyze_morris", fake_analyze)
    sens.run_study(cfg, tmp_path / "out", progress=False, log=lambda m: None)
    assert seen and set(seen) == {0.8}


@pytest.mark.parametrize("table,key,value,quick,field,existing", [
    ("sobol", "n", 12, False, "[sobol] n", False),
    ("treatment", "follow_up_after_stop_days", "x", False, "[treatment] follow_up_after_stop_days", False),
    ("treatment", "follow_up_after_stop_days", "x", False, "[treatment] follow_up_after_stop_days", True),
    ("sobol", "n", 3, True, "[sobol] n", True),
    ("quick", "chunk_samples", 0, True, "[quick] chunk_samples", False),
], ids=["sobol_n", "after_stop_str", "after_stop_str_existing_out", "quick_hides_sobol_n", "quick_chunk"])
def test_cli_bad_config_exits_2_and_writes_nothing(tmp_path, study_toml, table, key, value, quick, field, existing):
    """A bad config exits 2 naming the field and leaves --out absent (or an existing folder empty), so the
    corrected config can run into the same folder."""
    cfg = small_config()
    cfg.setdefault(table, {})[key] = value
    out = tmp_path / "out"
    if existing:
        out.mkdir()
    p = _cli("sensitivity", study_toml(cfg), "--out", out, *(["--quick"] if quick else []), "--no-progress")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2, err
    assert field in err and "Traceback" not in err
    assert (list(out.iterdir()) == []) if existing else not out.exists()


def test_a_changed_parameter_set_or_package_is_not_resumed(tmp_path, monkeypatch):
    """Saved samples and evaluations belong to the inputs that made them: after a refit of the set (new
    values, same config file) or a change of the package's code, the study refuses the folder, and
    `gvlmodel reproduce` starts its own study folder afresh instead of resuming."""
    import gvlmodel.core._jit as jit_mod

    cfg = small_config()
    parsed = sens.parse_config(cfg, source="t")
    digest = parsed.model_digest()
    sens.run_study(parsed, tmp_path, progress=False, log=lambda m: None)
    assert sens.saved_study_matches(tmp_path, digest) is True  # the same study: resumed
    assert sens.saved_study_matches(tmp_path / "empty", digest) is None
    real_info = sens.parameter_set_info

    def refitted(name):
        info = copy.deepcopy(real_info(name))
        info["parameters"]["z_kill"] *= 1.5  # a refitted median, same config file
        return info

    monkeypatch.setattr(sens, "parameter_set_info", refitted)
    refit = sens.parse_config(cfg, source="t")
    assert refit.model_digest() != digest
    with pytest.raises(InputError, match="different study"):
        sens.run_study(refit, tmp_path, progress=False, log=lambda m: None)
    assert sens.saved_study_matches(tmp_path, refit.model_digest()) is False
    # `gvlmodel reproduce` starts its own stale study folder afresh
    from gvlmodel.workflow import reproduce as rep

    config = tmp_path.parent / f"{tmp_path.name}_study.toml"
    config.write_text(_toml(cfg))
    logged = []
    rep.run_step(rep.Step("study", "sensitivity", config, tmp_path), quick=False, refit=False, threads=None,
                 log=logged.append)
    assert any("afresh" in m for m in logged)
    assert sens.saved_study_matches(tmp_path, refit.model_digest()) is True  # the new study, run to the end
    monkeypatch.setattr(sens, "parameter_set_info", real_info)
    monkeypatch.setattr(jit_mod, "source_digest", lambda: "another-version")
    assert sens.parse_config(cfg, source="t").model_digest() != digest
