r"""Dynamics of immune control: equilibria, bifurcations, phase plane, basins, minimal IM course.

``gvlmodel dynamics CONFIG.toml --out DIR`` (public API: :func:`load_dynamics_config`,
:func:`run_dynamics`; building blocks :func:`equilibria`, :func:`reduced_state`,
:func:`classify_basins`, :func:`min_im_duration`).  The analysis is of the model of
:mod:`gvlmodel.model` (sympy form: :mod:`gvlmodel.symbolic`) for one parameter set
(default: the shipped fit ``hess2005``, variant H2, its posterior medians), in two
settings: ``transplanted`` (donor effector parameters ``*_allo``) and
``non_transplanted`` (autologous ``*_auto``).

How equilibria are found
------------------------
Every equilibrium of the 10-state system belongs to one of these families
(``k = z_kill Z`` is the per-cell immune kill rate, ``G = r_y phi - d0 - k_IM e - q_in``):

* ``leukemia_free``: no leukemic cells, normal hierarchy at homeostasis, ``Z = b_z/d_z``
  (sympy closed form :func:`gvlmodel.symbolic.healthy_steady_state_sympy`).  It has
  *zero* LSCs; in simulations the clone is also declared extinct below one LSC
  (the integrator's extinction event), which this ODE equilibrium does not know.
* ``coexistence_low`` / ``coexistence_high``: normal stem cells present, so the niche
  feedback is pinned at ``phi = d0/r_x``; the LSC balance
  ``(G - k) + q_out q_in/(q_out + kappa_Q k) = 0`` is a quadratic in ``k`` with one
  positive root ``k*`` (the immune kill that exactly offsets LSC growth in a normal
  marrow); then ``Z* = k*/z_kill`` and the effector balance requires the stimulation
  ``(1-s) rho 2u/(1+u^2) = sigma* = d_z - b_z/Z*`` (``u = L/K_z``), a quadratic in ``u``
  with roots ``u_- < 1 < u_+`` whenever ``0 < sigma* < (1-s) rho``.  ``u_-`` (below the
  peak of stimulation) is the *immune-controlled* state; ``u_+`` is the threshold
  (saddle) between control and escape.  These are exact closed forms.
* ``dominant``: no normal stem cells (``X = 0``); parametrised by ``k`` (``G(k)`` fixes
  ``phi`` hence ``S = Q + Y0``), the effector balance is one scalar equation whose
  roots are bracketed on a log grid of ``k`` and solved by Brent's method.  The sympy
  closed form :func:`gvlmodel.symbolic.leukemic_steady_state_sympy` (static effectors)
  is exact for H0/H1 and reported as an approximation for H2.
* ``empty_marrow`` (steady_states.json only): nothing but baseline effectors; unstable.

Each candidate is then polished by ``scipy.optimize.root`` on the *full* right-hand
side (log-transformed non-zero components; zero components span invariant subspaces)
and accepted only if the compiled :func:`gvlmodel.model.rhs` residual, per compartment
relative to its turnover, is below ``1e-8``.  Independent searches cross-check the
enumeration: full-RHS root finding started from a grid of (LSC, Z) states and from the
end points of long simulations (steady states); natural-parameter continuation from
the previous grid value (bifurcation).  Stability: eigenvalues of the sympy Jacobian
(:func:`gvlmodel.symbolic.jacobian_numeric`); checked by long simulations of the full
compiled model (no extinction event) from perturbed states.

The 2-D reduction of the phase plane
------------------------------------
State ``(N, Z)`` with ``N = Q + Y0`` (LSCs).  The other compartments are *slaved* at
their quasi-steady state given ``N`` and ``k = z_kill Z`` (:func:`reduced_state`):
``Q = N r/(1+r)``, ``r = q_in/(q_out + kappa_Q k)``; ``Y1..Y3`` at production/loss
balance behind ``Y0`` (imatinib-divided outputs on IM); normal stem cells fill what the
niche leaves, ``X0 = max(x0_eq - N, 0)``, and ``X1..X3`` follow ``X0``.  The reduced
field is the compiled RHS at that state: ``dN/dt = f_Q + f_Y0``, ``dZ/dt = f_Z``.  This
is a geometric reduction for visualisation, not a time-scale separation (progenitor
turnover, 0.008/day, is not fast); its equilibria coincide with the full model's
(``coexistence`` and ``dominant`` families), and **basins of attraction are computed
with the full compiled model** (:func:`gvlmodel.simulate.simulate`, off IM, from the
slaved state of each grid point, with the extinction event at
``solver.extinction_threshold`` LSCs).

Output files (in ``--out``; all written atomically)
---------------------------------------------------
``steady_states.json``
    ``{"parameter_set", "variant", "parameters", "notes", "settings": {SETTING:
    {"transplant", "kernel_parameters": {KP: value}, "window": {"exists", "low_load",
    "high_load", "condition_value"}, "thresholds": {...}, "doses": {"<dose_mg>":
    {"dose_mg", "im_effect", "equilibria": [EQ, ...], "searches": {...}}}}}}``.
    ``EQ`` = ``{"branch", "role", "found_by", "state": {X0..Z}, "lsc", "load",
    "bcr_abl_percent", "effectors", "kill_rate", "eigenvalues_real",
    "eigenvalues_imag", "max_real_eigenvalue", "stable", "residual",
    "below_extinction_threshold", "simulation_check": {"returned", "left",
    "agrees", ...}, "sympy_static_approximation" (dominant only)}``.  ``role`` is
    one of ``leukemia_free``, ``immune_controlled``, ``threshold``, ``escape``,
    ``unstable`` (stable coexistence_low = immune_controlled, coexistence_high =
    threshold, stable dominant = escape).
``bifurcation.csv``
    one row per equilibrium per grid point: ``setting, dose_mg, parameter
    (z_expand_allo|z_expand_auto|z_kill|z_half), value, branch, role, stable, lsc, load,
    bcr_abl_percent, effectors, max_real_eigenvalue, found_by``.
``bifurcation_window.csv``
    one row per grid point: ``setting, parameter, value, window_exists,
    condition_value ((1-s) rho - d_z), window_low_load, window_high_load,
    window_low_lsc_off_im, window_high_lsc_off_im, window_low_lsc_on_im,
    window_high_lsc_on_im`` (window edges as total leukemic load, from
    :func:`gvlmodel.symbolic.window_edges_sympy`, and as the LSC count whose slaved
    progeny makes that load at baseline effectors, off and on IM 400 mg/day).
``bifurcation.json``
    grid meta and the analytic thresholds per setting: ``rho_window`` (window exists
    iff ``(1-s) rho > d_z``), ``rho_control`` (coexistence equilibria exist iff
    ``(1-s) rho > d_z - b_z z_kill/k*``), ``z_kill_free_stable`` (the leukemia-free
    state is stable off IM iff ``z_kill b_z/d_z > k*``), ``z_kill_control_min`` /
    ``z_kill_control_max`` (coexistence exists iff ``z_kill`` lies between),
    ``k_star``; plus ``checks`` (continuation agreement counts).
``phase_plane.npz`` + ``phase_plane.json``
    npz keys ``{SETTING}_{name}``: ``log10_lsc`` (n_lsc,), ``log10_z`` (n_z,),
    ``growth_lsc_e{E}`` / ``growth_z_e{E}`` (n_z, n_lsc): per-capita rates (1/day) of
    the reduced field at IM effect ``E`` (0 and 1; contour level 0 = nullclines),
    ``nullcline_lsc_e{E}`` (n_lsc,): ``Z`` on the LSC nullcline (nan if none),
    ``nullcline_z_e{E}`` (n_lsc, 3): ``Z`` on the effector nullcline (up to 3 branches,
    nan-padded; the field's zero contour is the full nullcline), ``basin`` (n_z, n_lsc)
    int8: 0 extinct (also every start below the extinction threshold), 1 immune-controlled,
    2 escape, -1 unresolved; ``basin_end_lsc``, ``basin_end_z``, ``basin_t_extinct``
    (n_z, n_lsc); ``traj_t`` (n_t,), ``traj_lsc``, ``traj_z``, ``traj_bcr_abl``
    (n_traj, n_t): full-model trajectories off IM from ``trajectory_starts``;
    ``course_t``, ``course_lsc``, ``course_z``, ``course_bcr_abl``, ``course_dose``: one
    treated course (IM for ``im_course_days`` then off) from the min-IM start.  The json
    holds the axes' meaning, the equilibria projected on the plane, basin counts and
    the reduction's definition.
``min_im_duration.csv`` + ``min_im_duration.json``
    one row per setting, profile and immune-strength value: ``setting, profile,
    parameter, value, is_set_value, start_bcr_abl_percent, dose_mg, window_days,
    detection_limit, t_min_days`` (empty if censored), ``censored``,
    ``t_min_grid_days, monotone_on_grid, durable_fraction_on_grid, t_min_pcr_days,
    pcr_censored, monotone_pcr_on_grid, t_extinct_continuous_im, fate_at_t_min,
    long_term_outcome, lsc_at_stop, effectors_at_stop, bcr_abl_at_stop_percent``.
    Durable = BCR-ABL below the detection limit at every check in the window after
    the stop, or no LSC left at the stop; ``t_min_pcr_days`` uses the PCR criterion
    alone.  ``fate_at_t_min``: ``extinct_at_stop`` | ``extinct_in_window`` |
    ``pcr_negative_not_extinct``; ``long_term_outcome`` (after the window, off IM for
    ``followup_days``): ``eradicated`` | ``eradicated_later`` | ``late_relapse`` |
    ``sustained_immune_control``.  The json holds definitions and, per row, the
    durable pattern on the grid.
``provenance.json``
    :func:`gvlmodel.provenance.provenance` of the config, plus the resolved options.

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

from . import symbolic
from .errors import InputError, check_tables, read_toml
from .errors import boolean as _bool
from .errors import fail as _fail
from .errors import integer as _int
from .errors import real as _real
from .indices import KP, N_STATES, State
from .measurement import bcr_abl_percent
from .model import im_effect, rhs
from .parameters import (PARAMETER_NAMES, PARAMETER_TABLE, available_parameter_sets, kernel_parameters,
                         parameter_set_info, parse_variant, resolve_parameters)
from .provenance import (atomic_write_bytes, atomic_write_json, atomic_write_text, begin_outputs, provenance,
                         prune_outputs)
from .scenario import table_csv
from .simulate import MAX_DAYS, MAX_DOSE_MG, initial_state, simulate

SETTINGS = {"transplanted": True, "non_transplanted": False}
SECTIONS = ("steady_states", "bifurcation", "phase_plane", "min_im")
SWEEPS = ("z_expand", "z_kill", "z_half")
BASIN_CODES = {"extinct": 0, "immune_controlled": 1, "escape": 2, "unresolved": -1}
RESIDUAL_TOL = 1e-8

# --------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------
DEFAULTS = {
    "run": {"quick": False, "sections": list(SECTIONS), "settings": list(SETTINGS)},
    "steady_states": {"doses_mg": [0.0, 400.0], "horizon_days": 40000.0, "grid_starts": 5, "perturbation": 0.05},
    "bifurcation": {"parameters": ["z_expand", "z_kill", "z_half"], "n_points": 61, "doses_mg": [0.0, 400.0]},
    "phase_plane": {"n_lsc": 40, "n_z": 40, "lsc_range": [1e-3, 1e7], "z_range": [10.0, 1e8],
                    "horizon_days": 40000.0, "trajectory_starts": [[10.0, 1e3], [10.0, 1e5], [1e3, 1e6], [1e3, 1e7],
                                                                   [1e5, 1e7], [1.0, 3e4]],
                    "im_course_days": 365.0, "n_field_z": 200},
    "min_im": {"n_points": 13, "dose_mg": 400.0, "max_days": 3650.0, "grid_days": 30.0, "window_days": 730.0,
               "check_interval_days": 7.0, "detection_limit": 1e-5, "start_bcr_abl_transplanted": 0.1,
               "start_bcr_abl_non_transplanted": 70.0, "followup_days": 7300.0, "profiles": {"median": {}}},
    "solver": {"rtol": 1e-8, "atol": 1e-8, "extinction_threshold": 1.0},
}
#: caps applied by ``quick`` (tests, smoke runs)
QUICK_CAPS = {("bifurcation", "n_points"): 7, ("phase_plane", "n_lsc"): 6, ("phase_plane", "n_z"): 6,
              ("phase_plane", "n_field_z"): 40, ("min_im", "n_points"): 3, ("steady_states", "grid_starts"): 2}
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


def _range(field, v) -> list:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        _fail(field, f"expected [low, high] with 0 < low < high, got {v!r}")
    lo, hi = (_real(f"{field}[]", x, 0.0, lo_open=True) for x in v)
    if not lo < hi:
        _fail(field, f"expected [low, high] with 0 < low < high, got {v!r}")
    return [lo, hi]


def _allowed_text(table, allowed):
    if table == "parameters":
        return "set, variant, or parameter names (see `gvlmodel parameters`)"
    return ", ".join(sorted(allowed))


def default_set() -> str:
    return "hess2005" if "hess2005" in available_parameter_sets() else "default"


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
    if "grid_starts" in ss:
        o["steady_states"]["grid_starts"] = _int("[steady_states] grid_starts", ss["grid_starts"], 0, 50)
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
    if "n_field_z" in ph:
        o["phase_plane"]["n_field_z"] = _int("[phase_plane] n_field_z", ph["n_field_z"], 10, 5000)
    for key in ("lsc_range", "z_range"):
        if key in ph:
            o["phase_plane"][key] = _range(f"[phase_plane] {key}", ph[key])
    if "horizon_days" in ph:
        o["phase_plane"]["horizon_days"] = _real("[phase_plane] horizon_days", ph["horizon_days"], 100.0, 1e7)
    if "im_course_days" in ph:
        o["phase_plane"]["im_course_days"] = _real("[phase_plane] im_course_days", ph["im_course_days"], 0.0, 1e5)
    if "trajectory_starts" in ph:
        v = ph["trajectory_starts"]
        if not isinstance(v, list) or not all(isinstance(s, list) and len(s) == 2 for s in v):
            _fail("[phase_plane] trajectory_starts", f"expected a list of [lsc, effectors] pairs (cells), got {v!r}")
        o["phase_plane"]["trajectory_starts"] = [[_real("[phase_plane] trajectory_starts[]", x, 0.0) for x in s]
                                                 for s in v]
    # min IM
    mi_real = {"dose_mg": (1.0, MAX_DOSE_MG), "max_days": (1.0, MAX_DAYS), "grid_days": (1.0, 3650.0),
               "window_days": (1.0, MAX_DAYS), "check_interval_days": (0.5, 3650.0), "detection_limit": (1e-9, 0.1),
               "start_bcr_abl_transplanted": (1e-6, 99.0), "start_bcr_abl_non_transplanted": (1e-6, 99.0),
               "followup_days": (0.0, 1e5)}
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
    for key, lo, hi in (("rtol", 1e-13, 1e-3), ("atol", 1e-15, 1.0), ("extinction_threshold", 0.0, 1e6)):
        if key in so:
            o["solver"][key] = _real(f"[solver] {key}", so[key], lo, hi)
    # parameters
    pa = dict(cfg.get("parameters", {}))
    set_name = pa.pop("set", default_set())
    if not isinstance(set_name, str) or set_name not in available_parameter_sets():
        _fail("[parameters] set", f"unknown parameter set {set_name!r}; allowed: "
              + ", ".join(available_parameter_sets()))
    info = parameter_set_info(set_name)
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
        o["phase_plane"]["trajectory_starts"] = o["phase_plane"]["trajectory_starts"][:2]
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
# closed forms and the reduced plane
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


@lru_cache(maxsize=None)
def _window_fn():
    _, p, _ = symbolic.symbols()
    cond, (lo, hi) = symbolic.window_edges_sympy()
    return (sp.lambdify((p,), cond.lhs - cond.rhs, modules="math"),
            sp.lambdify((p,), [lo, hi], modules="math"))


def healthy_equilibrium(kp, e: float = 0.0) -> np.ndarray:
    """Leukemia-free state (sympy closed form)."""
    return np.array(_healthy_fn()(tuple(float(v) for v in kp), float(e)), dtype=float)


def window(kp) -> dict:
    """Immune window in total leukemic load: ``exists`` iff ``(1-s) rho - d_z > 0`` (sympy closed form)."""
    kpt = tuple(float(v) for v in kp)
    cond_fn, edges_fn = _window_fn()
    cond = float(cond_fn(kpt))
    if not cond > 0:
        return {"exists": False, "condition_value": cond, "low_load": None, "high_load": None}
    lo, hi = edges_fn(kpt)
    return {"exists": True, "condition_value": cond, "low_load": float(lo), "high_load": float(hi)}


def _stim(load, kp):
    u = load / kp[KP.ZK]
    return (1.0 - kp[KP.ZSUPP]) * kp[KP.ZRHO] * 2.0 * u / (1.0 + u * u)


def _progeny(k, kp, e):
    """Ratios ``Q/Y0``, ``Y1/Y0``, ``Y2/Y0``, ``Y3/Y0`` at quasi-steady state under kill rate ``k``."""
    qr = kp[KP.QIN] / (kp[KP.QOUT] + kp[KP.ZQREL] * k)
    a = kp[KP.AY] / (1.0 + (kp[KP.IMFA] - 1.0) * e) / (kp[KP.D1] + k)
    b = kp[KP.BY] / (1.0 + (kp[KP.IMFB] - 1.0) * e) / (kp[KP.D2] + k)
    c = kp[KP.CY] / (kp[KP.D3] + k)
    return qr, a, a * b, a * b * c


def _k_balance(G, kp):
    """The kill rate ``k >= 0`` with ``(G - k) + q_out q_in/(q_out + kappa k) = 0`` (LSC balance), or None."""
    qi, qo, kap = kp[KP.QIN], kp[KP.QOUT], kp[KP.ZQREL]
    if G + qi <= 0.0:
        return None
    if kap == 0.0:
        return G + qi
    b = kap * G - qo
    return (b + math.sqrt(b * b + 4.0 * kap * qo * (G + qi))) / (2.0 * kap)


def _normal_niche_total(kp):
    """Stem cells in the niche at homeostasis, ``S_h = K_N (r_x/d0 - 1)`` (= x0_eq)."""
    return kp[KP.KN] * (kp[KP.RX] / kp[KP.D0] - 1.0)


def k_star(kp, e: float = 0.0):
    """Immune kill rate (1/day) that exactly offsets LSC growth in a normal marrow (``phi = d0/r_x``)."""
    G = kp[KP.RY] * kp[KP.D0] / kp[KP.RX] - kp[KP.D0] - kp[KP.IMKILL] * e - kp[KP.QIN]
    return _k_balance(G, kp)


def _leukemic_state(y0c, k, kp, e, x0):
    qr, r1, r2, r3 = _progeny(k, kp, e)
    y = np.zeros(N_STATES)
    y[State.Y0], y[State.Q] = y0c, qr * y0c
    y[State.Y1], y[State.Y2], y[State.Y3] = r1 * y0c, r2 * y0c, r3 * y0c
    y[State.X0] = x0
    y[State.X1] = kp[KP.AX] * x0 / kp[KP.D1]
    y[State.X2] = kp[KP.BX] * y[State.X1] / kp[KP.D2]
    y[State.X3] = kp[KP.CX] * y[State.X2] / kp[KP.D3]
    y[State.Z] = k / kp[KP.ZKILL] if kp[KP.ZKILL] > 0 else 0.0
    return y


def reduced_state(lsc: float, z: float, kp, e: float = 0.0) -> np.ndarray:
    """Full state of the 2-D reduction at ``(N = Q + Y0, Z)``; see the module docstring."""
    k = kp[KP.ZKILL] * z
    qr = _progeny(k, kp, e)[0]
    y = _leukemic_state(lsc / (1.0 + qr), k, kp, e, max(_normal_niche_total(kp) - lsc, 0.0))
    y[State.Z] = z
    return y


def reduced_field(lsc: float, z: float, kp, e: float = 0.0) -> tuple[float, float]:
    """Per-capita rates ``(dN/dt / N, dZ/dt / Z)`` (1/day) of the reduced system (compiled RHS)."""
    y = reduced_state(lsc, z, kp, e)
    f = np.empty(N_STATES)
    rhs(y, kp, e, f)
    return (f[State.Q] + f[State.Y0]) / lsc, f[State.Z] / z


def lsc_per_load(kp, e: float, z: float | None = None) -> float:
    """LSCs per leukemic cell (total load) at quasi-steady state with effectors ``z`` (default baseline)."""
    if z is None:
        z = kp[KP.ZIN] / kp[KP.ZD]
    qr, r1, r2, r3 = _progeny(kp[KP.ZKILL] * z, kp, e)
    return (1.0 + qr) / (1.0 + qr + r1 + r2 + r3)


# --------------------------------------------------------------------------
# equilibria
# --------------------------------------------------------------------------
def _turnover(kp):
    t = np.empty(N_STATES)
    t[State.X0] = t[State.Y0] = kp[KP.D0]
    t[State.X1] = t[State.Y1] = kp[KP.D1]
    t[State.X2] = t[State.Y2] = kp[KP.D2]
    t[State.X3] = t[State.Y3] = kp[KP.D3]
    t[State.Q] = kp[KP.QOUT]
    t[State.Z] = kp[KP.ZD]
    return np.maximum(t, 1e-12)


def relative_residual(y, kp, e) -> float:
    """``max_i |f_i| / (turnover_i y_i)`` over non-zero components; inf if a zero component moves."""
    f = np.empty(N_STATES)
    rhs(np.asarray(y, dtype=float), kp, e, f)
    if not np.all(np.isfinite(f)):
        return math.inf
    pos = y > 0
    if np.any(np.abs(f[~pos]) > 0):
        return math.inf
    if not np.any(pos):
        return 0.0
    return float(np.max(np.abs(f[pos]) / (_turnover(kp)[pos] * y[pos])))


def polish(y, kp, e, tol: float = 1e-12):
    """Newton-type refinement (``scipy.optimize.root``) of an equilibrium guess on the full RHS.

    Non-zero components are solved in log space (zero components are invariant);
    returns ``(state, relative_residual)``; the state is ``None`` if it failed.
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


