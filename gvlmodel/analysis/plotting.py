"""Shared style and plot helpers for the manuscript figures (``figures/figN_*.py``).

One style for every figure: :func:`use_style` (a context manager over
matplotlib's rcParams), the colour-blind-safe Okabe-Ito palette with fixed
colours per hypothesis (:data:`VARIANT_COLORS`), per setting
(:data:`SETTING_COLORS`), for imatinib on/off (:data:`IM_COLORS`) and per
model compartment (:data:`STATE_COLORS`), journal sizes
(:data:`SINGLE_COLUMN`, :data:`DOUBLE_COLUMN`, inches) and
:func:`save_figure`, which writes ``name.pdf`` and ``name.png`` (300 dpi)
atomically.

Every plot helper takes an ``ax`` (and data) and returns the ``ax``; the
figure scripts only read saved results and call these helpers.  The readers
at the bottom (:func:`require_file`, :func:`read_table`, :func:`read_json`)
raise :class:`FileNotFoundError` naming the missing file and the command that
produces it.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import io
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..core.errors import InputError, read_toml
from ..core.experiments import experiment_kind
from ..core.provenance import atomic_write_bytes
from ..model.measurement import DEFAULT_DETECTION_LIMIT, RESPONSE_LEVELS_PERCENT

# --------------------------------------------------------------------------
# palette and sizes
# --------------------------------------------------------------------------

#: Okabe & Ito (2008) colour-blind-safe palette (plus a neutral grey).
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "grey": "#999999",
}

#: one colour per hypothesis, used in every figure
VARIANT_COLORS = {
    "H0": OKABE_ITO["sky_blue"],       # imatinib alone
    "H1": OKABE_ITO["orange"],         # static GVL
    "H2": OKABE_ITO["bluish_green"],   # re-enabled GVL (immune window)
}
#: fallback colours for hypotheses added later (H3, ...)
EXTRA_VARIANT_COLORS = (OKABE_ITO["reddish_purple"], OKABE_ITO["yellow"], OKABE_ITO["grey"])

VARIANT_DESCRIPTIONS = {
    "H0": "IM alone",
    "H1": "static GVL",
    "H2": "re-enabled GVL",
}

#: one colour per setting (transplanted = donor GVL, non-transplanted = autologous effectors)
SETTING_COLORS = {
    "transplanted": OKABE_ITO["blue"],
    "non_transplanted": OKABE_ITO["vermillion"],
}
SETTING_LABELS = {
    "transplanted": "after allogeneic SCT",
    "non_transplanted": "non-transplanted",
}

#: imatinib on/off (background bands: alpha grows with the dose, see :data:`DOSE_ALPHA`)
IM_COLORS = {"on": OKABE_ITO["yellow"], "off": "#FFFFFF"}
DOSE_ALPHA = {400: 0.30, 600: 0.55, 800: 0.80}

#: model compartments (schematic, trajectories, immune-window figure)
STATE_COLORS = {
    "normal": OKABE_ITO["blue"],
    "leukemic": OKABE_ITO["vermillion"],
    "effector": OKABE_ITO["reddish_purple"],
    "imatinib": "#B8A600",  # darker yellow: readable as text and arrows
    "observed": OKABE_ITO["black"],
    "prior": OKABE_ITO["grey"],
    "resistant": "#5C2E00",  # dark brown: the imatinib-resistant subclone, next to the vermillion clone
}

#: leukemic stem-cell pools of model v2 (trajectory column, label, line style)
LSC_POOLS = (("D", "dormant LSCs D", (0, (6, 1.5, 1, 1.5))), ("Q", "quiescent LSCs Q", (0, (4, 1.5))),
             ("Y0", "cycling LSCs Y0", "-"), ("R0", "resistant LSCs R0", (0, (1, 1))))

#: identifiability verdict thresholds on the posterior/prior 90 % width ratio
IDENTIFIABILITY_THRESHOLDS = {"pinned": 0.5, "partly": 0.8}

#: journal sizes, inches
SINGLE_COLUMN = 3.5
ONE_AND_HALF_COLUMN = 5.5
DOUBLE_COLUMN = 7.2
MAX_HEIGHT = 9.0

#: base font size, points (every text element is >= 7 pt)
FONT_SIZE = 7.5
SMALL_FONT_SIZE = 7.0

DAYS_PER_MONTH = 365.25 / 12.0

#: one notation for the parameters in every figure: the symbols of the equations (``gvlmodel.model.model``'s
#: docstring); every row of :data:`gvlmodel.model.parameters.PARAMETER_TABLE` has one
PARAMETER_SYMBOLS = {
    "d0": r"$d_0$", "d1": r"$d_1$", "d2": r"$d_2$", "d3": r"$d_3$", "r_x": r"$r_x$", "x0_eq": r"$X_0^*$",
    "a_x": r"$a_x$", "b_x": r"$b_x$", "c_x": r"$c_x$", "r_y": r"$r_y$", "lsc_capacity": r"$K_L$",
    "a_y": r"$a_y$", "b_y": r"$b_y$", "c_y": r"$c_y$", "q_in": r"$q_{in}$", "q_out": r"$q_{out}$",
    "dormancy_in": r"$\delta_{in}$", "dormancy_out": r"$\delta_{out}$",
    "im_css_400": r"$C_{400}$", "im_ec50": r"$EC_{50}$", "im_kill_lsc": r"$k_{IM}$",
    "im_kill_progenitor": r"$k_{IM,P}$", "resistant_fraction": r"$f_R$", "z_death": r"$d_z$",
    "z_half": r"$z_{half}$", "z_kill": r"$z_{kill}$", "z_quiescent_kill": r"$\kappa_Q$", "z_dormant_kill": r"$\kappa_D$",
    "immunosuppression": r"$s$", "z_influx_allo": r"$b_z^{allo}$", "z_expand_allo": r"$\rho_{allo}$",
    "z_influx_auto": r"$b_z^{auto}$", "z_expand_auto": r"$\rho_{auto}$",
}


#: fitted or sampled quantities that are not rows of the parameter table: label and unit
OTHER_QUANTITIES = {
    "stop_uptake": ("stop uptake", "fraction"),  # share of eligible patients who stop (the trial design's)
}


def parameter_symbol(name: str) -> str:
    """The equations' symbol of a table parameter (``z_expand_allo`` -> ``$\\rho_{allo}$``), the label of a
    quantity in :data:`OTHER_QUANTITIES`; other names as is."""
    if name in PARAMETER_SYMBOLS:
        return PARAMETER_SYMBOLS[name]
    return OTHER_QUANTITIES[name][0] if name in OTHER_QUANTITIES else name


def parameter_unit(name: str, default: str | None = None) -> str:
    """Unit of a table parameter or of a quantity in :data:`OTHER_QUANTITIES`, else ``default`` (else ``1``)."""
    from ..model.parameters import PARAMETER_TABLE

    if name in PARAMETER_TABLE:
        return PARAMETER_TABLE[name].unit
    return OTHER_QUANTITIES[name][1] if name in OTHER_QUANTITIES else (default or "1")


def factor_axis_label(key: str, unit: str | None = None) -> str:
    """An axis label of a fitted or sampled quantity with its unit: ``log10_z_kill`` -> ``log$_{10}$ $z_{kill}$
    (1/(cell*day))`` (log10 of the table unit), ``sd_im_kill_lsc`` -> ``SD of ln $k_{IM}$ (ln units)``,
    ``stop_uptake`` -> ``stop uptake (fraction)``; ``unit``: for a name the table does not know (e.g. a
    fit report row's ``unit``)."""
    if key.startswith("sd_"):
        return f"SD of ln {parameter_symbol(key[len('sd_'):])} ({unit or 'ln units'})"
    base = key[len("log10_"):] if key.startswith("log10_") else key
    return f"{factor_label(key)} ({parameter_unit(base, unit)})"


def factor_label(key: str, describe: bool = False) -> str:
    """A fitted or sampled quantity in the figures' notation: ``log10_z_kill`` -> ``log$_{10}$ $z_{kill}$``,
    ``sd_im_kill_lsc`` -> ``SD $k_{IM}$`` (between-patient SD of its ln); with ``describe`` the parameter
    table's description (up to its first comma or bracket) follows (``$k_{IM}$: imatinib kill rate of
    cycling LSCs at 400 mg/day``)."""
    from ..model.parameters import PARAMETER_TABLE

    base, prefix = key, ""
    if key.startswith("log10_"):
        base, prefix = key[len("log10_"):], "log$_{10}$ "
    elif key.startswith("sd_"):
        base, prefix = key[len("sd_"):], "SD "
    label = prefix + parameter_symbol(base)
    if describe and key.startswith("sd_"):
        label += ": between-patient SD of ln " + parameter_symbol(base)
    elif describe and base in PARAMETER_TABLE:
        # the description up to its first aside (a comma or bracket), to fit a legend
        label += ": " + re.split(r",| \(", PARAMETER_TABLE[base].description)[0]
    return label


def variant_color(variant: str) -> str:
    """Fixed colour of a hypothesis (a stable fallback for names other than H0/H1/H2)."""
    if variant in VARIANT_COLORS:
        return VARIANT_COLORS[variant]
    digits = re.sub(r"\D", "", variant)
    k = int(digits) if digits else sum(map(ord, variant))
    return EXTRA_VARIANT_COLORS[k % len(EXTRA_VARIANT_COLORS)]


def variant_label(variant: str) -> str:
    """``"H2 (re-enabled GVL)"`` style label."""
    desc = VARIANT_DESCRIPTIONS.get(variant)
    return f"{variant} ({desc})" if desc else variant


# --------------------------------------------------------------------------
# style
# --------------------------------------------------------------------------

STYLE = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": FONT_SIZE,
    "axes.titlesize": FONT_SIZE + 0.5,
    "axes.labelsize": FONT_SIZE,
    "xtick.labelsize": SMALL_FONT_SIZE,
    "ytick.labelsize": SMALL_FONT_SIZE,
    "legend.fontsize": SMALL_FONT_SIZE,
    "legend.title_fontsize": SMALL_FONT_SIZE,
    "figure.titlesize": FONT_SIZE + 1.0,
    "mathtext.default": "regular",
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlepad": 4.0,
    "axes.labelpad": 2.5,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4,
    "xtick.major.size": 3.0,
    "ytick.major.size": 3.0,
    "xtick.minor.size": 1.6,
    "ytick.minor.size": 1.6,
    "xtick.major.pad": 2.0,
    "ytick.major.pad": 2.0,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "patch.linewidth": 0.6,
    "legend.frameon": False,
    "legend.handlelength": 1.6,
    "legend.borderaxespad": 0.3,
    "figure.dpi": 100,
    "savefig.dpi": 300,
    "savefig.bbox": "standard",
    "pdf.fonttype": 42,  # embed TrueType: editable text in the PDF
    "ps.fonttype": 42,
}


