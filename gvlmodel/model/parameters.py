"""The parameter table: one source of truth for values, units, bounds and sources.

Every model parameter is a :class:`Parameter` row.  The same table feeds the
compiled model (:func:`kernel_parameters`), fit bounds and priors (``lower``,
``upper``, ``scale``), sensitivity problems (:func:`salib_problem`) and figure
captions (``unit``, ``description``, ``source``).

Citations are given in full in the documentation (README and ``gvlmodel/data/README.md``);
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

from ..core.errors import InputError
from .indices import KP, N_KP


class Variant(str, Enum):
    """Model hypotheses (docs/model.md, "Hypotheses"), selected without copying the equations.

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
STEIN = "Stein et al., Clin Cancer Res 2011"
HAHNEL = "Hähnel et al., Cancer Res 2020"
P = Parameter
_TABLE = (
    # --- shared kinetics of the hierarchy (normal and leukemic) ---
    P("d0", 0.003, "1/day", 0.001, 0.01, "log", MICHOR, "stem-cell death rate", "hierarchy"),
    P("d1", 0.05, "1/day", 0.02, 0.2, "log",
      STEIN + " (early progenitors turn over at about 0.05/day: myeloid transit of weeks)",
      "progenitor loss rate (death and onward differentiation)", "hierarchy"),
    P("d2", 0.05, "1/day", 0.02, 0.2, "log", MICHOR + " (d2; sets the first slope of the imatinib response)",
      "differentiated-cell loss rate", "hierarchy"),
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
    P("r_y", 0.055, "1/day", 0.01, 0.2, "log", HAHNEL + " (p_Y = 1.658/month)",
      "self-renewal of cycling LSCs at low density (regrowth after a stop)", "leukemic"),
    P("lsc_capacity", 7.0e6, "cells", 1.0e5, 1.0e8, "log",
      "assumed: an untreated clone near capacity gives about 95 % BCR-ABL (chronic phase at diagnosis); "
      "logistic form and scale as " + HAHNEL + " (K_Y = 1e6 proliferating cells)",
      "carrying capacity of leukemic stem cells (dormant, quiescent, cycling and resistant)", "leukemic"),
    P("a_y", 1.6, "1/day", 0.8, 3.2, "log", MICHOR, "progenitor output per cycling LSC", "leukemic"),
    P("b_y", 10.0, "1/day", 5.0, 20.0, "log", MICHOR, "differentiated output per leukemic progenitor", "leukemic"),
    P("c_y", 100.0, "1/day", 50.0, 200.0, "log", MICHOR, "mature output per leukemic differentiated cell", "leukemic"),
    P("q_in", 0.025, "1/day", 0.002, 0.1, "log",
      STEIN + " (exchange rates of order 0.03 and 0.004/day, read so that most LSCs start quiescent, as its "
      "starting counts have them; a public transcription of its Table S2 notes the two look swapped there)",
      "entry of cycling LSCs into quiescence", "leukemic"),
    P("q_out", 0.004, "1/day", 4.0e-4, 0.03, "log",
      STEIN + " (order 0.004/day); sets the second slope of the imatinib response here, which " + MICHOR
      + " attributes to progenitor turnover (0.008/day) and Tang et al., Blood 2011 measured at -0.0057/day",
      "exit of quiescent LSCs into cycling", "leukemic"),
    P("dormancy_in", 1.0e-5, "1/day", 1.0e-6, 1.0e-3, "log",
      "fitted per patient by gvlmodel calibrate (the long-term series of " + HAHNEL + "); starting value "
      "assumed: a dormant minority of LSCs (dormant/quiescent = dormancy_in/dormancy_out untreated), as dormant, "
      "label-retaining stem cells are a minority of the stem-cell pool (Wilson et al., Cell 2008)",
      "entry of quiescent LSCs into deep dormancy", "leukemic"),
    P("dormancy_out", 3.0e-4, "1/day", 3.0e-5, 3.0e-3, "log",
      "assumed, an order below q_out: the third, slowest phase of the BCR-ABL decline on long-term imatinib "
      "(Tang et al., Blood 2011); LSCs persist in patients with years of undetectable BCR-ABL "
      "(Chomel et al., Blood 2011; Oncotarget 2016)",
      "exit of deeply dormant LSCs into quiescence", "leukemic"),
    # --- imatinib: dose -> steady-state exposure -> Emax effect ---
    P("im_css_400", 979.0, "ng/mL", 500.0, 2000.0, "log",
      "Larson et al., Blood 2008 (IRIS trough at 400 mg/day, about 1 ug/mL); dose-linear exposure 400-800 mg/day assumed",
      "steady-state imatinib exposure at 400 mg/day", "imatinib"),
    P("im_ec50", 500.0, "ng/mL", 100.0, 3000.0, "log", "assumed",
      "exposure giving half-maximal effect (Emax, Hill 1)", "imatinib"),
    P("im_kill_lsc", 0.4, "1/day", 0.01, 3.0, "log",
      "assumed (no direct measurement; the fitted sets estimate it from Hess 2005): Roeder et al., Nat Med 2006 "
      "and " + STEIN + " have imatinib act on cycling LSCs (Stein: net rate from about +0.005 to -0.1/day); "
      + MICHOR + " has no stem-cell kill (imatinib lowers progenitor and differentiated output)",
      "imatinib kill rate of cycling LSCs at 400 mg/day", "imatinib"),
    P("im_kill_progenitor", 1.0, "1/day", 0.0, 5.0, "linear",
      "Abe et al., Int J Hematol 2008; Corbin et al., J Clin Invest 2011 (CML progenitors are cleared on imatinib)",
      "imatinib kill rate of leukemic progenitors at 400 mg/day", "imatinib"),
    # --- imatinib resistance ---
    P("resistant_fraction", 1.0e-7, "1", 1.0e-10, 1.0e-2, "log",
      "assumed; resistant kinase-domain mutants pre-exist at low frequency (Shah et al., Cancer Cell 2002; "
      "Roche-Lestienne et al., Blood 2002)",
      "share of LSCs in the imatinib-resistant subclone at the start (none if below one cell)", "resistance"),
    # --- effector cells, shared by donor and autologous settings ---
    P("z_death", 0.067, "1/day", 0.01, 0.5, "log", HAHNEL + " (a = 2/month)",
      "effector death / contraction rate", "effector"),
    P("z_half", 0.02, "%", 1.0e-4, 1.0, "log",
      "assumed near " + HAHNEL + " (per-patient K_z: median about 420 of K_Y = 1e6 cells, 0.04 % BCR-ABL, "
      "range about 4-9,600, 0.0004-1 %); window 0.001-1 % (Kim et al. 2008; Clapp et al. 2015)",
      "leukemic load of peak effector stimulation, as the BCR-ABL ratio it gives at normal donor hematopoiesis",
      "effector"),
    P("z_kill", 3.3e-6, "1/(cell*day)", 1.0e-8, 1.0e-4, "log", HAHNEL + " (m = 1e-4/(cell*month)); mass action as in "
      "Moore & Li, J Theor Biol 2004", "leukemic-cell kill rate per effector cell", "effector"),
    P("z_quiescent_kill", 0.02, "1", 0.0, 1.0, "linear",
      "assumed (quiescent LSCs largely escape immune killing)",
      "susceptibility of quiescent LSCs to effectors, relative to cycling cells", "effector"),
    P("z_dormant_kill", 0.0, "1", 0.0, 1.0, "linear",
      "Agudo et al., Immunity 2018 (deeply quiescent stem cells shut down MHC class I and TAP via NLRC5 and are "
      "fully protected from T-cell killing until they re-enter cycle); Baldominos et al., Cell 2022 (quiescent "
      "cancer cells resist T-cell attack); residual LSCs persist in lasting treatment-free remission "
      "(Chomel et al., Oncotarget 2016)",
      "susceptibility of deeply dormant LSCs to effectors, relative to cycling cells (0: immune-privileged)",
      "effector"),
    P("immunosuppression", 0.0, "1", 0.0, 1.0, "linear",
      "Hess et al., J Clin Oncol 2005 (immunosuppression tapered before enrolment)",
      "fraction by which immunosuppressive drugs scale effector expansion down", "effector"),
    # --- setting-specific effector parameters ---
    P("z_influx_allo", 67.0, "cells/day", 1.0, 1.0e4, "log",
      "assumed (10x the autologous influx); DeConde et al., J Theor Biol 2005 (post-transplant GVL)",
      "donor effector influx (transplanted patients)", "effector-allo"),
    P("z_expand_allo", 0.3, "1/day", 0.01, 2.0, "log",
      "assumed; window form " + HAHNEL,
      "peak donor effector expansion rate (at load z_half)", "effector-allo"),
    P("z_influx_auto", 6.7, "cells/day", 0.1, 1.0e3, "log", HAHNEL + " (r_z = 200 cells/month)",
      "autologous effector influx (non-transplanted patients)", "effector-auto"),
    P("z_expand_auto", 0.15, "1/day", 0.01, 2.0, "log",
      HAHNEL + " (p_z/(2 K_z) of 3-10/month, about 0.1-0.33/day); Clapp et al., Cancer Res 2015; "
      "the calibrated set patients takes its population median from the STIM1 relapse counts (gvlmodel calibrate)",
      "peak autologous effector expansion rate (at load z_half)", "effector-auto"),
)
del P

