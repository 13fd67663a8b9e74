r"""The model's equations, written once, as named fluxes in compiled kernels.

State (cells): normal hierarchy ``X0..X3``; quiescent LSCs ``Q``; cycling LSCs
``Y0``; leukemic progenitors, differentiated and mature cells ``Y1..Y3``;
effector cells ``Z``.  With the imatinib effect ``e`` (dimensionless, 1 at
400 mg/day, 0 off drug; :func:`im_effect`), the stem niche signal
``S = X0 + Q + Y0``, feedback ``phi = 1 / (1 + S / K_N)``, leukemic load
``L = Q + Y0 + Y1 + Y2 + Y3`` and per-cell immune kill rate ``k = z_kill * Z``:

.. math::

    \dot X_0 &= (r_x \varphi - d_0) X_0 \\
    \dot X_1 &= a_x X_0 - d_1 X_1 \\
    \dot X_2 &= b_x X_1 - d_2 X_2 \\
    \dot X_3 &= c_x X_2 - d_3 X_3 \\
    \dot Q   &= q_{in} Y_0 - q_{out} Q - \kappa_Q k Q \\
    \dot Y_0 &= (r_y \varphi - d_0 - k_{IM} e - k) Y_0 - q_{in} Y_0 + q_{out} Q \\
    \dot Y_1 &= \frac{a_y}{1 + (F_a - 1) e} Y_0 - (d_1 + k) Y_1 \\
    \dot Y_2 &= \frac{b_y}{1 + (F_b - 1) e} Y_1 - (d_2 + k) Y_2 \\
    \dot Y_3 &= c_y Y_2 - (d_3 + k) Y_3 \\
    \dot Z   &= b_z - d_z Z + (1 - s)\,\rho\, \frac{2 (L/K_z)}{1 + (L/K_z)^2} Z

Mechanisms and sources (details and values in :mod:`gvlmodel.parameters`):

* self-renewal with homeostatic niche feedback shared by normal and leukemic
  stem cells; hierarchy rates of Michor et al., Nature 2005;
* quiescence exchange ``q_in``/``q_out`` (Stein et al. 2011; Fassoni et al. 2018),
  quiescent LSCs neither divide nor respond to imatinib;
* imatinib (Emax on steady-state exposure): kills cycling LSCs
  (Roeder et al. 2006, Stein et al. 2011) and divides the leukemic progenitor
  and differentiated outputs by ``F_a``, ``F_b`` at 400 mg/day (Michor 2005);
* effectors with influx ``b_z``, death ``d_z``, expansion in an immune window
  of leukemic load (Hähnel et al., Cancer Res 2020: ``p_z L/(K_z^2+L^2)`` with
  ``p_z = 2 rho K_z``, so the per-capita expansion peaks at ``rho`` when
  ``L = K_z``), scaled down by immunosuppression ``s``; mass-action killing of
  every leukemic compartment, quiescent LSCs with relative susceptibility
  ``kappa_Q`` (Moore & Li 2004; DeConde et al. 2005);
* the window exists iff ``(1 - s) rho > d_z``; its edges are the roots of
  ``(1 - s) rho 2 u / (1 + u^2) = d_z`` with ``u = L/K_z``
  (:func:`gvlmodel.symbolic.window_edges`).

Extinction (fewer than one LSC) is an event of the integrator, not a term here.
The variants H0/H1/H2 differ only in the kernel parameter vector
(:func:`gvlmodel.parameters.kernel_parameters`).
"""
from __future__ import annotations


from ._jit import jit
from .indices import KP, State

# --------------------------------------------------------------------------
# imatinib: dose -> exposure -> effect
# --------------------------------------------------------------------------


@jit
def im_effect(dose_mg, css_400, ec50):
    """Imatinib effect relative to 400 mg/day (0 off drug, 1 at 400 mg/day).

    Steady-state exposure is dose-linear, ``C = css_400 * dose / 400``: with a
    half-life of about 18 h, exposure equilibrates within days, far faster than
    the cell dynamics, so a constant exposure per dose level is assumed.  The
    effect is Emax with Hill coefficient 1, normalised to the 400 mg/day level
    so that the fold reductions and kill rates in the table are the reference
    (400 mg/day) values.
    """
    if dose_mg <= 0.0:
        return 0.0
    c = css_400 * dose_mg / 400.0
    return (c / (c + ec50)) / (css_400 / (css_400 + ec50))


@jit
def im_effects(dose_mg, css_400, ec50, out):
    """:func:`im_effect` of one dose for many patients (arrays ``css_400``, ``ec50`` -> ``out``)."""
    for i in range(out.shape[0]):
        out[i] = im_effect(dose_mg, css_400[i], ec50[i])


# --------------------------------------------------------------------------
# named fluxes
# --------------------------------------------------------------------------


@jit(inline="always")
def niche_feedback(stem, kn):
    """Homeostatic feedback ``phi = 1/(1 + S/K_N)`` on stem-cell self-renewal (``S = X0 + Q + Y0``)."""
    return 1.0 / (1.0 + stem / kn)


@jit(inline="always")
def im_divisor(fold, e):
    """Division of a leukemic output by imatinib: ``1 + (F - 1) e``."""
    return 1.0 + (fold - 1.0) * e