def _dominant_candidates(kp, e, n_grid=600):
    """Equilibria without normal stem cells: roots of the effector balance along ``k`` (X = 0)."""
    out = []
    zk, bz, dz = kp[KP.ZKILL], kp[KP.ZIN], kp[KP.ZD]
    kn, ry = kp[KP.KN], kp[KP.RY]
    base = kp[KP.D0] + kp[KP.IMKILL] * e + kp[KP.QIN]

    def state_at(k):
        qi, qo = kp[KP.QIN], kp[KP.QOUT]
        G = k - qo * qi / (qo + kp[KP.ZQREL] * k)
        phi = (G + base) / ry
        if not (0.0 < phi < 1.0):
            return None
        S = kn * (1.0 / phi - 1.0)
        qr = _progeny(k, kp, e)[0]
        return _leukemic_state(S / (1.0 + qr), k, kp, e, 0.0)

    def static(k):  # Z from the effector balance given the load
        y = state_at(k)
        if y is None:
            return None
        load = y[State.Q:State.Z].sum()
        if bz == 0.0:
            y[State.Z] = 0.0
            return y
        den = dz - _stim(load, kp)
        if den <= 0:
            return None
        y[State.Z] = bz / den
        return y

    if zk <= 0.0:
        y = static(0.0)
        return [y] if y is not None else []
    if bz == 0.0:
        y = static(0.0)
        if y is not None:
            out.append(y)

    def resid(logk):
        y = state_at(math.exp(logk))
        if y is None:
            return math.nan
        z = y[State.Z]
        load = y[State.Q:State.Z].sum()
        return (bz - dz * z + _stim(load, kp) * z) / (bz + dz * z)

    # k where phi reaches 1 (no stem cells left) bounds the scan
    k_hi = 1.0
    while state_at(k_hi) is not None and k_hi < 1e6:
        k_hi *= 10.0
    grid = np.linspace(math.log(1e-16), math.log(k_hi), n_grid)
    vals = np.array([resid(g) for g in grid])
    for i in range(n_grid - 1):
        a, b = vals[i], vals[i + 1]
        if not (np.isfinite(a) and np.isfinite(b)):
            continue
        if a == 0.0:
            root_k = grid[i]
        elif a * b < 0:
            root_k = brentq(resid, grid[i], grid[i + 1], xtol=1e-14, rtol=1e-14)
        else:
            continue
        out.append(state_at(math.exp(root_k)))
    return out