def _style_dict() -> dict:
    """:data:`STYLE` plus the Okabe-Ito colour cycle."""
    from cycler import cycler

    d = dict(STYLE)
    d["axes.prop_cycle"] = cycler(color=[OKABE_ITO[k] for k in
                                         ("blue", "vermillion", "bluish_green", "orange", "reddish_purple",
                                          "sky_blue", "black", "yellow")])
    return d


@contextlib.contextmanager
def use_style():
    """Context manager: the shared manuscript style (restores rcParams on exit)."""
    import matplotlib as mpl

    with mpl.rc_context(_style_dict()):
        yield


def new_figure(width: float = SINGLE_COLUMN, height: float | None = None, **kwargs):
    """A figure of a journal width (inches); height defaults to 0.75 x width (capped at :data:`MAX_HEIGHT`)."""
    import matplotlib.pyplot as plt

    if height is None:
        height = 0.75 * width
    height = min(float(height), MAX_HEIGHT)
    kwargs.setdefault("layout", "constrained")
    return plt.figure(figsize=(float(width), height), **kwargs)


def save_figure(fig, out_dir, name: str, dpi: int = 300, close: bool = True) -> list[Path]:
    """Write ``name.pdf`` and ``name.png`` (``dpi``) under ``out_dir``, each atomically.

    Each file is first written to a temporary file in the same folder and then
    moved into place with :func:`os.replace`, so a reader never sees a partly
    written figure.  Returns the two paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in ("pdf", "png"):
        target = out / f"{name}.{fmt}"
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=_metadata(fmt))
        atomic_write_bytes(target, buf.getvalue())
        paths.append(target)
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return paths


def _metadata(fmt: str) -> dict:
    # no creation date: re-running a figure script on the same results gives the same PDF
    if fmt == "pdf":
        return {"Creator": "gvlmodel", "CreationDate": None}
    return {"Software": "gvlmodel"}


def panel_label(ax, letter: str, x: float = -0.02, y: float = 1.0, **kwargs):
    """Bold panel letter at the top left of ``ax`` (axes coordinates, placed outside the frame)."""
    kwargs.setdefault("fontsize", FONT_SIZE + 2)
    kwargs.setdefault("fontweight", "bold")
    ax.text(x, y, letter, transform=ax.transAxes, ha="right", va="bottom", **kwargs)
    return ax


def months_axis(ax, t_max_days: float, step_months: int = 6, label: str = "Time since start of imatinib (months)"):
    """Use months on the x axis of a plot whose data are in months; ticks every ``step_months``."""
    t_max = t_max_days / DAYS_PER_MONTH
    ax.set_xlim(0.0, t_max)
    ticks = np.arange(0.0, t_max + 1e-9, step_months)
    ax.set_xticks(ticks)
    ax.set_xlabel(label)
    return ax


# --------------------------------------------------------------------------
# trajectories (figures 2 and 4)
# --------------------------------------------------------------------------


def dose_segments(t: Sequence[float], dose: Sequence[float]) -> list[tuple[float, float, float]]:
    """Piecewise-constant dose as ``(t_start, t_end, dose)`` runs (dose of a row holds until the next row)."""
    t = np.asarray(t, dtype=float)
    dose = np.asarray(dose, dtype=float)
    if t.size == 0:
        return []
    runs = []
    start = 0
    for i in range(1, t.size):
        if dose[i] != dose[start]:
            runs.append((t[start], t[i], dose[start]))
            start = i
    runs.append((t[start], t[-1], dose[start]))
    return runs


def shade_dose(ax, t, dose, alpha_by_dose: Mapping[float, float] | None = None):
    """Shade the background where imatinib is given, darker for higher doses (``t`` in the x-axis unit)."""
    alphas = dict(DOSE_ALPHA if alpha_by_dose is None else alpha_by_dose)
    for t0, t1, d in dose_segments(t, dose):
        if d <= 0 or t1 <= t0:
            continue
        a = alphas.get(int(round(d)), min(0.9, 0.3 + 0.25 * (d - 400.0) / 200.0))
        ax.axvspan(t0, t1, color=IM_COLORS["on"], alpha=a, lw=0, zorder=0)
    return ax


def dose_legend_handles(doses: Iterable[float]):
    """Legend patches for the dose bands present in a figure (off first)."""
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=IM_COLORS["off"], edgecolor="0.6", lw=0.5, label="IM off")]
    for d in sorted({int(round(x)) for x in doses if x > 0}):
        a = DOSE_ALPHA.get(d, 0.5)
        handles.append(Patch(facecolor=IM_COLORS["on"], alpha=a, edgecolor="none", label=f"IM {d} mg/day"))
    return handles


def response_levels(ax, detection_limit_percent: float = 100.0 * DEFAULT_DETECTION_LIMIT,
                    levels: Mapping[str, float] | None = None, label_x: float = 1.0, show_labels: bool = True):
    """Dashed lines at MMR/MR4/MR4.5/MR5 and a solid line at the nominal PCR detection limit, labelled at the
    right (detection is probabilistic near it, so positive samples can lie below the line).

    Levels that coincide with the detection limit (MR5 at 0.001 % with the
    default limit) are drawn once with a combined label.
    """
    levels = dict(RESPONSE_LEVELS_PERCENT if levels is None else levels)
    merged = []
    for name, value in sorted(levels.items(), key=lambda kv: -kv[1]):
        if math.isclose(value, detection_limit_percent, rel_tol=1e-6):
            continue
        merged.append((name, value, "--"))
    same = [n for n, v in levels.items() if math.isclose(v, detection_limit_percent, rel_tol=1e-6)]
    # detection is probabilistic near the limit (Poisson), so a positive sample can lie below this line
    dl_name = "nominal PCR limit" + (" = " + "/".join(same) if same else "")
    merged.append((dl_name, detection_limit_percent, "-"))
    trans = ax.get_yaxis_transform()
    for name, value, ls in merged:
        ax.axhline(value, color="0.35", lw=0.6 if ls == "--" else 0.8, ls=ls, zorder=1)
        if show_labels:
            ax.text(label_x, value, " " + name, transform=trans, ha="left", va="center",
                    fontsize=SMALL_FONT_SIZE, color="0.25", clip_on=False)
    return ax


def plot_bcr_abl(ax, t, ratio_percent, measured_t=None, measured_percent=None,
                 detection_limit_percent: float = 100.0 * DEFAULT_DETECTION_LIMIT, color: str | None = None,
                 label: str | None = "model (true ratio)", ylim=(1e-5, 300.0)):
    """True BCR-ABL ratio (line) and PCR samples (dots; undetectable samples as open triangles at the limit).

    ``t`` and ``measured_t`` in the x-axis unit; ratios in percent; a measured
    value of 0 means "undetectable".  Log y axis.
    """
    color = SETTING_COLORS["transplanted"] if color is None else color
    t = np.asarray(t, dtype=float)
    r = np.asarray(ratio_percent, dtype=float)
    r = np.where(r > 0, r, np.nan)
    ax.plot(t, r, color=color, lw=1.2, label=label, zorder=3)
    if measured_t is not None and measured_percent is not None:
        mt = np.asarray(measured_t, dtype=float)
        mv = np.asarray(measured_percent, dtype=float)
        ok = np.isfinite(mv)
        pos = ok & (mv > 0)
        neg = ok & (mv <= 0)
        ax.plot(mt[pos], mv[pos], ls="none", marker="o", ms=3.0, mfc=STATE_COLORS["observed"],
                mec="white", mew=0.4, label="PCR sample", zorder=5)
        ax.plot(mt[neg], np.full(neg.sum(), detection_limit_percent), ls="none", marker="v", ms=3.6,
                mfc="white", mec=STATE_COLORS["observed"], mew=0.7, label="PCR undetectable", zorder=5)
    ax.set_yscale("log")
    ax.set_ylim(*ylim)
    ax.set_ylabel("BCR-ABL (%)")
    return ax


def plot_effectors(ax, t, z, color: str | None = None, label: str | None = "effectors Z"):
    """Effector cells over time (log y axis, cells)."""
    color = STATE_COLORS["effector"] if color is None else color
    z = np.asarray(z, dtype=float)
    ax.plot(np.asarray(t, dtype=float), np.where(z > 0, z, np.nan), color=color, lw=1.2, label=label)
    ax.set_yscale("log")
    ax.set_ylabel("Effectors Z (cells)")
    return ax


def lsc_pool_style(name: str) -> dict:
    """Line style of one leukemic stem-cell pool (``D``, ``Q``, ``Y0``, ``R0``; :data:`LSC_POOLS`)."""
    for col, label, ls in LSC_POOLS:
        if col == name:
            color = STATE_COLORS["resistant"] if col == "R0" else STATE_COLORS["leukemic"]
            return {"color": color, "ls": ls, "lw": 1.0, "label": label}
    raise KeyError(f"unknown stem-cell pool {name!r}; expected one of {[c for c, _, _ in LSC_POOLS]}")


def plot_stem_cells(ax, t, pools: Mapping[str, Sequence[float]], labels: bool = True):
    """Leukemic stem-cell pools over time (log y axis, cells): dormant ``D``, quiescent ``Q``, cycling ``Y0``,
    resistant ``R0``.

    ``pools`` maps pool names to cell counts; a pool that never reaches one cell
    (e.g. no resistant subclone) is not drawn, nor are counts below one cell after
    extinction (0).
    """
    t = np.asarray(t, dtype=float)
    for col, _, _ in LSC_POOLS:
        if col not in pools:
            continue
        y = np.asarray(pools[col], dtype=float)
        if not np.any(y >= 1.0):
            continue
        style = lsc_pool_style(col)
        if not labels:
            style["label"] = None
        ax.plot(t, np.where(y > 0, y, np.nan), zorder=2, **style)
    ax.set_yscale("log")
    ax.set_ylabel("Cells")
    return ax


# --------------------------------------------------------------------------
# distributions (figures 3, 5, 6, 7)
# --------------------------------------------------------------------------


def weighted_quantile(x, q, weights=None):
    """Weighted quantile(s) ``q`` in [0, 1] of ``x`` (linear interpolation of the weighted CDF)."""
    x = np.asarray(x, dtype=float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    ok = np.isfinite(x) & np.isfinite(w) & (w > 0)
    x, w = x[ok], w[ok]
    if x.size == 0:
        return np.full(np.shape(q), np.nan)
    order = np.argsort(x)
    x, w = x[order], w[order]
    cdf = (np.cumsum(w) - 0.5 * w) / w.sum()
    return np.interp(q, cdf, x)


def weighted_kde(x, weights=None, grid=None, bounds=None, bandwidth: float | None = None, n: int = 200):
    """Weighted Gaussian KDE with reflection at ``bounds`` (so densities over a prior range do not leak).

    Returns ``(grid, density)``; the density integrates to about 1 over the
    grid.  The bandwidth defaults to Silverman's rule with the effective sample
    size of the weights; a degenerate sample gets a small positive bandwidth.
    """
    x = np.asarray(x, dtype=float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    ok = np.isfinite(x) & np.isfinite(w) & (w > 0)
    x, w = x[ok], w[ok]
    if x.size == 0:
        g = np.linspace(0.0, 1.0, n) if grid is None else np.asarray(grid, dtype=float)
        return g, np.zeros_like(g)
    w = w / w.sum()
    lo, hi = (None, None) if bounds is None else bounds
    if grid is None:
        a = x.min() if lo is None else lo
        b = x.max() if hi is None else hi
        if b <= a:
            a, b = a - 0.5, b + 0.5
        grid = np.linspace(a, b, n)
    grid = np.asarray(grid, dtype=float)
    if bandwidth is None:
        n_eff = 1.0 / np.sum(w * w)
        mean = np.sum(w * x)
        sd = math.sqrt(max(np.sum(w * (x - mean) ** 2), 0.0))
        iqr = float(np.diff(weighted_quantile(x, [0.25, 0.75], w))[0])
        spread = min(sd, iqr / 1.349) if iqr > 0 else sd
        span = (grid[-1] - grid[0]) if grid.size > 1 else 1.0
        bandwidth = 0.9 * spread * n_eff ** (-0.2) if spread > 0 else 0.0
        bandwidth = max(bandwidth, 0.01 * span, 1e-12)
    centres = [x]
    if lo is not None:
        centres.append(2 * lo - x)
    if hi is not None:
        centres.append(2 * hi - x)
    dens = np.zeros_like(grid)
    for c in centres:
        zz = (grid[:, None] - c[None, :]) / bandwidth
        dens += np.exp(-0.5 * zz * zz) @ w
    dens /= bandwidth * math.sqrt(2.0 * math.pi)
    if lo is not None:
        dens[grid < lo] = 0.0
    if hi is not None:
        dens[grid > hi] = 0.0
    return grid, dens


def violin(ax, position: float, values, color: str, width: float = 0.7, bounds=None, alpha: float = 0.35,
           weights=None, label: str | None = None):
    """One vertical violin (weighted KDE, reflected at ``bounds``) at x = ``position``; returns ``ax``.

    A sample with a single distinct value is drawn as a short horizontal bar
    (its "violin" would be a spike).
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return ax
    if np.ptp(v) == 0:
        ax.plot([position - width / 2, position + width / 2], [v[0], v[0]], color=color, lw=2.0, alpha=0.7,
                solid_capstyle="butt", label=label)
        return ax
    lo, hi = (v.min(), v.max()) if bounds is None else bounds
    lo = v.min() if lo is None else max(lo, v.min())
    hi = v.max() if hi is None else min(hi, v.max())
    grid = np.linspace(lo, hi, 200)
    _, dens = weighted_kde(v, weights, grid=grid, bounds=bounds)
    if dens.max() <= 0:
        return ax
    half = 0.5 * width * dens / dens.max()
    ax.fill_betweenx(grid, position - half, position + half, facecolor=color, alpha=alpha, edgecolor=color,
                     lw=0.5, label=label, zorder=2)
    return ax