PARAMETER_TABLE: dict[str, Parameter] = {row.name: row for row in _TABLE}
PARAMETER_NAMES: tuple[str, ...] = tuple(PARAMETER_TABLE)


def _fail(field: str, message: str) -> None:
    raise InputError(f"{field}: {message}")


def check_parameter_name(name: str) -> None:
    if not isinstance(name, str) or name not in PARAMETER_TABLE:
        _fail(f"parameter {name!r}", "unknown parameter; allowed names: " + ", ".join(PARAMETER_NAMES))


def default_parameters() -> dict[str, float]:
    """The default parameter set: each table row's ``value``."""
    return {name: row.value for name, row in PARAMETER_TABLE.items()}


PARAMETER_SET_DIR = Path(__file__).resolve().parents[1] / "parameter_sets"


def available_parameter_sets() -> list[str]:
    """Names accepted by :func:`parameter_set`: ``"default"`` plus every shipped set.

    Shipped sets are TOML files in ``gvlmodel/parameter_sets/`` (written by
    ``gvlmodel fit --ship`` and ``gvlmodel calibrate --ship``) with a ``[parameters]`` table of name = value.
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
    ``variant``, ``population`` (natural-log SDs), ``correlation`` (between the population's log
    values, ``{a: {b: r}}``), ``calibration_fit`` (a calibrated set's noise and residual SDs),
    ``stim1_calibration`` (the median STIM1 set, and the series' own value), ``stop_uptake`` and the
    ``posterior`` sample."""
    params = parameter_set(name)
    info = {"parameters": params, "variant": None, "population": None, "stop_uptake": None, "posterior": None,
            "predictive": None, "population_bounds": "clip", "correlation": None, "calibration_fit": None,
            "stim1_calibration": None}
    if name != "default":
        with open(PARAMETER_SET_DIR / f"{name}.toml", "rb") as fh:
            data = tomllib.load(fh)
        info["variant"] = data.get("variant")
        info["population"] = data.get("population")
        info["population_bounds"] = data.get("population_bounds", "clip")
        info["correlation"] = data.get("correlation")
        info["calibration_fit"] = data.get("calibration_fit")
        info["stim1_calibration"] = data.get("stim1_calibration")
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
        try:
            value = float(value)
        except OverflowError:  # an integer beyond float range
            value = math.inf
        if not math.isfinite(value):  # math, not numpy: ~20x cheaper on a scalar (simulate() calls this per solve)
            _fail(f"parameter {name!r}", f"must be finite, got {value}")
        if value < 0:
            _fail(f"parameter {name!r}", f"must be non-negative ({PARAMETER_TABLE[name].unit}), got {value}")
        row = PARAMETER_TABLE[name]
        if check_bounds and not (row.lower <= value <= row.upper):
            _fail(f"parameter {name!r}", f"{value} outside allowed range [{row.lower}, {row.upper}] {row.unit}")
        merged[name] = value
    for low, high, why in ORDERED_PARAMETERS:
        if merged[high] <= merged[low]:
            _fail(f"parameter {high!r}", f"must exceed {low} ({merged[low]}) {why}, got {merged[high]}")
    if merged["x0_eq"] <= 0:
        _fail("parameter 'x0_eq'", "must be positive")
    for name in ("z_quiescent_kill", "z_dormant_kill", "immunosuppression", "resistant_fraction"):
        if merged[name] > 1:
            _fail(f"parameter {name!r}", f"must lie in [0, 1], got {merged[name]}")
    if merged["z_half"] >= 100:
        _fail("parameter 'z_half'", f"a BCR-ABL ratio must lie in (0, 100) %, got {merged['z_half']}")
    for name in POSITIVE_PARAMETERS:
        if merged[name] <= 0:
            _fail(f"parameter {name!r}", f"must be positive, got {merged[name]}")
    if merged["resistant_fraction"] >= 1:
        _fail("parameter 'resistant_fraction'", f"must be below 1 (a share of the clone's stem cells; the sensitive "
              f"subclone must exist), got {merged['resistant_fraction']}")
    return merged


