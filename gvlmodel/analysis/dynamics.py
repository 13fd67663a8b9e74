r"""Dynamics of immune control: equilibria, their basins, bifurcations, the immune window, minimal IM course.

``gvlmodel dynamics CONFIG.toml --out DIR`` (public API: :func:`load_dynamics_config`,
:func:`run_dynamics`; building blocks :func:`equilibria`, :func:`reduced_state`,
:func:`classify_basins`, :func:`window`, :func:`min_im_duration`).  The analysis is of
the model of :mod:`gvlmodel.model.model` (sympy form: :mod:`gvlmodel.model.symbolic`) for one
parameter set (default: the table's values, variant H2) in two settings:
``transplanted`` (donor effector parameters ``*_allo``) and ``non_transplanted``
(autologous ``*_auto``).

How equilibria are found
------------------------
The normal hierarchy is regulated by its own niche (``phi`` depends on ``X0`` only), so
at every equilibrium it sits at homeostasis (``X0 = x0_eq``; ``X0 = 0`` equilibria are
unstable, ``r_x > d0``, and not enumerated).  A clone at equilibrium is either the
imatinib-sensitive one (``R0 = R1 = 0``) or the resistant one (``D = Q = Y0 = Y1 = 0``):
both together would need ``kappa_Q k = 0`` and ``kappa_D k = 0``.  Each clone family is parametrised by its
stem-cell count ``S`` (``D + Q + Y0`` or ``R0``), with ``k = z_kill Z`` the per-cell
immune kill rate:

* crowding ``g = 1 - S/K_L`` and the stem-cell balance fix ``k(S)`` in closed form
  (sensitive: ``(G - k) + q_out q_in / a(k) = 0`` with
  ``G = r_y g - d0 - k_IM e - q_in`` and the quiescent cells' equilibrium loss
  ``a(k) = q_out + kappa_Q k + delta_in kappa_D k / (delta_out + kappa_D k)``, one root
  ``k >= 0`` found by Brent's method; resistant: ``k = r_y g - d0``), so ``Z = k/z_kill``;
  ``Q = Y0 q_in/a(k)``, ``D = Q delta_in/(delta_out + kappa_D k)`` and the progeny follow by
  production / loss;
* the effector balance ``b_z - d_z Z + (1-s) rho 2u/(1+u^2) Z = 0`` (``u = Y3/K_z``) is
  then one scalar equation in ``S``; its roots are bracketed on a log grid of ``S``
  (and of ``S_max - S``) and solved by Brent's method.

Typically (H2) the sensitive family has three roots: the **controlled** equilibrium
(few LSCs, mostly quiescent, effectors expanded so that ``k`` balances cycling-LSC
growth, BCR-ABL below the window peak), the **threshold** (a saddle between control and
relapse) and the **high-burden** equilibrium (the clone near capacity, ~95 % BCR-ABL).
Besides them: **leukemia_free** (sympy closed form
:func:`gvlmodel.model.symbolic.healthy_steady_state_sympy`; zero LSCs; in simulations the
clone is also declared extinct below one LSC, the integrator's extinction event, which
this ODE equilibrium does not know) and the resistant family's roots
(``resistant_*``, the only leukemic equilibria on imatinib).

Checks of every equilibrium: the compiled :func:`gvlmodel.model.model.rhs` residual (per
compartment, relative to turnover) below :data:`RESIDUAL_TOL`; the sympy right-hand side
(:func:`gvlmodel.model.symbolic.rhs_numeric`) at the same state; for the sensitive family the
effector balance is also derived by sympy from :func:`gvlmodel.model.symbolic.rhs_sympy`
(steady-state substitutions, numerator polynomial in ``Z``) and its positive roots
(``nroots``, 40 digits) must be the enumerated ones (``sympy_polynomial`` in
``steady_states.json``); with static effectors (H0/H1) the high-burden state equals
:func:`gvlmodel.model.symbolic.leukemic_steady_state_sympy` exactly.  Stability: eigenvalues
of the sympy Jacobian (:func:`gvlmodel.model.symbolic.jacobian_numeric`).  ``stable`` is
stability for a patient without resistant cells (the invariant ``R0 = R1 = 0``
subspace at a sensitive or leukemia-free equilibrium: the ``R0``, ``R1`` directions
decouple, and their eigenvalue ``r_y g - d0 - k`` is reported as
``resistant_invasion_rate``); ``stable_full`` uses all 13 eigenvalues.  A resistant
clone never enters quiescence, so with ``kappa_Q k > 0`` it out-grows the sensitive one
off imatinib (invasion rate ``q_in (a(k) - q_out) / a(k) > 0``).  Long
simulations of the full model from perturbed states confirm each verdict
(``simulation_check``).

The reduced plane and the basins
--------------------------------
State ``(N, Z)`` with ``N = D + Q + Y0`` (sensitive LSCs); :func:`reduced_state` builds a
full state from it at IM effect ``e``: the D/Q/Y0 split of the leading eigenvector of the
(D, Q, Y0) block (the shape a clone takes under that treatment; at an equilibrium it is the
equilibrium split), the progeny at production/loss balance behind ``Y0`` under ``e``
and ``k = z_kill Z``, normal hierarchy at homeostasis, no resistant cells.  Field on the
plane: ``growth_lsc`` = that leading eigenvalue (the stem pool's per-capita growth, 1/day)
and ``growth_z`` = ``f_Z / Z`` at the slaved ``Y3``; their zero contours are the
nullclines and cross at the equilibria (exactly: the LSC nullcline is ``Z = k(N)/z_kill``).
**Basins** are computed with the full compiled model (:func:`gvlmodel.model.simulate.simulate`,
off IM, extinction event at ``extinction_threshold`` LSCs) from
``reduced_state(N, Z, e_stop)`` (``stop_dose_mg``: the clone's shape when imatinib
stops): end state extinct = ``eradicated``, near (within half a decade of LSCs) the
controlled equilibrium = ``controlled``, near the high-burden one = ``relapse``.

Output files (in ``--out``; all written atomically, ``provenance.json`` last)
-------------------------------------------------------------------------
``steady_states.json``
    ``{"parameter_set", "variant", "parameters", "notes", "settings": {SETTING:
    {"transplant", "kernel_parameters", "window", "thresholds", "doses": {"<dose_mg>":
    {"dose_mg", "im_effect", "equilibria": [EQ, ...], "sympy_polynomial", "long_simulations"}}}}}``;
    ``EQ`` = ``{"branch", "clone", "stable", "stable_full", "marginal", "state": {X0..Z},
    "lsc", "quiescent_fraction", "load" (leukemic mature cells Y3), "bcr_abl_percent",
    "effectors", "kill_rate", "eigenvalues_real", "eigenvalues_imag",
    "max_real_eigenvalue", "max_real_eigenvalue_full", "resistant_invasion_rate",
    "residual", "sympy_residual", "below_extinction_threshold", "simulation_check",
    "sympy_static" (high_burden)}``.  ``branch``: ``leukemia_free``, ``controlled``,
    ``threshold``, ``high_burden``, ``resistant_controlled``, ``resistant_threshold``,
    ``resistant_high_burden`` (``other`` / ``resistant_other`` for further roots).
    ``window`` = :func:`window`.
``bifurcation.csv``
    one row per equilibrium (leukemia-free and sensitive clone) per grid point:
    ``setting, dose_mg, parameter (z_expand_allo|z_expand_auto|z_kill|z_half), value,
    branch, stable, lsc, load, bcr_abl_percent, effectors, max_real_eigenvalue, found_by``.
``bifurcation_window.csv``
    one row per grid point: ``setting, parameter, value, window_exists, condition_value
    ((1-s) rho - d_z), window_low_load, window_high_load`` (cells ``Y3``) and
    ``window_low_bcr_abl, window_high_bcr_abl, window_peak_bcr_abl`` (%).
``bifurcation.json``
    grid meta; per setting ``thresholds`` (:func:`thresholds`) and per sweep the
    parameter intervals where the controlled equilibrium exists with at least
    ``extinction_threshold`` LSCs (``controlled_intervals``, edges refined by bisection
    to 1e-6 relative); ``checks``: continuation agreement counts.
``phase_plane.npz`` + ``phase_plane.json``
    npz keys ``{SETTING}_{name}``: ``log10_lsc`` (n_lsc,), ``log10_z`` (n_z,) (basin grid);
    ``basin`` (n_z, n_lsc) int8 (:data:`BASIN_CODES`), ``basin_end_lsc``, ``basin_end_z``,
    ``basin_end_bcr_abl``, ``basin_t_extinct``; ``field_log10_lsc`` (n_field,),
    ``field_log10_z`` (n_field,), ``growth_lsc_e0`` / ``growth_z_e0`` / ``growth_lsc_e1`` /
    ``growth_z_e1`` (n_field, n_field; 1/day, off IM and on IM 400 mg/day),
    ``nullcline_lsc_e0`` (n_field,): ``Z`` on the LSC nullcline off IM (nan if none);
    ``traj_t`` (n_t,), ``traj_starts`` (n_traj, 2), ``traj_lsc``, ``traj_z``,
    ``traj_bcr_abl`` (n_traj, n_t): full-model trajectories off IM;
    ``course_t``, ``course_lsc``, ``course_z``, ``course_bcr_abl``, ``course_dose``: one
    treated course (IM for ``im_course_days`` from the min-IM start, then off).  The
    json holds the axes' meaning, the equilibria off IM, the window, basin counts.
``min_im_duration.csv`` + ``min_im_duration.json``
    one row per setting, profile and immune-strength value: ``setting, profile,
    parameter, value, is_set_value, start_bcr_abl_percent, dose_mg, followup_days,
    window_days, detection_limit, t_min_days`` (empty if censored), ``censored,
    t_min_grid_days, monotone_on_grid, t_min_pcr_days, pcr_censored, monotone_pcr_on_grid,
    t_extinct_continuous_im, outcome_at_t_min, lsc_at_stop, effectors_at_stop,
    bcr_abl_at_stop_percent, end_lsc, end_bcr_abl_percent``.  Durable: off IM for
    ``followup_days`` after the stop the course ends ``eradicated`` or ``controlled``
    (basin classification), not ``relapse``; ``t_min_pcr_days``: BCR-ABL also below the
    detection limit at every check during ``window_days`` after the stop.
``summary.json``
    headline numbers (read by :mod:`gvlmodel.analysis.numbers`).
``provenance.json``
    :func:`gvlmodel.core.provenance.provenance` of the config, plus the resolved options.

Config (TOML; every key optional, defaults in :data:`DEFAULTS`, documented example
``experiments/dynamics.toml``): tables ``[run]`` (quick, sections, settings),
``[parameters]`` (set, variant, overrides by name), ``[steady_states]``,
``[bifurcation]``, ``[phase_plane]``, ``[min_im]`` (with ``[min_im.profiles]``: name =
parameter overrides), ``[solver]``.  ``quick`` caps the grids (:data:`QUICK_CAPS`).
"""
from __future__ import annotations