@jit(inline="always")
def effector_stimulation(load, zk, supp, rho):
    """Per-capita effector expansion ``(1-s) rho 2u/(1+u^2)``, ``u = L/K_z``."""
    u = load / zk
    return (1.0 - supp) * rho * 2.0 * u / (1.0 + u * u)


@jit(inline="always")
def rhs_strided(y, yb, p, pb, e, out, ob, st, lane):
    """The right-hand side on strided storage: the one place the equations are written.

    Component ``i`` of the state is ``y[yb + i * st + lane]``, parameter ``k`` is
    ``p[pb + k * st + lane]`` and derivative ``i`` goes to ``out[ob + i * st + lane]``.
    :func:`rhs` calls it with stride 1 (one state vector); the lock-step cohort
    engine (:mod:`gvlmodel.lanes`) calls it with stride ``W`` on one flat
    workspace, lane by lane, where constant offsets let LLVM vectorise across
    patients.  Inlined at the numba IR level, so both uses compile to straight
    loads and stores.  See the module docstring for the system.
    """
    x0 = y[yb + State.X0 * st + lane]
    x1 = y[yb + State.X1 * st + lane]
    x2 = y[yb + State.X2 * st + lane]
    x3 = y[yb + State.X3 * st + lane]
    q = y[yb + State.Q * st + lane]
    y0 = y[yb + State.Y0 * st + lane]
    y1 = y[yb + State.Y1 * st + lane]
    y2 = y[yb + State.Y2 * st + lane]
    y3 = y[yb + State.Y3 * st + lane]
    z = y[yb + State.Z * st + lane]
    d0 = p[pb + KP.D0 * st + lane]
    d1 = p[pb + KP.D1 * st + lane]
    d2 = p[pb + KP.D2 * st + lane]
    d3 = p[pb + KP.D3 * st + lane]

    phi = niche_feedback(x0 + q + y0, p[pb + KP.KN * st + lane])
    immune_kill = p[pb + KP.ZKILL * st + lane] * z  # per leukemic cell per day
    load = q + y0 + y1 + y2 + y3

    # self-renewal and death of stem cells
    renewal_x = p[pb + KP.RX * st + lane] * phi * x0
    renewal_y = p[pb + KP.RY * st + lane] * phi * y0
    death_x0 = d0 * x0
    death_y0 = d0 * y0
    # quiescence exchange
    to_quiescence = p[pb + KP.QIN * st + lane] * y0
    from_quiescence = p[pb + KP.QOUT * st + lane] * q
    # differentiation (production of the next compartment)
    diff_x1 = p[pb + KP.AX * st + lane] * x0
    diff_x2 = p[pb + KP.BX * st + lane] * x1
    diff_x3 = p[pb + KP.CX * st + lane] * x2
    diff_y1 = p[pb + KP.AY * st + lane] / im_divisor(p[pb + KP.IMFA * st + lane], e) * y0
    diff_y2 = p[pb + KP.BY * st + lane] / im_divisor(p[pb + KP.IMFB * st + lane], e) * y1
    diff_y3 = p[pb + KP.CY * st + lane] * y2
    # imatinib kill of cycling LSCs
    drug_kill_y0 = p[pb + KP.IMKILL * st + lane] * e * y0
    # immune kill
    immune_kill_q = p[pb + KP.ZQREL * st + lane] * immune_kill * q
    immune_kill_y0 = immune_kill * y0
    immune_kill_y1 = immune_kill * y1
    immune_kill_y2 = immune_kill * y2
    immune_kill_y3 = immune_kill * y3
    # effector turnover and expansion
    influx_z = p[pb + KP.ZIN * st + lane]
    death_z = p[pb + KP.ZD * st + lane] * z
    expansion_z = effector_stimulation(load, p[pb + KP.ZK * st + lane], p[pb + KP.ZSUPP * st + lane],
                                       p[pb + KP.ZRHO * st + lane]) * z

    out[ob + State.X0 * st + lane] = renewal_x - death_x0
    out[ob + State.X1 * st + lane] = diff_x1 - d1 * x1
    out[ob + State.X2 * st + lane] = diff_x2 - d2 * x2
    out[ob + State.X3 * st + lane] = diff_x3 - d3 * x3
    out[ob + State.Q * st + lane] = to_quiescence - from_quiescence - immune_kill_q
    out[ob + State.Y0 * st + lane] = (renewal_y - death_y0 - drug_kill_y0 - immune_kill_y0 - to_quiescence
                                      + from_quiescence)
    out[ob + State.Y1 * st + lane] = diff_y1 - d1 * y1 - immune_kill_y1
    out[ob + State.Y2 * st + lane] = diff_y2 - d2 * y2 - immune_kill_y2
    out[ob + State.Y3 * st + lane] = diff_y3 - d3 * y3 - immune_kill_y3
    out[ob + State.Z * st + lane] = influx_z - death_z + expansion_z


@jit
def rhs(y, p, e, out):
    """Right-hand side ``dy/dt`` into ``out`` (allocation-free).

    ``y`` state (cells), ``p`` kernel parameters (:class:`KP`), ``e`` imatinib
    effect (:func:`im_effect`).  See the module docstring for the system; the
    fluxes are written in :func:`rhs_strided`.
    """
    rhs_strided(y, 0, p, 0, e, out, 0, 1, 0)
