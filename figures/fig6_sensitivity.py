"""Figure 6: which fitted quantities drive the clinical outcomes? Global and local sensitivity.

``fig6_sensitivity``: (a) Sobol' total-order (ST, bars) and first-order (S1,
dots) indices with their bootstrap confidence intervals for every clinical
output; (b) Morris screening, mu* against sigma (in the output's unit; above
the dotted line sigma > mu*: non-linear effects or interactions dominate);
(c) time-resolved ST of the cohort's mean log10 BCR-ABL at the visits;
(d) convergence of ST with the number of Sobol' base samples for the leading
factors of two outputs (bands: confidence intervals).
``fig6_sensitivity_detail``: (a) normalised local coefficients
``d ln Y / d ln theta`` at the fitted point (the selected step); (b)
time-resolved S1; (c) the step study of the local coefficients (top three
factors per output; dotted: the selected step).

Factors keep one colour and marker throughout (a spread ``sd_<name>`` shares
its parameter's colour, open marker, dashed line); they are written with the
symbols of the equations (``gvlmodel.analysis.plotting.PARAMETER_SYMBOLS``): ``log10 z_kill``
(sampled on the log10 scale), ``SD k_IM`` (the between-patient SD of ln im_kill_lsc);
the legend gives each symbol's description from the parameter table.  In (b)
the three factors of largest mu* per output are labelled (leader lines where the
label sits away from its point); the others are identified by marker and colour.

Outputs whose indices could not be computed (status other than ``ok``: the
output is undefined for some samples, or constant) are shown as "not
analysed" with the reason.  The quick study (``--quick``: 16 base samples,
cohorts of 40) gives very wide intervals; the note at the top of the figure
says so whenever the analysis warned about wide intervals.

Inputs: ``results/sensitivity_hess2005/indices.json``.
Run: ``python figures/fig6_sensitivity.py [--results results] [--out figures/output]``
"""
from __future__ import annotations

import math
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from gvlmodel.analysis import plotting as gp  # noqa: E402

NAME = "fig6_sensitivity"
NAME_DETAIL = "fig6_sensitivity_detail"
SENS = "sensitivity_hess2005"  # experiment read (gvlmodel.analysis.plotting.experiment)

#: output -> (two-line panel title, short name, unit)
OUTPUTS = {
    "p_cmr": ("CMR reached\n(probability)", "P(CMR)", "probability"),
    "t_cmr_days": ("Time to CMR\n(restricted mean)", "time to CMR", "days"),
    "p_durable": ("Durable CMR\nafter a stop (prob.)", "P(durable CMR)", "probability"),
    "t_loss_days": ("Stop to CMR loss\n(restricted mean)", "time to CMR loss", "days"),
    "min_im_days": ("Minimal IM course,\ndurable control", "minimal IM course", "days"),
}
#: outputs whose convergence is shown in the main figure (first two that were analysed)
CONVERGENCE_OUTPUTS = ("p_cmr", "p_durable", "t_cmr_days", "t_loss_days", "min_im_days")
N_TOP = 3

#: fixed colour per model parameter; a spread ``sd_<name>`` shares its parameter's colour (open marker, dashed)
BASE_COLORS = {
    "im_kill_lsc": gp.OKABE_ITO["blue"],
    "im_kill_progenitor": gp.OKABE_ITO["sky_blue"],
    "q_out": gp.OKABE_ITO["orange"],
    "q_in": gp.STATE_COLORS["imatinib"],
    "resistant_fraction": gp.OKABE_ITO["black"],
    "z_expand_allo": gp.OKABE_ITO["bluish_green"],
    "z_kill": gp.OKABE_ITO["vermillion"],
    "z_half": gp.OKABE_ITO["reddish_purple"],
}
#: other factors (not in BASE_COLORS): greys, distinct from every colour above
EXTRA_COLORS = (gp.OKABE_ITO["grey"], "#5E5E5E")
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "h", "<", ">")


# --------------------------------------------------------------------------
# labels and styles
# --------------------------------------------------------------------------


def base_name(key: str) -> str:
    """Model parameter behind a factor key (``log10_z_kill`` -> ``z_kill``, ``sd_im_kill_lsc`` -> ``im_kill_lsc``)."""
    for prefix in ("log10_", "sd_"):
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def factor_label(key: str) -> str:
    """Factor in the figures' notation (:func:`gvlmodel.analysis.plotting.factor_label`): ``log$_{10}$ $z_{kill}$``,
    ``SD $k_{IM}$`` (between-patient SD of ln k_IM)."""
    return gp.factor_label(key)