#: ``(low, high, why)``: parameter pairs whose values must satisfy ``high > low`` for every patient.  Their
#: table bounds overlap (each is a plausible range on its own), so a box of both ranges is not always valid.
ORDERED_PARAMETERS = (("d0", "r_x", "for a normal stem-cell pool to exist (its self-renewal must beat its death)"),)


def check_ordered_ranges(ranges: Mapping[str, tuple[float, float]], field: str, hint: str = "") -> None:
    """Refuse, before a run, ranges over which :data:`ORDERED_PARAMETERS` can be violated.

    ``ranges[name] = (lowest, highest)`` value a parameter can take in the run (its value twice when it does
    not vary; a varied median's sampling bounds; a between-patient spread's clip or truncation bounds, the
    table's).  Every pair must keep ``highest(low) < lowest(high)``, else the run would stop when a sample or a
    patient crosses; the :class:`InputError` names ``field``, both ranges and ``hint`` (how to narrow them)."""
    for low, high, why in ORDERED_PARAMETERS:
        lo_range, hi_range = ranges[low], ranges[high]
        if not lo_range[1] < hi_range[0]:
            _fail(field, f"{high} must exceed {low} in every sample and patient {why}, but here {low} ranges over "
                         f"[{lo_range[0]:g}, {lo_range[1]:g}] and {high} over [{hi_range[0]:g}, {hi_range[1]:g}] "
                         f"{PARAMETER_TABLE[low].unit}" + (f"; {hint}" if hint else ""))