def _coexistence_candidates(kp, e):
    """Closed-form equilibria with normal stem cells and leukemia (immune-controlled / threshold)."""
    zk, bz, dz = kp[KP.ZKILL], kp[KP.ZIN], kp[KP.ZD]
    rho = (1.0 - kp[KP.ZSUPP]) * kp[KP.ZRHO]
    ks = k_star(kp, e)
    if zk <= 0 or ks is None or ks <= 0 or rho <= 0:
        return []
    zs = ks / zk
    sigma = dz - bz / zs
    if sigma <= 0 or sigma > rho:
        return []
    c = sigma / rho
    disc = math.sqrt(max(1.0 - c * c, 0.0))
    us = [(1.0 - disc) / c] if disc == 0 else [(1.0 - disc) / c, (1.0 + disc) / c]
    out = []
    ratio = lsc_per_load(kp, e, zs) / (1.0 + _progeny(ks, kp, e)[0])  # Y0 per unit load
    for u in us:
        y0c = u * kp[KP.ZK] * ratio
        y = _leukemic_state(y0c, ks, kp, e, 0.0)
        x0 = _normal_niche_total(kp) - y[State.Q] - y[State.Y0]
        if x0 <= 0:
            continue
        out.append(_leukemic_state(y0c, ks, kp, e, x0))
    return out


