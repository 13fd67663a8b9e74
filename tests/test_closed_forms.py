"""Steady states and immune-window edges from sympy, reproduced by the compiled model."""
import numpy as np
import pytest

from gvlmodel import KP, State, kernel_parameters
from gvlmodel.model import symbolic
from gvlmodel.model.model import rhs
from gvlmodel.model.solver import integrate, N_STATS

from conftest import draw_parameters


def run_kernel(y0, kp, effect, t_end, n_out=2):
    t_out = np.linspace(0.0, t_end, n_out)
    y_out = np.empty((n_out, y0.size))
    stats = np.zeros(N_STATS, dtype=np.int64)
    status = integrate(y0, kp, np.array([0.0, t_end]), np.array([effect]), t_out, 1e-10, 1e-10,
                       10_000_000, 0.0, y_out, stats, np.empty(1))
    assert status == 0
    return y_out


def test_healthy_steady_state_is_a_fixed_point_and_attracts(rng):
    sol = symbolic.healthy_steady_state_sympy()
    for _ in range(5):
        kp = kernel_parameters(draw_parameters(rng), "H2", True)
        ys = symbolic.evaluate_state(sol, kp)
        f = np.empty_like(ys)
        rhs(ys, kp, 0.0, f)
        assert np.all(np.abs(f) <= 1e-12 * np.abs(ys) * kp[:KP.KN].max() + 1e-12)
        # perturb the normal hierarchy: a long simulation returns to the closed form
        y0 = ys * np.array([1.3, 0.7, 1.2, 0.8, 1, 1, 1, 1, 1, 1, 1, 1.5, 1])
        lam = kp[KP.D0] * (1.0 - kp[KP.D0] / kp[KP.RX])  # slowest relaxation: the niche feedback of X0
        end = run_kernel(y0, kp, 0.0, max(40_000.0, 25.0 / lam))[-1]
        np.testing.assert_allclose(end, ys, rtol=1e-6)


