r"""The model's equations, written once, as named fluxes in compiled kernels.

State (cells): normal (donor) hierarchy ``X0..X3``; quiescent LSCs ``Q``;
cycling LSCs ``Y0``; deeply dormant LSCs ``D``; leukemic progenitors,
differentiated and mature cells ``Y1..Y3``; an imatinib-resistant subclone's
stem cells ``R0`` and progenitors ``R1``; effector cells ``Z``.  With the imatinib effect ``e`` (dimensionless,
1 at 400 mg/day, 0 off drug; :func:`im_effect`), normal niche feedback
``phi = 1 / (1 + X0 / K_N)``, leukemic stem-cell crowding
``g = 1 - (D + Q + Y0 + R0) / K_L``, per-cell immune kill rate ``k = z_kill Z`` and
the effector stimulus ``u = Y3 / K_z`` (leukemic mature cells, the cells the
BCR-ABL ratio counts):

.. math::

    \dot X_0 &= (r_x \varphi - d_0) X_0 \\
    \dot X_1 &= a_x X_0 - d_1 X_1 \\
    \dot X_2 &= b_x X_1 - d_2 X_2 \\
    \dot X_3 &= c_x X_2 - d_3 X_3 \\
    \dot D   &= \delta_{in} Q - \delta_{out} D - \kappa_D k D \\
    \dot Q   &= q_{in} Y_0 - q_{out} Q - \delta_{in} Q + \delta_{out} D - \kappa_Q k Q \\
    \dot Y_0 &= (r_y g - d_0 - k_{IM} e - k - q_{in}) Y_0 + q_{out} Q \\
    \dot Y_1 &= a_y Y_0 - (d_1 + k_{IM,P} e + k) Y_1 \\
    \dot Y_2 &= b_y (Y_1 + R_1) - (d_2 + k) Y_2 \\
    \dot Y_3 &= c_y Y_2 - (d_3 + k) Y_3 \\
    \dot R_0 &= (r_y g - d_0 - k) R_0 \\
    \dot R_1 &= a_y R_0 - (d_1 + k) R_1 \\
    \dot Z   &= b_z - d_z Z + (1 - s)\,\rho\, \frac{2 u}{1 + u^2} Z

Mechanisms and sources (details and values in :mod:`gvlmodel.model.parameters`):

* **self-renewal**: normal stem cells under homeostatic niche feedback
  (Michor et al., Nature 2005); leukemic stem cells grow logistically towards a
  carrying capacity (Hähnel et al., Cancer Res 2020; Fassoni et al.,
  Haematologica 2018).  The two pools are regulated separately: the leukemic
  clone does not displace donor stem cells (a modelling choice, stated in the
  docs), so chimerism enters through the measured ratio;
* **quiescence**: cycling LSCs enter (``q_in``) and leave (``q_out``) a
  quiescent pool that neither divides, differentiates nor responds to imatinib;
  ``q_in / q_out`` about 6 keeps ~85 % of LSCs quiescent in an untreated clone
  (Stein et al., Clin Cancer Res 2011);
* **deep dormancy**: quiescent LSCs also exchange, slowly, with a deeply
  dormant pool ``D`` (rates ``delta_in``, ``delta_out``) that imatinib cannot
  reach and effectors kill at the relative susceptibility ``kappa_D`` (0 by
  default: deeply quiescent stem cells switch off antigen presentation and
  escape T cells until they re-enter cycle, Agudo et al., Immunity 2018).  Under
  continued imatinib the BCR-ABL decline then has a third, slowest phase set by
  ``delta_out`` (triphasic decline on long-term imatinib: Tang et al., Blood
  2011), and patients with undetectable BCR-ABL for years still carry LSCs
  (Chomel et al., Blood 2011 and Oncotarget 2016), which regrow after a stop
  unless effectors hold them.  Dormant, label-retaining stem cells that divide
  several-fold less often than their active siblings: Wilson et al., Cell 2008;
* **differentiation**: cycling LSCs produce progenitors, which live weeks
  (``d1`` 0.05/day from Stein 2011's early progenitors, ``d2`` 0.05/day from Michor 2005), and mature cells;
* **drug kill**: imatinib (Emax on steady-state exposure) kills cycling LSCs
  (``k_IM``; Roeder et al., Nat Med 2006; Stein 2011) and proliferating
  leukemic progenitors (``k_IM,P``; Abe et al. 2008; Corbin et al. 2011).  No
  output is blocked: when imatinib stops, the progenitor pool regrows from the
  surviving stem cells at its own turnover (weeks), and the clone regrows;
  an extinct clone leaves only progenitors that die out;
* **resistance**: the subclone ``R0``/``R1`` is insensitive to imatinib and
  otherwise behaves like cycling sensitive cells; it shares the stem-cell
  carrying capacity and feeds the same differentiated and mature compartments;
* **immune kill** and **effector expansion**: effectors with influx ``b_z``
  and death ``d_z`` expand inside an immune window of leukemic load (Hähnel
  2020: ``p_z y z / (K_z^2 + y^2)`` with ``p_z = 2 rho K_z``, so the per-capita
  expansion peaks at ``rho`` when ``Y3 = K_z``), scaled down by
  immunosuppression ``s``, and kill every leukemic compartment by mass action,
  quiescent LSCs with relative susceptibility ``kappa_Q`` and deeply dormant
  ones with ``kappa_D`` (Moore & Li 2004; DeConde et al. 2005).  Immune control
  therefore holds the cycling and quiescent cells while the dormant reservoir
  drains only through ``delta_out``: a controlled patient carries residual LSCs
  at low BCR-ABL;
* the window exists iff ``(1 - s) rho > d_z``; its edges are the roots of
  ``(1 - s) rho 2 u / (1 + u^2) = d_z`` (:func:`gvlmodel.model.symbolic.window_edges`).
  ``K_z`` is set from the table's ``z_half`` (BCR-ABL % at normal donor
  hematopoiesis), so the window sits where the immune-window literature puts it
  in BCR-ABL terms.

Extinction (fewer than one LSC, ``D + Q + Y0 + R0``) is an event of the
integrator, not a term here.  The variants H0/H1/H2 differ only in the kernel
parameter vector (:func:`gvlmodel.model.parameters.kernel_parameters`).
"""
from __future__ import annotations


