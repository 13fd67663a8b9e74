"""Dynamics of immune control: equilibria, stability, window, basins, minimal IM course, config."""
import csv
import json

import numpy as np
import pytest

from gvlmodel import symbolic
from gvlmodel import dynamics as D
from gvlmodel.errors import InputError
from gvlmodel.indices import KP, N_STATES, State
from gvlmodel.model import rhs
from gvlmodel.parameters import kernel_parameters, parameter_set
from gvlmodel.simulate import simulate

SOLVER = {"rtol": 1e-8, "atol": 1e-8, "extinction_threshold": 1.0}


@pytest.fixture(scope="module")
def params():
    return parameter_set("hess2005")


def compiled_residual(y, kp, e):
    f = np.empty(N_STATES)
    rhs(y, kp, e, f)
    tau = np.array([kp[KP.D0], kp[KP.D1], kp[KP.D2], kp[KP.D3], kp[KP.QOUT], kp[KP.D0], kp[KP.D1], kp[KP.D2],
                    kp[KP.D3], kp[KP.ZD]])
    pos = y > 0
    assert np.all(f[~pos] == 0.0), "a zero component must stay zero (invariant subspace)"
    return np.max(np.abs(f[pos]) / (tau[pos] * y[pos]))


@pytest.mark.parametrize("transplant", [True, False])
@pytest.mark.parametrize("overrides", [{}, {"z_half": 3e7, "z_expand_allo": 0.5, "z_expand_auto": 0.5},
                                       {"z_kill": 2e-6}])
def test_equilibria_are_fixed_points_of_the_compiled_rhs(params, transplant, overrides):
    kp = kernel_parameters({**params, **overrides}, "H2", transplant)
    for e in (0.0, 1.0):
        eqs = D.equilibria(kp, e, include_empty=True)
        assert any(q["branch"] == "leukemia_free" for q in eqs)
        for q in eqs:
            y = np.array([q["state"][s.name] for s in State])
            assert np.all(y >= 0)
            assert compiled_residual(y, kp, e) < 1e-9
            # eigenvalues are those of the sympy Jacobian at that state
            ev = np.linalg.eigvals(symbolic.jacobian_numeric(y, kp, e))
            assert np.max(ev.real) == pytest.approx(q["max_real_eigenvalue"], rel=1e-6, abs=1e-12)
        if e == 1.0:  # on imatinib 400 mg/day no leukemic equilibrium survives and the cure is stable
            assert [q["branch"] for q in eqs if q["lsc"] > 0] == []
            assert next(q for q in eqs if q["branch"] == "leukemia_free")["stable"]


def test_fitted_set_is_bistable_off_imatinib(params):
    """Off IM: leukemia-free unstable; a stable immune-controlled state, a threshold saddle, a stable escape."""
    for transplant in (True, False):
        kp = kernel_parameters(params, "H2", transplant)
        eqs = {q["branch"]: q for q in D.equilibria(kp, 0.0)}
        assert set(eqs) == {"leukemia_free", "coexistence_low", "coexistence_high", "dominant"}
        assert not eqs["leukemia_free"]["stable"]
        assert eqs["coexistence_low"]["stable"] and eqs["coexistence_low"]["role"] == "immune_controlled"
        assert not eqs["coexistence_high"]["stable"] and eqs["coexistence_high"]["role"] == "threshold"
        assert eqs["dominant"]["stable"] and eqs["dominant"]["bcr_abl_percent"] == pytest.approx(100.0)
        # effector influx tops up a stimulation below death (sigma* < d_z): the two coexistence states
        # straddle the window, just below its lower and just above its upper edge
        w = D.window(kp)
        assert eqs["coexistence_low"]["load"] < w["low_load"] < w["high_load"] < eqs["coexistence_high"]["load"]
        # both coexistence states carry the kill rate k* that offsets LSC growth in a normal marrow
        ks = D.k_star(kp, 0.0)
        for b in ("coexistence_low", "coexistence_high"):
            assert eqs[b]["kill_rate"] == pytest.approx(ks, rel=1e-8)
        # the reduced plane has the same equilibria: both per-capita rates vanish there
        for b in ("coexistence_low", "coexistence_high", "dominant"):
            gl, gz = D.reduced_field(eqs[b]["lsc"], eqs[b]["effectors"], kp, 0.0)
            assert abs(gl) < 1e-9 and abs(gz) < 1e-9