def interval_bar(ax, position: float, median: float, q05: float, q95: float, color: str, label: str | None = None,
                 marker: str = "o"):
    """Posterior predictive median (marker) with its 5-95 % interval (bar) at x = ``position``."""
    if not all(np.isfinite([median, q05, q95])):
        return ax
    ax.plot([position, position], [q05, q95], color=color, lw=2.2, solid_capstyle="butt", zorder=4)
    ax.plot([position], [median], marker=marker, ms=4.5, mfc="white", mec=color, mew=1.2, ls="none", zorder=5,
            label=label)
    return ax


def observed_line(ax, value: float, label: str | None = "observed (Hess 2005)", x0: float | None = None,
                  x1: float | None = None):
    """The observed value as a black horizontal line across the panel (or from ``x0`` to ``x1``)."""
    if value is None or not np.isfinite(value):
        return ax
    if x0 is None or x1 is None:
        ax.axhline(value, color=STATE_COLORS["observed"], lw=1.0, ls=(0, (4, 2)), zorder=6, label=label)
    else:
        ax.plot([x0, x1], [value, value], color=STATE_COLORS["observed"], lw=1.0, ls=(0, (4, 2)), zorder=6,
                label=label)
    return ax


def credible_band(ax, x, median, q05, q95, color: str, label: str | None = None, marker: str | None = "o",
                  alpha: float = 0.22):
    """Median line (with markers) and a shaded q05-q95 band."""
    x = np.asarray(x, dtype=float)
    ax.fill_between(x, np.asarray(q05, dtype=float), np.asarray(q95, dtype=float), color=color, alpha=alpha, lw=0)
    ax.plot(x, np.asarray(median, dtype=float), color=color, lw=1.4, marker=marker, ms=3.5, label=label)
    return ax