def _branch(y, kp) -> str:
    lsc = y[State.Q] + y[State.Y0]
    if lsc <= 0:
        return "leukemia_free" if y[State.X0] > 0 else "empty_marrow"
    if y[State.X0] <= 0:
        return "dominant"
    return "coexistence"


def _same(a, b, rtol=1e-5) -> bool:
    if np.any((a > 0) != (b > 0)):
        return False
    m = a > 0
    return bool(np.all(np.abs(np.log(a[m]) - np.log(b[m])) < rtol * 10))


def _describe(y, kp, e, found_by, extinction_threshold):
    eig = np.linalg.eigvals(symbolic.jacobian_numeric(y, kp, e))
    maxre = float(np.max(eig.real))
    scale = 1e-10 * max(1.0, float(np.max(np.abs(eig))))
    lsc = float(y[State.Q] + y[State.Y0])
    return {
        "branch": _branch(y, kp), "role": None, "found_by": sorted(set(found_by)),
        "state": {s.name: float(y[s]) for s in State}, "lsc": lsc,
        "load": float(y[State.Q:State.Z].sum()), "bcr_abl_percent": float(bcr_abl_percent(y)),
        "effectors": float(y[State.Z]), "kill_rate": float(kp[KP.ZKILL] * y[State.Z]),
        "eigenvalues_real": [float(v) for v in eig.real], "eigenvalues_imag": [float(v) for v in eig.imag],
        "max_real_eigenvalue": maxre, "stable": bool(maxre < -scale), "marginal": bool(abs(maxre) <= scale),
        "residual": relative_residual(y, kp, e),
        "below_extinction_threshold": bool(0 < lsc < extinction_threshold),
        "_y": y,
    }


def _assign_roles(eqs):
    co = sorted([q for q in eqs if q["branch"] == "coexistence"], key=lambda q: q["load"])
    for q in eqs:
        b = q["branch"]
        if b == "coexistence":
            q["branch"] = "coexistence_low" if (len(co) > 1 and q is co[0]) or (len(co) == 1 and q["stable"]) \
                else "coexistence_high"
        if b in ("leukemia_free", "empty_marrow"):
            q["role"] = b
        elif q["stable"]:
            q["role"] = "immune_controlled" if b == "coexistence" else "escape"
        elif b == "coexistence" and q["branch"] == "coexistence_high":
            q["role"] = "threshold"
        else:
            q["role"] = "unstable"


def equilibria(kp, e: float = 0.0, *, extra_guesses=(), extinction_threshold: float = 1.0,
               include_empty: bool = False) -> list[dict]:
    """All equilibria of the full model at IM effect ``e`` (see the module docstring).

    Returns dicts (schema ``EQ`` of ``steady_states.json``) sorted by load, each with
    the numeric state under the private key ``"_y"``.  ``extra_guesses`` are
    ``(state, label)`` pairs polished on the full RHS and merged (cross-checks).
    """
    kp = np.asarray(kp, dtype=float)
    cands = [(healthy_equilibrium(kp, e), "sympy_closed_form")]
    if include_empty:
        y = np.zeros(N_STATES)
        y[State.Z] = kp[KP.ZIN] / kp[KP.ZD]
        cands.append((y, "trivial"))
    cands += [(y, "closed_form_coexistence") for y in _coexistence_candidates(kp, e)]
    cands += [(y, "k_scan_brent") for y in _dominant_candidates(kp, e)]
    cands += list(extra_guesses)
    found: list[tuple[np.ndarray, list]] = []
    for y, label in cands:
        ys, _ = polish(y, kp, e)
        if ys is None:
            continue
        for yf, labels in found:
            if _same(yf, ys):
                labels.append(label)
                break
        else:
            found.append((ys, [label]))
    eqs = [_describe(y, kp, e, labels, extinction_threshold) for y, labels in found]
    _assign_roles(eqs)
    return sorted(eqs, key=lambda q: (q["load"], q["state"]["X0"]))


def _public(eq):
    return {k: v for k, v in eq.items() if not k.startswith("_")}


def static_dominant_approximation(kp, e):
    """Sympy closed form of the dominant state with static effectors (exact if no expansion)."""
    return np.array(_static_leukemic_fn()(tuple(float(v) for v in kp), float(e)), dtype=float)


def _log_distance(a, b, floor=1e-9):
    return float(np.max(np.abs(np.log((np.asarray(a) + floor) / (np.asarray(b) + floor)))))


def _start(y0, variant) -> np.ndarray:
    """A simulation start: non-negative, and without effectors in variant H0 (which has none)."""
    y = np.maximum(np.asarray(y0, dtype=float), 0.0)
    if parse_variant(variant).value == "H0":
        y[State.Z] = 0.0
    return y


def _sim_end(params, variant, transplant, y0, days, dose, solver, threshold=0.0, n_out=2):
    t = np.linspace(0.0, days, n_out)
    r = simulate(params, y0=_start(y0, variant), t_out=t, schedule=((0.0, dose),), variant=variant,
                 transplant=transplant, rtol=solver["rtol"], atol=solver["atol"], extinction_threshold=threshold,
                 max_steps=5_000_000)
    return r


def _seed(y, kp, e, lsc=1e-6, x0=1e-3):
    """``y`` with its zero groups seeded: ``lsc`` LSCs (slaved progeny) and ``x0`` normal stem cells."""
    ys = y.copy()
    seeded = []
    if y[State.Q] + y[State.Y0] == 0:
        sd = reduced_state(lsc, max(y[State.Z], 1e-12), kp, e)
        ys[State.Q:State.Z] = sd[State.Q:State.Z]
        seeded.append("lsc")
    if y[State.X0] == 0:
        ys[State.X0] = x0
        ys[State.X1] = kp[KP.AX] * x0 / kp[KP.D1]
        ys[State.X2] = kp[KP.BX] * ys[State.X1] / kp[KP.D2]
        ys[State.X3] = kp[KP.CX] * ys[State.X2] / kp[KP.D3]
        seeded.append("x0")
    return ys, seeded


