"""The parameter table: one source of truth for values, units, bounds and sources.

Every model parameter is a :class:`Parameter` row.  The same table feeds the
compiled model (:func:`kernel_parameters`), fit bounds and priors (``lower``,
``upper``, ``scale``), sensitivity problems (:func:`salib_problem`) and figure
captions (``unit``, ``description``, ``source``).

Citations are those of the project brief (``../shared/science/BRIEF.md`` §6);
"assumed" marks a value chosen for plausibility that the calibration data may
revise, "fitted" one that will come from the fit (issue 4).
"""
from __future__ import annotations

import math

import tomllib
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from .errors import InputError
from .indices import KP, N_KP


class Variant(str, Enum):
    """Model hypotheses of BRIEF §4, selected without copying the equations.

    * ``H0`` - imatinib alone: no effector cells at all.
    * ``H1`` - static GVL: effectors with influx, death and killing, but no
      load-driven expansion (constant pressure ``z_influx / z_death``).
    * ``H2`` - re-enabled GVL: antigen-driven expansion inside an immune window.
    """

    H0 = "H0"
    H1 = "H1"
    H2 = "H2"


@dataclass(frozen=True)
class Parameter:
    """One row of the parameter table."""

    name: str
    value: float
    unit: str
    lower: float
    upper: float
    scale: str  # "log" or "linear": how priors / sensitivity ranges are spread
    source: str
    description: str
    group: str

    def __post_init__(self):
        if not (self.lower <= self.value <= self.upper):
            raise ValueError(f"parameter table: {self.name} value {self.value} outside [{self.lower}, {self.upper}]")
        if self.scale not in ("log", "linear"):
            raise ValueError(f"parameter table: {self.name} scale must be 'log' or 'linear'")
        if self.scale == "log" and self.lower <= 0:
            raise ValueError(f"parameter table: {self.name} log-scaled with non-positive lower bound")