def test_stability_agrees_with_long_simulations(params):
    kp = kernel_parameters(params, "H2", True)
    eqs = D.equilibria(kp, 0.0)
    assert {q["stable"] for q in eqs} == {True, False}
    for q in eqs:
        chk = D.stability_check(q, kp, params, "H2", True, 0.0, 0.0, SOLVER, perturbation=0.05)
        assert chk["agrees"], (q["branch"], chk)
        assert chk["returned"] == q["stable"]


def test_sympy_static_closed_form_is_exact_without_expansion(params):
    """H1 (no expansion): the dominant equilibrium equals the sympy closed form."""
    kp = kernel_parameters(params, "H1", True)
    dom = [q for q in D.equilibria(kp, 0.0) if q["branch"] == "dominant"]
    assert len(dom) == 1
    approx = D.static_dominant_approximation(kp, 0.0)
    y = np.array([dom[0]["state"][s.name] for s in State])
    np.testing.assert_allclose(y, approx, rtol=1e-8, atol=1e-10)


def test_bifurcation_window_matches_symbolic_and_analytic_thresholds(params, tmp_path):
    opts = D.parse_dynamics_config({"run": {"sections": ["bifurcation"]},
                                    "bifurcation": {"parameters": ["z_expand", "z_kill"], "n_points": 9,
                                                    "doses_mg": [0]}})
    rows, wrows, meta = D.bifurcation(opts, log=lambda *a: None)
    assert wrows and rows
    for w in wrows:
        tr = w["setting"] == "transplanted"
        kp = kernel_parameters({**params, w["parameter"]: w["value"]}, "H2", tr)
        edges = symbolic.window_edges(kp)
        cond = (1 - kp[KP.ZSUPP]) * kp[KP.ZRHO] > kp[KP.ZD]
        assert w["window_exists"] == cond == (edges is not None)
        if edges is not None:
            assert w["window_low_load"] == pytest.approx(edges[0], rel=1e-10)
            assert w["window_high_load"] == pytest.approx(edges[1], rel=1e-10)
            assert w["window_low_lsc_on_im"] > 100 * w["window_low_lsc_off_im"]  # IM lifts the window in LSCs
    for setting, m in meta["settings"].items():
        th = m["thresholds"]
        for r in (r for r in rows if r["setting"] == setting):
            same = [x for x in rows if x["setting"] == setting and x["parameter"] == r["parameter"]
                    and x["value"] == r["value"]]
            has_co = any(x["branch"].startswith("coexistence") for x in same)
            free_stable = next(x["stable"] for x in same if x["branch"] == "leukemia_free")
            v = r["value"]
            if r["parameter"] == "z_kill":
                assert has_co == (th["z_kill_control_min"] < v < th["z_kill_control_max"]), (setting, v)
                assert free_stable == (v > th["z_kill_free_stable"]), (setting, v)
            else:
                assert has_co == (v > th["rho_control"]), (setting, v)
                assert not free_stable
    # immune control can exist without a window: influx tops up effectors (rho_control < rho_window)
    assert meta["settings"]["transplanted"]["thresholds"]["rho_control"] < \
        meta["settings"]["transplanted"]["thresholds"]["rho_window"]