def _deviation(y, ref, seeded, y_start):
    """Log deviation on the equilibrium's non-zero components, and growth factors of seeded groups."""
    m = ref > 0
    with np.errstate(divide="ignore"):
        d = float(np.max(np.abs(np.log(np.maximum(y[m], 1e-300) / ref[m])))) if np.any(m) else 0.0
    growth = {}
    if "lsc" in seeded:
        growth["lsc"] = float((y[State.Q] + y[State.Y0]) / (y_start[State.Q] + y_start[State.Y0]))
    if "x0" in seeded:
        growth["x0"] = float(y[State.X0] / y_start[State.X0])
    return d, growth


def stability_check(eq, kp, params, variant, transplant, dose, e, solver, perturbation=0.05):
    """Long simulations (no extinction event) from perturbed states: does the trajectory return?

    Starts: every non-zero component scaled by ``1 +- perturbation`` (alternating
    signs) and ``+-`` along the leading eigenvector (same relative size); zero
    groups of the equilibrium are seeded (1e-6 LSCs with slaved progeny, 1e-3
    normal stem cells).  Horizon ``20/|lambda_max|`` (2000..1e6 days).
    ``returned``: for every start the log deviation on the non-zero components
    shrank 10-fold and every seed shrank 10-fold; ``left``: for some start the
    deviation grew 10-fold or a seed grew 10-fold.  ``agrees`` = ``returned`` for
    a stable, ``left`` for an unstable equilibrium.
    """
    y = eq["_y"]
    lam = abs(eq["max_real_eigenvalue"])
    days = float(np.clip(20.0 / max(lam, 1e-12), 2000.0, 1e6))
    J = symbolic.jacobian_numeric(y, kp, e)
    w, v = np.linalg.eig(J)
    lead = np.real(v[:, int(np.argmax(w.real))])
    pattern = np.where(np.arange(N_STATES) % 2 == 0, 1.0, -1.0)
    starts = [y * (1.0 + perturbation * pattern)]
    pos = y > 0
    m = float(np.max(np.abs(lead[pos]) / y[pos])) if np.any(pos) else 0.0
    if m > 0:
        for sgn in (1.0, -1.0):
            ys = y + sgn * perturbation * lead / m * pos
            if np.all(ys >= 0):
                starts.append(ys)
    report = []
    for ys in starts:
        ys, seeded = _seed(ys, kp, e)
        r = _sim_end(params, variant, transplant, ys, days, dose, solver)
        d0, _ = _deviation(ys, y, seeded, ys)
        d1, growth = _deviation(r.y[-1], y, seeded, ys) if r.success else (math.inf, {})
        back = (d1 <= 0.1 * d0 or d1 < 1e-8) and all(g < 0.1 for g in growth.values())
        away = d1 > 10.0 * d0 or any(g > 10.0 for g in growth.values())
        report.append({"start_deviation": d0, "end_deviation": d1, "seed_growth": growth,
                       "returned": bool(back), "left": bool(away)})
    returned = all(r["returned"] for r in report)
    left = any(r["left"] for r in report)
    return {"horizon_days": days, "starts": report, "returned": bool(returned), "left": bool(left),
            "agrees": bool(returned if eq["stable"] else left)}


# --------------------------------------------------------------------------
# section 1: steady states
# --------------------------------------------------------------------------
def _grid_guesses(kp, e, n):
    out = []
    if n <= 0:
        return out
    for lsc in np.logspace(-2, 6, n):
        for z in np.logspace(1, 6, n):
            out.append((reduced_state(float(lsc), float(z), kp, e), "grid_root"))
    return out


def steady_states(opts, log=print) -> dict:
    params, variant, solver = opts["parameters"], opts["variant"], opts["solver"]
    so = opts["steady_states"]
    res = {"parameter_set": opts["parameter_set"], "variant": variant, "parameters": params,
           "notes": [
               "leukemia_free has zero LSCs; the simulations' extinction event (fewer than "
               f"{solver['extinction_threshold']:g} LSCs) makes the leukemia-free state absorbing in practice even "
               "where it is unstable as an ODE equilibrium",
               "equilibria with 0 < lsc < extinction threshold exist in the ODE but are not reachable by the "
               "integrator with its extinction event (flag below_extinction_threshold)",
               "stability from eigenvalues of the sympy Jacobian; simulation_check = long full-model simulations "
               "without extinction event from perturbed states"],
           "settings": {}}
    for setting in opts["run"]["settings"]:
        tr = SETTINGS[setting]
        kp = kernel_parameters(params, variant, tr)
        entry = {"transplant": tr, "kernel_parameters": {k.name: float(kp[k]) for k in KP}, "window": window(kp),
                 "thresholds": thresholds(kp), "doses": {}}
        for dose in so["doses_mg"]:
            e = float(im_effect(dose, params["im_css_400"], params["im_ec50"]))
            # independent searches: full-RHS roots from a grid and from long-simulation end points
            sims = []
            for lsc0, z0 in ((1e4, kp[KP.ZIN] / kp[KP.ZD]), (10.0, 1e5), (1e-1, 1e4), (1e3, 1e7)):
                y0 = reduced_state(lsc0, max(z0, 1e-9), kp, e)
                r = _sim_end(params, variant, tr, y0, so["horizon_days"], dose, solver)
                sims.append((y0, r))
            guesses = _grid_guesses(kp, e, so["grid_starts"])
            guesses += [(r.y[-1], "long_simulation") for _, r in sims if r.success]
            eqs = equilibria(kp, e, extra_guesses=guesses, extinction_threshold=solver["extinction_threshold"],
                             include_empty=True)
            for q in eqs:
                if q["branch"] == "dominant":
                    approx = static_dominant_approximation(kp, e)
                    if np.all(np.isfinite(approx)) and approx[State.Y0] > 0:
                        q["sympy_static_approximation"] = {
                            "state": {s.name: float(approx[s]) for s in State},
                            "max_log_distance": _log_distance(approx, q["_y"], floor=1e-6)}
                q["simulation_check"] = stability_check(q, kp, params, variant, tr, dose, e, solver,
                                                        so["perturbation"])
            sim_report = []
            for y0, r in sims:
                end = r.y[-1]
                near = min(eqs, key=lambda q: _log_distance(end, q["_y"], floor=1e-6))
                sim_report.append({"start_lsc": float(y0[State.Q] + y0[State.Y0]),
                                   "start_effectors": float(_start(y0, variant)[State.Z]),
                                   "days": so["horizon_days"], "end_lsc": float(end[State.Q] + end[State.Y0]),
                                   "end_effectors": float(end[State.Z]), "nearest_equilibrium": near["branch"],
                                   "distance": _log_distance(end, near["_y"], floor=1e-6)})
            entry["doses"][f"{dose:g}"] = {
                "dose_mg": dose, "im_effect": e, "equilibria": [_public(q) for q in eqs],
                "searches": {"grid_starts": len(guesses) - len(sims), "long_simulations": sim_report}}
            log(f"  steady states {setting} dose {dose:g}: " + ", ".join(
                f"{q['branch']}({'stable' if q['stable'] else 'unstable'}, LSC {q['lsc']:.3g})" for q in eqs))
        res["settings"][setting] = entry
    return res


def thresholds(kp) -> dict:
    """Analytic thresholds (off IM) of immune control; see ``bifurcation.json``."""
    s, dz, bz, zk = kp[KP.ZSUPP], kp[KP.ZD], kp[KP.ZIN], kp[KP.ZKILL]
    ks = k_star(kp, 0.0)
    rho = (1 - s) * kp[KP.ZRHO]
    out = {"k_star": ks, "rho_window": dz / (1 - s) if s < 1 else None,
           "rho_control": None, "z_kill_free_stable": None, "z_kill_control_min": None, "z_kill_control_max": None,
           "baseline_effectors": bz / dz, "baseline_kill_rate": zk * bz / dz}
    if ks is not None and ks > 0:
        out["z_kill_free_stable"] = ks * dz / bz if bz > 0 else None
        out["z_kill_control_max"] = out["z_kill_free_stable"]
        if bz > 0:
            out["z_kill_control_min"] = max(0.0, (dz - rho) * ks / bz)
        if zk > 0 and s < 1:
            out["rho_control"] = (dz - bz * zk / ks) / (1 - s)
    return out


