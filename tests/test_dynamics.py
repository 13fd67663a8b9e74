"""Dynamics of immune control (model v2): equilibria, stability, basins, window, bifurcation, min IM, config."""
import csv
import json
import math

import numpy as np
import pytest

from gvlmodel.model import symbolic
from gvlmodel.analysis import dynamics as D
from gvlmodel.core.errors import InputError
from gvlmodel.model.indices import KP, N_STATES, State
from gvlmodel.model.model import rhs
from gvlmodel.model.parameters import default_parameters, kernel_parameters, normal_mature_cells
from gvlmodel.model.simulate import simulate

from conftest import draw_parameters

SOLVER = {"rtol": 1e-8, "atol": 1e-8, "extinction_threshold": 1.0}
SENSITIVE = ("controlled", "threshold", "high_burden")


@pytest.fixture(scope="module")
def params():
    return default_parameters()


def state(q):
    return np.array([q["state"][s.name] for s in State])


def compiled_residual(y, kp, e):
    """Max over compartments of |dy/dt| / (turnover * y), from the compiled kernel (independent of dynamics.py)."""
    f = np.empty(N_STATES)
    rhs(y, kp, e, f)
    tau = np.array([kp[KP.D0], kp[KP.D1], kp[KP.D2], kp[KP.D3], kp[KP.QOUT], kp[KP.D0], kp[KP.D1], kp[KP.D2],
                    kp[KP.D3], kp[KP.D0], kp[KP.D1], kp[KP.ZD], kp[KP.DOUT]])
    pos = y > 0
    assert np.all(f[~pos] == 0.0), "a zero component must stay zero (invariant subspace)"
    return np.max(np.abs(f[pos]) / (tau[pos] * y[pos]))


@pytest.mark.parametrize("transplant", [True, False])
@pytest.mark.parametrize("overrides", [{}, {"z_half": 0.2, "z_expand_allo": 0.1, "z_expand_auto": 0.1},
                                       {"z_kill": 1e-6}, {"z_dormant_kill": 0.05}, {"z_quiescent_kill": 0.0}])
def test_equilibria_are_fixed_points_with_sympy_jacobian_eigenvalues(params, transplant, overrides):
    kp = kernel_parameters({**params, **overrides}, "H2", transplant)
    for e in (0.0, 1.0):
        eqs = D.equilibria(kp, e)
        assert [q["branch"] for q in eqs].count("leukemia_free") == 1
        for q in eqs:
            y = state(q)
            assert np.all(y >= 0)
            assert compiled_residual(y, kp, e) < D.RESIDUAL_TOL
            assert q["sympy_residual"] < D.RESIDUAL_TOL
            assert y[State.X0] == pytest.approx(kp[KP.KN] * (kp[KP.RX] / kp[KP.D0] - 1), rel=1e-12)
            ev = np.linalg.eigvals(symbolic.jacobian_numeric(y, kp, e))
            assert np.max(ev.real) == pytest.approx(q["max_real_eigenvalue_full"], rel=1e-9, abs=1e-14)
            assert q["bcr_abl_percent"] == pytest.approx(100 * y[State.Y3] / (y[State.Y3] + 2 * y[State.X3]))
        if e == 1.0:  # on imatinib 400 mg/day no sensitive clone persists and the cure is stable
            assert not [q for q in eqs if q["clone"] == "sensitive"]
            assert next(q for q in eqs if q["branch"] == "leukemia_free")["stable"]