MICHOR = "Michor et al., Nature 2005"
P = Parameter
_TABLE = (
    # --- shared kinetics of the hierarchy (normal and leukemic) ---
    P("d0", 0.003, "1/day", 0.001, 0.01, "log", MICHOR, "stem-cell death rate", "hierarchy"),
    P("d1", 0.008, "1/day", 0.004, 0.02, "log", MICHOR, "progenitor death rate", "hierarchy"),
    P("d2", 0.05, "1/day", 0.02, 0.1, "log", MICHOR, "differentiated-cell death rate", "hierarchy"),
    P("d3", 1.0, "1/day", 0.5, 2.0, "log", MICHOR, "mature-cell death rate", "hierarchy"),
    # --- normal (donor) hematopoiesis ---
    P("r_x", 0.005, "1/day", 0.0035, 0.02, "log",
      "assumed (must exceed d0; homeostatic feedback as in " + MICHOR + ")",
      "maximal self-renewal of normal stem cells", "normal"),
    P("x0_eq", 1.0e5, "cells", 1.0e4, 1.0e6, "log",
      "assumed (order of magnitude of the human stem-cell pool; Roeder et al., Nat Med 2006)",
      "normal stem cells at homeostasis (sets the niche feedback constant)", "normal"),
    P("a_x", 0.8, "1/day", 0.4, 1.6, "log", MICHOR, "progenitor output per normal stem cell", "normal"),
    P("b_x", 5.0, "1/day", 2.5, 10.0, "log", MICHOR, "differentiated output per normal progenitor", "normal"),
    P("c_x", 100.0, "1/day", 50.0, 200.0, "log", MICHOR, "mature output per normal differentiated cell", "normal"),
    # --- leukemic hierarchy ---
    P("r_y", 0.008, "1/day", 0.004, 0.03, "log", MICHOR, "maximal self-renewal of cycling LSCs", "leukemic"),
    P("a_y", 1.6, "1/day", 0.8, 3.2, "log", MICHOR, "progenitor output per cycling LSC", "leukemic"),
    P("b_y", 10.0, "1/day", 5.0, 20.0, "log", MICHOR, "differentiated output per leukemic progenitor", "leukemic"),
    P("c_y", 100.0, "1/day", 50.0, 200.0, "log", MICHOR, "mature output per leukemic differentiated cell", "leukemic"),
    P("q_in", 3.3e-5, "1/day", 1.0e-5, 0.03, "log",
      "Fassoni et al., Haematologica 2018 (0.001/month); Stein et al., Clin Cancer Res 2011 upper range",
      "entry of cycling LSCs into quiescence", "leukemic"),
    P("q_out", 1.64e-3, "1/day", 3.0e-4, 0.03, "log",
      "Fassoni et al., Haematologica 2018 (0.05/month); Stein et al., Clin Cancer Res 2011 upper range",
      "exit of quiescent LSCs into cycling", "leukemic"),
    # --- imatinib: dose -> steady-state exposure -> Emax effect ---
    P("im_css_400", 979.0, "ng/mL", 500.0, 2000.0, "log",
      "Larson et al., Blood 2008 (IRIS trough at 400 mg/day, about 1 ug/mL); dose-linear exposure 400-800 mg/day assumed",
      "steady-state imatinib exposure at 400 mg/day", "imatinib"),
    P("im_ec50", 500.0, "ng/mL", 100.0, 3000.0, "log", "assumed",
      "exposure giving half-maximal effect (Emax, Hill 1)", "imatinib"),
    P("im_fold_a", 100.0, "1", 10.0, 1000.0, "log", MICHOR + " (a_y/100)",
      "fold reduction of LSC progenitor output at 400 mg/day", "imatinib"),
    P("im_fold_b", 750.0, "1", 1.0, 5000.0, "log", MICHOR + " (b_y/750); lower bound 1 = no effect (resistance, e.g. kinase-domain mutations: Shah et al., Cancer Cell 2002)",
      "fold reduction of progenitor differentiated output at 400 mg/day", "imatinib"),
    P("im_kill_lsc", 0.1, "1/day", 0.0, 0.3, "linear",
      "Stein et al., Clin Cancer Res 2011 (net growth of proliferating LSCs about -0.1/day on IM); "
      "Roeder et al., Nat Med 2006",
      "imatinib kill rate of cycling LSCs at 400 mg/day", "imatinib"),
    # --- effector cells, shared by donor and autologous settings ---
    P("z_death", 0.05, "1/day", 0.01, 0.5, "log", "assumed (effector T-cell lifespan of weeks)",
      "effector death / contraction rate", "effector"),
    P("z_half", 1.0e4, "cells", 1.0e2, 1.0e8, "log",
      "assumed; functional form Hähnel et al., Cancer Res 2020",
      "leukemic load of peak effector stimulation (K_z)", "effector"),
    P("z_kill", 1.0e-6, "1/(cell*day)", 1.0e-8, 1.0e-4, "log", "assumed; mass-action killing as in Moore & Li, J Theor Biol 2004",
      "leukemic-cell kill rate per effector cell", "effector"),
    P("z_quiescent_kill", 0.5, "1", 0.0, 1.0, "linear", "assumed (GVL antigens do not require cycling)",
      "susceptibility of quiescent LSCs to effectors, relative to cycling cells", "effector"),
    P("immunosuppression", 0.0, "1", 0.0, 1.0, "linear",
      "Hess et al., J Clin Oncol 2005 (immunosuppression tapered before enrolment)",
      "fraction by which immunosuppressive drugs scale effector expansion down", "effector"),
    # --- setting-specific effector parameters ---
    P("z_influx_allo", 100.0, "cells/day", 1.0, 1.0e4, "log",
      "assumed; DeConde et al., J Theor Biol 2005 (post-transplant GVL)",
      "donor effector influx (transplanted patients)", "effector-allo"),
    P("z_expand_allo", 0.3, "1/day", 0.01, 1.0, "log",
      "assumed; window form Hähnel et al., Cancer Res 2020",
      "peak donor effector expansion rate (at load z_half)", "effector-allo"),
    P("z_influx_auto", 10.0, "cells/day", 0.1, 1.0e3, "log",
      "assumed; Kim, Lee & Levy, PLoS Comput Biol 2008; Clapp et al., Cancer Res 2015",
      "autologous effector influx (non-transplanted patients)", "effector-auto"),
    P("z_expand_auto", 0.08, "1/day", 0.01, 1.0, "log",
      "assumed; Clapp et al., Cancer Res 2015; Hähnel et al., Cancer Res 2020",
      "peak autologous effector expansion rate (at load z_half)", "effector-auto"),
)
del P

PARAMETER_TABLE: dict[str, Parameter] = {row.name: row for row in _TABLE}
PARAMETER_NAMES: tuple[str, ...] = tuple(PARAMETER_TABLE)


def _fail(field: str, message: str) -> None:
    raise InputError(f"{field}: {message}")


def check_parameter_name(name: str) -> None:
    if name not in PARAMETER_TABLE:
        _fail(f"parameter {name!r}", "unknown parameter; allowed names: " + ", ".join(PARAMETER_NAMES))


def default_parameters() -> dict[str, float]:
    """The default parameter set: each table row's ``value``."""
    return {name: row.value for name, row in PARAMETER_TABLE.items()}


PARAMETER_SET_DIR = Path(__file__).with_name("parameter_sets")