def factor_styles(names) -> dict[str, dict]:
    """``{key: {color, marker, ls, mfc}}``, stable for the model's parameters."""
    styles = {}
    extra = 0
    bases = {}
    for k, key in enumerate(names):
        b = base_name(key)
        if b not in bases:
            if b in BASE_COLORS:
                bases[b] = BASE_COLORS[b]
            else:
                bases[b] = EXTRA_COLORS[extra % len(EXTRA_COLORS)]
                extra += 1
        spread = key.startswith("sd_")
        color = bases[b]
        styles[key] = {"color": color, "marker": MARKERS[k % len(MARKERS)], "ls": (0, (3, 1.5)) if spread else "-",
                       "mfc": "white" if spread else color}
    return styles


def short_label(key: str) -> str:
    """Compact label for crowded panels: the symbol, ``SD`` before a spread (``$z_{kill}$``, ``SD $k_{IM}$``)."""
    return ("SD " if key.startswith("sd_") else "") + gp.parameter_symbol(base_name(key))


def _arr(values, n: int) -> np.ndarray:
    if values is None:
        return np.full(n, np.nan)
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _wrap(message: str, width: int = 24) -> str:
    return "\n".join(textwrap.wrap(str(message), width)) or "no reason given"


def not_analysed(ax, message: str, width: int = 24):
    """Blank the panel and say why there is nothing to show; returns ``ax``."""
    ax.text(0.5, 0.5, "not analysed:\n" + _wrap(message, width), transform=ax.transAxes, ha="center",
            va="center", fontsize=gp.SMALL_FONT_SIZE, color="0.3")
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    return ax


# --------------------------------------------------------------------------
# panels (each takes an ax and returns it)
# --------------------------------------------------------------------------


def sobol_bars(ax, names, order, res: dict, styles, xlim=(-0.3, 1.3), show_labels: bool = True):
    """Horizontal bars: ST (filled bar) and S1 (dot below it), each with its bootstrap CI; returns ``ax``.

    ``order`` lists the factor keys top to bottom.  A result with a status
    other than ``"ok"`` is drawn as "not analysed".
    """
    y = np.arange(len(order), dtype=float)
    ax.set_ylim(len(order) - 0.5, -0.5)
    ax.set_yticks(y)
    ax.set_yticklabels([factor_label(k) for k in order])
    ax.tick_params(axis="y", labelleft=show_labels)
    if res.get("status") != "ok":
        ax.text(0.5, 0.5, "not analysed:\n" + _wrap(res.get("message", res.get("status", "")), 20),
                transform=ax.transAxes, ha="center", va="center", fontsize=gp.SMALL_FONT_SIZE, color="0.3")
        ax.set_xticks([])
        ax.tick_params(axis="y", length=0)
        return ax
    n = len(names)
    idx = [names.index(k) for k in order]
    st, st_c = _arr(res.get("ST"), n)[idx], _arr(res.get("ST_conf"), n)[idx]
    s1, s1_c = _arr(res.get("S1"), n)[idx], _arr(res.get("S1_conf"), n)[idx]
    for i, key in enumerate(order):
        c = styles[key]["color"]
        if np.isfinite(st[i]):
            ax.barh(y[i] - 0.17, st[i], height=0.34, color=c, alpha=0.85, lw=0, zorder=3)
            if np.isfinite(st_c[i]):
                ax.errorbar(st[i], y[i] - 0.17, xerr=st_c[i], color="0.15", lw=0.7, capsize=1.5, capthick=0.7,
                            zorder=4)
        if np.isfinite(s1[i]):
            ax.errorbar(s1[i], y[i] + 0.2, xerr=s1_c[i] if np.isfinite(s1_c[i]) else None, color="0.15",
                        lw=0.7, capsize=1.5, capthick=0.7, marker="o", ms=3.0, mfc="white", mec="0.15", mew=0.8,
                        zorder=5)
    ax.axvline(0.0, color="0.5", lw=0.5, zorder=1)
    ax.axvline(1.0, color="0.75", lw=0.5, ls=":", zorder=1)
    ax.set_xlim(*xlim)
    ax.set_xticks([0.0, 0.5, 1.0])
    ax.set_xticklabels(["0", "0.5", "1"])
    ax.tick_params(axis="y", length=0)
    return ax