def weighted_hist(ax, x, weights=None, bins: int = 20, range=None, color: str = "k", label: str | None = None,
                  density: bool = True, filled: bool = False, lw: float = 1.1):
    """Weighted histogram as a step outline (``filled``: also a light fill)."""
    x = np.asarray(x, dtype=float)
    w = None if weights is None else np.asarray(weights, dtype=float)
    ok = np.isfinite(x) if w is None else np.isfinite(x) & np.isfinite(w)
    h, edges = np.histogram(x[ok], bins=bins, range=range, weights=None if w is None else w[ok], density=density)
    ax.stairs(h, edges, color=color, lw=lw, label=label, baseline=0.0)
    if filled:
        ax.stairs(h, edges, color=color, alpha=0.2, fill=True)
    return ax


def width_ratio_bars(ax, parameters: Sequence[str], ratios: Mapping[str, Sequence[float]],
                     thresholds: Mapping[str, float] | None = None, labels: Sequence[str] | None = None):
    """Grouped vertical bars of posterior/prior 90 % width ratios with the verdict thresholds.

    ``ratios[variant]`` holds one value per entry of ``parameters`` (nan where
    the variant lacks the parameter: no bar).  Regions, labelled at the right:
    pinned (< 0.5), partly (0.5-0.8), not identified (> 0.8); the dotted line
    at 0.9 marks a posterior equal to the prior.
    """
    thr = dict(IDENTIFIABILITY_THRESHOLDS if thresholds is None else thresholds)
    variants = list(ratios)
    w = 0.8 / max(len(variants), 1)
    x = np.arange(len(parameters), dtype=float)
    for j, v in enumerate(variants):
        vals = np.asarray(ratios[v], dtype=float)
        ok = np.isfinite(vals)
        ax.bar(x[ok] + (j - (len(variants) - 1) / 2) * w, vals[ok], width=w * 0.92, color=variant_color(v),
               label=v, zorder=3)
    ax.axhline(thr["pinned"], color="0.25", lw=0.8, ls=(0, (4, 2)), zorder=4)
    ax.axhline(thr["partly"], color="0.25", lw=0.8, ls=(0, (4, 2)), zorder=4)
    ax.axhline(0.9, color="0.55", lw=0.6, ls=":", zorder=4)
    trans = ax.get_yaxis_transform()
    ax.text(1.005, thr["pinned"] / 2, "pinned", transform=trans, ha="left", va="center", fontsize=SMALL_FONT_SIZE)
    ax.text(1.005, (thr["pinned"] + thr["partly"]) / 2, "partly", transform=trans, ha="left", va="center",
            fontsize=SMALL_FONT_SIZE)
    ax.text(1.005, (thr["partly"] + 1.05) / 2, "not\nidentified", transform=trans, ha="left", va="center",
            fontsize=SMALL_FONT_SIZE, linespacing=1.1)
    ax.text(-0.45, 0.905, "posterior = prior (0.9)", ha="left", va="bottom", fontsize=SMALL_FONT_SIZE,
            color="0.4")
    ax.set_xticks(x)
    ax.set_xticklabels(list(labels) if labels is not None else list(parameters))
    ax.set_xlim(-0.5, len(parameters) - 0.5)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("Posterior / prior\n90 % width (1)")
    ax.set_xlabel("Fitted quantity")
    return ax