from ..core._jit import jit
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
    """Homeostatic feedback ``phi = 1/(1 + X0/K_N)`` on normal stem-cell self-renewal, as
    ``K_N / (K_N + X0)`` (one division: the right-hand side's divisions bound its speed)."""
    return kn / (kn + stem)


@jit(inline="always")
def crowding(lsc, kl):
    """Logistic crowding ``1 - (D + Q + Y0 + R0)/K_L`` of leukemic stem-cell self-renewal."""
    return 1.0 - lsc / kl


@jit(inline="always")
def lsc_count(y, yb, st, lane):
    """Leukemic stem cells of both subclones, ``D + Q + Y0 + R0`` (the extinction variable)."""
    return (y[yb + State.D * st + lane] + y[yb + State.Q * st + lane] + y[yb + State.Y0 * st + lane]
            + y[yb + State.R0 * st + lane])


@jit(inline="always")
def zero_lsc(y, yb, st, lane):
    """Remove the clone's stem cells (extinction): ``D = Q = Y0 = R0 = 0``."""
    y[yb + State.D * st + lane] = 0.0
    y[yb + State.Q * st + lane] = 0.0
    y[yb + State.Y0 * st + lane] = 0.0
    y[yb + State.R0 * st + lane] = 0.0


@jit(inline="always")
def effector_stimulation(load, zk, supp, rho):
    """Per-capita effector expansion ``(1-s) rho 2u/(1+u^2)``, ``u = Y3/K_z``, as
    ``(1-s) rho 2 Y3 K_z / (K_z^2 + Y3^2)`` (one division)."""
    return (1.0 - supp) * rho * 2.0 * load * zk / (zk * zk + load * load)