def available_parameter_sets() -> list[str]:
    """Names accepted by :func:`parameter_set`: ``"default"`` plus every shipped set.

    Shipped sets are TOML files in ``gvlmodel/parameter_sets/`` (written by
    ``gvlmodel fit``) with a ``[parameters]`` table of name = value.
    """
    return ["default"] + sorted(f.stem for f in PARAMETER_SET_DIR.glob("*.toml"))


def parameter_set(name: str = "default") -> dict[str, float]:
    """A named, complete parameter set (validated); ``"default"`` is the table's values."""
    if not isinstance(name, str):
        _fail("parameter set", f"expected a name, got {type(name).__name__}; allowed: "
              + ", ".join(available_parameter_sets()))
    if name == "default":
        return default_parameters()
    if name not in available_parameter_sets():  # a name, never a path
        _fail("parameter set", f"unknown set {name!r}; allowed: " + ", ".join(available_parameter_sets()))
    path = PARAMETER_SET_DIR / f"{name}.toml"
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    return resolve_parameters(data.get("parameters", {}))


def parameter_set_info(name: str = "default") -> dict:
    """A set's parameters plus what a fitted set also carries (``None`` where absent):
    ``variant``, ``population`` (natural-log SDs), ``stop_uptake`` and the ``posterior`` sample."""
    params = parameter_set(name)
    info = {"parameters": params, "variant": None, "population": None, "stop_uptake": None, "posterior": None,
            "predictive": None, "population_bounds": "clip"}
    if name != "default":
        with open(PARAMETER_SET_DIR / f"{name}.toml", "rb") as fh:
            data = tomllib.load(fh)
        info["variant"] = data.get("variant")
        info["population"] = data.get("population")
        info["population_bounds"] = data.get("population_bounds", "clip")
        info["stop_uptake"] = data.get("treatment", {}).get("stop_uptake")
        info["posterior"] = data.get("posterior")
        info["predictive"] = data.get("predictive")
    return info


def resolve_parameters(params: Mapping[str, float] | None = None, *, check_bounds: bool = False) -> dict[str, float]:
    """Defaults updated with ``params``; names, types and ranges validated.

    Unknown names raise; values must be finite, real numbers, non-negative
    (all rates and sizes are), and with ``check_bounds`` inside the table's
    ``[lower, upper]``.  Model-level consistency (``r_x > d0``) is checked too.
    """
    merged = default_parameters()
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        _fail("params", f"expected a mapping of parameter name to value, got {type(params).__name__}")
    for name, value in params.items():
        check_parameter_name(name)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            _fail(f"parameter {name!r}", f"expected a real number, got {type(value).__name__}")
        value = float(value)
        if not math.isfinite(value):  # math, not numpy: ~20x cheaper on a scalar (simulate() calls this per solve)
            _fail(f"parameter {name!r}", f"must be finite, got {value}")
        if value < 0:
            _fail(f"parameter {name!r}", f"must be non-negative ({PARAMETER_TABLE[name].unit}), got {value}")
        row = PARAMETER_TABLE[name]
        if check_bounds and not (row.lower <= value <= row.upper):
            _fail(f"parameter {name!r}", f"{value} outside allowed range [{row.lower}, {row.upper}] {row.unit}")
        merged[name] = value
    if merged["r_x"] <= merged["d0"]:
        _fail("parameter 'r_x'", f"must exceed d0 ({merged['d0']}) for a normal stem-cell pool to exist, got {merged['r_x']}")
    if merged["x0_eq"] <= 0:
        _fail("parameter 'x0_eq'", "must be positive")
    for name in ("im_fold_a", "im_fold_b"):
        if merged[name] < 1:
            _fail(f"parameter {name!r}", f"a fold reduction must be >= 1, got {merged[name]}")
    for name in ("z_quiescent_kill", "immunosuppression"):
        if merged[name] > 1:
            _fail(f"parameter {name!r}", f"must lie in [0, 1], got {merged[name]}")
    for name in ("im_css_400", "im_ec50", "z_half"):
        if merged[name] <= 0:
            _fail(f"parameter {name!r}", f"must be positive, got {merged[name]}")
    return merged


def parse_variant(variant) -> Variant:
    try:
        return Variant(variant.value if isinstance(variant, Variant) else variant)
    except ValueError:
        _fail("variant", f"unknown variant {variant!r}; allowed: " + ", ".join(v.value for v in Variant))


def kernel_parameters(params: Mapping[str, float] | None = None, variant="H2", transplant: bool = True) -> np.ndarray:
    """The compiled kernel's parameter vector (see :class:`gvlmodel.indices.KP`).

    The variant acts here, not in the equations: H0 zeroes effector influx,
    expansion and killing; H1 zeroes expansion.  ``transplant`` picks donor
    (``*_allo``) or autologous (``*_auto``) effector influx and expansion.
    """
    p = resolve_parameters(params)
    variant = parse_variant(variant)
    _check_transplant(transplant)
    k = np.empty(N_KP)
    _fill_kernel(p, variant, transplant, k)
    return k