def prior_density(ax, bounds: tuple[float, float], normal: tuple[float, float] | None = None, **kw):
    """A fit's prior density over ``bounds`` (dashed): uniform, or a normal ``(centre, sd)`` truncated to
    the bounds (a shared-biology prior of the fit, ``report.json`` ``prior.shared``); returns ``ax``."""
    lo, hi = bounds
    style = {"color": STATE_COLORS["prior"], "lw": 0.9, "ls": (0, (3, 2)), "label": "prior", **kw}
    if normal is None:
        ax.plot([lo, hi], [1.0 / (hi - lo)] * 2, **style)
        return ax
    from scipy.stats import truncnorm

    mu, sd = normal
    x = np.linspace(lo, hi, 200)
    ax.plot(x, truncnorm.pdf(x, (lo - mu) / sd, (hi - mu) / sd, loc=mu, scale=sd), **style)
    return ax


def weighted_density(ax, x, weights=None, bounds=None, color: str = "k", label: str | None = None,
                     fill: bool = True, lw: float = 1.2, n: int = 200):
    """Weighted KDE line (reflected at ``bounds``), optionally with a light fill; returns ``ax``."""
    lo, hi = (None, None) if bounds is None else bounds
    x = np.asarray(x, dtype=float)
    a = np.nanmin(x) if lo is None else lo
    b = np.nanmax(x) if hi is None else hi
    grid, dens = weighted_kde(x, weights, grid=np.linspace(a, b, n), bounds=bounds)
    ax.plot(grid, dens, color=color, lw=lw, label=label)
    if fill:
        ax.fill_between(grid, 0.0, dens, color=color, alpha=0.12, lw=0)
    return ax