import io
import math
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import sympy as sp
from scipy.optimize import brentq, root

from ..core import limits
from ..model import symbolic
from ..core.errors import InputError, check_tables, read_toml
from ..core.errors import boolean as _bool
from ..core.errors import fail as _fail
from ..core.errors import integer as _int
from ..core.errors import real as _real
from ..model.indices import KP, N_STATES, State
from ..model.measurement import bcr_abl_percent
from ..model.model import im_effect, rhs
from ..model.parameters import (PARAMETER_NAMES, PARAMETER_TABLE, available_parameter_sets, kernel_parameters,
                                parameter_set_info, parse_variant, resolve_parameters)
from ..core.progress import bar
from ..core.provenance import (atomic_write_bytes, atomic_write_json, atomic_write_text, begin_outputs, finish_outputs,
                               provenance, prune_outputs)
from ..clinical.scenario import table_csv
from ..model.simulate import MAX_DAYS, MAX_DOSE_MG, initial_state, simulate

SETTINGS = {"transplanted": True, "non_transplanted": False}
SECTIONS = ("steady_states", "bifurcation", "phase_plane", "min_im")
SWEEPS = ("z_expand", "z_kill", "z_half")
BASIN_CODES = {"eradicated": 0, "controlled": 1, "relapse": 2, "unresolved": -1}
#: accepted relative residual of an equilibrium (per compartment, relative to its turnover)
RESIDUAL_TOL = 1e-9
#: smallest stem-cell count of the enumeration (equilibria below one LSC are reported, flagged)
S_MIN = 1e-6
SENSITIVE_SUBSPACE = [s for s in State if s not in (State.R0, State.R1)]


def _sensitive_lsc(y) -> float:
    """Imatinib-sensitive leukemic stem cells ``D + Q + Y0`` of a state."""
    return float(y[State.D] + y[State.Q] + y[State.Y0])


def _lsc(y) -> float:
    """All leukemic stem cells ``D + Q + Y0 + R0`` of a state (the extinction variable)."""
    return float(y[State.D] + y[State.Q] + y[State.Y0] + y[State.R0])


def _active_lsc(y) -> float:
    """Quiescent plus cycling sensitive LSCs, ``Q + Y0``: the pool that settles on the fast time scales."""
    return float(y[State.Q] + y[State.Y0])


# --------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------
DEFAULTS = {
    "run": {"quick": False, "sections": list(SECTIONS), "settings": list(SETTINGS)},
    "steady_states": {"doses_mg": [0.0, 400.0], "horizon_days": 40000.0, "perturbation": 0.05},
    "bifurcation": {"parameters": ["z_expand", "z_kill", "z_half"], "n_points": 61, "doses_mg": [0.0, 400.0]},
    "phase_plane": {"n_lsc": 40, "n_z": 40, "lsc_range": [1.0, 1e7], "z_range": [10.0, 1e6],
                    "n_field": 120, "stop_dose_mg": 400.0, "horizon_days": 40000.0,
                    "trajectory_starts": [[1e3, 1e3], [1e3, 1e5], [1e5, 1e5], [30.0, 3e3], [3e5, 1e6]],
                    "im_course_days": 730.0},
    "min_im": {"n_points": 9, "dose_mg": 400.0, "max_days": 3650.0, "grid_days": 30.0, "window_days": 730.0,
               "check_interval_days": 7.0, "detection_limit": 1e-5, "start_bcr_abl_transplanted": 0.1,
               "start_bcr_abl_non_transplanted": 70.0, "followup_days": 20000.0, "profiles": {"median": {}}},
    "solver": {"rtol": 1e-8, "atol": 1e-8, "extinction_threshold": 1.0},
}
#: caps applied by ``quick`` (tests, smoke runs)
QUICK_CAPS = {("bifurcation", "n_points"): 7, ("phase_plane", "n_lsc"): 6, ("phase_plane", "n_z"): 6,
              ("phase_plane", "n_field"): 30, ("min_im", "n_points"): 3}
QUICK_FLOORS = {("min_im", "grid_days"): 90.0, ("min_im", "check_interval_days"): 30.0}
TABLES = {t: set(v) for t, v in DEFAULTS.items()}
TABLES["parameters"] = {"set", "variant"} | set(PARAMETER_NAMES)


def _choices(field, v, allowed) -> list:
    if not isinstance(v, (list, tuple)) or not v:
        _fail(field, f"expected a non-empty list of {', '.join(map(repr, allowed))}, got {v!r}")
    for x in v:
        if x not in allowed:
            _fail(field, f"unknown value {x!r}; allowed: {', '.join(map(repr, allowed))}")
    return [x for x in allowed if x in v]


def _doses(field, v) -> list:
    if not isinstance(v, (list, tuple)) or not v:
        _fail(field, f"expected a non-empty list of doses in mg/day (0 = off IM, 400/600/800), got {v!r}")
    return sorted({_real(f"{field}[]", x, 0.0, MAX_DOSE_MG) for x in v})


#: largest phase-plane start (cells): LSCs 10x the largest carrying capacity of the parameter table
#: (``lsc_capacity`` <= 1e8), effectors 1e12; far larger starts overflow the states
MAX_PHASE_LSC, MAX_PHASE_Z = 1e9, 1e12


def _range(field, v, hi=None) -> list:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        _fail(field, f"expected [low, high] with 0 < low < high, got {v!r}")
    lo, hi = (_real(f"{field}[]", x, 0.0, hi, lo_open=True) for x in v)
    if not lo < hi:
        _fail(field, f"expected [low, high] with 0 < low < high, got {v!r}")
    return [lo, hi]


def _allowed_text(table, allowed):
    if table == "parameters":
        return "set, variant, or parameter names (see `gvlmodel parameters`)"
    return ", ".join(sorted(allowed))


def default_set() -> str:
    """The parameter set analysed when the config names none: the table's values."""
    return "default"


def parse_dynamics_config(cfg: dict, quick: bool | None = None) -> dict:
    """Validate a parsed config; return the resolved options (nothing is run or written)."""
    if not isinstance(cfg, dict):
        _fail("config", f"expected a table, got {type(cfg).__name__}")
    check_tables(cfg, TABLES, "dynamics config", _allowed_text)
    o = {t: dict(v) for t, v in DEFAULTS.items()}
    o["min_im"]["profiles"] = dict(DEFAULTS["min_im"]["profiles"])
    ru, ss, bi = cfg.get("run", {}), cfg.get("steady_states", {}), cfg.get("bifurcation", {})
    ph, mi, so = cfg.get("phase_plane", {}), cfg.get("min_im", {}), cfg.get("solver", {})
    if "quick" in ru:
        o["run"]["quick"] = _bool("[run] quick", ru["quick"])
    if quick is not None:
        o["run"]["quick"] = _bool("quick", quick)
    if "sections" in ru:
        o["run"]["sections"] = _choices("[run] sections", ru["sections"], SECTIONS)
    if "settings" in ru:
        o["run"]["settings"] = _choices("[run] settings", ru["settings"], tuple(SETTINGS))
    # steady states
    if "doses_mg" in ss:
        o["steady_states"]["doses_mg"] = _doses("[steady_states] doses_mg", ss["doses_mg"])
    if "horizon_days" in ss:
        o["steady_states"]["horizon_days"] = _real("[steady_states] horizon_days", ss["horizon_days"], 100.0, 1e7)
    if "perturbation" in ss:
        o["steady_states"]["perturbation"] = _real("[steady_states] perturbation", ss["perturbation"], 0.0, 0.5,
                                                   lo_open=True)
    # bifurcation
    if "parameters" in bi:
        o["bifurcation"]["parameters"] = _choices("[bifurcation] parameters", bi["parameters"], SWEEPS)
    if "n_points" in bi:
        o["bifurcation"]["n_points"] = _int("[bifurcation] n_points", bi["n_points"], 3, 2000)
    if "doses_mg" in bi:
        o["bifurcation"]["doses_mg"] = _doses("[bifurcation] doses_mg", bi["doses_mg"])
    # phase plane
    for key in ("n_lsc", "n_z"):
        if key in ph:
            o["phase_plane"][key] = _int(f"[phase_plane] {key}", ph[key], 2, 500)
    if "n_field" in ph:
        o["phase_plane"]["n_field"] = _int("[phase_plane] n_field", ph["n_field"], 10, 2000)
    for key, top in (("lsc_range", MAX_PHASE_LSC), ("z_range", MAX_PHASE_Z)):
        if key in ph:
            o["phase_plane"][key] = _range(f"[phase_plane] {key}", ph[key], top)
    if "horizon_days" in ph:
        o["phase_plane"]["horizon_days"] = _real("[phase_plane] horizon_days", ph["horizon_days"], 100.0, 1e7)
    if "stop_dose_mg" in ph:
        o["phase_plane"]["stop_dose_mg"] = _real("[phase_plane] stop_dose_mg", ph["stop_dose_mg"], 0.0, MAX_DOSE_MG)
    if "im_course_days" in ph:
        o["phase_plane"]["im_course_days"] = _real("[phase_plane] im_course_days", ph["im_course_days"], 0.0, 1e5)
    if "trajectory_starts" in ph:
        v = ph["trajectory_starts"]
        if not isinstance(v, list) or not all(isinstance(s, list) and len(s) == 2 for s in v):
            _fail("[phase_plane] trajectory_starts", f"expected a list of [lsc, effectors] pairs (cells), got {v!r}")
        o["phase_plane"]["trajectory_starts"] = [[_real("[phase_plane] trajectory_starts[]", x, 0.0, top)
                                                  for x, top in zip(s, (MAX_PHASE_LSC, MAX_PHASE_Z))] for s in v]
    # min IM
    mi_real = {"dose_mg": (1.0, MAX_DOSE_MG), "max_days": (1.0, MAX_DAYS), "grid_days": (1.0, 3650.0),
               "window_days": (1.0, MAX_DAYS), "check_interval_days": (0.5, 3650.0), "detection_limit": (1e-9, 0.1),
               "start_bcr_abl_transplanted": (1e-6, 99.0), "start_bcr_abl_non_transplanted": (1e-6, 99.0),
               "followup_days": (100.0, 1e6)}
    for key, (lo, hi) in mi_real.items():
        if key in mi:
            o["min_im"][key] = _real(f"[min_im] {key}", mi[key], lo, hi)
    if "n_points" in mi:
        o["min_im"]["n_points"] = _int("[min_im] n_points", mi["n_points"], 1, 500)
    if "profiles" in mi:
        prof = mi["profiles"]
        if not isinstance(prof, dict) or not prof:
            _fail("[min_im] profiles", "expected a table of profile name = {parameter = value, ...}")
        out = {}
        for name, ov in prof.items():
            if not isinstance(ov, dict):
                _fail(f"[min_im.profiles] {name}", "expected a table of parameter overrides (name = value)")
            for pname in ov:
                if pname not in PARAMETER_TABLE:
                    _fail(f"[min_im.profiles.{name}] {pname}",
                          "unknown parameter; allowed: parameter names (see `gvlmodel parameters`)")
            out[name] = dict(ov)
        o["min_im"]["profiles"] = out
    if o["min_im"]["grid_days"] > o["min_im"]["max_days"]:
        _fail("[min_im] grid_days", f"must not exceed max_days ({o['min_im']['max_days']:g})")
    # solver
    if "rtol" in so:
        o["solver"]["rtol"] = limits.rtol("[solver] rtol", so["rtol"], hi=1e-3)  # equilibria need accuracy
    for key, lo, hi in (("atol", 1e-15, 1.0), ("extinction_threshold", 0.0, 1e6)):
        if key in so:
            o["solver"][key] = _real(f"[solver] {key}", so[key], lo, hi)
    # parameters
    pa = dict(cfg.get("parameters", {}))
    set_name = pa.pop("set", default_set())
    if not isinstance(set_name, str) or set_name not in available_parameter_sets():
        _fail("[parameters] set", f"unknown parameter set {set_name!r}; allowed: "
              + ", ".join(available_parameter_sets()))
    try:
        info = parameter_set_info(set_name)
    except InputError as exc:
        raise InputError(f"[parameters] set {set_name!r}: {exc}") from None
    try:
        variant = parse_variant(pa.pop("variant", info["variant"] or "H2")).value
    except InputError as exc:
        raise InputError(f"[parameters] {exc}") from None
    try:
        params = resolve_parameters({**info["parameters"], **pa}, check_bounds=True)
    except InputError as exc:
        raise InputError(f"[parameters] {exc}") from None
    for name, ov in o["min_im"]["profiles"].items():
        try:
            resolve_parameters({**params, **ov}, check_bounds=True)
        except InputError as exc:
            raise InputError(f"[min_im.profiles.{name}] {exc}") from None
    if o["run"]["quick"]:
        for (t, k), cap in QUICK_CAPS.items():
            o[t][k] = min(o[t][k], cap)
        for (t, k), floor in QUICK_FLOORS.items():
            o[t][k] = max(o[t][k], floor)
        o["phase_plane"]["trajectory_starts"] = o["phase_plane"]["trajectory_starts"][:3]
    o["parameter_set"] = set_name
    o["variant"] = variant
    o["parameters"] = params
    return o