@jit(inline="always")
def normal_rhs_strided(y, yb, p, pb, out, ob, st, lane):
    """Derivatives of the normal (donor) hierarchy ``X0..X3``: self-renewal under niche feedback,
    death and differentiation.

    The normal hierarchy is an autonomous block of the system: none of its fluxes reads a leukemic
    or effector state or the drug effect (the clone does not displace donor stem cells, see the
    module docstring), so :func:`clone_rhs_strided` and this function together are the whole right-hand
    side.  Storage as in :func:`rhs_strided`.
    """
    x0 = y[yb + State.X0 * st + lane]
    x1 = y[yb + State.X1 * st + lane]
    x2 = y[yb + State.X2 * st + lane]
    x3 = y[yb + State.X3 * st + lane]
    phi = niche_feedback(x0, p[pb + KP.KN * st + lane])
    # self-renewal and death of stem cells
    renewal_x = p[pb + KP.RX * st + lane] * phi * x0
    death_x0 = p[pb + KP.D0 * st + lane] * x0
    # differentiation (production of the next compartment)
    diff_x1 = p[pb + KP.AX * st + lane] * x0
    diff_x2 = p[pb + KP.BX * st + lane] * x1
    diff_x3 = p[pb + KP.CX * st + lane] * x2
    out[ob + State.X0 * st + lane] = renewal_x - death_x0
    out[ob + State.X1 * st + lane] = diff_x1 - p[pb + KP.D1 * st + lane] * x1
    out[ob + State.X2 * st + lane] = diff_x2 - p[pb + KP.D2 * st + lane] * x2
    out[ob + State.X3 * st + lane] = diff_x3 - p[pb + KP.D3 * st + lane] * x3


