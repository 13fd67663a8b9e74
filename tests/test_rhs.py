"""The compiled right-hand side against independent references."""
import numpy as np
import pytest

from gvlmodel import KP, State, im_effect, initial_state, kernel_parameters
from gvlmodel.model import model
from gvlmodel.model.model import rhs
from gvlmodel.model import symbolic

from conftest import draw_parameters


def reference_terms(y, p, e):
    """Plain-NumPy transcription of the system in gvlmodel.model.model's docstring, one list of
    signed terms per equation (so a test can scale its tolerance to each equation's fluxes)."""
    X0, X1, X2, X3, Q, Y0, Y1, Y2, Y3, R0, R1, Z, D = y
    phi = 1.0 / (1.0 + X0 / p[KP.KN])
    grow = p[KP.RY] * (1.0 - (D + Q + Y0 + R0) / p[KP.KL])
    k = p[KP.ZKILL] * Z
    u = Y3 / p[KP.ZK]
    return [
        [p[KP.RX] * phi * X0, -p[KP.D0] * X0],
        [p[KP.AX] * X0, -p[KP.D1] * X1],
        [p[KP.BX] * X1, -p[KP.D2] * X2],
        [p[KP.CX] * X2, -p[KP.D3] * X3],
        [p[KP.QIN] * Y0, -p[KP.QOUT] * Q, -p[KP.DIN] * Q, p[KP.DOUT] * D, -p[KP.ZQREL] * k * Q],
        [grow * Y0, -p[KP.D0] * Y0, -p[KP.IMKILL] * e * Y0, -k * Y0, -p[KP.QIN] * Y0, p[KP.QOUT] * Q],
        [p[KP.AY] * Y0, -p[KP.D1] * Y1, -p[KP.IMKILLP] * e * Y1, -k * Y1],
        [p[KP.BY] * Y1, p[KP.BY] * R1, -p[KP.D2] * Y2, -k * Y2],
        [p[KP.CY] * Y2, -p[KP.D3] * Y3, -k * Y3],
        [grow * R0, -p[KP.D0] * R0, -k * R0],
        [p[KP.AY] * R0, -p[KP.D1] * R1, -k * R1],
        [p[KP.ZIN], -p[KP.ZD] * Z, (1 - p[KP.ZSUPP]) * p[KP.ZRHO] * 2 * u / (1 + u * u) * Z],
        [p[KP.DIN] * Q, -p[KP.DOUT] * D, -p[KP.ZDREL] * k * D],
    ]


def reference_rhs(y, p, e):
    return np.array([sum(t) for t in reference_terms(y, p, e)])


def gross_flux(y, p, e):
    """Per equation, the sum of the absolute values of its terms: the scale of its rounding error."""
    return np.array([sum(abs(x) for x in t) for t in reference_terms(y, p, e)])


#: agreement required per equation, relative to its gross flux (rounding is ~1e-15 of it)
FLUX_RTOL = 1e-13


def assert_equal_to_flux_rounding(a, b, y, kp, e, what):
    gross = gross_flux(y, kp, e)
    bad = np.abs(a - b) > FLUX_RTOL * gross
    assert not bad.any(), (f"{what} differ in {[State(i).name for i in np.flatnonzero(bad)]}: "
                           f"{a[bad]} vs {b[bad]} (gross flux {gross[bad]})")


def random_states(rng, n):
    base = initial_state(bcr_abl=1.0)
    base[State.Z] = 1e4
    base[State.R0] = 0.01 * base[State.Y0]  # a resistant subclone, so its equations are exercised
    base[State.R1] = 0.01 * base[State.Y1]
    # spread every compartment over 6 orders of magnitude around a typical value
    return base * 10.0 ** rng.uniform(-3, 3, size=(n, base.size))


@pytest.mark.parametrize("variant", ["H0", "H1", "H2"])
def test_compiled_rhs_equals_numpy_reference(rng, variant):
    for _ in range(200):
        params = draw_parameters(rng)
        for transplant in (True, False):
            kp = kernel_parameters(params, variant, transplant)
            e = rng.uniform(0, 1.3)
            for y in random_states(rng, 3):
                out = np.empty_like(y)
                rhs(y, kp, e, out)
                assert_equal_to_flux_rounding(out, reference_rhs(y, kp, e), y, kp, e, "compiled and NumPy RHS")


def test_sympy_form_equals_kernel(rng):
    for _ in range(200):
        kp = kernel_parameters(draw_parameters(rng), "H2", bool(rng.integers(2)))
        e = rng.uniform(0, 1.3)
        y = random_states(rng, 1)[0]
        out = np.empty_like(y)
        rhs(y, kp, e, out)
        sym = np.asarray(symbolic.rhs_numeric(y, kp, e), dtype=float)
        assert_equal_to_flux_rounding(sym, out, y, kp, e, "sympy form and compiled RHS")
        assert_equal_to_flux_rounding(sym, reference_rhs(y, kp, e), y, kp, e, "sympy form and NumPy reference")


def test_sympy_jacobian_equals_complex_step_derivative_of_kernel(rng):
    """Complex-step differentiation of the compiled kernel (exact to rounding)."""
    for _ in range(20):
        kp = kernel_parameters(draw_parameters(rng), "H2", True)
        y = random_states(rng, 1)[0]
        e = rng.uniform(0, 1.3)
        jac = np.empty((y.size, y.size))
        out = np.empty(y.size, dtype=complex)
        for j in range(y.size):
            yc = y.astype(complex)
            h = 1e-20 * max(abs(y[j]), 1.0)
            yc[j] += 1j * h
            rhs(yc, kp, e, out)
            jac[:, j] = out.imag / h
        exact = symbolic.jacobian_numeric(y, kp, e)
        np.testing.assert_allclose(jac, exact, rtol=1e-10, atol=1e-13 * np.max(np.abs(exact)))


def test_im_effect_is_zero_off_drug_one_at_400_and_increasing():
    assert im_effect(0.0, 979.0, 500.0) == 0.0
    assert im_effect(400.0, 979.0, 500.0) == pytest.approx(1.0, rel=1e-15)
    effects = [im_effect(d, 979.0, 500.0) for d in (400, 600, 800)]
    assert effects[0] < effects[1] < effects[2]
    # Emax: saturates below 1/E(400)
    assert model.im_effect(1e9, 979.0, 500.0) < (979.0 + 500.0) / 979.0  # the kernel: no dose cap


def test_im_effect_is_emax_with_hill_coefficient_one():
    """Closed-form values: with ``css_400 = ec50`` the 400 mg/day effect is 1/2 of Emax, so
    ``E(d) = 2 (d/400) / (d/400 + 1)``; with ``css_400 = 1.5 ec50`` 800 mg/day sits at 3 ec50."""
    for dose, expected in ((200.0, 2.0 / 3.0), (400.0, 1.0), (600.0, 1.2), (800.0, 4.0 / 3.0)):
        assert im_effect(dose, 500.0, 500.0) == pytest.approx(expected, rel=1e-14)
    assert im_effect(800.0, 750.0, 500.0) == pytest.approx(0.75 / 0.6, rel=1e-14)