def pair_plot(axes, samples: Mapping[str, np.ndarray], weights=None, ranges: Mapping[str, tuple] | None = None,
              labels: Mapping[str, str] | None = None, color: str = "k", bins: int = 20,
              medians: bool = True, lower: str = "scatter"):
    """Corner plot into a square array of axes (``len(samples)`` x ``len(samples)``); returns ``axes``.

    Diagonal: weighted KDEs; lower triangle: the weighted particles (``lower =
    "scatter"``: marker area proportional to the weight, the honest picture of
    a small or uneven ABC population) or weighted 2-d histograms (``"hist"``),
    with the posterior medians (+); upper triangle hidden.
    """
    from matplotlib.colors import LinearSegmentedColormap, to_rgb
    from matplotlib.ticker import MaxNLocator

    keys = list(samples)
    n = len(keys)
    w = np.ones(len(samples[keys[0]])) if weights is None else np.asarray(weights, dtype=float)
    cmap = LinearSegmentedColormap.from_list("post", [(1, 1, 1), to_rgb(color)])
    rng_of = {}
    for k in keys:
        x = np.asarray(samples[k], dtype=float)
        r = None if ranges is None else ranges.get(k)
        if r is None or not np.all(np.isfinite(r)) or r[1] <= r[0]:
            lo, hi = np.nanmin(x), np.nanmax(x)
            pad = 0.05 * (hi - lo) if hi > lo else 0.5
            r = (lo - pad, hi + pad)
        rng_of[k] = (float(r[0]), float(r[1]))
    med = {k: float(weighted_quantile(samples[k], 0.5, w)) for k in keys}
    sizes = 30.0 * w / np.nanmax(w) if np.nanmax(w) > 0 else np.full_like(w, 5.0)
    order = np.argsort(w)  # heaviest particles on top
    for i, ki in enumerate(keys):
        for j, kj in enumerate(keys):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            if i == j:
                weighted_density(ax, samples[ki], w, bounds=rng_of[ki], color=color)
                if medians:
                    ax.axvline(med[ki], color="k", lw=0.6, ls=":")
                ax.set_yticks([])
                ax.set_ylim(bottom=0)
                ax.spines["left"].set_visible(False)
                ax.set_xlim(*rng_of[ki])
            else:
                x = np.asarray(samples[kj], dtype=float)
                y = np.asarray(samples[ki], dtype=float)
                if lower == "hist":
                    h, xe, ye = np.histogram2d(x, y, bins=bins, range=[rng_of[kj], rng_of[ki]], weights=w)
                    ax.pcolormesh(xe, ye, h.T, cmap=cmap, shading="flat", rasterized=True)
                else:
                    ax.scatter(x[order], y[order], s=sizes[order], color=color, alpha=0.5, lw=0, rasterized=True)
                if medians:
                    ax.plot([med[kj]], [med[ki]], marker="+", color="k", ms=5, mew=1.0)
                ax.set_xlim(*rng_of[kj])
                ax.set_ylim(*rng_of[ki])
            lab_x = labels.get(kj, kj) if labels else kj
            lab_y = labels.get(ki, ki) if labels else ki
            ax.xaxis.set_major_locator(MaxNLocator(nbins=3, prune="both"))
            if i != j:
                ax.yaxis.set_major_locator(MaxNLocator(nbins=3, prune="both"))
            if i == n - 1:
                ax.set_xlabel(lab_x)
                ax.tick_params(axis="x", labelrotation=40)
                for t in ax.get_xticklabels():
                    t.set_horizontalalignment("right")
                    t.set_rotation_mode("anchor")
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(lab_y)
            elif j > 0 or i == 0:
                ax.tick_params(labelleft=False)
            ax.tick_params(labelsize=SMALL_FONT_SIZE)
    return axes