@pytest.mark.parametrize("transplant", [True, False])
def test_default_table_has_a_controlled_equilibrium_off_imatinib(params, transplant):
    """Off IM: leukemia-free (unstable as an ODE state), controlled (stable), threshold (saddle), high burden."""
    kp = kernel_parameters(params, "H2", transplant)
    eqs = {q["branch"]: q for q in D.equilibria(kp, 0.0, resistant=False)}
    assert set(eqs) == {"leukemia_free", *SENSITIVE}
    assert not eqs["leukemia_free"]["stable"]
    assert eqs["controlled"]["stable"] and eqs["high_burden"]["stable"] and not eqs["threshold"]["stable"]
    c, h = eqs["controlled"], eqs["high_burden"]
    # residual LSCs (more than one, so reachable by the integrator), mostly quiescent, at a low BCR-ABL
    assert 10 < c["lsc"] < 1e3 and 0.001 < c["bcr_abl_percent"] < 0.01
    # the values README.md quotes for the table ("26 LSCs at 0.002 % transplanted, 58 LSCs at 0.005 %
    # non-transplanted"): a change of the model or the table must update the README too
    lsc, percent = (26, 0.002) if transplant else (58, 0.005)
    assert round(c["lsc"]) == lsc and round(c["bcr_abl_percent"], 3) == percent
    k = c["kill_rate"]
    # quiescent loss a(k) = q_out + kappa_Q k + delta_in kappa_D k / (delta_out + kappa_D k);
    # D/Q = delta_in / (delta_out + kappa_D k)
    kq, kd = kp[KP.ZQREL] * k, kp[KP.ZDREL] * k
    a = kp[KP.QOUT] + kq + kp[KP.DIN] * kd / (kp[KP.DOUT] + kd)
    dq = kp[KP.DIN] / (kp[KP.DOUT] + kd)
    assert c["quiescent_fraction"] == pytest.approx(kp[KP.QIN] / (a + kp[KP.QIN] * (1 + dq)), rel=1e-12)
    assert c["dormant_fraction"] == pytest.approx(dq * c["quiescent_fraction"], rel=1e-12)
    assert 0.8 < c["quiescent_fraction"] + c["dormant_fraction"] < 0.95
    # the immune kill roughly balances the cycling LSCs' net growth r_y - d0
    assert 0.8 < k / (kp[KP.RY] - kp[KP.D0]) < 1.0
    # effectors are expanded inside the window, the controlled load sits near its lower edge
    w = D.window(kp)
    assert c["effectors"] > 10 * kp[KP.ZIN] / kp[KP.ZD]
    assert 0.5 < c["load"] / w["low_load"] < 2.0 and eqs["threshold"]["load"] < w["high_load"] * 2
    assert h["bcr_abl_percent"] > 90 and h["effectors"] < 2 * kp[KP.ZIN] / kp[KP.ZD]
    # a resistant clone (never quiescent) would invade the controlled state: reported, not hidden
    assert c["resistant_invasion_rate"] > 0 and not c["stable_full"]
    assert c["resistant_invasion_rate"] == pytest.approx(kp[KP.QIN] * (a - kp[KP.QOUT]) / a, rel=1e-9)


@pytest.mark.parametrize("transplant", [True, False])
def test_enumeration_equals_sympy_polynomial_roots(params, transplant):
    kp = kernel_parameters(params, "H2", transplant)
    eqs = D.equilibria(kp, 0.0, resistant=False)
    zs = sorted(q["effectors"] for q in eqs if q["clone"] == "sensitive")
    roots = D.sympy_sensitive_roots(kp, 0.0)
    assert len(roots) == len(zs) == 3
    np.testing.assert_allclose(zs, roots, rtol=1e-9)


def test_enumeration_equals_sympy_polynomial_roots_at_random_parameters(rng):
    for _ in range(4):
        p = draw_parameters(rng)
        kp = kernel_parameters(p, "H2", True)
        zs = sorted(q["effectors"] for q in D.equilibria(kp, 0.0, resistant=False) if q["clone"] == "sensitive")
        roots = D.sympy_sensitive_roots(kp, 0.0)
        assert len(roots) == len(zs), (p, roots, zs)
        np.testing.assert_allclose(zs, roots, rtol=1e-8)