def parameter_ranges(medians: Mapping[str, float], varied: Mapping[str, tuple[float, float]] = (),
                     spread: Iterable[str] = ()) -> dict[str, tuple[float, float]]:
    """The range each parameter can take in a run: ``medians[name]`` twice, ``varied[name]`` (a median sampled
    over a range, natural units) or, for a name in ``spread`` (a between-patient spread, whose draws the table's
    bounds clip or truncate), the table's bounds.  Input of :func:`check_ordered_ranges`."""
    ranges = {k: (float(v), float(v)) for k, v in medians.items()}
    ranges.update({k: (float(lo), float(hi)) for k, (lo, hi) in dict(varied).items()})
    for name in spread:
        row = PARAMETER_TABLE[name]
        ranges[name] = (row.lower, row.upper)
    return ranges


#: parameters that must be positive, not only non-negative: the start states and the niche feedback divide by
#: the death, production and exit rates (a zero gave ZeroDivisionError or NaN states), the exposure, the
#: window edge and the carrying capacity
POSITIVE_PARAMETERS = ("d0", "d1", "d2", "d3", "a_x", "b_x", "c_x", "a_y", "b_y", "c_y", "q_out", "dormancy_out",
                       "z_death", "im_css_400", "im_ec50", "z_half", "lsc_capacity")