# --------------------------------------------------------------------------
# section 2: bifurcation diagram
# --------------------------------------------------------------------------
def sweep_values(parameter: str, n: int) -> np.ndarray:
    row = PARAMETER_TABLE[parameter]
    return np.logspace(np.log10(row.lower), np.log10(row.upper), n)


def bifurcation(opts, log=print):
    params, variant, solver = opts["parameters"], opts["variant"], opts["solver"]
    bo = opts["bifurcation"]
    rows, wrows = [], []
    meta = {"parameter_set": opts["parameter_set"], "variant": variant, "n_points": bo["n_points"],
            "doses_mg": bo["doses_mg"], "settings": {}, "checks": {}}
    for setting in opts["run"]["settings"]:
        tr = SETTINGS[setting]
        suffix = "allo" if tr else "auto"
        kp0 = kernel_parameters(params, variant, tr)
        meta["settings"][setting] = {"thresholds": thresholds(kp0), "sweeps": {}}
        for sweep in bo["parameters"]:
            pname = f"z_expand_{suffix}" if sweep == "z_expand" else sweep
            values = sweep_values(pname, bo["n_points"])
            meta["settings"][setting]["sweeps"][pname] = {"values": values.tolist(), "set_value": params[pname],
                                                          "bounds": [PARAMETER_TABLE[pname].lower,
                                                                     PARAMETER_TABLE[pname].upper]}
            for dose in bo["doses_mg"]:
                e = float(im_effect(dose, params["im_css_400"], params["im_ec50"]))
                prev: list[np.ndarray] = []
                n_cont, n_cont_ok, n_lost, n_new = 0, 0, 0, 0
                for v in values:
                    p = {**params, pname: float(v)}
                    kp = kernel_parameters(p, variant, tr)
                    eqs = equilibria(kp, e, extinction_threshold=solver["extinction_threshold"])
                    # natural-parameter continuation from the previous grid value: Newton on the full RHS
                    for yprev in prev:
                        n_cont += 1
                        ys, _ = polish(yprev, kp, e)
                        if ys is None:
                            n_lost += 1
                            continue
                        match = [q for q in eqs if _same(q["_y"], ys, rtol=1e-4)]
                        if match:
                            n_cont_ok += 1
                            match[0]["found_by"] = sorted(set(match[0]["found_by"]) | {"continuation"})
                        else:  # a branch the enumeration missed: keep it, flagged
                            extra = _describe(ys, kp, e, ["continuation"], solver["extinction_threshold"])
                            eqs.append(extra)
                            _assign_roles(eqs)
                            n_new += 1
                    prev = [q["_y"] for q in eqs if q["branch"] != "leukemia_free"]
                    for q in eqs:
                        rows.append({"setting": setting, "dose_mg": dose, "parameter": pname, "value": float(v),
                                     "branch": q["branch"], "role": q["role"], "stable": q["stable"],
                                     "lsc": q["lsc"], "load": q["load"], "bcr_abl_percent": q["bcr_abl_percent"],
                                     "effectors": q["effectors"], "max_real_eigenvalue": q["max_real_eigenvalue"],
                                     "found_by": "+".join(q["found_by"])})
                    if dose == bo["doses_mg"][0]:
                        w = window(kp)
                        r_off = lsc_per_load(kp, 0.0)
                        r_on = lsc_per_load(kp, float(im_effect(400.0, params["im_css_400"], params["im_ec50"])))
                        lo, hi = w["low_load"], w["high_load"]
                        wrows.append({"setting": setting, "parameter": pname, "value": float(v),
                                      "window_exists": w["exists"], "condition_value": w["condition_value"],
                                      "window_low_load": lo, "window_high_load": hi,
                                      "window_low_lsc_off_im": lo * r_off if lo else None,
                                      "window_high_lsc_off_im": hi * r_off if hi else None,
                                      "window_low_lsc_on_im": lo * r_on if lo else None,
                                      "window_high_lsc_on_im": hi * r_on if hi else None})
                meta["checks"][f"{setting}/{pname}/{dose:g}"] = {
                    "continuation_attempts": n_cont, "continuation_matched": n_cont_ok,
                    "continuation_not_converged": n_lost, "continuation_new_equilibria": n_new}
            log(f"  bifurcation {setting}: {sweep} done ({len(values)} values x {len(bo['doses_mg'])} doses)")
    return rows, wrows, meta


# --------------------------------------------------------------------------
# section 3: phase plane and basins
# --------------------------------------------------------------------------
def _nullclines(kp, e, lscs, zfine):
    """LSC nullcline ``Z(N)`` and effector nullcline branches (up to 3) on ``lscs``."""
    n_l = np.full(lscs.size, np.nan)
    n_z = np.full((lscs.size, 3), np.nan)
    zk = kp[KP.ZKILL]
    for i, n in enumerate(lscs):
        if zk > 0:
            g = lambda lz: reduced_field(n, math.exp(lz), kp, e)[0]  # noqa: E731
            a, b = math.log(1e-6), math.log(1e14)
            ga, gb = g(a), g(b)
            if ga > 0 > gb:
                n_l[i] = math.exp(brentq(g, a, b, xtol=1e-12))
        gz = np.array([reduced_field(n, z, kp, e)[1] for z in zfine])
        j = 0
        for m in range(zfine.size - 1):
            if gz[m] * gz[m + 1] < 0 and j < 3:
                h = lambda lz: reduced_field(n, math.exp(lz), kp, e)[1]  # noqa: E731
                n_z[i, j] = math.exp(brentq(h, math.log(zfine[m]), math.log(zfine[m + 1]), xtol=1e-12))
                j += 1
    return n_l, n_z


def classify_end(r, stable_eqs, threshold: float) -> int:
    """Basin code of a full-model run: extinct / nearest stable leukemic equilibrium (within 1 decade of LSCs)."""
    if r.extinct:
        return BASIN_CODES["extinct"]
    if not r.success:
        return BASIN_CODES["unresolved"]
    end = r.y[-1]
    lsc = end[State.Q] + end[State.Y0]
    if lsc <= 0:
        return BASIN_CODES["extinct"]
    best, dist = None, math.inf
    for q in stable_eqs:
        if q["lsc"] <= 0:
            continue
        d = abs(math.log10(lsc) - math.log10(q["lsc"]))
        if d < dist:
            best, dist = q, d
    if best is None or dist > 1.0:
        return BASIN_CODES["unresolved"]
    return BASIN_CODES["immune_controlled"] if best["branch"].startswith("coexistence") else BASIN_CODES["escape"]


def classify_basins(params, variant, transplant, lscs, zs, horizon_days, solver, stable_eqs=None):
    """Basins of attraction off IM with the full model from the slaved state of each ``(N, Z)``.

    Returns ``(code[n_z, n_lsc], end_lsc, end_z, t_extinct)``.
    """
    kp = kernel_parameters(params, variant, transplant)
    if stable_eqs is None:
        stable_eqs = [q for q in equilibria(kp, 0.0, extinction_threshold=solver["extinction_threshold"])
                      if q["stable"]]
    code = np.empty((zs.size, lscs.size), dtype=np.int8)
    end_l = np.empty(code.shape)
    end_z = np.empty(code.shape)
    t_ext = np.full(code.shape, np.nan)
    for j, z in enumerate(zs):
        for i, n in enumerate(lscs):
            y0 = _start(reduced_state(float(n), float(z), kp, 0.0), variant)
            r = simulate(params, y0=y0, t_out=[0.0, horizon_days], schedule=((0.0, 0.0),), variant=variant,
                         transplant=transplant, rtol=max(solver["rtol"], 1e-7), atol=max(solver["atol"], 1e-8),
                         extinction_threshold=solver["extinction_threshold"], max_steps=5_000_000)
            code[j, i] = classify_end(r, stable_eqs, solver["extinction_threshold"])
            end_l[j, i] = r.y[-1, State.Q] + r.y[-1, State.Y0]
            end_z[j, i] = r.y[-1, State.Z]
            t_ext[j, i] = r.t_extinct
    return code, end_l, end_z, t_ext