@pytest.mark.parametrize("variant,effect", [("H0", 0.0), ("H1", 0.0), ("H1", 1.0), ("H0", 0.5)])
def test_leukemic_steady_state_reproduced_by_long_simulation(variant, effect):
    """Normal homeostasis, static effectors: the closed-form equilibrium of the sensitive clone."""
    kp = kernel_parameters({"im_kill_lsc": 0.001}, variant, True)
    sol = symbolic.leukemic_steady_state_sympy()
    ys = symbolic.evaluate_state(sol, kp, effect)
    assert ys[State.Y0] > 0, "closed form predicts leukemic persistence for these parameters"
    y0 = ys * 0.5
    y0[State.Z] = ys[State.Z]
    end = run_kernel(y0, kp, effect, 60_000.0)[-1]
    np.testing.assert_allclose(end, ys, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("transplant", [True, False])
def test_controlled_equilibrium_reproduced_by_long_simulation(transplant):
    """H2, default table: the controlled state (roots of the sympy effector polynomial) attracts nearby states."""
    from gvlmodel.analysis import dynamics as D

    kp = kernel_parameters({}, "H2", transplant)
    zs = D.sympy_sensitive_roots(kp, 0.0)
    assert len(zs) == 3
    ys = next(q for q in D.equilibria(kp, 0.0, resistant=False) if q["branch"] == "controlled")["_y"]
    assert ys[State.Z] == pytest.approx(zs[-1], rel=1e-9)  # the controlled state has the most effectors
    assert ys[State.Q] + ys[State.Y0] > 1.0
    y0 = ys * np.where(np.arange(ys.size) % 2 == 0, 1.05, 0.95)
    # the slowest relaxation: the dormant pool's exchange (delta_out + kappa_D k; immune-privileged by default)
    lam = kp[KP.DOUT] + kp[KP.ZDREL] * kp[KP.ZKILL] * ys[State.Z]
    end = run_kernel(y0, kp, 0.0, max(40_000.0, 25.0 / lam))[-1]
    np.testing.assert_allclose(end, ys, rtol=1e-7, atol=0)


def test_window_edges_closed_form_matches_hahnel_condition():
    condition, (lo, hi) = symbolic.window_edges_sympy()
    for rho, d, s in [(0.3, 0.05, 0.0), (0.1, 0.05, 0.6), (0.05, 0.05, 0.0), (0.04, 0.05, 0.0)]:
        kp = kernel_parameters({"z_expand_allo": rho, "z_death": d, "immunosuppression": s}, "H2", True)
        edges = symbolic.window_edges(kp)
        assert (edges is not None) == ((1 - s) * rho > d)   # Hähnel: p_z > 2 a K_z
        if edges is not None:
            lo_, hi_ = edges
            assert lo_ * hi_ == pytest.approx(kp[KP.ZK] ** 2, rel=1e-12)  # roots multiply to K_z^2
            assert lo_ < kp[KP.ZK] < hi_


def frozen_load_kernel(kp, load):
    """Kernel parameters that hold every cell population fixed except effectors."""
    k = kp.copy()
    for idx in (KP.D0, KP.D1, KP.D2, KP.D3, KP.RX, KP.AX, KP.BX, KP.CX, KP.RY, KP.AY, KP.BY, KP.CY,
                KP.QIN, KP.QOUT, KP.IMKILL, KP.IMKILLP, KP.ZKILL):
        k[idx] = 0.0
    y = np.zeros(len(State))
    y[State.X0] = 1e5
    y[State.Y3] = load
    y[State.Z] = k[KP.ZIN] / k[KP.ZD]
    return k, y


@pytest.mark.parametrize("rho,d", [(0.3, 0.05), (0.12, 0.05), (0.06, 0.05)])
def test_effectors_expand_exactly_inside_the_window(rho, d):
    """At fixed load, a large effector population keeps growing iff the load is inside."""
    kp = kernel_parameters({"z_expand_allo": rho, "z_death": d}, "H2", True)
    lo, hi = symbolic.window_edges(kp)
    for load, inside in [(lo * 0.98, False), (lo * 1.02, True), (np.sqrt(lo * hi), True),
                         (hi * 0.98, True), (hi * 1.02, False)]:
        k, y0 = frozen_load_kernel(kp, load)
        y0[State.Z] *= 1e6
        end = run_kernel(y0, k, 0.0, 1000.0)[-1]
        assert (end[State.Z] > y0[State.Z]) == inside, (load, lo, hi, end[State.Z])
    for load in (lo / 10, hi * 10):  # far outside: settles at influx / (death - expansion)
        k, y0 = frozen_load_kernel(kp, load)
        end = run_kernel(y0, k, 0.0, 2000.0)[-1]
        u = load / k[KP.ZK]
        zs = k[KP.ZIN] / (k[KP.ZD] - k[KP.ZRHO] * 2 * u / (1 + u * u))
        assert end[State.Z] == pytest.approx(zs, rel=1e-6)


def test_no_window_when_condition_fails():
    kp = kernel_parameters({"z_expand_allo": 0.049, "z_death": 0.05}, "H2", True)
    assert symbolic.window_edges(kp) is None
    t_end = 5000.0
    for u in np.logspace(-5, 5, 11):  # frozen load in units of K_z
        k, y0 = frozen_load_kernel(kp, u * kp[KP.ZK])
        end = run_kernel(y0, k, 0.0, t_end)[-1]
        # linear in Z at a frozen load: Z(t) = zs + (Z0 - zs) exp(-lam t), lam = death - expansion > 0
        lam = k[KP.ZD] - k[KP.ZRHO] * 2 * u / (1 + u * u)
        assert lam > 0
        zs = k[KP.ZIN] / lam
        z_exact = zs + (y0[State.Z] - zs) * np.exp(-lam * t_end)
        assert end[State.Z] == pytest.approx(z_exact, rel=1e-6), u