# --------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------


class MissingResultError(FileNotFoundError):
    """A figure input is missing; the message names the file and the command that produces it."""


def require_file(path, command: str) -> Path:
    """``path`` as a :class:`Path` if it exists, else :class:`MissingResultError` naming ``command``."""
    p = Path(path)
    if not p.is_file():
        raise MissingResultError(f"missing input file {p}: produce it with `{command}` "
                                 "(`gvlmodel reproduce` writes every result)")
    return p


def experiment(results, name: str) -> tuple[Path, str]:
    """Experiment ``name``'s results folder ``<results>/<name>`` and the command that writes it.

    The one rule every figure script uses, so no script carries a copy of
    another's command: ``experiments/<name>.toml`` writes ``<results>/<name>/``
    (the layout of ``gvlmodel reproduce``) with the subcommand of the config's
    kind (:func:`gvlmodel.core.experiments.experiment_kind`), the config read from the
    working directory or else the source checkout; where neither has it, the
    command is ``gvlmodel reproduce``.
    """
    folder = Path(results) / name
    config = Path("experiments") / f"{name}.toml"
    for root in (Path("."), Path(__file__).resolve().parents[2]):  # working directory, then a source checkout
        try:
            kind = experiment_kind(read_toml(root / config, "experiment"), str(config))
        except (InputError, OSError):
            continue
        shown = config if root == Path(".") else (root / config)  # a path that works from here
        return folder, f"gvlmodel {kind} {shown.as_posix()} --out {folder.as_posix()}"
    return folder, "gvlmodel reproduce"