def test_static_effectors_high_burden_equals_sympy_closed_form(params):
    """H1 (no expansion): the sensitive clone's one equilibrium is the sympy closed form."""
    for e in (0.0, 0.1):
        kp = kernel_parameters({**params, "im_kill_lsc": 0.01}, "H1", True)
        fam = [q for q in D.equilibria(kp, e) if q["clone"] == "sensitive"]
        assert [q["branch"] for q in fam] == ["high_burden"]
        np.testing.assert_allclose(state(fam[0]), D.static_leukemic_equilibrium(kp, e), rtol=1e-10, atol=1e-12)


def test_window_edges_in_bcr_abl_match_sympy(params):
    for tr in (True, False):
        for rho, s in ((0.3, 0.0), (0.15, 0.4), (0.05, 0.0)):
            p = {**params, "z_expand_allo": rho, "z_expand_auto": rho, "immunosuppression": s}
            kp = kernel_parameters(p, "H2", tr)
            w = D.window(kp)
            edges = symbolic.window_edges(kp)
            assert w["exists"] == (edges is not None) == ((1 - s) * rho > kp[KP.ZD])
            x3 = normal_mature_cells(p)
            assert w["peak_bcr_abl"] == pytest.approx(p["z_half"], rel=1e-12)  # K_z is defined by z_half
            if edges is None:
                continue
            assert (w["low_load"], w["high_load"]) == pytest.approx(edges, rel=1e-12)
            for lo_hi, L in zip(("low_bcr_abl", "high_bcr_abl"), edges):
                assert w[lo_hi] == pytest.approx(100 * L / (L + 2 * x3), rel=1e-12)
            # and in closed form from z_half: u r / (u r + 1 - r), u = L / K_z
            r = p["z_half"] / 100
            u = edges[0] / kp[KP.ZK]
            assert w["low_bcr_abl"] == pytest.approx(100 * u * r / (u * r + 1 - r), rel=1e-12)


def test_stability_agrees_with_long_simulations(params):
    kp = kernel_parameters(params, "H2", True)
    eqs = D.equilibria(kp, 0.0, resistant=False)
    assert {q["stable"] for q in eqs} == {True, False}
    for q in eqs:
        chk = D.stability_check(q, kp, params, "H2", True, 0.0, 0.0, SOLVER, perturbation=0.05)
        assert chk["agrees"], (q["branch"], chk)


@pytest.mark.parametrize("transplant", [True, False])
def test_simulations_from_inside_the_basin_converge_to_the_controlled_state(params, transplant):
    kp = kernel_parameters(params, "H2", transplant)
    c = next(q for q in D.equilibria(kp, 0.0, resistant=False) if q["branch"] == "controlled")
    y = state(c)
    m = y > 0
    # long enough for the slowest mode, the dormant pool's exchange (delta_out + kappa_D k), to settle
    horizon = max(40000.0, 30.0 / (kp[KP.DOUT] + kp[KP.ZDREL] * c["kill_rate"]))
    for n, z in ((200.0, 3e4), (5.0, 5e3)):
        r = simulate(params, y0=D.reduced_state(n, z, kp, 1.0), t_out=[0.0, horizon], schedule=((0.0, 0.0),),
                     transplant=transplant, rtol=SOLVER["rtol"], atol=SOLVER["atol"])
        assert r.success and not r.extinct
        dev = np.max(np.abs(np.log(r.y[-1][m] / y[m])))
        assert dev < 10 * SOLVER["rtol"], (n, z, dev)