def test_basins_without_immunity_never_immune_controlled(params):
    lscs = np.array([0.1, 1.5, 10.0, 1e3])
    zs = np.array([1e2, 1e6])
    code, _, _, _ = D.classify_basins(params, "H0", True, lscs, np.array([0.0]), 20000.0, SOLVER)  # H0: Z = 0
    assert code[0, 0] == D.BASIN_CODES["extinct"]  # below one LSC: extinct at the start
    assert np.all(code[0, 1:] == D.BASIN_CODES["escape"])
    assert not np.any(code == D.BASIN_CODES["immune_controlled"])
    # H2 with the fitted set: the immune-controlled equilibrium holds < 1 LSC, so no start ends there;
    # strong effectors clear a small clone, baseline effectors do not
    code, _, _, t_ext = D.classify_basins(params, "H2", True, lscs[1:3], zs, 40000.0, SOLVER)
    assert not np.any(code == D.BASIN_CODES["immune_controlled"])
    assert np.all(code[0] == D.BASIN_CODES["escape"]) and np.all(code[1] == D.BASIN_CODES["extinct"])
    assert np.all(np.isfinite(t_ext[1]))
    # a large K_z puts the controlled state above one LSC: then some starts do end immune-controlled,
    # next to that equilibrium
    p2 = {**params, "z_half": 1e8}
    kp = kernel_parameters(p2, "H2", True)
    low = next(q for q in D.equilibria(kp, 0.0) if q["branch"] == "coexistence_low")
    assert low["stable"] and low["lsc"] > 1.0
    code, end_l, _, _ = D.classify_basins(p2, "H2", True, np.array([1.5, 10.0, 1e3]), np.array([1e3, 1e4]),
                                          40000.0, SOLVER)
    ctl = code == D.BASIN_CODES["immune_controlled"]
    assert ctl.any()
    np.testing.assert_allclose(end_l[ctl], low["lsc"], rtol=0.05)


def test_extinct_starts_stay_extinct(params):
    kp = kernel_parameters(params, "H2", True)
    y0 = D.reduced_state(1e3, 1e4, kp, 0.0)
    y0[State.Q] = y0[State.Y0] = 0.0
    r = simulate(params, y0=y0, t_out=np.linspace(0, 20000, 50), schedule=((0, 0.0),), transplant=True)
    assert np.all(r.leukemic_stem_cells == 0.0)
    assert r.bcr_abl[-1] < 1e-8


def test_min_im_duration_more_immunity_never_needs_more_im(params):
    """Non-transplanted, from diagnosis: stronger autologous expansion never lengthens the needed course."""
    mo = {**D.DEFAULTS["min_im"], "grid_days": 90.0, "check_interval_days": 30.0, "followup_days": 0.0}
    ts = []
    for rho in (0.01, 0.1, 1.0):
        res = D.min_im_duration({**params, "z_expand_auto": rho}, "H2", False, 70.0, mo, SOLVER)
        assert not res["censored"] and res["monotone_on_grid"]
        assert res["t_min_grid_days"] - mo["grid_days"] < res["t_min_days"] <= res["t_min_grid_days"]
        ts.append(res["t_min_days"])
    assert all(b <= a + 1.0 for a, b in zip(ts, ts[1:]))
    assert ts[-1] < ts[0] - 100.0  # immunity shortens the course by months in this setting


def test_min_im_duration_censored_is_reported_as_such(params):
    mo = {**D.DEFAULTS["min_im"], "max_days": 300.0, "grid_days": 100.0, "check_interval_days": 30.0}
    res = D.min_im_duration(params, "H2", False, 70.0, mo, SOLVER)
    assert res["censored"] and res["t_min_days"] is None and res["fate_at_t_min"] is None
    assert not any(res["durable_on_grid"])