def load_dynamics_config(path, quick: bool | None = None) -> dict:
    """Read and validate a dynamics config file (TOML); returns the resolved options."""
    cfg = read_toml(path, "dynamics config")
    opts = parse_dynamics_config(cfg, quick)
    opts["config"] = cfg
    return opts


# --------------------------------------------------------------------------
# closed forms: leukemia-free state, immune window, clone families
# --------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _healthy_fn():
    y, p, e = symbolic.symbols()
    sol = symbolic.healthy_steady_state_sympy()
    return sp.lambdify((p, e), [sp.sympify(sol[y[s]]) for s in State], modules="math")


@lru_cache(maxsize=None)
def _static_leukemic_fn():
    y, p, e = symbolic.symbols()
    sol = symbolic.leukemic_steady_state_sympy()
    return sp.lambdify((p, e), [sp.sympify(sol[y[s]]) for s in State], modules="math")


def _kpt(kp) -> tuple:
    return tuple(float(v) for v in kp)


def healthy_equilibrium(kp, e: float = 0.0) -> np.ndarray:
    """Leukemia-free state (sympy closed form)."""
    return np.array(_healthy_fn()(_kpt(kp), float(e)), dtype=float)


def static_leukemic_equilibrium(kp, e: float = 0.0) -> np.ndarray:
    """Sympy closed form of the sensitive clone's equilibrium with static effectors (exact for H0/H1)."""
    return np.array(_static_leukemic_fn()(_kpt(kp), float(e)), dtype=float)


def normal_mature(kp) -> float:
    """Normal mature cells at homeostasis from the kernel vector, ``x0_eq (a_x/d1)(b_x/d2)(c_x/d3)``."""
    x0 = kp[KP.KN] * (kp[KP.RX] / kp[KP.D0] - 1.0)
    return float(x0 * kp[KP.AX] / kp[KP.D1] * kp[KP.BX] / kp[KP.D2] * kp[KP.CX] / kp[KP.D3])


def load_to_bcr_abl(load, kp):
    """BCR-ABL % of ``load`` leukemic mature cells beside normal homeostasis: ``100 L / (L + 2 X3)``."""
    load = np.asarray(load, dtype=float)
    return 100.0 * load / (load + 2.0 * normal_mature(kp))


def window(kp) -> dict:
    """The immune window: effectors expand per capita iff ``(1-s) rho 2u/(1+u^2) > d_z``, ``u = Y3/K_z``.

    Exists iff ``(1-s) rho > d_z``; edges ``u = (rho' -+ sqrt(rho'^2 - d_z^2)) / d_z`` (``rho' = (1-s) rho``),
    written here independently of :func:`gvlmodel.model.symbolic.window_edges` (the tests compare them), in
    leukemic mature cells and in BCR-ABL % beside normal homeostasis (:func:`load_to_bcr_abl`).
    """
    rho = (1.0 - kp[KP.ZSUPP]) * kp[KP.ZRHO]
    dz, kz = kp[KP.ZD], kp[KP.ZK]
    out = {"exists": bool(rho > dz), "condition_value": float(rho - dz), "peak_load": float(kz),
           "peak_bcr_abl": float(load_to_bcr_abl(kz, kp)), "low_load": None, "high_load": None,
           "low_bcr_abl": None, "high_bcr_abl": None}
    if out["exists"]:
        disc = math.sqrt(rho * rho - dz * dz)
        lo = kz * dz / (rho + disc)  # = kz (rho - disc) / dz, without cancellation
        hi = kz * (rho + disc) / dz
        out.update(low_load=lo, high_load=hi, low_bcr_abl=float(load_to_bcr_abl(lo, kp)),
                   high_bcr_abl=float(load_to_bcr_abl(hi, kp)))
    return out


def _stim(load, kp):
    u = load / kp[KP.ZK]
    return (1.0 - kp[KP.ZSUPP]) * kp[KP.ZRHO] * 2.0 * u / (1.0 + u * u)


def _quiescent_exit_load(k, kp):
    """``a(k)``: the per-capita loss of quiescent LSCs at equilibrium with kill ``k`` (``Q = q_in Y0 / a(k)``).

    Quiescent cells leave to cycling (``q_out``), die by effectors (``kappa_Q k``) and enter
    dormancy (``delta_in``), from which the fraction ``delta_out / (delta_out + kappa_D k)``
    returns: ``a = q_out + kappa_Q k + delta_in kappa_D k / (delta_out + kappa_D k)``.
    """
    kq, kd = kp[KP.ZQREL] * k, kp[KP.ZDREL] * k
    di, do = kp[KP.DIN], kp[KP.DOUT]
    back = di if do + kd == 0.0 else di * kd / (do + kd)
    return kp[KP.QOUT] + kq + back


def _dormant_per_quiescent(k, kp) -> float:
    """``D/Q`` at equilibrium with kill ``k``: ``delta_in / (delta_out + kappa_D k)`` (0 without dormancy)."""
    den = kp[KP.DOUT] + kp[KP.ZDREL] * k
    return 0.0 if kp[KP.DIN] == 0.0 else (kp[KP.DIN] / den if den > 0 else math.inf)


def _k_sensitive(G, kp):
    """``k >= 0`` with ``(G - k) + q_out q_in / a(k) = 0`` (:func:`_quiescent_exit_load`), or None.

    The left side falls with ``k`` from ``G + q_in`` at ``k = 0`` and is ``<= 0`` at
    ``k = G + q_in`` (``a >= q_out``), so the root is unique and bracketed; without
    immune kill of quiescent and dormant cells it is ``G + q_in``.
    """
    qi, qo = kp[KP.QIN], kp[KP.QOUT]
    c = G + qi
    if c < 0.0:
        return None
    if (kp[KP.ZQREL] == 0.0 and kp[KP.ZDREL] == 0.0) or c == 0.0:
        return c

    def h(k):
        return G - k + qo * qi / _quiescent_exit_load(k, kp)

    if h(c) >= 0.0:
        return c
    return brentq(h, 0.0, c, xtol=1e-300, rtol=8.9e-16, maxiter=500)


def kill_for_stem_cells(S, kp, e, clone="sensitive"):
    """Immune kill rate ``k`` (1/day) that holds a clone of ``S`` stem cells at equilibrium, or None."""
    g = 1.0 - S / kp[KP.KL]
    if clone == "sensitive":
        return _k_sensitive(kp[KP.RY] * g - kp[KP.D0] - kp[KP.IMKILL] * e - kp[KP.QIN], kp)
    k = kp[KP.RY] * g - kp[KP.D0]
    return k if k >= 0.0 else None


def max_stem_cells(kp, e, clone="sensitive") -> float:
    """Largest clone with an equilibrium (``k = 0``): ``K_L (1 - (d0 + k_IM e)/r_y)`` (resistant: no IM term)."""
    loss = kp[KP.D0] + (kp[KP.IMKILL] * e if clone == "sensitive" else 0.0)
    return float(kp[KP.KL] * (1.0 - loss / kp[KP.RY]))


def clone_state(S, k, kp, e, clone="sensitive", z=None) -> np.ndarray:
    """Full state: normal homeostasis, a clone of ``S`` stem cells slaved at kill rate ``k``, effectors ``z``."""
    y = healthy_equilibrium(kp, e)
    if clone == "sensitive":
        c = kp[KP.QIN] / _quiescent_exit_load(k, kp)
        dq = _dormant_per_quiescent(k, kp)
        y0 = S / (1.0 + c * (1.0 + dq))
        y[State.Y0], y[State.Q], y[State.D] = y0, c * y0, dq * c * y0
        y[State.Y1] = kp[KP.AY] * y0 / (kp[KP.D1] + kp[KP.IMKILLP] * e + k)
        y[State.Y2] = kp[KP.BY] * y[State.Y1] / (kp[KP.D2] + k)
    else:
        y[State.R0] = S
        y[State.R1] = kp[KP.AY] * S / (kp[KP.D1] + k)
        y[State.Y2] = kp[KP.BY] * y[State.R1] / (kp[KP.D2] + k)
    y[State.Y3] = kp[KP.CY] * y[State.Y2] / (kp[KP.D3] + k)
    y[State.Z] = (k / kp[KP.ZKILL] if kp[KP.ZKILL] > 0 else kp[KP.ZIN] / kp[KP.ZD]) if z is None else z
    return y


def _family_state(S, kp, e, clone):
    k = kill_for_stem_cells(S, kp, e, clone)
    return None if k is None else clone_state(S, k, kp, e, clone)