def _place_labels(ax, points, labels, colors, renderer, others=(), fontsize=gp.SMALL_FONT_SIZE):
    """Greedy label placement: per point (in the given order) the first candidate offset, near ones first,
    whose text box stays inside the axes and overlaps no placed label and no marker (``points`` and
    ``others``); far placements get a thin leader line; a point with no free place gets the first place
    inside the axes clear of other labels (or the farthest candidate).  Returns the texts."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    ax_box = ax.get_window_extent(renderer)
    r = renderer.points_to_pixels(3.0)  # marker half-size, pixels
    all_pts = list(points) + [p for p in others if p not in list(points)]
    disp_all = ax.transData.transform(np.asarray(all_pts, dtype=float)) if all_pts else np.zeros((0, 2))
    marker_boxes = [Bbox.from_extents(x - r, y - r, x + r, y + r) for x, y in disp_all]
    placed, texts = [], []
    candidates = []
    for dist in (5.0, 11.0, 18.0, 26.0, 34.0):
        for ang in (35, -35, 145, -145, 90, -90, 0, 180):
            dx, dy = dist * math.cos(math.radians(ang)), dist * math.sin(math.radians(ang))
            ha = "left" if dx > 1 else ("right" if dx < -1 else "center")
            va = "bottom" if dy > 1 else ("top" if dy < -1 else "center")
            candidates.append((dx, dy, ha, va, dist > 6.0))
    def place(lab, x, y, col, dx, dy, ha, va, leader):
        t = ax.annotate(lab, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                        fontsize=fontsize, color=col, zorder=7, annotation_clip=False,
                        bbox=dict(boxstyle="square,pad=0.05", fc="white", ec="none", alpha=0.75),
                        arrowprops=dict(arrowstyle="-", color=col, lw=0.5, shrinkA=0, shrinkB=3.5)
                        if leader else None)
        t.set_in_layout(False)
        return t

    for k, ((x, y), lab, col) in enumerate(zip(points, labels, colors)):
        fallback = None  # a place inside the axes that overlaps only markers, else the nearest leader place
        for dx, dy, ha, va, leader in candidates:
            t = place(lab, x, y, col, dx, dy, ha, va, leader)
            t.update_positions(renderer)
            bb = Text.get_window_extent(t, renderer).expanded(1.04, 1.1)  # the text only, not the leader
            inside = bb.x0 >= ax_box.x0 and bb.x1 <= ax_box.x1 + 2 and bb.y0 >= ax_box.y0 and bb.y1 <= ax_box.y1
            clash = any(bb.overlaps(o) for o in placed) or any(bb.overlaps(m) for m in marker_boxes)
            if inside and not clash:
                placed.append(bb)
                texts.append(t)
                break
            if fallback is None and inside and not any(bb.overlaps(o) for o in placed):
                fallback = (dx, dy, ha, va, leader, bb)
            t.remove()
        else:  # no free place: never leave the point unlabelled
            dx, dy, ha, va, leader, bb = fallback or (*candidates[-1][:5], None)
            t = place(lab, x, y, col, dx, dy, ha, va, leader)
            if bb is not None:
                placed.append(bb)
            texts.append(t)
    return texts


def morris_scatter(ax, names, res: dict, styles, unit: str):
    """Morris mu* (x) against sigma (y) with the mu* bootstrap interval (thin line) and the line
    sigma = mu* (dotted).  Label the points with :func:`morris_labels` once the layout is final.
    Returns ``ax``."""
    if res.get("status") != "ok":
        return not_analysed(ax, res.get("message", res.get("status", "")), 20)
    n = len(names)
    mu_star, sigma, conf = _arr(res.get("mu_star"), n), _arr(res.get("sigma"), n), _arr(res.get("mu_star_conf"), n)
    ok = np.isfinite(mu_star) & np.isfinite(sigma)
    top = max(float(np.nanmax(np.r_[mu_star[ok], sigma[ok], 0.0])), 1e-12)
    lim = 1.12 * top
    ax.plot([0, lim], [0, lim], color="0.6", lw=0.6, ls=":", zorder=1)
    order = np.argsort(-np.nan_to_num(mu_star, nan=-1.0))
    for j in order[::-1]:
        if not ok[j]:
            continue
        st = styles[names[j]]
        if np.isfinite(conf[j]) and conf[j] > 0:
            ax.plot([max(mu_star[j] - conf[j], 0.0), mu_star[j] + conf[j]], [sigma[j], sigma[j]], color=st["color"],
                    lw=0.6, alpha=0.55, zorder=2, solid_capstyle="butt")
        ax.plot([mu_star[j]], [sigma[j]], ls="none", marker=st["marker"], ms=4.2, mfc=st["mfc"], mec=st["color"],
                mew=1.0, zorder=4)
    ax.set_xlim(0.0, lim)
    ax.set_ylim(0.0, lim)
    ax.set_xlabel(f"μ* ({unit})")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=3))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=3))
    return ax


def morris_labels(ax, names, res: dict, styles, renderer, top: int = N_TOP):
    """Label the ``top`` Morris points of largest mu* (needs the final layout's ``renderer``); each gets a
    label, with a leader line when it has to sit away from its point.  Returns ``ax``."""
    if res.get("status") != "ok":
        return ax
    n = len(names)
    mu_star, sigma = _arr(res.get("mu_star"), n), _arr(res.get("sigma"), n)
    ok = np.isfinite(mu_star) & np.isfinite(sigma)
    big = [j for j in np.argsort(-np.nan_to_num(mu_star, nan=-1.0), kind="stable") if ok[j]][:top]
    _place_labels(ax, [(mu_star[j], sigma[j]) for j in big], [short_label(names[j]) for j in big],
                  [styles[names[j]]["color"] for j in big], renderer,
                  others=[(mu_star[j], sigma[j]) for j in range(n) if ok[j]])
    return ax


def time_resolved(ax, names, tr: dict, styles, index: str = "ST", bands: int = 3):
    """Sobol' ``index`` (ST or S1) of the mean log10 BCR-ABL against the visit (months), one line per
    factor, with CI bands for the ``bands`` factors of largest mean index; visits without indices
    (constant or undefined output) are left out and marked x on the zero line.  Returns ``ax``."""
    days = np.asarray(tr.get("days", []), dtype=float)
    by_day = tr.get("by_day", [])
    n = len(names)
    vals = np.full((days.size, n), np.nan)
    conf = np.full((days.size, n), np.nan)
    skipped = []
    for i, r in enumerate(by_day[:days.size]):
        if r.get("status") == "ok":
            vals[i] = _arr(r.get(index), n)
            conf[i] = _arr(r.get(f"{index}_conf"), n)
        else:
            skipped.append((days[i], r.get("status", ""), r.get("message", "")))
    t = days / gp.DAYS_PER_MONTH
    mean = np.nanmean(np.where(np.isfinite(vals), np.abs(vals), np.nan), axis=0) if np.isfinite(vals).any() \
        else np.zeros(n)
    banded = set(np.argsort(-np.nan_to_num(mean, nan=-1.0))[:bands].tolist())
    for j, key in enumerate(names):
        st = styles[key]
        if j in banded:
            ax.fill_between(t, vals[:, j] - conf[:, j], vals[:, j] + conf[:, j], color=st["color"], alpha=0.13, lw=0,
                            zorder=1)
        ax.plot(t, vals[:, j], color=st["color"], ls=st["ls"], lw=1.1, marker=st["marker"], ms=3.0, mfc=st["mfc"],
                mec=st["color"], mew=0.8, zorder=3)
    ax.axhline(0.0, color="0.5", lw=0.5, zorder=0)
    for d, status, _ in skipped:
        ax.plot([d / gp.DAYS_PER_MONTH], [0.0], marker="x", color="0.35", ms=4, mew=0.9, ls="none", zorder=4,
                clip_on=False)
    if skipped:
        kinds = sorted({s for _, s, _ in skipped})
        ax.text(0.99, 0.99, f"×: not analysed ({', '.join(kinds)} output)", transform=ax.transAxes, ha="right",
                va="top", fontsize=gp.SMALL_FONT_SIZE, color="0.35")
    if bands:
        ax.text(0.99, 0.92 if skipped else 0.99, f"bands: CI of the top {bands}", transform=ax.transAxes,
                ha="right", va="top", fontsize=gp.SMALL_FONT_SIZE, color="0.35")
    finite = vals[np.isfinite(vals)]
    hi = 1.05 if finite.size == 0 else min(max(1.05, float(finite.max()) + 0.08), 1.35)
    lo = -0.05 if finite.size == 0 else max(min(-0.05, float(finite.min()) - 0.05), -0.4)
    ax.set_ylim(lo, hi)
    if days.size:
        months = 6.0 * math.ceil(float(days.max()) / gp.DAYS_PER_MONTH / 6.0 - 1e-9)
        gp.months_axis(ax, months * gp.DAYS_PER_MONTH, step_months=6,
                       label="Visit (months since start of imatinib)")
    sym = "S$_T$" if index == "ST" else "S$_1$"
    ax.set_ylabel(f"{sym} of mean log$_{{10}}$ BCR-ABL")
    return ax


def convergence(ax, names, conv: list, keys, styles):
    """ST (line, CI band) of ``keys`` against the number of Sobol' base samples n (log2 axis); a single n is
    drawn as points with error bars.  Returns ``ax``."""
    rows = sorted([r for r in conv if r.get("status") == "ok"], key=lambda r: r["n"])
    if not rows:
        msg = conv[-1].get("message", "no converged indices") if conv else "no convergence study"
        return not_analysed(ax, msg, 20)
    n = len(names)
    ns = np.array([r["n"] for r in rows], dtype=float)
    for key in keys:
        j = names.index(key)
        st = styles[key]
        v = np.array([_arr(r.get("ST"), n)[j] for r in rows])
        c = np.array([_arr(r.get("ST_conf"), n)[j] for r in rows])
        if ns.size > 1:
            ax.fill_between(ns, v - c, v + c, color=st["color"], alpha=0.15, lw=0)
            ax.plot(ns, v, color=st["color"], ls=st["ls"], marker=st["marker"], ms=3.2, mfc=st["mfc"],
                    mec=st["color"], mew=0.8)
        else:
            dx = 1.0 + 0.06 * (keys.index(key) - (len(keys) - 1) / 2.0)
            ax.errorbar(ns * dx, v, yerr=c, color=st["color"], marker=st["marker"], ms=3.5, mfc=st["mfc"],
                        mec=st["color"], mew=0.8, lw=0.8, capsize=1.5, ls="none")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns)
    ax.set_xticklabels([str(int(x)) for x in ns])
    ax.minorticks_off()
    pad = 1.5 if ns.size > 1 else 2.0
    ax.set_xlim(ns.min() / pad ** 0.5, ns.max() * pad ** 0.5)
    ax.axhline(0.0, color="0.5", lw=0.5, zorder=0)
    ax.set_ylim(-0.3, 1.3)
    ax.set_xlabel("Base samples n")
    if ns.size == 1:
        ax.text(0.97, 0.97, "one n only", transform=ax.transAxes, ha="right", va="top",
                fontsize=gp.SMALL_FONT_SIZE, color="0.35")
    return ax


def local_heatmap(ax, names, order, outputs, local: dict, vmax: float | None = None):
    """Normalised local coefficients (selected step) as a factor x output heat map with the values
    written in; returns ``(ax, image)``."""
    n_out = len(outputs)
    m = np.full((len(order), n_out), np.nan)
    for k, o in enumerate(outputs):
        coef = local.get("outputs", {}).get(o, {}).get("coefficients", {})
        for i, key in enumerate(order):
            v = coef.get(key, {}).get("selected")
            m[i, k] = np.nan if v is None else float(v)
    finite = np.abs(m[np.isfinite(m)])
    if vmax is None:
        vmax = max(float(finite.max()) if finite.size else 1.0, 0.1)
    im = ax.imshow(m, cmap="PuOr_r", vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest")
    for i in range(m.shape[0]):
        for k in range(m.shape[1]):
            v = m[i, k]
            txt = "n/a" if not np.isfinite(v) else ("0" if v == 0 else f"{v:.2f}")
            dark = np.isfinite(v) and abs(v) > 0.6 * vmax
            ax.text(k, i, txt, ha="center", va="center", fontsize=gp.SMALL_FONT_SIZE,
                    color="white" if dark else "0.1")
    ax.set_yticks(np.arange(len(order)))
    ax.set_yticklabels([factor_label(k) for k in order])
    cols = []
    for o in outputs:
        short = OUTPUTS.get(o, (o, o, ""))[1]
        y0 = local.get("outputs", {}).get(o, {}).get("value_at_point")
        unit = OUTPUTS.get(o, ("", "", ""))[2]
        if y0 is None:
            cols.append(short)
        elif unit == "days":
            cols.append(f"{short} ({y0:.0f} d)")
        else:
            cols.append(f"{short} ({y0:.2f})")
    ax.set_xticks(np.arange(n_out))
    ax.set_xticklabels(cols, rotation=40, ha="right", rotation_mode="anchor")
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    return ax, im


def step_study(ax, names, coef: dict, styles, selected_step: float | None, keys):
    """Local coefficient of ``keys`` against the relative step h (log axis); the selected step dotted.
    Returns ``ax``."""
    for key in keys:
        by = coef.get(key, {}).get("by_step", {})
        if not by:
            continue
        h = np.array(sorted(float(s) for s in by))
        v = np.array([np.nan if by[s] is None else float(by[s]) for s in sorted(by, key=float)])
        st = styles[key]
        ax.plot(h, v, color=st["color"], ls=st["ls"], marker=st["marker"], ms=3.2, mfc=st["mfc"], mec=st["color"],
                mew=0.8, lw=1.0)
    if selected_step:
        ax.axvline(float(selected_step), color="0.45", lw=0.7, ls=":", zorder=0)
    ax.axhline(0.0, color="0.5", lw=0.5, zorder=0)
    ax.set_xscale("log")
    steps = sorted({float(h) for key in keys for h in coef.get(key, {}).get("by_step", {})})
    if steps:
        ax.set_xticks(steps)
        ax.set_xticklabels([f"{h:g}" for h in steps])
        ax.minorticks_off()
    ax.set_xlabel("Relative step h")
    return ax


# --------------------------------------------------------------------------
# figure
# --------------------------------------------------------------------------


def load(results: Path) -> dict:
    folder, command = gp.experiment(results, SENS)
    path = folder / "indices.json"
    d = gp.read_json(path, command)
    try:
        names = list(d["problem"]["names"])
        d["sobol"]["indices"]
    except (KeyError, TypeError):
        raise KeyError(f"{path}: no problem.names or sobol.indices (rerun `{command}`)") from None
    d["_names"] = names
    d["_path"] = path
    return d


def _outputs(d: dict) -> list[str]:
    outs = d.get("outputs") or list(d["sobol"]["indices"])
    return [o for o in outs if o in d["sobol"]["indices"] or o in d.get("morris", {})]


def _factor_order(d: dict, outputs) -> list[str]:
    """Factors by decreasing mean ST over the analysed outputs (Morris mu*/max where Sobol' is missing)."""
    names = d["_names"]
    n = len(names)
    score = np.zeros(n)
    for o in outputs:
        r = d["sobol"]["indices"].get(o, {})
        if r.get("status") == "ok":
            score += np.nan_to_num(_arr(r.get("ST"), n), nan=0.0)
        else:
            m = d.get("morris", {}).get(o, {})
            if m.get("status") == "ok":
                ms = np.nan_to_num(_arr(m.get("mu_star"), n), nan=0.0)
                score += ms / ms.max() if ms.max() > 0 else ms
    return [names[j] for j in np.argsort(-score, kind="stable")]


def _note(d: dict) -> str:
    conv = [r for v in d["sobol"].get("convergence", {}).values() for r in v]
    n_max = max((int(r["n"]) for r in conv), default=None)
    parts = [f"Set {d.get('set', '?')} ({d.get('variant', '?')}), factor ranges: "
             f"{d['problem'].get('ranges', '?')}; cohorts of {d.get('cohort_size', '?')} patients"]
    if n_max:
        parts.append(f"Sobol' n = {n_max} base samples")
    parts.append("error bars/bands: bootstrap CIs")
    note = "; ".join(parts)
    if any("confidence half-width" in w for w in d.get("warnings", [])):
        note += ".\nSome CI half-widths exceed the warning threshold (see summary.md); more base samples narrow them."
    return note


def _factor_legend(fig, names, styles, ncol=2, extra=()):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=styles[k]["color"], ls=styles[k]["ls"], lw=1.1, marker=styles[k]["marker"],
                      ms=4, mfc=styles[k]["mfc"], mec=styles[k]["color"], mew=0.9,
                      label=gp.factor_label(k, describe=True))
               for k in names] + list(extra)
    return fig.legend(handles=handles, loc="outside lower center", ncol=ncol, frameon=False, columnspacing=1.4,
                      handlelength=2.2)


