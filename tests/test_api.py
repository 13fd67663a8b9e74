"""The one-patient API on valid input: start before the first output, single and
repeated output times, the dose in force at each output, named access, the healthy
state; and the kernel's status for a course that overflows."""
import numpy as np
import pytest

from gvlmodel import KP, State, healthy_state, initial_state, kernel_parameters, simulate
from gvlmodel.model import solver
from gvlmodel.model.model import rhs

from test_rhs import gross_flux


def test_start_before_first_output_equals_solve_from_that_start():
    y0 = initial_state(bcr_abl=1.0)
    full = simulate(y0=y0, t_out=[0.0, 30.0, 60.0])
    late = simulate(y0=y0, t0=0.0, t_out=[30.0, 60.0])
    assert full.success and late.success
    np.testing.assert_allclose(late.y, full.y[1:], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(late.t, [30.0, 60.0])


def test_single_output_time_returns_the_start_state_without_stepping():
    y0 = initial_state(bcr_abl=1.0)
    res = simulate(y0=y0, t_out=[5.0])
    assert res.success and res.n_steps == 0
    np.testing.assert_array_equal(res.y[0], y0)


def test_repeated_output_times_give_repeated_rows():
    res = simulate(t_out=[0.0, 30.0, 30.0, 60.0])
    assert res.success
    np.testing.assert_array_equal(res.y[1], res.y[2])
    assert np.all(np.isfinite(res.y))


def test_dose_in_force_at_each_output_switches_at_the_segment_edge():
    res = simulate(t_out=[0.0, 29.0, 30.0, 60.0], schedule=[(0.0, 400.0), (30.0, 600.0)])
    np.testing.assert_array_equal(res.dose_mg, [400.0, 400.0, 600.0, 600.0])


@pytest.mark.parametrize("ratio", [1e-4, 0.01, 10.0, 50.0, 90.0])
def test_initial_state_has_the_requested_bcr_abl_ratio(ratio):
    """``initial_state(bcr_abl=r)`` inverts the measured ratio 100 L / (L + 2 N) exactly, up to rounding,
    also where L is comparable with N (the relapse types' starting burdens reach tens of percent)."""
    from gvlmodel.model.measurement import bcr_abl_percent

    for variant in ("H0", "H2"):
        y0 = initial_state(bcr_abl=ratio, variant=variant)
        assert bcr_abl_percent(y0[None, :])[0] == pytest.approx(ratio, rel=1e-12)


def test_named_access_and_bcr_abl_ratio():
    res = simulate(t_out=np.linspace(0, 90, 4))
    for s in State:
        np.testing.assert_array_equal(res[s.name], res.y[:, s])
        np.testing.assert_array_equal(res.state(s), res.y[:, s])
    y3, x3 = res.y[:, State.Y3], res.y[:, State.X3]
    np.testing.assert_allclose(res.bcr_abl, 100.0 * y3 / (y3 + 2.0 * x3), rtol=1e-14)
    d = res.as_dict()
    assert set(d) == {"time_days", "dose_mg", "bcr_abl_percent", *State.__members__}
    np.testing.assert_array_equal(d["Y0"], res.y[:, State.Y0])
    np.testing.assert_array_equal(res.leukemic_stem_cells, res.y[:, State.D] + res.y[:, State.Q] + res.y[:, State.Y0]
                                  + res.y[:, State.R0])


@pytest.mark.parametrize("transplant", [True, False])
def test_healthy_state_is_an_equilibrium_without_leukemia(transplant):
    y = healthy_state()
    for s in (State.Q, State.Y0, State.Y1, State.Y2, State.Y3, State.Z):
        assert y[s] == 0.0
    assert np.all(y[[State.X0, State.X1, State.X2, State.X3]] > 0)
    kp = kernel_parameters(None, "H0", transplant)
    out = np.empty_like(y)
    rhs(y, kp, 0.0, out)
    assert np.all(np.abs(out) <= 1e-13 * gross_flux(y, kp, 0.0))


def test_overflowing_course_fails_with_non_finite_status_and_keeps_the_rows_reached():
    """A negative mature-cell death rate (only reachable by calling the kernel directly)
    makes X3 grow like exp(2t) and overflow near day 350."""
    kp = kernel_parameters(None, "H2", True)
    kp[KP.D3] = -2.0
    y0 = initial_state()
    t_out = np.linspace(0.0, 720.0, 25)
    y_out = np.empty((t_out.size, y0.size))
    stats = np.zeros(solver.N_STATS, dtype=np.int64)
    events = np.empty(1)
    status = solver.integrate(y0, kp, np.array([0.0, 720.0]), np.array([1.0]), t_out, 1e-6, 1e-6, 100_000, 0.0,
                              y_out, stats, events)
    assert status == solver.NON_FINITE
    reached = np.all(np.isfinite(y_out), axis=1)
    n = int(reached.sum())
    assert 5 < n < t_out.size and reached[:n].all() and np.isnan(y_out[n:]).all()
    assert stats[solver.ST_REJECTED] > 0