def test_basins_eradicated_controlled_relapse(params):
    lscs = np.array([0.5, 5.0, 200.0, 1e5])
    zs = np.array([1e3, 3e4])
    kp = kernel_parameters(params, "H2", True)
    stable = D.stable_off_im(kp)
    c = next(q for q in stable if q["branch"] == "controlled")
    # long enough for the dormant reservoir left by imatinib to drain (delta_out, immune-privileged by default)
    horizon = max(40000.0, 40.0 / (kp[KP.DOUT] + kp[KP.ZDREL] * c["kill_rate"]))
    code, end_l, _, end_b, _ = D.classify_basins(params, "H2", True, lscs, zs, horizon, SOLVER, 1.0, stable)
    B = D.BASIN_CODES
    assert np.all(code[:, 0] == B["eradicated"])  # below one LSC: extinct at the start
    assert code[1, 1] == code[1, 2] == B["controlled"]  # small clones with expanded effectors are held
    # a large clone of untreated shape at baseline effectors relapses (the shape under imatinib, mostly
    # dormant, releases its cells slowly enough for the effectors to expand in the window and hold them)
    code_u, *_ = D.classify_basins(params, "H2", True, lscs[-1:], zs[:1], 40000.0, SOLVER, 0.0, stable)
    assert code_u[0, 0] == B["relapse"]
    ctl = code == B["controlled"]
    np.testing.assert_allclose(end_l[ctl], c["lsc"], rtol=1e-6)
    np.testing.assert_allclose(end_b[ctl], c["bcr_abl_percent"], rtol=1e-6)
    # without immunity (H0) nothing is controlled
    code0, *_ = D.classify_basins(params, "H0", True, lscs[1:], np.array([0.0]), 40000.0, SOLVER, 1.0)
    assert np.all(code0 == B["relapse"])


def test_bifurcation_controlled_branch_and_window(params):
    opts = D.parse_dynamics_config({"run": {"sections": ["bifurcation"], "settings": ["transplanted"]},
                                    "bifurcation": {"parameters": ["z_expand", "z_kill"], "n_points": 7,
                                                    "doses_mg": [0]}})
    rows, wrows, meta = D.bifurcation(opts, log=lambda *a: None)
    th = meta["settings"]["transplanted"]["thresholds"]
    for w in wrows:
        kp = kernel_parameters({**params, w["parameter"]: w["value"]}, "H2", True)
        edges = symbolic.window_edges(kp)
        assert w["window_exists"] == (edges is not None)
        if edges is not None:
            assert (w["window_low_load"], w["window_high_load"]) == pytest.approx(edges, rel=1e-12)
    for r in rows:
        if r["parameter"] == "z_kill" and r["branch"] == "leukemia_free":  # transcritical: free stable iff z_kill > ...
            assert r["stable"] == (r["value"] > th["z_kill_free_stable"])
    sweeps = meta["settings"]["transplanted"]["sweeps"]
    (lo, hi), = sweeps["z_expand_allo"]["controlled_intervals"]
    assert hi == 2.0 and 0.01 < lo < params["z_expand_allo"]
    for v, exists in ((lo * (1 - 1e-5), False), (lo * (1 + 1e-5), True)):  # the refined edge
        assert D.controlled_exists({**params, "z_expand_allo": v}, "H2", True) == exists
    (klo, khi), = sweeps["z_kill"]["controlled_intervals"]
    assert khi < th["z_kill_free_stable"]  # the controlled branch ends (below one LSC) before the cure is stable
    assert D.controlled_exists({**params, "z_kill": khi * 0.999}, "H2", True)
    assert not D.controlled_exists({**params, "z_kill": khi * 1.001}, "H2", True)
    assert meta["checks"]["transplanted/z_expand_allo/0"]["continuation_new_equilibria"] == 0