def draw(results: Path = Path("results"), out: Path = Path("figures/output")) -> list[Path]:
    d = load(Path(results))
    names = d["_names"]
    outputs = _outputs(d)
    order = _factor_order(d, outputs)
    styles = factor_styles(names)
    with gp.use_style():
        paths = _main_figure(out, d, names, outputs, order, styles)
        paths += _detail_figure(out, d, names, outputs, order, styles)
    return paths


def _sobol_xlim(d, outputs, names):
    lo, hi = -0.05, 1.05
    n = len(names)
    for o in outputs:
        r = d["sobol"]["indices"].get(o, {})
        if r.get("status") != "ok":
            continue
        for key in ("ST", "S1"):
            v, c = _arr(r.get(key), n), np.nan_to_num(_arr(r.get(f"{key}_conf"), n), nan=0.0)
            if np.isfinite(v).any():
                lo = min(lo, float(np.nanmin(v - c)))
                hi = max(hi, float(np.nanmax(v + c)))
    return max(lo - 0.03, -0.35), min(hi + 0.03, 1.35)


def _main_figure(out, d, names, outputs, order, styles) -> list[Path]:
    fig = gp.new_figure(gp.DOUBLE_COLUMN, 8.4)
    sub_a, sub_b, sub_cd = fig.subfigures(3, 1, height_ratios=[1.25, 0.95, 1.05], hspace=0.02)
    n_out = len(outputs)
    # (a) Sobol'
    axes_a = sub_a.subplots(1, n_out, sharey=True, squeeze=False)[0]
    xlim = _sobol_xlim(d, outputs, names)
    for k, o in enumerate(outputs):
        ax = axes_a[k]
        sobol_bars(ax, names, order, d["sobol"]["indices"].get(o, {"status": "missing", "message": "not in study"}),
                   styles, xlim=xlim, show_labels=(k == 0))
        ax.set_title(OUTPUTS.get(o, (o,))[0], fontsize=gp.FONT_SIZE)
        if d["sobol"]["indices"].get(o, {}).get("status") == "ok":
            ax.set_xlabel("Sobol' index")
        else:
            ax.spines["bottom"].set_visible(False)
    gp.panel_label(axes_a[0], "a", x=-0.9, y=1.12)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    sub_a.legend(handles=[Patch(facecolor="0.55", label="total order S$_T$ (bar)"),
                          Line2D([], [], color="0.15", marker="o", mfc="white", ms=3.5, lw=0.7,
                                 label="first order S$_1$ (dot)"),
                          Line2D([], [], color="0.15", lw=0.7, marker="|", ms=5, label="bootstrap CI")],
                 loc="outside lower center", ncol=3, frameon=False)
    # (b) Morris
    axes_b = sub_b.subplots(1, n_out, squeeze=False)[0]
    morris = d.get("morris", {})
    for k, o in enumerate(outputs):
        res = morris.get(o, {"status": "missing", "message": "Morris not in this study"})
        morris_scatter(axes_b[k], names, res, styles, OUTPUTS.get(o, ("", "", "output units"))[2])
        axes_b[k].set_title(OUTPUTS.get(o, ("", o))[1], fontsize=gp.FONT_SIZE)
    axes_b[0].set_ylabel("σ (unit of μ*)")
    gp.panel_label(axes_b[0], "b", x=-0.35, y=1.04)
    # (c) time-resolved, (d) convergence
    conv_all = d["sobol"].get("convergence", {})
    conv_outs = [o for o in CONVERGENCE_OUTPUTS if o in outputs and any(
        r.get("status") == "ok" for r in conv_all.get(o, []))][:2]
    ax_list = sub_cd.subplots(1, 1 + max(len(conv_outs), 1), squeeze=False,
                              gridspec_kw={"width_ratios": [2.4] + [1.0] * max(len(conv_outs), 1)})[0]
    _time_resolved_panel(ax_list[0], names, d, styles, "ST",
                         "Time-resolved S$_T$ (mean log$_{10}$ BCR-ABL of the cohort)", "c", -0.1)
    if conv_outs:
        for k, o in enumerate(conv_outs):
            ax = ax_list[1 + k]
            rank = [f for f in d["sobol"].get("ranking", {}).get(o, order) if f in names][:N_TOP]
            convergence(ax, names, conv_all[o], rank, styles)
            ax.set_title(f"Convergence:\n{OUTPUTS.get(o, ('', o))[1]}", fontsize=gp.FONT_SIZE)
            if k == 0:
                ax.set_ylabel(f"S$_T$ (top {N_TOP} factors)")
            else:
                ax.tick_params(labelleft=False)
        gp.panel_label(ax_list[1], "d", x=-0.3, y=1.02)
    else:
        not_analysed(ax_list[1], "no convergence study", 20)
    _factor_legend(fig, order, styles)
    fig.suptitle(_note(d) + f"\n(b) labels the {N_TOP} factors of largest μ* per output; the others by marker and "
                 "colour (legend).", fontsize=gp.SMALL_FONT_SIZE, color="0.25", x=0.01, ha="left")
    # labels in (b) need the final layout: lay out, freeze it, then place them
    fig.canvas.draw()
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()
    for k, o in enumerate(outputs):
        morris_labels(axes_b[k], names, morris.get(o, {}), styles, renderer)
    return gp.save_figure(fig, out, NAME)