def _balance(logS, kp, e, clone):
    y = _family_state(math.exp(logS), kp, e, clone)
    if y is None:
        return math.nan
    z, bz, dz = y[State.Z], kp[KP.ZIN], kp[KP.ZD]
    return (bz - dz * z + _stim(y[State.Y3], kp) * z) / (bz + dz * z)


def _family_roots(kp, e, clone, n_grid=400):
    """Equilibria of one clone family (see the module docstring), sorted by stem-cell count."""
    s_max = max_stem_cells(kp, e, clone)
    if s_max <= S_MIN:
        return []
    if kp[KP.ZKILL] <= 0.0:  # no killing: k = 0, S = S_max; effectors at influx / (death - stimulation)
        y = clone_state(s_max, 0.0, kp, e, clone, z=0.0)
        den = kp[KP.ZD] - _stim(y[State.Y3], kp)
        if kp[KP.ZIN] > 0 and den <= 0:
            return []
        y[State.Z] = kp[KP.ZIN] / den if kp[KP.ZIN] > 0 else 0.0
        return [y]
    out = []
    if kp[KP.ZIN] == 0.0:  # no influx: effector-free equilibrium at S_max
        out.append(clone_state(s_max, 0.0, kp, e, clone, z=0.0))
    # log grid in S and, towards the top, in S_max - S (where k -> 0)
    top = s_max * (1.0 - np.logspace(-12, 0, n_grid // 2)[::-1])
    grid = np.unique(np.concatenate([np.logspace(math.log10(S_MIN), math.log10(s_max), n_grid), top]))
    grid = np.log(grid[(grid >= S_MIN) & (grid < s_max)])
    vals = np.array([_balance(g, kp, e, clone) for g in grid])
    for i in range(grid.size - 1):
        a, b = vals[i], vals[i + 1]
        if not (np.isfinite(a) and np.isfinite(b)):
            continue
        if a == 0.0:
            r = grid[i]
        elif a * b < 0.0:
            r = brentq(_balance, grid[i], grid[i + 1], args=(kp, e, clone), xtol=1e-300, rtol=1e-15, maxiter=500)
        else:
            continue
        out.append(_family_state(math.exp(r), kp, e, clone))
    return out


# --------------------------------------------------------------------------
# sympy cross-check of the sensitive family: the effector balance as a polynomial in Z
# --------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _balance_numerator_sympy():
    """``(numerator(Z), Y0(Z), Z)``: the effector balance with every other equation at steady state."""
    y, p, e = symbolic.symbols()
    f = symbolic.rhs_sympy()
    hs = symbolic.healthy_steady_state_sympy()
    sub = {y[s]: hs[y[s]] for s in (State.X0, State.X1, State.X2, State.X3)}
    sub.update({y[State.R0]: 0, y[State.R1]: 0})
    ds = sp.solve(f[State.D].subs(sub), y[State.D], simplify=False)[0]  # D(Q, Z)
    qs = sp.solve(f[State.Q].subs({**sub, y[State.D]: ds}), y[State.Q], simplify=False)[0]  # Q(Y0, Z)
    ds = ds.subs(y[State.Q], qs)  # D(Y0, Z)
    bal = sp.numer(sp.together(sp.expand(f[State.Y0].subs({**sub, y[State.Q]: qs, y[State.D]: ds}) / y[State.Y0])))
    (y0s,) = sp.solve(bal, y[State.Y0], simplify=False)  # logistic crowding: linear in Y0
    sub.update({y[State.Y0]: y0s, y[State.Q]: qs.subs(y[State.Y0], y0s), y[State.D]: ds.subs(y[State.Y0], y0s)})
    for s_ in (State.Y1, State.Y2, State.Y3):  # production / loss
        expr = f[s_].subs(sub)
        sub[y[s_]] = sp.together(-expr.subs(y[s_], 0) / sp.diff(expr, y[s_]))
    fz = f[State.Z].subs(sub)
    return sp.numer(sp.together(fz)), y0s, y[State.Z]


def sympy_sensitive_roots(kp, e: float = 0.0, digits: int = 40) -> list[float]:
    """Effector counts ``Z > 0`` of the sensitive clone's equilibria from the sympy polynomial (``nroots``)."""
    num, y0s, Z = _balance_numerator_sympy()
    _, p, es = symbolic.symbols()
    subs = {p[k]: sp.Float(float(kp[k]), digits) for k in KP}
    subs[es] = sp.Float(float(e), digits)
    poly = sp.Poly(sp.expand(num.subs(subs)), Z)
    if poly.degree() < 1:
        return []
    y0_fn = sp.lambdify(Z, y0s.subs(subs), modules="mpmath")
    out = []
    for r in poly.nroots(n=digits, maxsteps=500):
        if abs(sp.im(r)) > 1e-20 * max(1.0, abs(r)):
            continue
        z = float(sp.re(r))
        if z > 0 and float(y0_fn(sp.re(r))) > 0:
            out.append(z)
    return sorted(out)


# --------------------------------------------------------------------------
# equilibria: residuals, stability, description
# --------------------------------------------------------------------------
def _turnover(kp):
    t = np.empty(N_STATES)
    t[State.X0] = t[State.Y0] = t[State.R0] = kp[KP.D0]
    t[State.X1] = t[State.Y1] = t[State.R1] = kp[KP.D1]
    t[State.X2] = t[State.Y2] = kp[KP.D2]
    t[State.X3] = t[State.Y3] = kp[KP.D3]
    t[State.Q] = kp[KP.QOUT]
    t[State.D] = kp[KP.DOUT]
    t[State.Z] = kp[KP.ZD]
    return np.maximum(t, 1e-12)


def relative_residual(y, kp, e, f=None) -> float:
    """``max_i |f_i| / (turnover_i y_i)`` over non-zero components (compiled RHS); inf if a zero component moves."""
    y = np.asarray(y, dtype=float)
    if f is None:
        f = np.empty(N_STATES)
        rhs(y, kp, e, f)
    if not np.all(np.isfinite(f)):
        return math.inf
    pos = y > 0
    if np.any(np.abs(f[~pos]) > 0):
        return math.inf
    if not np.any(pos):
        return 0.0
    return float(np.max(np.abs(f[pos]) / (_turnover(kp)[pos] * y[pos])))


def polish(y, kp, e, tol: float = 1e-13):
    """Newton-type refinement (``scipy.optimize.root``, sympy Jacobian) of an equilibrium guess, full RHS.

    Non-zero components in log space (zero components are invariant); returns
    ``(state, relative_residual)``, the state ``None`` if it did not converge.
    """
    y = np.asarray(y, dtype=float).copy()
    mask = y > 0
    if not np.any(mask):
        return y, relative_residual(y, kp, e)
    tau = _turnover(kp)[mask]
    f = np.empty(N_STATES)

    def full(v):
        yy = y.copy()
        yy[mask] = np.exp(np.clip(v, -700, 700))
        return yy

    def fun(v):
        yy = full(v)
        rhs(yy, kp, e, f)
        return f[mask] / (tau * yy[mask])

    def jac(v):
        yy = full(v)
        J = symbolic.jacobian_numeric(yy, kp, e)[np.ix_(mask, mask)]
        rhs(yy, kp, e, f)
        ym = yy[mask]
        out = J * ym[None, :] / (tau * ym)[:, None]
        out[np.diag_indices_from(out)] -= f[mask] / (tau * ym)
        return out

    with np.errstate(all="ignore"):
        sol = root(fun, np.log(y[mask]), jac=jac, method="hybr", options={"xtol": tol})
    ys = full(sol.x)
    res = relative_residual(ys, kp, e)
    if not np.all(np.isfinite(ys)) or res > RESIDUAL_TOL:
        return None, res
    return ys, res


def _clone_of(y) -> str:
    if _sensitive_lsc(y) > 0:
        return "sensitive"
    if y[State.R0] > 0:
        return "resistant"
    return "none"


def _eig_sorted(J):
    ev = np.linalg.eigvals(J)
    return ev[np.argsort(-ev.real, kind="stable")]


def describe(y, kp, e, found_by=("enumeration",), extinction_threshold: float = 1.0) -> dict:
    """Schema ``EQ`` of ``steady_states.json`` (without ``branch``) for an equilibrium state ``y``."""
    J = symbolic.jacobian_numeric(y, kp, e)
    ev = _eig_sorted(J)
    clone = _clone_of(y)
    if clone == "resistant":
        sub_ev, invasion = ev, None
    else:
        idx = [int(s) for s in SENSITIVE_SUBSPACE]
        sub_ev = _eig_sorted(J[np.ix_(idx, idx)])
        invasion = float(J[State.R0, State.R0])
    maxre = float(sub_ev.real[0])
    scale = 1e-10 * max(1e-3, float(np.max(np.abs(ev))))
    lsc = _lsc(y)
    f = np.empty(N_STATES)
    rhs(y, kp, e, f)
    fs = symbolic.rhs_numeric(y, kp, e)
    return {
        "branch": None, "clone": clone, "found_by": sorted(set(found_by)),
        "state": {s.name: float(y[s]) for s in State}, "lsc": lsc,
        "quiescent_fraction": float(y[State.Q] / lsc) if lsc > 0 else None,
        "dormant_fraction": float(y[State.D] / lsc) if lsc > 0 else None,
        "load": float(y[State.Y3]), "bcr_abl_percent": float(bcr_abl_percent(y)),
        "effectors": float(y[State.Z]), "kill_rate": float(kp[KP.ZKILL] * y[State.Z]),
        "eigenvalues_real": [float(v) for v in ev.real], "eigenvalues_imag": [float(v) for v in ev.imag],
        "max_real_eigenvalue": maxre, "max_real_eigenvalue_full": float(ev.real[0]),
        "stable": bool(maxre < -scale), "stable_full": bool(ev.real[0] < -scale), "marginal": bool(abs(maxre) <= scale),
        "resistant_invasion_rate": invasion,
        "residual": relative_residual(y, kp, e, f), "sympy_residual": relative_residual(y, kp, e, fs),
        "below_extinction_threshold": bool(0 < lsc < extinction_threshold),
        "_y": y,
    }


def _assign_branches(eqs, kp):
    """Name the roots of each clone family by stem-cell count (see ``steady_states.json``)."""
    for clone, prefix in (("sensitive", ""), ("resistant", "resistant_")):
        fam = sorted([q for q in eqs if q["clone"] == clone], key=lambda q: q["lsc"])
        if not fam:
            continue
        names = ["other"] * len(fam)
        names[-1] = "high_burden"
        if len(fam) == 1 and fam[0]["load"] < kp[KP.ZK] and fam[0]["stable"]:
            names[-1] = "controlled"
        elif len(fam) >= 3:
            names[0], names[-2] = "controlled", "threshold"
        elif len(fam) == 2:  # at a fold: the pair that is about to vanish
            names[0] = "controlled" if fam[0]["stable"] else "threshold"
        for q, n in zip(fam, names):
            q["branch"] = prefix + n
    for q in eqs:
        if q["clone"] == "none":
            q["branch"] = "leukemia_free"


def equilibria(kp, e: float = 0.0, *, extinction_threshold: float = 1.0, resistant: bool = True,
               extra_guesses=()) -> list[dict]:
    """All equilibria at IM effect ``e`` with normal homeostasis (see the module docstring).

    Returns ``EQ`` dicts sorted by LSC count (the numeric state under the private
    key ``"_y"``); ``resistant=False`` skips the resistant family; ``extra_guesses``
    are ``(state, label)`` pairs polished on the full RHS and merged (cross-checks).
    """
    kp = np.asarray(kp, dtype=float)
    cands = [(healthy_equilibrium(kp, e), "sympy_closed_form")]
    cands += [(y, "enumeration") for y in _family_roots(kp, e, "sensitive")]
    if resistant:
        cands += [(y, "enumeration") for y in _family_roots(kp, e, "resistant")]
    found: list[tuple[np.ndarray, list]] = []
    for y, label in cands:
        if relative_residual(y, kp, e) > RESIDUAL_TOL:
            y, _ = polish(y, kp, e)
            if y is None:
                continue
        found.append((y, [label]))
    for y, label in extra_guesses:
        ys, _ = polish(y, kp, e)
        if ys is None:
            continue
        for yf, labels in found:
            if _same(yf, ys):
                labels.append(label)
                break
        else:
            found.append((ys, [label]))
    eqs = [describe(y, kp, e, labels, extinction_threshold) for y, labels in found]
    _assign_branches(eqs, kp)
    return sorted(eqs, key=lambda q: (q["clone"] != "none", q["clone"], q["lsc"]))


def _same(a, b, rtol=1e-6) -> bool:
    if np.any((a > 0) != (b > 0)):
        return False
    m = a > 0
    return bool(np.all(np.abs(np.log(a[m]) - np.log(b[m])) < rtol))


def _public(eq):
    return {k: v for k, v in eq.items() if not k.startswith("_")}


def _log_distance(a, b, floor=1e-9):
    return float(np.max(np.abs(np.log((np.asarray(a) + floor) / (np.asarray(b) + floor)))))


def _start(y0, variant) -> np.ndarray:
    """A simulation start: non-negative, and without effectors in variant H0 (which has none)."""
    y = np.maximum(np.asarray(y0, dtype=float), 0.0)
    if parse_variant(variant).value == "H0":
        y[State.Z] = 0.0
    return y


def _sim(params, variant, transplant, y0, t_out, dose, solver, threshold=0.0):
    return simulate(params, y0=_start(y0, variant), t_out=t_out, schedule=((0.0, dose),), variant=variant,
                    transplant=transplant, rtol=solver["rtol"], atol=solver["atol"], extinction_threshold=threshold,
                    max_steps=5_000_000)


def stability_check(eq, kp, params, variant, transplant, dose, e, solver, perturbation=0.05):
    """Long full-model simulations (no extinction event) from perturbed states: does the trajectory return?

    Starts: every non-zero component scaled by ``1 +- perturbation`` (alternating
    signs) and ``+-`` along the leading eigenvector of the patient subspace (same
    relative size); at the leukemia-free state a seed of 1e-3 sensitive LSCs
    (slaved progeny).  Horizon ``20/|lambda_max|`` (2000..1e6 days).  ``returned``:
    every start's log deviation (and the seed) shrank 10-fold; ``left``: for some
    start it grew 10-fold.  ``agrees`` = ``returned`` if stable, ``left`` if unstable.
    """
    y = eq["_y"]
    lam = abs(eq["max_real_eigenvalue"])
    days = float(np.clip(20.0 / max(lam, 1e-12), 2000.0, 1e6))
    idx = list(range(N_STATES)) if eq["clone"] == "resistant" else [int(s) for s in SENSITIVE_SUBSPACE]
    J = symbolic.jacobian_numeric(y, kp, e)[np.ix_(idx, idx)]
    w, v = np.linalg.eig(J)
    lead = np.zeros(N_STATES)
    lead[idx] = np.real(v[:, int(np.argmax(w.real))])
    pattern = np.where(np.arange(N_STATES) % 2 == 0, 1.0, -1.0)
    starts = [y * (1.0 + perturbation * pattern)]
    pos = y > 0
    m = float(np.max(np.abs(lead[pos]) / y[pos])) if np.any(pos & (lead != 0)) else 0.0
    if m > 0:
        for sgn in (1.0, -1.0):
            starts.append(np.maximum(y + sgn * perturbation * lead / m * pos, 0.0))
    seeded = eq["clone"] == "none"
    report = []
    for ys in starts:
        if seeded:
            seed = reduced_state(1e-3, ys[State.Z], kp, e)
            ys = ys.copy()
            ys[State.Q:State.Y3 + 1] = seed[State.Q:State.Y3 + 1]
            ys[State.D] = seed[State.D]
        r = _sim(params, variant, transplant, ys, [0.0, days], dose, solver)
        d0 = _log_distance(ys[pos], y[pos], floor=0.0)
        d1 = _log_distance(r.y[-1][pos], y[pos], floor=0.0) if r.success else math.inf
        growth = {}
        if seeded and r.success:
            growth["lsc"] = _sensitive_lsc(r.y[-1]) / 1e-3
        back = (d1 <= 0.1 * d0 or d1 < 1e-8) and all(g < 0.1 for g in growth.values())
        away = d1 > 10.0 * d0 or any(g > 10.0 for g in growth.values())
        report.append({"start_deviation": d0, "end_deviation": d1, "seed_growth": growth,
                       "returned": bool(back), "left": bool(away)})
    returned = all(r["returned"] for r in report)
    left = any(r["left"] for r in report)
    return {"horizon_days": days, "starts": report, "returned": bool(returned), "left": bool(left),
            "agrees": bool(returned if eq["stable"] else left)}


# --------------------------------------------------------------------------
# the reduced plane
# --------------------------------------------------------------------------
def _stem_block_growth(lsc, k, kp, e):
    """Leading eigenvalue of the (D, Q, Y0) block at crowding ``g(N)`` and kill ``k``, and its shape.

    The block is a Metzler matrix (non-negative exchange rates off the diagonal), so its
    leading eigenvalue is real with a non-negative eigenvector; returns ``(lambda, (D/Y0, Q/Y0))``.
    """
    g = 1.0 - lsc / kp[KP.KL]
    kq, kd = kp[KP.ZQREL] * k, kp[KP.ZDREL] * k
    di, do, qi, qo = kp[KP.DIN], kp[KP.DOUT], kp[KP.QIN], kp[KP.QOUT]
    m = np.array([[-(do + kd), di, 0.0],
                  [do, -(qo + di + kq), qi],
                  [0.0, qo, kp[KP.RY] * g - kp[KP.D0] - kp[KP.IMKILL] * e - k - qi]])
    w, v = np.linalg.eig(m)
    i = int(np.argmax(w.real))
    vec = np.abs(np.real(v[:, i]))
    return float(w[i].real), (float(vec[0] / vec[2]), float(vec[1] / vec[2]))


def reduced_state(lsc: float, z: float, kp, e: float = 0.0) -> np.ndarray:
    """Full state of the reduced plane at ``(N = D + Q + Y0, Z)`` and IM effect ``e``; see the module docstring."""
    k = kp[KP.ZKILL] * z
    _, (dr, qr) = _stem_block_growth(lsc, k, kp, e)
    y = clone_state(0.0, k, kp, e, "sensitive", z=z)
    y0 = lsc / (1.0 + qr + dr)
    y[State.Y0], y[State.Q], y[State.D] = y0, qr * y0, dr * y0
    y[State.Y1] = kp[KP.AY] * y0 / (kp[KP.D1] + kp[KP.IMKILLP] * e + k)
    y[State.Y2] = kp[KP.BY] * y[State.Y1] / (kp[KP.D2] + k)
    y[State.Y3] = kp[KP.CY] * y[State.Y2] / (kp[KP.D3] + k)
    return y


def reduced_field(lsc: float, z: float, kp, e: float = 0.0) -> tuple[float, float]:
    """Per-capita rates (1/day) on the plane: stem-pool growth and ``f_Z / Z`` (compiled RHS) at the slaved state."""
    lam, _ = _stem_block_growth(lsc, kp[KP.ZKILL] * z, kp, e)
    y = reduced_state(lsc, z, kp, e)
    f = np.empty(N_STATES)
    rhs(y, kp, e, f)
    return lam, f[State.Z] / z


def lsc_nullcline(lsc: float, kp, e: float = 0.0) -> float:
    """``Z`` on the LSC nullcline (``k(N)/z_kill``), nan where the clone shrinks at any ``Z``."""
    k = kill_for_stem_cells(lsc, kp, e)
    return math.nan if k is None or kp[KP.ZKILL] <= 0 else k / kp[KP.ZKILL]


# --------------------------------------------------------------------------
# basins
# --------------------------------------------------------------------------
def classify_end(r, stable_eqs) -> int:
    """Basin code of a full-model run off IM: extinct, or the nearest stable sensitive equilibrium (half a decade).

    Distance is measured on the active pool ``Q + Y0``: the deeply dormant reservoir left by
    imatinib drains only at ``delta_out`` (decades when effectors cannot reach it), so the total
    LSC count can still be far above the attractor's long after the active pool has settled there.
    """
    if r.extinct:
        return BASIN_CODES["eradicated"]
    if not r.success:
        return BASIN_CODES["unresolved"]
    end = r.y[-1]
    if _lsc(end) <= 0:
        return BASIN_CODES["eradicated"]
    active = _active_lsc(end)
    if active <= 0:  # only dormant cells left: they return to Q at delta_out; classify by the total
        active = _lsc(end)
    best, dist = None, math.inf
    for q in stable_eqs:
        if q["lsc"] <= 0:
            continue
        d = abs(math.log10(active) - math.log10(_active_lsc(q["_y"])))
        if d < dist:
            best, dist = q, d
    if best is None or dist > 0.5:
        return BASIN_CODES["unresolved"]
    return BASIN_CODES["controlled"] if best["branch"] == "controlled" else BASIN_CODES["relapse"]


def stable_off_im(kp, extinction_threshold=1.0) -> list[dict]:
    """Stable sensitive-clone equilibria off IM (the attractors of a patient without resistant cells)."""
    return [q for q in equilibria(kp, 0.0, extinction_threshold=extinction_threshold, resistant=False)
            if q["stable"] and q["clone"] == "sensitive"]


def classify_basins(params, variant, transplant, lscs, zs, horizon_days, solver, stop_effect=1.0, stable_eqs=None,
                    progress: bool = False):
    """Basins off IM with the full model from ``reduced_state(N, Z, stop_effect)`` of each grid point.

    Returns ``(code[n_z, n_lsc], end_lsc, end_z, end_bcr_abl, t_extinct)``; ``progress`` shows a bar
    over the grid's rows.
    """
    kp = kernel_parameters(params, variant, transplant)
    if stable_eqs is None:
        stable_eqs = stable_off_im(kp, solver["extinction_threshold"])
    shape = (len(zs), len(lscs))
    code = np.empty(shape, dtype=np.int8)
    end_l, end_z, end_b = np.empty(shape), np.empty(shape), np.empty(shape)
    t_ext = np.full(shape, np.nan)
    for j, z in enumerate(bar(zs, enabled=progress, desc=f"basins {'after SCT' if transplant else 'non-transplanted'}",
                              unit="row")):
        for i, n in enumerate(lscs):
            y0 = _start(reduced_state(float(n), float(z), kp, stop_effect), variant)
            r = simulate(params, y0=y0, t_out=[0.0, horizon_days], schedule=((0.0, 0.0),), variant=variant,
                         transplant=transplant, rtol=max(solver["rtol"], 1e-9), atol=max(solver["atol"], 1e-9),
                         extinction_threshold=solver["extinction_threshold"], max_steps=5_000_000)
            code[j, i] = classify_end(r, stable_eqs)
            end_l[j, i] = r.leukemic_stem_cells[-1]
            end_z[j, i] = r.y[-1, State.Z]
            end_b[j, i] = r.bcr_abl[-1]
            t_ext[j, i] = r.t_extinct
    return code, end_l, end_z, end_b, t_ext


# --------------------------------------------------------------------------
# section 1: steady states
# --------------------------------------------------------------------------
def thresholds(kp) -> dict:
    """Analytic thresholds (off IM): window, leukemia-free stability, baseline effectors."""
    s, dz, bz, zk = kp[KP.ZSUPP], kp[KP.ZD], kp[KP.ZIN], kp[KP.ZKILL]
    k_free = kill_for_stem_cells(0.0, kp, 0.0)  # kill that stops a small clone growing
    return {"rho_window": dz / (1 - s) if s < 1 else None, "k_free": k_free,
            "z_kill_free_stable": k_free * dz / bz if (k_free is not None and bz > 0) else None,
            "effectors_free_stable": k_free / zk if (k_free is not None and zk > 0) else None,
            "baseline_effectors": bz / dz, "baseline_kill_rate": zk * bz / dz,
            "max_lsc_off_im": max_stem_cells(kp, 0.0)}


def _polynomial_check(eqs, kp, e) -> dict:
    roots = sympy_sensitive_roots(kp, e)
    fam = sorted(q["effectors"] for q in eqs if q["clone"] == "sensitive")
    fam_in = [z for z in fam]
    matched = len(roots) == len(fam_in) and all(abs(a - b) <= 1e-8 * b for a, b in zip(roots, fam_in))
    return {"roots_effectors": roots, "enumerated_effectors": fam_in, "matched": bool(matched)}


def steady_states(opts, log=print) -> dict:
    params, variant, solver = opts["parameters"], opts["variant"], opts["solver"]
    so = opts["steady_states"]
    res = {"parameter_set": opts["parameter_set"], "variant": variant, "parameters": params,
           "notes": [
               "normal hematopoiesis is at homeostasis at every equilibrium (its niche is regulated by X0 alone)",
               "leukemia_free has zero LSCs; the simulations' extinction event (fewer than "
               f"{solver['extinction_threshold']:g} LSCs) makes it absorbing in practice even where it is unstable",
               "stable: no resistant cells (R0 = R1 = 0 subspace); stable_full: all 13 eigenvalues",
               "simulation_check: long full-model simulations without extinction event from perturbed states"],
           "settings": {}}
    for setting in opts["run"]["settings"]:
        tr = SETTINGS[setting]
        kp = kernel_parameters(params, variant, tr)
        entry = {"transplant": tr, "kernel_parameters": {k.name: float(kp[k]) for k in KP}, "window": window(kp),
                 "thresholds": thresholds(kp), "doses": {}}
        for dose in so["doses_mg"]:
            e = float(im_effect(dose, params["im_css_400"], params["im_ec50"]))
            # independent search: long simulations, their end points polished on the full RHS
            sims = []
            for lsc0, z0 in ((1e5, kp[KP.ZIN] / kp[KP.ZD]), (1e3, 1e5), (30.0, 3e4)):
                y0 = reduced_state(lsc0, max(z0, 1e-9), kp, e)
                sims.append((y0, _sim(params, variant, tr, y0, [0.0, so["horizon_days"]], dose, solver)))
            guesses = [(r.y[-1], "long_simulation") for _, r in sims
                       if r.success and _sensitive_lsc(r.y[-1]) > 1e-3]
            eqs = equilibria(kp, e, extinction_threshold=solver["extinction_threshold"], extra_guesses=guesses)
            for q in eqs:
                if q["branch"] == "high_burden":
                    approx = static_leukemic_equilibrium(kp, e)
                    if np.all(np.isfinite(approx)) and approx[State.Y0] > 0:
                        q["sympy_static"] = {"state": {s.name: float(approx[s]) for s in State},
                                             "max_log_distance": _log_distance(approx, q["_y"], floor=1e-6),
                                             "exact": bool(kp[KP.ZRHO] == 0)}
                q["simulation_check"] = stability_check(q, kp, params, variant, tr, dose, e, solver,
                                                        so["perturbation"])
            sim_report = []
            for y0, r in sims:
                end = r.y[-1]
                near = min(eqs, key=lambda q: _log_distance(end, q["_y"], floor=1e-6))
                sim_report.append({"start_lsc": _sensitive_lsc(y0),
                                   "start_effectors": float(_start(y0, variant)[State.Z]),
                                   "days": so["horizon_days"], "end_lsc": _sensitive_lsc(end),
                                   "end_effectors": float(end[State.Z]), "nearest_equilibrium": near["branch"],
                                   "distance": _log_distance(end, near["_y"], floor=1e-6)})
            entry["doses"][f"{dose:g}"] = {"dose_mg": dose, "im_effect": e, "equilibria": [_public(q) for q in eqs],
                                           "sympy_polynomial": _polynomial_check(eqs, kp, e),
                                           "long_simulations": sim_report}
            log(f"  steady states {setting} dose {dose:g}: " + ", ".join(
                f"{q['branch']}({'stable' if q['stable'] else 'unstable'}, LSC {q['lsc']:.3g}, "
                f"BCR-ABL {q['bcr_abl_percent']:.3g} %)" for q in eqs))
        res["settings"][setting] = entry
    return res


# --------------------------------------------------------------------------
# section 2: bifurcation diagram
# --------------------------------------------------------------------------
def sweep_values(parameter: str, n: int) -> np.ndarray:
    row = PARAMETER_TABLE[parameter]
    return np.logspace(np.log10(row.lower), np.log10(row.upper), n)


def controlled_exists(params, variant, transplant, extinction_threshold=1.0) -> bool:
    """Whether a stable controlled equilibrium with at least ``extinction_threshold`` LSCs exists off IM."""
    kp = kernel_parameters(params, variant, transplant)
    return any(q["branch"] == "controlled" and q["lsc"] >= extinction_threshold
               for q in stable_off_im(kp, extinction_threshold))


def controlled_intervals(params, variant, transplant, pname, values, flags, extinction_threshold=1.0,
                         rtol=1e-6) -> list[list]:
    """Intervals of ``pname`` where :func:`controlled_exists`; edges between grid points refined by bisection."""
    def edge(lo, hi, flag_lo):
        while hi / lo - 1.0 > rtol:
            mid = math.sqrt(lo * hi)
            if controlled_exists({**params, pname: mid}, variant, transplant, extinction_threshold) == flag_lo:
                lo = mid
            else:
                hi = mid
        return math.sqrt(lo * hi)

    out, start = [], (values[0] if flags[0] else None)
    for i in range(1, len(values)):
        if flags[i] != flags[i - 1]:
            x = edge(values[i - 1], values[i], flags[i - 1])
            if flags[i]:
                start = x
            else:
                out.append([start, x])
                start = None
    if start is not None:
        out.append([start, values[-1]])
    return out


def bifurcation(opts, log=print, progress: bool = False):
    params, variant, solver = opts["parameters"], opts["variant"], opts["solver"]
    bo, thr = opts["bifurcation"], solver["extinction_threshold"]
    rows, wrows = [], []
    meta = {"parameter_set": opts["parameter_set"], "variant": variant, "n_points": bo["n_points"],
            "doses_mg": bo["doses_mg"], "extinction_threshold": thr, "settings": {}, "checks": {}}
    for setting in opts["run"]["settings"]:
        tr = SETTINGS[setting]
        suffix = "allo" if tr else "auto"
        kp0 = kernel_parameters(params, variant, tr)
        meta["settings"][setting] = {"thresholds": thresholds(kp0), "sweeps": {}}
        for sweep in bo["parameters"]:
            pname = f"z_expand_{suffix}" if sweep == "z_expand" else sweep
            values = sweep_values(pname, bo["n_points"])
            flags = []
            for dose in bo["doses_mg"]:
                e = float(im_effect(dose, params["im_css_400"], params["im_ec50"]))
                prev: list[np.ndarray] = []
                n_cont = n_ok = n_lost = n_new = 0
                for v in bar(values, enabled=progress, desc=f"bifurcation {setting} {pname} IM {dose:g} mg",
                             unit="value"):
                    p = {**params, pname: float(v)}
                    kp = kernel_parameters(p, variant, tr)
                    eqs = equilibria(kp, e, extinction_threshold=thr, resistant=False)
                    # natural-parameter continuation from the previous grid value (Newton on the full RHS)
                    for yprev in prev:
                        n_cont += 1
                        ys, _ = polish(yprev, kp, e)
                        if ys is None:
                            n_lost += 1
                            continue
                        match = [q for q in eqs if _same(q["_y"], ys, rtol=1e-5)]
                        if match:
                            n_ok += 1
                            match[0]["found_by"] = sorted(set(match[0]["found_by"]) | {"continuation"})
                        elif _sensitive_lsc(ys) > 0:  # a root the enumeration missed: keep, flagged
                            n_new += 1
                            eqs.append(describe(ys, kp, e, ["continuation"], thr))
                            _assign_branches(eqs, kp)
                    prev = [q["_y"] for q in eqs if q["clone"] == "sensitive"]
                    if e == 0.0:
                        flags.append(any(q["branch"] == "controlled" and q["stable"] and q["lsc"] >= thr
                                         for q in eqs))
                    for q in eqs:
                        rows.append({"setting": setting, "dose_mg": dose, "parameter": pname, "value": float(v),
                                     "branch": q["branch"], "stable": q["stable"], "lsc": q["lsc"],
                                     "load": q["load"], "bcr_abl_percent": q["bcr_abl_percent"],
                                     "effectors": q["effectors"], "max_real_eigenvalue": q["max_real_eigenvalue"],
                                     "found_by": "+".join(q["found_by"])})
                    if dose == bo["doses_mg"][0]:
                        w = window(kp)
                        wrows.append({"setting": setting, "parameter": pname, "value": float(v),
                                      "window_exists": w["exists"], "condition_value": w["condition_value"],
                                      "window_low_load": w["low_load"], "window_high_load": w["high_load"],
                                      "window_low_bcr_abl": w["low_bcr_abl"], "window_high_bcr_abl": w["high_bcr_abl"],
                                      "window_peak_bcr_abl": w["peak_bcr_abl"]})
                meta["checks"][f"{setting}/{pname}/{dose:g}"] = {
                    "continuation_attempts": n_cont, "continuation_matched": n_ok,
                    "continuation_not_converged": n_lost, "continuation_new_equilibria": n_new}
            sw = {"values": values.tolist(), "set_value": params[pname],
                  "bounds": [PARAMETER_TABLE[pname].lower, PARAMETER_TABLE[pname].upper]}
            if flags:
                sw["controlled_intervals"] = controlled_intervals(params, variant, tr, pname, values, flags, thr)
            meta["settings"][setting]["sweeps"][pname] = sw
            log(f"  bifurcation {setting}: {pname} done ({len(values)} values x {len(bo['doses_mg'])} doses); "
                f"controlled for {sw.get('controlled_intervals')}")
    return rows, wrows, meta


# --------------------------------------------------------------------------
# section 3: phase plane and basins
# --------------------------------------------------------------------------
def phase_plane(opts, log=print, progress: bool = False):
    params, variant, solver = opts["parameters"], opts["variant"], opts["solver"]
    po, mo = opts["phase_plane"], opts["min_im"]
    e_stop = float(im_effect(po["stop_dose_mg"], params["im_css_400"], params["im_ec50"]))
    e_on = float(im_effect(400.0, params["im_css_400"], params["im_ec50"]))
    arrays = {}
    meta = {"reduction": "N = D + Q + Y0 (sensitive LSCs), Z effectors; D/Q/Y0 split of the leading eigenvector of "
                         "the (D, Q, Y0) block, progeny at production/loss balance, normal homeostasis (see the "
                         "gvlmodel.analysis.dynamics docstring)",
            "basin_start": f"reduced state at the IM effect of {po['stop_dose_mg']:g} mg/day (the clone's shape "
                           "when imatinib stops), then off IM with the full model",
            "notes": ["basin starts with fewer LSCs than extinction_threshold are eradicated at t = 0",
                      "basin class: nearest stable equilibrium off IM within half a decade of LSCs; -1 if none",
                      "array layout: [z index, lsc index] (rows = effectors, columns = LSCs)"],
            "basin_codes": BASIN_CODES, "horizon_days": po["horizon_days"], "stop_dose_mg": po["stop_dose_mg"],
            "stop_effect": e_stop, "extinction_threshold": solver["extinction_threshold"], "settings": {}}
    lscs = np.logspace(np.log10(po["lsc_range"][0]), np.log10(po["lsc_range"][1]), po["n_lsc"])
    zs = np.logspace(np.log10(po["z_range"][0]), np.log10(po["z_range"][1]), po["n_z"])
    fl = np.logspace(np.log10(po["lsc_range"][0]) - 1, np.log10(po["lsc_range"][1]), po["n_field"])
    fz = np.logspace(np.log10(po["z_range"][0]), np.log10(po["z_range"][1]), po["n_field"])
    for setting in opts["run"]["settings"]:
        tr = SETTINGS[setting]
        kp = kernel_parameters(params, variant, tr)
        pre = f"{setting}_"
        arrays[pre + "log10_lsc"], arrays[pre + "log10_z"] = np.log10(lscs), np.log10(zs)
        arrays[pre + "field_log10_lsc"], arrays[pre + "field_log10_z"] = np.log10(fl), np.log10(fz)
        for tag, e in (("e0", 0.0), ("e1", e_on)):
            gl, gz = np.empty((fz.size, fl.size)), np.empty((fz.size, fl.size))
            for j, z in enumerate(fz):
                for i, n in enumerate(fl):
                    gl[j, i], gz[j, i] = reduced_field(float(n), float(z), kp, e)
            arrays[pre + "growth_lsc_" + tag], arrays[pre + "growth_z_" + tag] = gl, gz
        arrays[pre + "nullcline_lsc_e0"] = np.array([lsc_nullcline(float(n), kp, 0.0) for n in fl])
        eqs = equilibria(kp, 0.0, extinction_threshold=solver["extinction_threshold"], resistant=False)
        stable = [q for q in eqs if q["stable"] and q["clone"] == "sensitive"]
        smeta = {"equilibria": [{"branch": q["branch"], "stable": q["stable"], "lsc": q["lsc"],
                                 "effectors": q["effectors"], "bcr_abl_percent": q["bcr_abl_percent"]} for q in eqs],
                 "window": window(kp)}
        code, end_l, end_z, end_b, t_ext = classify_basins(params, variant, tr, lscs, zs, po["horizon_days"], solver,
                                                           e_stop, stable, progress=progress)
        arrays[pre + "basin"], arrays[pre + "basin_end_lsc"], arrays[pre + "basin_end_z"] = code, end_l, end_z
        arrays[pre + "basin_end_bcr_abl"], arrays[pre + "basin_t_extinct"] = end_b, t_ext
        smeta["basin_counts"] = {k: int(np.sum(code == v)) for k, v in BASIN_CODES.items()}
        # trajectories off IM
        t = np.concatenate(([0.0], np.logspace(0, np.log10(po["horizon_days"]), 200)))
        tl, tz, tb = [], [], []
        for n0, z0 in po["trajectory_starts"]:
            r = simulate(params, y0=_start(reduced_state(n0, z0, kp, e_stop), variant), t_out=t,
                         schedule=((0.0, 0.0),), variant=variant, transplant=tr, rtol=1e-8, atol=1e-8,
                         extinction_threshold=solver["extinction_threshold"], max_steps=5_000_000)
            tl.append(r.leukemic_stem_cells)
            tz.append(r["Z"])
            tb.append(r.bcr_abl)
        n_tr = len(po["trajectory_starts"])
        arrays[pre + "traj_t"] = t
        arrays[pre + "traj_starts"] = np.array(po["trajectory_starts"], dtype=float).reshape(-1, 2)
        arrays[pre + "traj_lsc"] = np.array(tl).reshape(n_tr, t.size)
        arrays[pre + "traj_z"] = np.array(tz).reshape(n_tr, t.size)
        arrays[pre + "traj_bcr_abl"] = np.array(tb).reshape(n_tr, t.size)
        # one treated course from the min-IM start
        b0 = mo["start_bcr_abl_transplanted"] if tr else mo["start_bcr_abl_non_transplanted"]
        tc = np.arange(0.0, po["im_course_days"] + 7300.0 + 1.0, 5.0)
        sched = ((0.0, mo["dose_mg"]), (po["im_course_days"], 0.0)) if po["im_course_days"] > 0 else ((0.0, 0.0),)
        r = simulate(params, y0=initial_state(params, bcr_abl=b0, variant=variant, transplant=tr), t_out=tc,
                     schedule=sched, variant=variant, transplant=tr, rtol=1e-8, atol=1e-8,
                     extinction_threshold=solver["extinction_threshold"])
        arrays[pre + "course_t"], arrays[pre + "course_lsc"], arrays[pre + "course_z"] = tc, r.leukemic_stem_cells, r["Z"]
        arrays[pre + "course_bcr_abl"], arrays[pre + "course_dose"] = r.bcr_abl, r.dose_mg
        smeta["course"] = {"start_bcr_abl_percent": b0, "im_days": po["im_course_days"], "dose_mg": mo["dose_mg"],
                           "t_extinct": None if not r.extinct else r.t_extinct,
                           "outcome": [k for k, v in BASIN_CODES.items() if v == classify_end(r, stable)][0]}
        meta["settings"][setting] = smeta
        log(f"  phase plane {setting}: basins " + ", ".join(f"{k} {v}" for k, v in smeta["basin_counts"].items()))
    return arrays, meta


# --------------------------------------------------------------------------
# section 4: minimal IM duration
# --------------------------------------------------------------------------
def _after_stop(params, variant, tr, y_stop, mo, solver, stable):
    """Off IM after a stop: PCR-negative throughout the window? long-term basin outcome?"""
    common = dict(schedule=((0.0, 0.0),), variant=variant, transplant=tr, rtol=solver["rtol"], atol=solver["atol"],
                  extinction_threshold=solver["extinction_threshold"], max_steps=5_000_000)
    tw = np.arange(0.0, mo["window_days"] + 0.5 * mo["check_interval_days"], mo["check_interval_days"])
    tw[-1] = min(tw[-1], mo["window_days"])
    t = np.unique(np.concatenate([tw, [mo["followup_days"]]]))
    lsc0 = _lsc(y_stop)
    if lsc0 <= 0:
        return {"pcr": True, "durable": True, "outcome": "eradicated", "end": y_stop}
    r = simulate(params, y0=y_stop, t_out=t, **common)
    in_window = t <= mo["window_days"]
    pcr = bool(r.success and np.all(r.bcr_abl[in_window] < 100.0 * mo["detection_limit"]))
    code = classify_end(r, stable)
    outcome = [k for k, v in BASIN_CODES.items() if v == code][0]
    return {"pcr": pcr, "durable": outcome in ("eradicated", "controlled"), "outcome": outcome, "end": r.y[-1]}


def min_im_duration(params, variant, transplant, start_bcr_abl, mo, solver) -> dict:
    """Minimal IM duration (days) for a durable response, for one patient.

    IM at ``mo["dose_mg"]`` for ``T`` days from :func:`gvlmodel.model.simulate.initial_state`
    at ``start_bcr_abl`` %, then off for ``followup_days``: durable if the course ends
    eradicated or controlled (not relapse; :func:`classify_end`).  ``T`` is scanned on
    a grid (``grid_days`` up to ``max_days``; the pattern shows whether durability is
    monotone in ``T``), then refined to the day by bisection between the last
    non-durable and the first durable grid day; none durable: ``censored``.  The same
    for the PCR criterion (``t_min_pcr_days``: also below the detection limit at every
    check during ``window_days``).
    """
    kp = kernel_parameters(params, variant, transplant)
    stable = stable_off_im(kp, solver["extinction_threshold"])
    y0 = initial_state(params, bcr_abl=start_bcr_abl, variant=variant, transplant=transplant)
    grid = np.arange(0.0, mo["max_days"] + 0.5, mo["grid_days"])
    common = dict(variant=variant, transplant=transplant, rtol=solver["rtol"], atol=solver["atol"],
                  extinction_threshold=solver["extinction_threshold"], max_steps=5_000_000)
    on = simulate(params, y0=y0, t_out=grid, schedule=((0.0, mo["dose_mg"]),), **common)
    outs = [_after_stop(params, variant, transplant, on.y[i], mo, solver, stable) for i in range(grid.size)]
    durable = np.array([o["durable"] for o in outs])
    pcr = np.array([o["pcr"] and o["durable"] for o in outs])

    def first_and_monotone(flags):
        idx = np.flatnonzero(flags)
        if idx.size == 0:
            return None, True
        return int(idx[0]), bool(np.all(flags[idx[0]:]))

    def refine(i_first, key):
        if i_first == 0:
            return 0.0, outs[0], y0
        lo, hi = grid[i_first - 1], grid[i_first]
        y_base, best, y_best = on.y[i_first - 1], outs[i_first], on.y[i_first]
        while hi - lo > 1.0:
            mid = float(math.floor(0.5 * (lo + hi)))
            if mid <= lo:
                break
            ys = simulate(params, y0=y_base, t_out=[0.0, mid - grid[i_first - 1]],
                          schedule=((0.0, mo["dose_mg"]),), **common).y[-1]
            o = _after_stop(params, variant, transplant, ys, mo, solver, stable)
            if o["durable"] and (key == "durable" or o["pcr"]):
                hi, best, y_best = mid, o, ys
            else:
                lo = mid
        return float(hi), best, y_best

    i_d, mono_d = first_and_monotone(durable)
    i_p, mono_p = first_and_monotone(pcr)
    out = {"grid_days": grid.tolist(), "durable_on_grid": durable.tolist(), "pcr_on_grid": pcr.tolist(),
           "outcome_on_grid": [o["outcome"] for o in outs], "monotone_on_grid": mono_d,
           "monotone_pcr_on_grid": mono_p, "t_extinct_continuous_im": on.t_extinct if on.extinct else None,
           "t_min_grid_days": None if i_d is None else float(grid[i_d]), "t_min_days": None,
           "censored": i_d is None, "t_min_pcr_days": None, "pcr_censored": i_p is None,
           "outcome_at_t_min": None, "lsc_at_stop": None, "effectors_at_stop": None,
           "bcr_abl_at_stop_percent": None, "end_lsc": None, "end_bcr_abl_percent": None}
    if i_p is not None:
        out["t_min_pcr_days"] = refine(i_p, "pcr")[0]
    if i_d is None:
        return out
    t_min, o, y_stop = refine(i_d, "durable")
    out.update(t_min_days=t_min, outcome_at_t_min=o["outcome"],
               lsc_at_stop=_lsc(y_stop),
               effectors_at_stop=float(y_stop[State.Z]), bcr_abl_at_stop_percent=float(bcr_abl_percent(y_stop)),
               end_lsc=_lsc(o["end"]),
               end_bcr_abl_percent=float(bcr_abl_percent(o["end"])))
    return out


MIN_IM_COLUMNS = ("t_min_days", "censored", "t_min_grid_days", "monotone_on_grid", "t_min_pcr_days", "pcr_censored",
                  "monotone_pcr_on_grid", "t_extinct_continuous_im", "outcome_at_t_min", "lsc_at_stop",
                  "effectors_at_stop", "bcr_abl_at_stop_percent", "end_lsc", "end_bcr_abl_percent")


def min_im_table(opts, log=print, progress: bool = False):
    params, variant, solver, mo = opts["parameters"], opts["variant"], opts["solver"], opts["min_im"]
    rows, details = [], []
    for setting in opts["run"]["settings"]:
        tr = SETTINGS[setting]
        pname = "z_expand_allo" if tr else "z_expand_auto"
        b0 = mo["start_bcr_abl_transplanted"] if tr else mo["start_bcr_abl_non_transplanted"]
        for prof, ov in mo["profiles"].items():
            p_base = resolve_parameters({**params, **ov})
            values = sorted(set(sweep_values(pname, mo["n_points"]).tolist()) | {p_base[pname]})
            t_list = []
            for v in bar(values, enabled=progress, desc=f"minimal IM {setting}/{prof}", unit="value"):
                res = min_im_duration({**p_base, pname: float(v)}, variant, tr, b0, mo, solver)
                row = {"setting": setting, "profile": prof, "parameter": pname, "value": float(v),
                       "is_set_value": bool(np.isclose(v, p_base[pname], rtol=1e-12)), "start_bcr_abl_percent": b0,
                       "dose_mg": mo["dose_mg"], "followup_days": mo["followup_days"],
                       "window_days": mo["window_days"], "detection_limit": mo["detection_limit"]}
                row.update({k: res[k] for k in MIN_IM_COLUMNS})
                rows.append(row)
                details.append({**row, "overrides": ov, "grid_days": res["grid_days"],
                                "durable_on_grid": res["durable_on_grid"], "pcr_on_grid": res["pcr_on_grid"],
                                "outcome_on_grid": res["outcome_on_grid"]})
                t_list.append("censored" if res["censored"] else f"{res['t_min_days']:g}")
            log(f"  min IM {setting}/{prof}: " + ", ".join(f"{v:.3g}->{t}" for v, t in zip(values, t_list)))
    return rows, details


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------
def rows_csv(rows: list[dict]) -> str:
    """Rows of equal keys as CSV (the scenario writer's format; ``None`` and non-finite as empty)."""
    if not rows:
        return ""
    return table_csv({k: [r[k] for r in rows] for k in rows[0]})


def atomic_write_npz(path: Path, arrays: dict) -> None:
    """``np.savez_compressed``, written atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _json_safe(x):
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return _json_safe(x.tolist())
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    return x


#: the files each section writes (besides provenance.json and summary.json, written by every run)
SECTION_FILES = {"steady_states": ("steady_states.json",),
                 "bifurcation": ("bifurcation.csv", "bifurcation_window.csv", "bifurcation.json"),
                 "phase_plane": ("phase_plane.npz", "phase_plane.json"),
                 "min_im": ("min_im_duration.csv", "min_im_duration.json")}


def run_dynamics(config, out, log=print, quick: bool | None = None, progress: bool = False) -> dict:
    """Run the dynamics analysis of a config (path, or parsed dict) into folder ``out``.

    The config is validated completely before anything is computed or written
    (:class:`~gvlmodel.core.errors.InputError` otherwise).  Returns a summary dict
    (files written, timings, headline findings).
    """
    if isinstance(config, (str, Path)):
        opts = load_dynamics_config(config, quick)
    else:
        opts = parse_dynamics_config(config, quick)
        opts["config"] = config
    out = Path(out)
    sections = opts["run"]["sections"]
    begin_outputs(out)
    # an earlier run's files of sections not run now would sit beside this run's provenance
    prune_outputs(out, [f for sec in SECTION_FILES.values() for f in sec],
                  [f for sec in sections for f in SECTION_FILES[sec]])
    files, timings, summary = [], {}, {}
    t_all = time.perf_counter()
    log(f"dynamics: set {opts['parameter_set']} variant {opts['variant']}, sections {', '.join(sections)}"
        + (" (quick)" if opts["run"]["quick"] else ""))
    if "steady_states" in sections:
        t0 = time.perf_counter()
        ss = steady_states(opts, log)
        atomic_write_json(out / "steady_states.json", _json_safe(ss))
        files.append("steady_states.json")
        timings["steady_states"] = time.perf_counter() - t0
        summary["steady_states"] = {s: {d: {q["branch"]: {"stable": q["stable"], "lsc": q["lsc"],
                                                          "bcr_abl_percent": q["bcr_abl_percent"],
                                                          "effectors": q["effectors"]} for q in v["equilibria"]}
                                        for d, v in ent["doses"].items()} for s, ent in ss["settings"].items()}
    if "bifurcation" in sections:
        t0 = time.perf_counter()
        rows, wrows, meta = bifurcation(opts, log, progress)
        atomic_write_text(out / "bifurcation.csv", rows_csv(rows))
        atomic_write_text(out / "bifurcation_window.csv", rows_csv(wrows))
        atomic_write_json(out / "bifurcation.json", _json_safe(meta))
        files += ["bifurcation.csv", "bifurcation_window.csv", "bifurcation.json"]
        timings["bifurcation"] = time.perf_counter() - t0
        summary["thresholds"] = {s: v["thresholds"] for s, v in meta["settings"].items()}
        summary["controlled_intervals"] = {s: {k: w.get("controlled_intervals") for k, w in v["sweeps"].items()}
                                           for s, v in meta["settings"].items()}
    if "phase_plane" in sections:
        t0 = time.perf_counter()
        arrays, meta = phase_plane(opts, log, progress)
        atomic_write_npz(out / "phase_plane.npz", arrays)
        atomic_write_json(out / "phase_plane.json", _json_safe(meta))
        files += ["phase_plane.npz", "phase_plane.json"]
        timings["phase_plane"] = time.perf_counter() - t0
        summary["basin_counts"] = {s: v["basin_counts"] for s, v in meta["settings"].items()}
    if "min_im" in sections:
        t0 = time.perf_counter()
        rows, details = min_im_table(opts, log, progress)
        atomic_write_text(out / "min_im_duration.csv", rows_csv(rows))
        mo = opts["min_im"]
        atomic_write_json(out / "min_im_duration.json", _json_safe({
            "definition": {
                "course": f"IM {mo['dose_mg']:g} mg/day for T days from the start state, then off",
                "durable": f"off IM for {mo['followup_days']:g} days after the stop, the course ends eradicated "
                           "or controlled (nearest stable equilibrium off IM), not relapse",
                "pcr_criterion": f"durable and BCR-ABL below {mo['detection_limit']:g} (ratio) at every check every "
                                 f"{mo['check_interval_days']:g} days during {mo['window_days']:g} days after the "
                                 "stop (t_min_pcr_days)",
                "search": f"grid of T every {mo['grid_days']:g} days up to {mo['max_days']:g}; then bisection to "
                          "1 day between the last non-durable and first durable grid day; censored = none durable"},
            "rows": details}))
        files += ["min_im_duration.csv", "min_im_duration.json"]
        timings["min_im"] = time.perf_counter() - t0
        summary["min_im"] = [(r["setting"], r["profile"], r["value"], r["t_min_days"]) for r in rows]
    timings["total"] = time.perf_counter() - t_all
    atomic_write_json(out / "summary.json", _json_safe(summary))
    files.append("summary.json")
    prov = provenance(opts["config"], seed=None)
    prov["resolved"] = _json_safe({k: v for k, v in opts.items() if k != "config"})
    prov["timings_s"] = timings
    finish_outputs(out, prov)  # last: the folder is complete
    files.append("provenance.json")
    log(f"dynamics: wrote {', '.join(files)} to {out} in {timings['total']:.1f} s")
    return {"out": str(out), "files": files, "timings_s": timings, "summary": _json_safe(summary)}