def phase_plane(opts, log=print):
    params, variant, solver = opts["parameters"], opts["variant"], opts["solver"]
    po, mo = opts["phase_plane"], opts["min_im"]
    arrays, meta = {}, {"reduction": "N = Q + Y0 (LSCs), Z effectors; Q, Y1..Y3 at quasi-steady state given N "
                                     "and k = z_kill Z; X0 = max(x0_eq - N, 0), X1..X3 slaved to X0; field = "
                                     "compiled RHS at that state (see gvlmodel.dynamics docstring)",
                        "notes": ["basin starts with fewer LSCs than extinction_threshold are extinct at t = 0 "
                                  "(the integrator's extinction event); the nullclines and fields extend below it",
                                  "basin class = nearest stable leukemic equilibrium off IM (within one decade of "
                                  "LSCs) of the end state; -1 if none (not converged)",
                                  "array layout: [z index, lsc index] (rows = effectors, columns = LSCs)"],
                        "basin_codes": BASIN_CODES, "horizon_days": po["horizon_days"],
                        "extinction_threshold": solver["extinction_threshold"], "settings": {}}
    e_on = float(im_effect(400.0, params["im_css_400"], params["im_ec50"]))
    lscs = np.logspace(np.log10(po["lsc_range"][0]), np.log10(po["lsc_range"][1]), po["n_lsc"])
    zs = np.logspace(np.log10(po["z_range"][0]), np.log10(po["z_range"][1]), po["n_z"])
    zfine = np.logspace(np.log10(po["z_range"][0]) - 2, np.log10(po["z_range"][1]) + 2, po["n_field_z"])
    for setting in opts["run"]["settings"]:
        tr = SETTINGS[setting]
        kp = kernel_parameters(params, variant, tr)
        pre = f"{setting}_"
        arrays[pre + "log10_lsc"] = np.log10(lscs)
        arrays[pre + "log10_z"] = np.log10(zs)
        smeta = {"equilibria": {}}
        for tag, e in (("e0", 0.0), ("e1", e_on)):
            gl = np.empty((zs.size, lscs.size))
            gz = np.empty_like(gl)
            for j, z in enumerate(zs):
                for i, n in enumerate(lscs):
                    gl[j, i], gz[j, i] = reduced_field(float(n), float(z), kp, e)
            arrays[pre + "growth_lsc_" + tag] = gl
            arrays[pre + "growth_z_" + tag] = gz
            n_l, n_z = _nullclines(kp, e, lscs, zfine)
            arrays[pre + "nullcline_lsc_" + tag] = n_l
            arrays[pre + "nullcline_z_" + tag] = n_z
            eqs = equilibria(kp, e, extinction_threshold=solver["extinction_threshold"])
            smeta["equilibria"][tag] = [{"branch": q["branch"], "role": q["role"], "stable": q["stable"],
                                         "lsc": q["lsc"], "effectors": q["effectors"]} for q in eqs]
            if tag == "e0":
                stable0 = [q for q in eqs if q["stable"]]
        code, end_l, end_z, t_ext = classify_basins(params, variant, tr, lscs, zs, po["horizon_days"], solver, stable0)
        arrays[pre + "basin"] = code
        arrays[pre + "basin_end_lsc"] = end_l
        arrays[pre + "basin_end_z"] = end_z
        arrays[pre + "basin_t_extinct"] = t_ext
        smeta["basin_counts"] = {k: int(np.sum(code == v)) for k, v in BASIN_CODES.items()}
        # trajectories off IM
        t = np.concatenate(([0.0], np.logspace(0, np.log10(po["horizon_days"]), 200)))
        tl, tz, tb = [], [], []
        for n0, z0 in po["trajectory_starts"]:
            r = simulate(params, y0=_start(reduced_state(n0, z0, kp, 0.0), variant), t_out=t,
                         schedule=((0.0, 0.0),), variant=variant,
                         transplant=tr, rtol=1e-7, atol=1e-8, extinction_threshold=solver["extinction_threshold"],
                         max_steps=5_000_000)
            tl.append(r.leukemic_stem_cells)
            tz.append(r["Z"])
            tb.append(r.bcr_abl)
        arrays[pre + "traj_t"] = t
        arrays[pre + "traj_starts"] = np.array(po["trajectory_starts"], dtype=float).reshape(-1, 2)
        arrays[pre + "traj_lsc"] = np.array(tl).reshape(len(tl), t.size)
        arrays[pre + "traj_z"] = np.array(tz).reshape(len(tz), t.size)
        arrays[pre + "traj_bcr_abl"] = np.array(tb).reshape(len(tb), t.size)
        # one treated course from the min-IM start
        b0 = mo["start_bcr_abl_transplanted"] if tr else mo["start_bcr_abl_non_transplanted"]
        tc = np.arange(0.0, po["im_course_days"] + 3650.0 + 1.0, 5.0)
        r = simulate(params, y0=initial_state(params, bcr_abl=b0, variant=variant, transplant=tr), t_out=tc,
                     schedule=((0.0, mo["dose_mg"]), (po["im_course_days"], 0.0)) if po["im_course_days"] > 0
                     else ((0.0, 0.0),), variant=variant, transplant=tr, rtol=1e-7, atol=1e-8,
                     extinction_threshold=solver["extinction_threshold"])
        arrays[pre + "course_t"] = tc
        arrays[pre + "course_lsc"] = r.leukemic_stem_cells
        arrays[pre + "course_z"] = r["Z"]
        arrays[pre + "course_bcr_abl"] = r.bcr_abl
        arrays[pre + "course_dose"] = r.dose_mg
        smeta["course"] = {"start_bcr_abl_percent": b0, "im_days": po["im_course_days"], "dose_mg": mo["dose_mg"],
                           "t_extinct": None if not r.extinct else r.t_extinct}
        w = window(kp)
        smeta["window"] = w
        if w["exists"]:
            r_off, r_on = lsc_per_load(kp, 0.0), lsc_per_load(kp, e_on)
            smeta["window_lsc_off_im"] = [w["low_load"] * r_off, w["high_load"] * r_off]
            smeta["window_lsc_on_im"] = [w["low_load"] * r_on, w["high_load"] * r_on]
        meta["settings"][setting] = smeta
        log(f"  phase plane {setting}: basins " + ", ".join(f"{k} {v}" for k, v in smeta["basin_counts"].items()))
    return arrays, meta


# --------------------------------------------------------------------------
# section 4: minimal IM duration
# --------------------------------------------------------------------------
def _window_outcome(params, variant, tr, y_stop, mo, solver):
    lsc0 = y_stop[State.Q] + y_stop[State.Y0]
    t = np.arange(0.0, mo["window_days"] + 0.5 * mo["check_interval_days"], mo["check_interval_days"])
    t[-1] = min(t[-1], mo["window_days"])
    r = simulate(params, y0=y_stop, t_out=t, schedule=((0.0, 0.0),), variant=variant, transplant=tr,
                 rtol=solver["rtol"], atol=solver["atol"], extinction_threshold=solver["extinction_threshold"])
    below = bool(r.success and np.all(r.bcr_abl < 100.0 * mo["detection_limit"]))
    extinct_at_stop = bool(lsc0 <= 0)
    return {"pcr": below, "durable": below or extinct_at_stop, "extinct_at_stop": extinct_at_stop,
            "extinct_by_end": bool(extinct_at_stop or r.extinct), "y_end": r.y[-1]}