def _time_resolved_panel(ax, names, d, styles, index, title, letter, label_x):
    """Panel of :func:`time_resolved` for ``index`` with its title and letter, or a note if not analysed."""
    tr = d["sobol"].get("time_resolved") or {}
    if tr.get("days"):
        time_resolved(ax, names, tr, styles, index)
        ax.set_title(title, fontsize=gp.FONT_SIZE)
    else:
        not_analysed(ax, "no time-resolved indices in this study", 40)
    gp.panel_label(ax, letter, x=label_x, y=1.02)
    return ax


def _detail_figure(out, d, names, outputs, order, styles) -> list[Path]:
    fig = gp.new_figure(gp.DOUBLE_COLUMN, 6.6)
    sub_top, sub_bot = fig.subfigures(2, 1, height_ratios=[1.4, 1.0], hspace=0.02)
    ax_a, ax_b = sub_top.subplots(1, 2, gridspec_kw={"width_ratios": [1.0, 1.2]})
    local = d.get("local") or {}
    loc_outs = [o for o in outputs if o in local.get("outputs", {})]
    # (a) local coefficients
    if loc_outs:
        _, im = local_heatmap(ax_a, names, order, loc_outs, local)
        cb = sub_top.colorbar(im, ax=ax_a, shrink=0.8, pad=0.02, aspect=25)
        cb.set_label("d ln Y / d ln θ")
        cb.ax.tick_params(labelsize=gp.SMALL_FONT_SIZE)
        ax_a.set_title(f"Local coefficients at the fitted point\n(h = {local.get('step')}, cohort of "
                       f"{local.get('cohort_size')}; Y at the point in brackets)", fontsize=gp.FONT_SIZE)
    else:
        not_analysed(ax_a, "no local analysis in this study", 30)
    gp.panel_label(ax_a, "a", x=-0.8, y=1.02)
    # (b) time-resolved S1
    _time_resolved_panel(ax_b, names, d, styles, "S1", "Time-resolved S$_1$, mean log$_{10}$ BCR-ABL", "b", -0.14)
    # (c) step study
    axes_c = sub_bot.subplots(1, max(len(loc_outs), 1), squeeze=False)[0]
    for k, o in enumerate(loc_outs):
        coef = local["outputs"][o].get("coefficients", {})
        sel = {f: abs(coef.get(f, {}).get("selected") or 0.0) for f in names}
        keys = [f for f in sorted(names, key=lambda f: -sel[f]) if sel[f] > 0][:N_TOP]
        step_study(axes_c[k], names, coef, styles, local.get("step"), keys)
        axes_c[k].set_title(OUTPUTS.get(o, ("", o))[1], fontsize=gp.FONT_SIZE)
        if not keys:
            axes_c[k].text(0.5, 0.5, "all coefficients 0", transform=axes_c[k].transAxes, ha="center",
                           va="center", fontsize=gp.SMALL_FONT_SIZE, color="0.35")
    if not loc_outs:
        not_analysed(axes_c[0], "no local analysis in this study", 40)
    if loc_outs:
        axes_c[0].set_ylabel(f"d ln Y / d ln θ\n(top {N_TOP} per output)")
    gp.panel_label(axes_c[0], "c", x=-0.38, y=1.04)
    from matplotlib.lines import Line2D

    _factor_legend(fig, order, styles, extra=[Line2D([], [], color="0.45", lw=0.7, ls=":",
                                                     label="selected step (c)")])
    fig.suptitle(_note(d), fontsize=gp.SMALL_FONT_SIZE, color="0.25", x=0.01, ha="left")
    return gp.save_figure(fig, out, NAME_DETAIL)


def main(argv=None):
    return gp.figure_cli(draw, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main(sys.argv[1:])