def test_min_im_duration_more_immunity_never_needs_more_im(params):
    """Non-transplanted, from diagnosis: stronger autologous expansion never lengthens the needed course."""
    mo = {**D.DEFAULTS["min_im"], "grid_days": 90.0, "check_interval_days": 30.0}
    kp = kernel_parameters(params, "H2", False)
    ts = []
    for rho in (0.15, 0.5, 2.0):
        p = {**params, "z_expand_auto": rho}
        res = D.min_im_duration(p, "H2", False, 70.0, mo, SOLVER)
        assert not res["censored"]
        assert res["t_min_grid_days"] - mo["grid_days"] < res["t_min_days"] <= res["t_min_grid_days"]
        assert res["outcome_at_t_min"] in ("controlled", "eradicated")
        # independent check of the day found: IM for t_min days is durable, one day less is not
        stable = D.stable_off_im(kernel_parameters(p, "H2", False))
        for days, durable in ((res["t_min_days"], True), (res["t_min_days"] - 1, False)):
            r = simulate(p, y0=D.initial_state(p, bcr_abl=70.0, transplant=False), t_out=[0, days, days + 20000],
                         schedule=((0, 400.0), (days, 0.0)), transplant=False, rtol=1e-8, atol=1e-8)
            assert (D.classify_end(r, stable) != D.BASIN_CODES["relapse"]) == durable, (rho, days)
        ts.append(res["t_min_days"])
    assert all(b <= a + 1.0 for a, b in zip(ts, ts[1:]))
    assert ts[-1] < ts[0] - 100.0
    # at weak expansion a longer course can relapse again (effectors contract once the load leaves the
    # window from below) before the clone is small enough: the scan reports it as non-monotone
    assert not D.min_im_duration({**params, "z_expand_auto": 0.15}, "H2", False, 70.0, mo, SOLVER)[
        "monotone_on_grid"]


def test_min_im_duration_censored_is_reported_as_such(params):
    mo = {**D.DEFAULTS["min_im"], "max_days": 300.0, "grid_days": 100.0, "check_interval_days": 30.0}
    res = D.min_im_duration({**params, "z_expand_auto": 0.01}, "H2", False, 70.0, mo, SOLVER)
    assert res["censored"] and res["t_min_days"] is None and res["outcome_at_t_min"] is None
    assert not any(res["durable_on_grid"]) and set(res["outcome_on_grid"]) == {"relapse"}


def test_quick_run_writes_every_file(tmp_path):
    out = tmp_path / "dyn"
    res = D.run_dynamics({"run": {"quick": True, "settings": ["transplanted"]},
                          "bifurcation": {"parameters": ["z_expand"], "n_points": 3},
                          "phase_plane": {"n_lsc": 3, "n_z": 3, "n_field": 10, "horizon_days": 20000},
                          "min_im": {"n_points": 1, "max_days": 360}}, out, log=lambda *a: None)
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
    assert z["transplanted_growth_lsc_e0"].shape == (10, 10)
    ss = json.loads((out / "steady_states.json").read_text())
    for dose in ss["settings"]["transplanted"]["doses"].values():
        assert dose["sympy_polynomial"]["matched"]
        for q in dose["equilibria"]:
            assert q["simulation_check"]["agrees"], q["branch"]
            assert q["residual"] < D.RESIDUAL_TOL
    assert {f for sec in D.SECTION_FILES.values() for f in sec} | {"provenance.json", "summary.json"} == expected
    # a rerun of one section into the same folder removes the other sections' files, and only those
    (out / "my_notes.txt").write_text("kept")
    D.run_dynamics({"run": {"quick": True, "settings": ["transplanted"], "sections": ["steady_states"]}}, out,
                   log=lambda *a: None)
    assert {p.name for p in out.iterdir()} == {"steady_states.json", "provenance.json", "summary.json",
                                               "my_notes.txt"}
    assert json.loads((out / "provenance.json").read_text())["seed_note"].startswith("deterministic")
    # interrupted after its first write, a rerun leaves the folder without provenance (incomplete)
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
    ({"parameters": {"set": "nope"}}, "default"),
    ({"min_im": {"profiles": {"slow": {"im_kil": 0.01}}}}, "im_kil"),
    ({"run": {"sections": ["everything"]}}, "steady_states"),
    ({"phase_plane": {"stop_dose_mg": 5000}}, "stop_dose_mg"),
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
    assert opts["parameter_set"] == "default" and opts["variant"] == "H2"
    assert not math.isnan(opts["parameters"]["z_half"])
