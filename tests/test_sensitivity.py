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

from gvlmodel import sensitivity as sens
from gvlmodel.errors import InputError, read_toml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "experiments" / "sensitivity_hess2005.toml"
ISHIGAMI = {"num_vars": 3, "names": ["x1", "x2", "x3"], "bounds": [[-math.pi, math.pi]] * 3}


def small_config(**tables) -> dict:
    cfg = copy.deepcopy(read_toml(CONFIG))
    cfg["study"].update({"methods": ["sobol"], "outputs": ["p_cmr", "t_cmr_days", "p_durable", "t_loss_days"],
                         "chunk_samples": 4})
    cfg["parameters"]["factors"] = ["im_fold_b", "z_expand_allo", "z_kill"]
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
    cfg = sens.parse_config(small_config(parameters={"factors": ["im_fold_b", "im_kill_lsc"]}, local={"enabled": True}),
                            source="test")
    point = sens.fitted_point(cfg)
    Xl, _ = sens.local_design(cfg, point)
    a = np.array([0.7, -1.3])
    theta = np.column_stack([10.0 ** Xl[:, 0], Xl[:, 1]])
    Y = np.prod(theta ** a, axis=1)[:, None]
    out = sens.local_coefficients(dataclasses.replace(cfg, outputs=("p_cmr",)), point, Y, ("p_cmr",))
    c = out["p_cmr"]["coefficients"]
    for h, v in c["log10_im_fold_b"]["by_step"].items():  # central difference of Y: sinh(a h) / h exactly
        assert v == pytest.approx(math.sinh(0.7 * float(h)) / float(h), rel=1e-9)
    assert c["log10_im_fold_b"]["by_step"]["0.01"] == pytest.approx(0.7, rel=1e-4)
    assert c["im_kill_lsc"]["by_step"]["0.01"] == pytest.approx(-1.3, rel=1e-3)


def test_stacked_samples_equal_one_at_a_time_and_the_cohort_engine():
    """Evaluating samples together changes nothing (common random numbers, one kernel call), and one
    sample's p_cmr is the fraction in CMR of the same cohort run by simulate_cohort."""
    from gvlmodel.cohort import CohortSpec, Population, simulate_cohort
    from gvlmodel.trial import model_inputs
    from gvlmodel.parameters import parameter_set_info

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
                        hess, params, variant=cfg.variant, population=Population(sd_log=pop.sd_log), progress=False)
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
    return subprocess.Popen([sys.executable, "-m", "gvlmodel.cli", *map(str, args)], cwd=ROOT,
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


@pytest.mark.parametrize("table,key,value,match", [
    ("study", "colour", 1, r"\[study\]: unknown key\(s\) \['colour'\]"),
    ("study", "methods", ["sobol", "fast"], "methods: unknown value"),
    ("study", "outputs", ["p_cure"], "outputs: unknown value"),
    ("parameters", "factors", ["z_kil"], "fitted parameter 'z_kil': unknown"),
    ("parameters", "factors", ["z_influx_allo"], "not fitted in set"),
    ("parameters", "ranges", "prior", "ranges: unknown 'prior'; allowed: posterior, table"),
    ("sobol", "n", 100, "power of 2"),
    ("cohort", "size", 0, r"\[cohort\] size"),
    ("min_im", "stop_days", [365, 180], "strictly increasing"),
])
def test_bad_config_names_the_field(table, key, value, match):
    cfg = small_config()
    cfg.setdefault(table, {})[key] = value
    with pytest.raises(InputError, match=match):
        sens.parse_config(cfg, source="test")


def test_cli_bad_config_exits_2_and_writes_nothing(tmp_path, study_toml):
    cfg = small_config()
    cfg["sobol"]["n"] = 12
    out = tmp_path / "out"
    p = _cli("sensitivity", study_toml(cfg), "--out", out)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "[sobol] n" in err and not out.exists()