def parse_variant(variant) -> Variant:
    try:
        return Variant(variant.value if isinstance(variant, Variant) else variant)
    except ValueError:
        _fail("variant", f"unknown variant {variant!r}; allowed: " + ", ".join(v.value for v in Variant))


def kernel_parameters(params: Mapping[str, float] | None = None, variant="H2", transplant: bool = True) -> np.ndarray:
    """The compiled kernel's parameter vector (see :class:`gvlmodel.model.indices.KP`).

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
    for low, high, why in ORDERED_PARAMETERS:
        if np.any(np.asarray(p[high]) <= np.asarray(p[low])):
            _fail(f"parameter {high!r}", f"must exceed {low} for every patient ({why})")
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
    k[..., KP.KL] = p["lsc_capacity"]
    k[..., KP.QIN], k[..., KP.QOUT] = p["q_in"], p["q_out"]
    k[..., KP.DIN], k[..., KP.DOUT] = p["dormancy_in"], p["dormancy_out"]
    k[..., KP.IMKILL], k[..., KP.IMKILLP] = p["im_kill_lsc"], p["im_kill_progenitor"]
    k[..., KP.ZIN] = p[f"z_influx_{setting}"]
    k[..., KP.ZD] = p["z_death"]
    k[..., KP.ZRHO] = p[f"z_expand_{setting}"]
    k[..., KP.ZK] = stimulus_scale(p)
    k[..., KP.ZKILL] = p["z_kill"]
    k[..., KP.ZQREL] = p["z_quiescent_kill"]
    k[..., KP.ZDREL] = p["z_dormant_kill"]
    k[..., KP.ZSUPP] = p["immunosuppression"]
    if variant is Variant.H0:
        k[..., KP.ZIN] = 0.0
        k[..., KP.ZRHO] = 0.0
        k[..., KP.ZKILL] = 0.0
    elif variant is Variant.H1:
        k[..., KP.ZRHO] = 0.0


def normal_mature_cells(p):
    """Normal mature cells ``X3`` at homeostasis: ``x0_eq (a_x/d1)(b_x/d2)(c_x/d3)`` (scalars or arrays)."""
    return p["x0_eq"] * (p["a_x"] / p["d1"]) * (p["b_x"] / p["d2"]) * (p["c_x"] / p["d3"])


def stimulus_scale(p):
    """Kernel ``K_z`` (leukemic mature cells) of the table's ``z_half`` (BCR-ABL %).

    ``Y3 = r/(1 - r) * 2 X3`` gives the ratio ``r = z_half/100`` against normal
    donor hematopoiesis at homeostasis (:func:`normal_mature_cells`).
    """
    return leukemic_mature_cells(p["z_half"], normal_mature_cells(p))


def leukemic_mature_cells(bcr_abl_percent, x3):
    """Leukemic mature cells ``Y3`` that give the ratio ``bcr_abl_percent`` against normal mature ``x3``:
    the inverse of ``100 Y3 / (Y3 + 2 X3)``."""
    r = np.asarray(bcr_abl_percent, dtype=float) / 100.0
    return r / (1.0 - r) * 2.0 * x3


def salib_problem(names: Iterable[str] | None = None) -> dict:
    """A SALib problem spec over the table's bounds (log-scaled rows in log10)."""
    if isinstance(names, str):
        _fail("names", f"expected a list of parameter names, got the string {names!r}")
    try:
        names = list(PARAMETER_NAMES if names is None else names)
    except TypeError:
        _fail("names", f"expected a list of parameter names, got {names!r}")
    if not names:
        _fail("names", "expected at least one parameter name")
    for n in names:
        check_parameter_name(n)
    if len(set(names)) != len(names):
        _fail("names", f"each parameter at most once, got {names}")
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