def read_json(path, command: str) -> dict:
    """Parse a JSON results file (see :func:`require_file`)."""
    with require_file(path, command).open(encoding="utf-8") as fh:
        return json.load(fh)


_NUMPY_REPR = re.compile(r"^\s*np\.\w+\((.*)\)\s*$")


def _to_float(s: str) -> float:
    s = s.strip()
    if s == "" or s.lower() in ("nan", "none", "null"):
        return math.nan
    m = _NUMPY_REPR.match(s)  # tolerate values written as numpy reprs, e.g. "np.float64(0.25)"
    if m:
        s = m.group(1)
    return float(s)


def read_table(path, command: str, numeric: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """A CSV file as ``{column: array}``; ``numeric`` columns (default: all that parse) become floats.

    Empty cells become nan.  Columns in ``numeric`` that fail to parse raise a
    ``ValueError`` naming the file and column.
    """
    p = require_file(path, command)
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{p}: empty file (produce it with `{command}`)") from None
        rows = list(reader)
    cols = {h: [r[i] if i < len(r) else "" for r in rows] for i, h in enumerate(header)}
    want = set(header if numeric is None else numeric)
    missing = [c for c in (numeric or ()) if c not in cols]
    if missing:
        raise ValueError(f"{p}: missing column(s) {missing} (produce it with `{command}`)")
    out: dict[str, np.ndarray] = {}
    for h, vals in cols.items():
        if h in want:
            try:
                out[h] = np.array([_to_float(v) for v in vals], dtype=float)
                continue
            except ValueError:
                if numeric is not None:
                    raise ValueError(f"{p}: column {h!r} is not numeric") from None
        out[h] = np.array(vals, dtype=object)
    return out


def as_bool(values) -> np.ndarray:
    """``"true"/"false"/"1"/"0"`` strings (or numbers) as a boolean array."""
    out = []
    for v in np.asarray(values, dtype=object):
        if isinstance(v, str):
            out.append(v.strip().lower() in ("true", "1", "yes", "1.0"))
        else:
            out.append(bool(v) and not (isinstance(v, float) and math.isnan(v)))
    return np.array(out, dtype=bool)


# --------------------------------------------------------------------------
# figure scripts
# --------------------------------------------------------------------------


def figure_cli(draw, argv=None, description: str | None = None) -> list[Path]:
    """Shared ``main`` of the figure scripts: ``--results`` (default ``results``), ``--out``
    (default ``figures/output``); calls ``draw(results, out)`` and prints the written paths."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="folder with the saved results (default: results)")
    parser.add_argument("--out", type=Path, default=Path("figures/output"),
                        help="output folder for PDF and PNG (default: figures/output)")
    args = parser.parse_args(argv)
    try:
        paths = draw(args.results, args.out)
    except MissingResultError as exc:
        parser.exit(2, f"error: {exc}\n")
    for p in paths:
        print(f"wrote {p}")
    return paths