def min_im_duration(params, variant, transplant, start_bcr_abl, mo, solver) -> dict:
    """Minimal IM duration (days) for durable control, for one patient.

    IM at ``mo["dose_mg"]`` for ``T`` days, then off.  Durable: BCR-ABL below
    ``detection_limit`` at every check (``check_interval_days``) in ``window_days``
    after the stop, or no LSC left at the stop.  ``T`` is scanned on a grid
    (``grid_days`` up to ``max_days``; the pattern shows whether durability is
    monotone in ``T``), then refined to the day by bisection between the last
    non-durable and the first durable grid day.  Not reached by ``max_days``:
    ``censored`` with ``t_min_days = None``.
    """
    y0 = initial_state(params, bcr_abl=start_bcr_abl, variant=variant, transplant=transplant)
    grid = np.arange(0.0, mo["max_days"] + 0.5, mo["grid_days"])
    common = dict(variant=variant, transplant=transplant, rtol=solver["rtol"], atol=solver["atol"],
                  extinction_threshold=solver["extinction_threshold"])
    on = simulate(params, y0=y0, t_out=grid, schedule=((0.0, mo["dose_mg"]),), **common)
    outcomes = [_window_outcome(params, variant, transplant, on.y[i], mo, solver) for i in range(grid.size)]
    durable = np.array([o["durable"] for o in outcomes])
    pcr = np.array([o["pcr"] for o in outcomes])

    def first_and_monotone(flags):
        idx = np.flatnonzero(flags)
        if idx.size == 0:
            return None, True
        return int(idx[0]), bool(np.all(flags[idx[0]:]))

    def refine(i_first, key):
        if i_first == 0:
            return 0.0, outcomes[0]
        lo, hi = grid[i_first - 1], grid[i_first]
        t_base, y_base = lo, on.y[i_first - 1]
        best = outcomes[i_first]
        while hi - lo > 1.0:
            mid = float(math.floor(0.5 * (lo + hi)))
            if mid <= lo:
                break
            r = simulate(params, y0=y_base, t_out=[0.0, mid - t_base], schedule=((0.0, mo["dose_mg"]),), **common)
            o = _window_outcome(params, variant, transplant, r.y[-1], mo, solver)
            if o[key]:
                hi, best = mid, o
            else:
                lo = mid
        return float(hi), best

    i_d, mono_d = first_and_monotone(durable)
    i_p, mono_p = first_and_monotone(pcr)
    out = {"grid_days": grid.tolist(), "durable_on_grid": durable.tolist(), "pcr_on_grid": pcr.tolist(),
           "monotone_on_grid": mono_d, "monotone_pcr_on_grid": mono_p,
           "durable_fraction_on_grid": float(durable.mean()),
           "t_extinct_continuous_im": on.t_extinct if on.extinct else None,
           "t_min_grid_days": None if i_d is None else float(grid[i_d]),
           "t_min_days": None, "censored": i_d is None, "t_min_pcr_days": None, "pcr_censored": i_p is None,
           "fate_at_t_min": None, "long_term_outcome": None, "lsc_at_stop": None, "effectors_at_stop": None,
           "bcr_abl_at_stop_percent": None}
    if i_p is not None:
        out["t_min_pcr_days"] = refine(i_p, "pcr")[0]
    if i_d is None:
        return out
    t_min, _ = refine(i_d, "durable")
    out["t_min_days"] = t_min
    stop = simulate(params, y0=y0, t_out=[0.0, t_min], schedule=((0.0, mo["dose_mg"]),), **common) if t_min > 0 \
        else None
    y_stop = y0 if stop is None else stop.y[-1]
    o = _window_outcome(params, variant, transplant, y_stop, mo, solver)
    out["lsc_at_stop"] = float(y_stop[State.Q] + y_stop[State.Y0])
    out["effectors_at_stop"] = float(y_stop[State.Z])
    out["bcr_abl_at_stop_percent"] = float(bcr_abl_percent(y_stop))
    out["fate_at_t_min"] = ("extinct_at_stop" if o["extinct_at_stop"] else
                            "extinct_in_window" if o["extinct_by_end"] else "pcr_negative_not_extinct")
    if o["extinct_by_end"]:
        out["long_term_outcome"] = "eradicated"
    elif mo["followup_days"] > 0:
        t = np.arange(0.0, mo["followup_days"] + 0.5 * mo["check_interval_days"], 30.0)
        r = simulate(params, y0=o["y_end"], t_out=t, schedule=((0.0, 0.0),), **common)
        if r.extinct and np.all(r.bcr_abl < 100.0 * mo["detection_limit"]):
            out["long_term_outcome"] = "eradicated_later"
        elif np.any(r.bcr_abl >= 100.0 * mo["detection_limit"]):
            out["long_term_outcome"] = "late_relapse"
        else:
            out["long_term_outcome"] = "sustained_immune_control"
    return out


def min_im_table(opts, log=print):
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
            for v in values:
                p = {**p_base, pname: float(v)}
                res = min_im_duration(p, variant, tr, b0, mo, solver)
                row = {"setting": setting, "profile": prof, "parameter": pname, "value": float(v),
                       "is_set_value": bool(np.isclose(v, p_base[pname], rtol=1e-12)), "start_bcr_abl_percent": b0,
                       "dose_mg": mo["dose_mg"], "window_days": mo["window_days"],
                       "detection_limit": mo["detection_limit"]}
                for k in ("t_min_days", "censored", "t_min_grid_days", "monotone_on_grid", "durable_fraction_on_grid",
                          "t_min_pcr_days", "pcr_censored", "monotone_pcr_on_grid", "t_extinct_continuous_im",
                          "fate_at_t_min", "long_term_outcome", "lsc_at_stop", "effectors_at_stop",
                          "bcr_abl_at_stop_percent"):
                    row[k] = res[k]
                rows.append(row)
                details.append({**row, "overrides": ov, "grid_days": res["grid_days"],
                                "durable_on_grid": res["durable_on_grid"], "pcr_on_grid": res["pcr_on_grid"]})
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


def run_dynamics(config, out, log=print, quick: bool | None = None) -> dict:
    """Run the dynamics analysis of a config (path, or parsed dict) into folder ``out``.

    The config is validated completely before anything is computed or written
    (:class:`~gvlmodel.errors.InputError` otherwise).  Returns a summary dict
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
        summary["steady_states"] = {s: {d: [(q["branch"], q["stable"], q["lsc"]) for q in v["equilibria"]]
                                        for d, v in ent["doses"].items()} for s, ent in ss["settings"].items()}
    if "bifurcation" in sections:
        t0 = time.perf_counter()
        rows, wrows, meta = bifurcation(opts, log)
        atomic_write_text(out / "bifurcation.csv", rows_csv(rows))
        atomic_write_text(out / "bifurcation_window.csv", rows_csv(wrows))
        atomic_write_json(out / "bifurcation.json", _json_safe(meta))
        files += ["bifurcation.csv", "bifurcation_window.csv", "bifurcation.json"]
        timings["bifurcation"] = time.perf_counter() - t0
        summary["thresholds"] = {s: v["thresholds"] for s, v in meta["settings"].items()}
    if "phase_plane" in sections:
        t0 = time.perf_counter()
        arrays, meta = phase_plane(opts, log)
        atomic_write_npz(out / "phase_plane.npz", arrays)
        atomic_write_json(out / "phase_plane.json", _json_safe(meta))
        files += ["phase_plane.npz", "phase_plane.json"]
        timings["phase_plane"] = time.perf_counter() - t0
        summary["basin_counts"] = {s: v["basin_counts"] for s, v in meta["settings"].items()}
    if "min_im" in sections:
        t0 = time.perf_counter()
        rows, details = min_im_table(opts, log)
        atomic_write_text(out / "min_im_duration.csv", rows_csv(rows))
        mo = opts["min_im"]
        atomic_write_json(out / "min_im_duration.json", _json_safe({
            "definition": {
                "course": f"IM {mo['dose_mg']:g} mg/day for T days from the start state, then off",
                "durable": f"BCR-ABL below {mo['detection_limit']:g} (ratio) at every check every "
                           f"{mo['check_interval_days']:g} days during {mo['window_days']:g} days after the stop, "
                           "or no LSC left at the stop",
                "pcr_criterion": "the BCR-ABL part alone (t_min_pcr_days)",
                "search": f"grid of T every {mo['grid_days']:g} days up to {mo['max_days']:g}; then bisection to "
                          "1 day between the last non-durable and first durable grid day; censored = none durable",
                "long_term_outcome": f"after the window, off IM for followup_days = {mo['followup_days']:g}"},
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
    atomic_write_json(out / "provenance.json", prov)  # last: the folder is complete
    files.append("provenance.json")
    log(f"dynamics: wrote {', '.join(files)} to {out} in {timings['total']:.1f} s")
    return {"out": str(out), "files": files, "timings_s": timings, "summary": _json_safe(summary)}