def test_quick_run_writes_every_file(tmp_path):
    out = tmp_path / "dyn"
    res = D.run_dynamics({"run": {"quick": True, "settings": ["transplanted"]},
                          "phase_plane": {"n_lsc": 3, "n_z": 3, "horizon_days": 20000},
                          "min_im": {"n_points": 2, "max_days": 360}}, out, log=lambda *a: None)
    expected = {"steady_states.json", "bifurcation.csv", "bifurcation_window.csv", "bifurcation.json",
                "phase_plane.npz", "phase_plane.json", "min_im_duration.csv", "min_im_duration.json",
                "provenance.json", "summary.json"}
    assert set(res["files"]) == expected == {p.name for p in out.iterdir()}
    prov = json.loads((out / "provenance.json").read_text())
    assert {"git_commit", "config", "seed", "resolved"} <= set(prov)
    with open(out / "min_im_duration.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["censored"] for r in rows} <= {"true", "false"}
    assert all((r["t_min_days"] == "") == (r["censored"] == "true") for r in rows)
    z = np.load(out / "phase_plane.npz")
    assert z["transplanted_basin"].shape == (3, 3)
    assert z["transplanted_growth_lsc_e0"].shape == (3, 3)
    ss = json.loads((out / "steady_states.json").read_text())
    for dose in ss["settings"]["transplanted"]["doses"].values():
        for q in dose["equilibria"]:
            assert q["simulation_check"]["agrees"], q["branch"]
    # the files each section writes are the ones SECTION_FILES names (used to prune reruns)
    assert {f for sec in D.SECTION_FILES.values() for f in sec} | {"provenance.json", "summary.json"} == expected
    # a rerun of one section into the same folder removes the other sections' files, and only those
    (out / "my_notes.txt").write_text("kept")
    D.run_dynamics({"run": {"quick": True, "settings": ["transplanted"], "sections": ["steady_states"]}}, out,
                   log=lambda *a: None)
    assert {p.name for p in out.iterdir()} == {"steady_states.json", "provenance.json", "summary.json",
                                               "my_notes.txt"}
    assert json.loads((out / "provenance.json").read_text())["seed_note"].startswith("deterministic")
    # interrupted after its first write, a rerun leaves the folder without provenance (incomplete), never
    # an earlier run's provenance beside a mix of old and new files
    real_bifurcation = D.bifurcation
    D.bifurcation = lambda *a: (_ for _ in ()).throw(KeyboardInterrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            D.run_dynamics({"run": {"quick": True, "settings": ["transplanted"],
                                    "sections": ["steady_states", "bifurcation"]}}, out, log=lambda *a: None)
    finally:
        D.bifurcation = real_bifurcation
    assert (out / "steady_states.json").is_file() and not (out / "provenance.json").exists()


@pytest.mark.parametrize("cfg,needle", [
    ({"bifurcation": {"bogus": 1}}, "bogus"),
    ({"phase_plan": {}}, "phase_plan"),
    ({"bifurcation": {"n_points": "many"}}, "n_points"),
    ({"bifurcation": {"parameters": ["d0"]}}, "z_expand"),
    ({"min_im": {"window_days": -5}}, "window_days"),
    ({"parameters": {"not_a_parameter": 1.0}}, "not_a_parameter"),
    ({"parameters": {"z_kill": 1e300}}, "z_kill"),  # beyond the table's bounds
    ({"min_im": {"profiles": {"fast": {"z_kill": 1e300}}}}, "z_kill"),
    ({"parameters": {"set": "nope"}}, "hess2005"),
    ({"min_im": {"profiles": {"slow": {"im_kil": 0.01}}}}, "im_kil"),
    ({"run": {"sections": ["everything"]}}, "steady_states"),
])
def test_bad_config_raises_naming_the_key_and_writes_nothing(tmp_path, cfg, needle):
    out = tmp_path / "out"
    with pytest.raises(InputError, match=needle):
        D.run_dynamics(cfg, out, log=lambda *a: None)
    assert not out.exists()


def test_bad_config_file_writes_nothing(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[phase_plane]\nn_lsc = 10\nunknown_key = 3\n")
    out = tmp_path / "out"
    with pytest.raises(InputError, match="unknown_key"):
        D.run_dynamics(path, out, log=lambda *a: None)
    assert not out.exists()
    opts = D.load_dynamics_config("experiments/dynamics.toml")
    assert opts["parameter_set"] == "hess2005" and opts["variant"] == "H2"