@jit(inline="always")
def clone_rhs_strided(y, yb, p, pb, e, out, ob, st, lane):
    """Derivatives of the leukemic clone (``D, Q, Y0..Y3, R0, R1``) and the effectors ``Z``.

    Reads no normal state: the leukemic and effector fluxes depend on the clone, the effectors and
    the drug effect ``e`` only.  Storage as in :func:`rhs_strided`.
    """
    q = y[yb + State.Q * st + lane]
    y0 = y[yb + State.Y0 * st + lane]
    y1 = y[yb + State.Y1 * st + lane]
    y2 = y[yb + State.Y2 * st + lane]
    y3 = y[yb + State.Y3 * st + lane]
    r0 = y[yb + State.R0 * st + lane]
    r1 = y[yb + State.R1 * st + lane]
    z = y[yb + State.Z * st + lane]
    dd = y[yb + State.D * st + lane]
    d0 = p[pb + KP.D0 * st + lane]
    d1 = p[pb + KP.D1 * st + lane]
    d2 = p[pb + KP.D2 * st + lane]
    d3 = p[pb + KP.D3 * st + lane]
    ay = p[pb + KP.AY * st + lane]

    growth_y = p[pb + KP.RY * st + lane] * crowding(dd + q + y0 + r0, p[pb + KP.KL * st + lane])
    immune_kill = p[pb + KP.ZKILL * st + lane] * z  # per leukemic cell per day

    # self-renewal and death of stem cells
    renewal_y = growth_y * y0
    renewal_r = growth_y * r0
    death_y0 = d0 * y0
    death_r0 = d0 * r0
    # quiescence exchange
    to_quiescence = p[pb + KP.QIN * st + lane] * y0
    from_quiescence = p[pb + KP.QOUT * st + lane] * q
    # deep dormancy exchange (quiescent <-> dormant)
    to_dormancy = p[pb + KP.DIN * st + lane] * q
    from_dormancy = p[pb + KP.DOUT * st + lane] * dd
    # differentiation (production of the next compartment)
    diff_y1 = ay * y0
    diff_r1 = ay * r0
    diff_y2 = p[pb + KP.BY * st + lane] * (y1 + r1)
    diff_y3 = p[pb + KP.CY * st + lane] * y2
    # imatinib kill of cycling LSCs and of proliferating progenitors (sensitive subclone only)
    drug_kill_y0 = p[pb + KP.IMKILL * st + lane] * e * y0
    drug_kill_y1 = p[pb + KP.IMKILLP * st + lane] * e * y1
    # immune kill
    immune_kill_q = p[pb + KP.ZQREL * st + lane] * immune_kill * q
    immune_kill_d = p[pb + KP.ZDREL * st + lane] * immune_kill * dd
    immune_kill_y0 = immune_kill * y0
    immune_kill_y1 = immune_kill * y1
    immune_kill_y2 = immune_kill * y2
    immune_kill_y3 = immune_kill * y3
    immune_kill_r0 = immune_kill * r0
    immune_kill_r1 = immune_kill * r1
    # effector turnover and expansion
    influx_z = p[pb + KP.ZIN * st + lane]
    death_z = p[pb + KP.ZD * st + lane] * z
    expansion_z = effector_stimulation(y3, p[pb + KP.ZK * st + lane], p[pb + KP.ZSUPP * st + lane],
                                       p[pb + KP.ZRHO * st + lane]) * z

    out[ob + State.Q * st + lane] = (to_quiescence - from_quiescence - to_dormancy + from_dormancy
                                     - immune_kill_q)
    out[ob + State.D * st + lane] = to_dormancy - from_dormancy - immune_kill_d
    out[ob + State.Y0 * st + lane] = (renewal_y - death_y0 - drug_kill_y0 - immune_kill_y0 - to_quiescence
                                      + from_quiescence)
    out[ob + State.Y1 * st + lane] = diff_y1 - d1 * y1 - drug_kill_y1 - immune_kill_y1
    out[ob + State.Y2 * st + lane] = diff_y2 - d2 * y2 - immune_kill_y2
    out[ob + State.Y3 * st + lane] = diff_y3 - d3 * y3 - immune_kill_y3
    out[ob + State.R0 * st + lane] = renewal_r - death_r0 - immune_kill_r0
    out[ob + State.R1 * st + lane] = diff_r1 - d1 * r1 - immune_kill_r1
    out[ob + State.Z * st + lane] = influx_z - death_z + expansion_z


@jit(inline="always")
def rhs_strided(y, yb, p, pb, e, out, ob, st, lane):
    """The right-hand side on strided storage: the one place the equations are written.

    Component ``i`` of the state is ``y[yb + i * st + lane]``, parameter ``k`` is
    ``p[pb + k * st + lane]`` and derivative ``i`` goes to ``out[ob + i * st + lane]``.
    :func:`rhs` calls it with stride 1 (one state vector); the lock-step cohort
    engine (:mod:`gvlmodel.clinical.lanes`) calls it with stride ``W`` on one flat
    workspace, lane by lane, where constant offsets let LLVM vectorise across
    patients.  Inlined at the numba IR level, so both uses compile to straight
    loads and stores.  See the module docstring for the system; the fluxes are
    written in its two blocks, :func:`normal_rhs_strided` (the autonomous normal
    hierarchy) and :func:`clone_rhs_strided` (clone and effectors).
    """
    normal_rhs_strided(y, yb, p, pb, out, ob, st, lane)
    clone_rhs_strided(y, yb, p, pb, e, out, ob, st, lane)


@jit
def rhs(y, p, e, out):
    """Right-hand side ``dy/dt`` into ``out`` (allocation-free).

    ``y`` state (cells), ``p`` kernel parameters (:class:`KP`), ``e`` imatinib
    effect (:func:`im_effect`).  See the module docstring for the system; the
    fluxes are written in :func:`rhs_strided`.
    """
    rhs_strided(y, 0, p, 0, e, out, 0, 1, 0)