def kernel_parameters_batch(base: Mapping[str, float], varied: Mapping[str, np.ndarray], variant="H2",
                            transplant: bool = True, *, n: int) -> np.ndarray:
    """Kernel vectors for ``n`` patients, shape ``(n, N_KP)``: ``base`` with per-patient ``varied`` columns.

    The same mapping as :func:`kernel_parameters` (one code path, vectorised);
    ``varied`` (possibly empty) values must already lie inside the table bounds.
    """
    p = dict(resolve_parameters(base))
    variant = parse_variant(variant)
    _check_transplant(transplant)
    for name, col in varied.items():
        check_parameter_name(name)
        col = np.asarray(col, dtype=float)
        if col.shape != (n,):
            _fail(f"parameter {name!r}", f"per-patient values must be a 1-D array of length {n}")
        p[name] = col
    if np.any(np.asarray(p["r_x"]) <= np.asarray(p["d0"])):
        _fail("parameter 'r_x'", "must exceed d0 for every patient")
    k = np.empty((n, N_KP))
    _fill_kernel(p, variant, transplant, k)
    return k


def _check_transplant(transplant) -> None:
    if not isinstance(transplant, (bool, np.bool_)):
        _fail("transplant", f"expected true or false, got {transplant!r}")


def _fill_kernel(p, variant: Variant, transplant: bool, k: np.ndarray) -> None:
    """Table parameters (scalars or per-patient arrays) -> kernel vector(s) ``k[..., KP]``."""
    setting = "allo" if transplant else "auto"
    k[..., KP.D0], k[..., KP.D1], k[..., KP.D2], k[..., KP.D3] = p["d0"], p["d1"], p["d2"], p["d3"]
    k[..., KP.RX], k[..., KP.AX], k[..., KP.BX], k[..., KP.CX] = p["r_x"], p["a_x"], p["b_x"], p["c_x"]
    # homeostasis: r_x / (1 + x0_eq / KN) = d0  =>  KN = x0_eq / (r_x / d0 - 1)
    k[..., KP.KN] = p["x0_eq"] / (p["r_x"] / p["d0"] - 1.0)
    k[..., KP.RY], k[..., KP.AY], k[..., KP.BY], k[..., KP.CY] = p["r_y"], p["a_y"], p["b_y"], p["c_y"]
    k[..., KP.QIN], k[..., KP.QOUT] = p["q_in"], p["q_out"]
    k[..., KP.IMKILL], k[..., KP.IMFA], k[..., KP.IMFB] = p["im_kill_lsc"], p["im_fold_a"], p["im_fold_b"]
    k[..., KP.ZIN] = p[f"z_influx_{setting}"]
    k[..., KP.ZD] = p["z_death"]
    k[..., KP.ZRHO] = p[f"z_expand_{setting}"]
    k[..., KP.ZK] = p["z_half"]
    k[..., KP.ZKILL] = p["z_kill"]
    k[..., KP.ZQREL] = p["z_quiescent_kill"]
    k[..., KP.ZSUPP] = p["immunosuppression"]
    if variant is Variant.H0:
        k[..., KP.ZIN] = 0.0
        k[..., KP.ZRHO] = 0.0
        k[..., KP.ZKILL] = 0.0
    elif variant is Variant.H1:
        k[..., KP.ZRHO] = 0.0


def salib_problem(names: Iterable[str] | None = None) -> dict:
    """A SALib problem spec over the table's bounds (log-scaled rows in log10)."""
    if isinstance(names, str):
        _fail("names", f"expected a list of parameter names, got the string {names!r}")
    names = list(PARAMETER_NAMES if names is None else names)
    if not names:
        _fail("names", "expected at least one parameter name")
    if len(set(names)) != len(names):
        _fail("names", f"each parameter at most once, got {names}")
    for n in names:
        check_parameter_name(n)
    bounds = []
    for n in names:
        row = PARAMETER_TABLE[n]
        bounds.append([np.log10(row.lower), np.log10(row.upper)] if row.scale == "log" else [row.lower, row.upper])
    return {"num_vars": len(names), "names": names, "bounds": bounds,
            "scales": [PARAMETER_TABLE[n].scale for n in names]}


def table_markdown() -> str:
    """The table as Markdown (README and figure captions use this)."""
    lines = ["| name | value | unit | bounds | scale | description | source |", "|---|---|---|---|---|---|---|"]
    for r in _TABLE:
        lines.append(f"| `{r.name}` | {r.value:g} | {r.unit} | [{r.lower:g}, {r.upper:g}] | {r.scale} | {r.description} | {r.source} |")
    return "\n".join(lines)
