"""Figure 4: the immune window -- phase plane, basins of attraction, bifurcations, minimal imatinib course.

``fig4_immune_window`` (double column):
(a, b) phase plane of the 2-D reduction, leukemic stem cells N (LSCs) against
effectors Z, after allogeneic SCT and non-transplanted: basins of attraction of
the full model off imatinib (IM) as a categorical map (extinct /
immune-controlled / escape / unresolved), nullclines off IM (solid) and the
effector nullcline on IM (dashed; on IM dN/dt < 0 everywhere, so there is no
LSC nullcline), full-model trajectories off IM, the treated course (IM 400
mg/day for ``im_course_days``, then off; IM part in dark yellow) and the
equilibria off IM (filled = stable, open = unstable; the leukemia-free state,
N = 0, drawn on the left frame).
(c) bifurcation in the effector expansion rate rho (``z_expand_allo`` /
``z_expand_auto``): equilibrium LSC count, stable solid, unstable dashed, per
setting; the strip below holds the leukemia-free state (N = 0) off and on IM.
Marked: the analytic window threshold (1-s) rho = d_z, the onset of the
coexistence equilibria (``rho_control``), the one-LSC extinction threshold and
the fitted rho.
(d) immune-window edges against rho in LSC units (the LSC count whose slaved
progeny makes the edge load at baseline effectors), off and on IM.
(e) minimal IM course for a durable response against rho, per setting and
profile; censored values (no durable course up to ``max_days``) as open
triangles at the cap.

``fig4_immune_window_detail``: (a, b) the treated course over time (BCR-ABL,
LSCs and effectors, IM shaded) per setting; (c, d) bifurcation in the kill rate
per effector ``z_kill`` and in the half-stimulation load ``K_z`` (``z_half``).

Inputs: ``results/dynamics/phase_plane.npz``, ``phase_plane.json``,
``bifurcation.csv``, ``bifurcation_window.csv``, ``bifurcation.json``,
``min_im_duration.csv`` (schemas: module docstring of ``gvlmodel/dynamics.py``).
Run: ``python figures/fig4_immune_window.py [--results results] [--out figures/output]``
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from gvlmodel import plotting as gp  # noqa: E402

NAME = "fig4_immune_window"
NAME_DETAIL = "fig4_immune_window_detail"
DYN = "dynamics"  # experiment read (gvlmodel.plotting.experiment)
SETTINGS = ("transplanted", "non_transplanted")

#: basin code -> (label, fill colour): light tints of the Okabe-Ito palette, distinct for colour-blind readers
BASIN_STYLE = {
    0: ("extinct (< 1 LSC)", "bluish_green", 0.30),
    1: ("immune-controlled", "sky_blue", 0.55),
    2: ("escape", "orange", 0.40),
    -1: ("unresolved", "grey", 0.45),
}
NULLCLINE_COLORS = {"lsc": gp.STATE_COLORS["leukemic"], "z": gp.STATE_COLORS["effector"]}
TRAJ_COLOR = "0.30"
COURSE_COLORS = {"on": gp.STATE_COLORS["imatinib"], "off": gp.OKABE_ITO["black"]}

#: sweep parameter -> axis label
SWEEP_LABELS = {
    "z_expand": r"Effector expansion rate $\rho$ (1/day)",
    "z_kill": r"Kill rate per effector $z_{kill}$ (1/(cell$\cdot$day))",
    "z_half": r"Half-stimulation load $K_z$ (cells)",
}
PROFILE_STYLE = {"median": ("o", "-"), "slow_im_kill": ("s", (0, (3, 1.5)))}
PROFILE_LABELS = {"median": "median patient", "slow_im_kill": "slow IM responder"}


# --------------------------------------------------------------------------
# input
# --------------------------------------------------------------------------


def load(results: Path) -> dict:
    """Every input of the figure (raises :class:`gvlmodel.plotting.MissingResultError` naming a missing file)."""
    folder, command = gp.experiment(results, DYN)
    npz_path = gp.require_file(folder / "phase_plane.npz", command)
    with np.load(npz_path) as z:
        pp = {k: z[k] for k in z.files}
    return {
        "pp": pp,
        "pp_meta": gp.read_json(folder / "phase_plane.json", command),
        "bif": gp.read_table(folder / "bifurcation.csv", command,
                             numeric=["dose_mg", "value", "lsc", "load", "effectors"]),
        "window": gp.read_table(folder / "bifurcation_window.csv", command,
                                numeric=["value", "condition_value", "window_low_lsc_off_im",
                                         "window_high_lsc_off_im", "window_low_lsc_on_im",
                                         "window_high_lsc_on_im"]),
        "bif_meta": gp.read_json(folder / "bifurcation.json", command),
        "min_im": gp.read_table(folder / "min_im_duration.csv", command,
                                numeric=["value", "t_min_days", "dose_mg"]),
        "folder": folder,
        "command": command,
    }


def _pp(pp: dict, setting: str, key: str):
    full = f"{setting}_{key}"
    return pp.get(full)


def _sweep_key(bif_meta: dict, setting: str, sweep: str) -> str | None:
    """The name of a sweep in a setting (``z_expand`` -> ``z_expand_allo`` / ``z_expand_auto``)."""
    sweeps = bif_meta.get("settings", {}).get(setting, {}).get("sweeps", {})
    if sweep in sweeps:
        return sweep
    for k in sweeps:
        if k.startswith(sweep):
            return k
    return None


def _param_matches(values, sweep: str) -> np.ndarray:
    return np.array([str(v) == sweep or str(v).startswith(sweep + "_") for v in values], dtype=bool)


def _tint(color: str, amount: float) -> tuple:
    """``color`` mixed with white (``amount`` = share of the colour)."""
    from matplotlib.colors import to_rgb

    c = np.array(to_rgb(color))
    return tuple(1.0 - amount * (1.0 - c))


def _basin_color(code: int) -> tuple:
    _, key, amount = BASIN_STYLE[code]
    return _tint(gp.OKABE_ITO[key], amount)


def _edges(centres) -> np.ndarray:
    c = np.asarray(centres, dtype=float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = 0.5 * (c[1:] + c[:-1])
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def _runs(mask) -> list[tuple[int, int]]:
    """Index ranges ``[i0, i1)`` of consecutive True values."""
    out, start = [], None
    for i, m in enumerate(mask):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((start, i))
            start = None
    if start is not None:
        out.append((start, len(mask)))
    return out


def _stability_runs(x, y, stable):
    """Runs of equal stability as ``(x, y, stable)``; unstable runs take one extra point at each end so the
    drawn branch is continuous."""
    x, y, stable = np.asarray(x), np.asarray(y), np.asarray(stable, dtype=bool)
    out = []
    for flag in (True, False):
        for i0, i1 in _runs(stable == flag):
            if not flag:
                i0, i1 = max(i0 - 1, 0), min(i1 + 1, len(x))
            out.append((x[i0:i1], y[i0:i1], flag))
    return out


# --------------------------------------------------------------------------
# phase plane (a, b)
# --------------------------------------------------------------------------


def plot_basins(ax, log10_lsc, log10_z, basin):
    """Basins of attraction as a filled categorical map on log axes (codes of ``gvlmodel.dynamics``)."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    codes = sorted(BASIN_STYLE)  # -1, 0, 1, 2
    cmap = ListedColormap([_basin_color(c) for c in codes])
    norm = BoundaryNorm(np.arange(len(codes) + 1) - 0.5, cmap.N)
    idx = np.searchsorted(codes, np.asarray(basin, dtype=int))
    ax.pcolormesh(10.0 ** _edges(log10_lsc), 10.0 ** _edges(log10_z), idx, cmap=cmap, norm=norm,
                  shading="flat", rasterized=True, zorder=0, linewidth=0)
    return ax


def _zero_contour(log10_x, log10_y, field):
    """Zero-level lines of ``field`` (rows = y) in log10 coordinates, as (x, y) arrays in data units."""
    import contourpy

    f = np.asarray(field, dtype=float)
    if not np.any(np.isfinite(f)) or np.nanmin(f) > 0 or np.nanmax(f) < 0:
        return []
    gen = contourpy.contour_generator(x=np.asarray(log10_x, float), y=np.asarray(log10_y, float), z=f)
    return [(10.0 ** seg[:, 0], 10.0 ** seg[:, 1]) for seg in gen.lines(0.0) if len(seg) > 1]


def plot_nullclines(ax, log10_lsc, log10_z, growth_lsc, growth_z, ls="-", lw=1.1):
    """Zero contours of the per-capita rates of the reduced field: dN/dt = 0 and dZ/dt = 0."""
    for field, key in ((growth_lsc, "lsc"), (growth_z, "z")):
        if field is None:
            continue
        for x, y in _zero_contour(log10_lsc, log10_z, field):
            ax.plot(x, y, color=NULLCLINE_COLORS[key], ls=ls, lw=lw, zorder=3)
    return ax


def _arrow_on(ax, x, y, color, frac=0.5, lw=0.9, size=7, zorder=6):
    """Arrow head on the polyline (log-log) at ``frac`` of its length in log space."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2:
        return
    lx, ly = np.log10(x), np.log10(y)
    s = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(lx), np.diff(ly)))])
    if s[-1] <= 0.05:
        return
    target = frac * s[-1]
    i = int(np.clip(np.searchsorted(s, target), 1, len(s) - 1))
    # a short step forward from the point before ``target``
    j = i - 1
    while j > 0 and s[i] - s[j] < 0.04:
        j -= 1
    ax.annotate("", xy=(x[i], y[i]), xytext=(x[j], y[j]),
                arrowprops=dict(arrowstyle="-|>", color=color, lw=lw, mutation_scale=size, shrinkA=0, shrinkB=0),
                zorder=zorder)


def plot_trajectories(ax, t, lsc, z, color=TRAJ_COLOR):
    """Full-model trajectories off IM: line, start dot, arrow; an x where the last LSC is lost."""
    lsc = np.atleast_2d(np.asarray(lsc, float))
    z = np.atleast_2d(np.asarray(z, float))
    for k in range(lsc.shape[0]):
        alive = lsc[k] > 0
        if not alive.any():
            continue
        last = int(np.nonzero(alive)[0][-1])
        xs, ys = lsc[k, :last + 1], z[k, :last + 1]
        ax.plot(xs, ys, color=color, lw=0.8, zorder=4, solid_capstyle="round")
        ax.plot(xs[:1], ys[:1], ls="none", marker="o", ms=2.6, mfc=color, mec="white", mew=0.3, zorder=6)
        _arrow_on(ax, xs, ys, color, frac=0.45)
        if last < lsc.shape[1] - 1:  # extinct before the horizon
            ax.plot(xs[-1:], ys[-1:], ls="none", marker="x", ms=3.5, mew=0.9, color=color, zorder=6)
    return ax


def plot_course(ax, t, lsc, z, dose):
    """The treated course projected on the plane: IM part dark yellow, off-IM part black; x = extinct."""
    import matplotlib.patheffects as pe

    t, lsc, z, dose = (np.asarray(a, float) for a in (t, lsc, z, dose))
    alive = lsc > 0
    if not alive.any():
        return ax
    last = int(np.nonzero(alive)[0][-1])
    on = dose > 0
    # the IM part wide underneath, the off-IM part narrow on top: both stay visible where they retrace each other
    style = {"on": (2.8, 7, 0.2), "off": (1.1, 8, 0.5)}
    for state, mask in (("on", on), ("off", ~on)):
        lw, z_order, frac = style[state]
        for i0, i1 in _runs(mask[:last + 1]):
            j1 = min(i1 + 1, last + 1)  # join to the next run
            xs, ys = lsc[i0:j1], z[i0:j1]
            halo = [pe.Stroke(linewidth=lw + 1.4, foreground="white"), pe.Normal()] if state == "on" else None
            ax.plot(xs, ys, color=COURSE_COLORS[state], lw=lw, zorder=z_order, path_effects=halo,
                    solid_capstyle="round")
            _arrow_on(ax, xs, ys, COURSE_COLORS[state], frac=frac, lw=1.0, size=9, zorder=8.5)
    ax.plot(lsc[:1], z[:1], ls="none", marker="s", ms=3.6, mfc=COURSE_COLORS["on"], mec="k", mew=0.6, zorder=8)
    stops = np.nonzero(on[:-1] & ~on[1:])[0]
    for i in stops:
        if i + 1 <= last:
            ax.plot(lsc[i + 1:i + 2], z[i + 1:i + 2], ls="none", marker="D", ms=3.4, mfc="white", mec="k",
                    mew=0.7, zorder=8)
    if last < len(lsc) - 1:
        ax.plot(lsc[last:last + 1], z[last:last + 1], ls="none", marker="x", ms=4.5, mew=1.3, color="k", zorder=8)
    return ax


#: equilibrium role -> (short label, offset in points, ha, va)
ROLE_LABELS = {
    "immune_controlled": ("immune-\ncontrolled", (-3, 4), "right", "bottom"),
    "threshold": ("threshold", (4, -4), "left", "top"),
    "escape": ("escape", (4, 5), "center", "bottom"),
}


def plot_equilibria(ax, equilibria, x_zero, labels=False):
    """Equilibria (filled = stable, open = unstable); N = 0 states drawn at ``x_zero`` (the left frame).

    ``labels``: name the immune-controlled, threshold and escape states.
    """
    import matplotlib.patheffects as pe

    for q in equilibria:
        x = q.get("lsc")
        y = q.get("effectors")
        if x is None or y is None or not np.isfinite(y) or y <= 0:
            continue
        stable = bool(q.get("stable"))
        on_frame = not x > 0
        ax.plot([x_zero if on_frame else x], [y], ls="none", marker="<" if on_frame else "o",
                ms=5.0, mfc="k" if stable else "white", mec="k", mew=0.9, zorder=9, clip_on=False)
        role = q.get("role")
        if labels and role in ROLE_LABELS and not on_frame:
            text, off, ha, va = ROLE_LABELS[role]
            ax.annotate(text, (x, y), xytext=off, textcoords="offset points", ha=ha, va=va,
                        fontsize=gp.SMALL_FONT_SIZE, linespacing=0.95, zorder=10,
                        path_effects=[pe.withStroke(linewidth=2.0, foreground="white")])
    return ax


def phase_plane(ax, pp, meta, setting, show_on_im=True, label_equilibria=False):
    """Panel (a)/(b): basins, nullclines, trajectories, treated course and equilibria of one setting."""
    lx, lz = _pp(pp, setting, "log10_lsc"), _pp(pp, setting, "log10_z")
    plot_basins(ax, lx, lz, _pp(pp, setting, "basin"))
    thr = float(meta.get("extinction_threshold", 1.0))
    ax.axvline(thr, color="0.25", lw=0.7, ls=(0, (1, 1.5)), zorder=2)
    plot_nullclines(ax, lx, lz, _pp(pp, setting, "growth_lsc_e0"), _pp(pp, setting, "growth_z_e0"))
    if show_on_im:
        plot_nullclines(ax, lx, lz, _pp(pp, setting, "growth_lsc_e1"), _pp(pp, setting, "growth_z_e1"),
                        ls=(0, (3, 1.6)), lw=1.0)
    plot_trajectories(ax, _pp(pp, setting, "traj_t"), _pp(pp, setting, "traj_lsc"), _pp(pp, setting, "traj_z"))
    if _pp(pp, setting, "course_t") is not None:
        plot_course(ax, _pp(pp, setting, "course_t"), _pp(pp, setting, "course_lsc"),
                    _pp(pp, setting, "course_z"), _pp(pp, setting, "course_dose"))
    xlim = (10.0 ** _edges(lx)[0], 10.0 ** _edges(lx)[-1])
    ylim = (10.0 ** _edges(lz)[0], 10.0 ** _edges(lz)[-1])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    eqs = meta.get("settings", {}).get(setting, {}).get("equilibria", {}).get("e0", [])
    plot_equilibria(ax, eqs, xlim[0], labels=label_equilibria)
    ax.text(thr * 1.15, ylim[1] / 1.6, "1 LSC", ha="left", va="top", fontsize=gp.SMALL_FONT_SIZE, color="0.2",
            zorder=10)
    ax.set_xlabel("Leukemic stem cells N (cells)")
    ax.set_ylabel("Effectors Z (cells)")
    _log_ticks(ax, "both")
    return ax


def _log_ticks(ax, which="both"):
    from matplotlib.ticker import LogFormatterMathtext, LogLocator, NullFormatter

    axes = (ax.xaxis, ax.yaxis) if which == "both" else ((ax.xaxis,) if which == "x" else (ax.yaxis,))
    for a in axes:
        lo, hi = (ax.get_xlim() if a is ax.xaxis else ax.get_ylim())
        span = np.log10(hi) - np.log10(lo)
        step = 1 if span <= 5 else 2
        a.set_major_locator(LogLocator(base=10.0 ** step, subs=(1.0,), numticks=20))
        a.set_major_formatter(LogFormatterMathtext(base=10.0))
        a.set_minor_locator(LogLocator(base=10.0, subs=(1.0,) if step > 1 else np.arange(2, 10) * 1.0,
                                       numticks=50))
        a.set_minor_formatter(NullFormatter())
    return ax


def phase_legend_handles(pp, setting_list):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    present = set()
    for s in setting_list:
        b = _pp(pp, s, "basin")
        if b is not None:
            present |= {int(v) for v in np.unique(b)}
    basins = [Patch(facecolor=_basin_color(c), edgecolor="0.5", lw=0.4,
                    label=BASIN_STYLE[c][0] + ("" if c in present else " (none)"))
              for c in (0, 1, 2, -1)]
    lines = [
        Line2D([], [], color=NULLCLINE_COLORS["lsc"], lw=1.1, label="dN/dt = 0, off IM"),
        Line2D([], [], color=NULLCLINE_COLORS["z"], lw=1.1, label="dZ/dt = 0, off IM"),
        Line2D([], [], color=NULLCLINE_COLORS["z"], lw=1.0, ls=(0, (3, 1.6)), label="dZ/dt = 0, on IM"),
        Line2D([], [], color=TRAJ_COLOR, lw=0.8, marker="o", ms=2.6, mec="white", mew=0.3,
               label="trajectory off IM"),
        Line2D([], [], color=COURSE_COLORS["on"], lw=2.8, marker="s", ms=3.6, mec="k", mew=0.6,
               label="treated course on IM"),
        Line2D([], [], color=COURSE_COLORS["off"], lw=1.1, marker="D", ms=3.4, mfc="white", mec="k", mew=0.7,
               label="course after IM stop"),
        Line2D([], [], ls="none", marker="x", ms=4, mew=1.1, color="k", label="LSCs < 1: extinct"),
        Line2D([], [], ls="none", marker="o", ms=5, mfc="k", mec="k", label="stable equilibrium"),
        Line2D([], [], ls="none", marker="o", ms=5, mfc="white", mec="k", mew=0.9, label="unstable equilibrium"),
        Line2D([], [], ls="none", marker="<", ms=5, mfc="white", mec="k", mew=0.9, label="leukemia-free, N = 0"),
    ]
    return basins + lines


# --------------------------------------------------------------------------
# bifurcation (c) and window (d)
# --------------------------------------------------------------------------


def _sweep_rows(bif, setting, sweep, dose=None):
    m = (bif["setting"] == setting) & _param_matches(bif["parameter"], sweep)
    if dose is not None:
        m &= np.isclose(bif["dose_mg"], dose)
    return m


def plot_bifurcation(ax, strip, bif, bif_meta, sweep="z_expand", settings=SETTINGS, extinction_threshold=1.0):
    """Equilibrium LSCs against an immune parameter; N = 0 (leukemia-free) states in the ``strip`` axes below.

    Colour = setting, solid = stable, dashed = unstable; equilibria on IM are
    drawn with small markers.  Returns ``ax``.
    """
    stab = gp.as_bool(bif["stable"])
    doses = sorted({float(d) for d in bif["dose_mg"][_param_matches(bif["parameter"], sweep)]})
    strip_rows = {}
    for k, setting in enumerate(settings):
        color = gp.SETTING_COLORS[setting]
        for dose in doses:
            m = _sweep_rows(bif, setting, sweep, dose)
            if not m.any():
                continue
            on = dose > 0
            branches = []
            for b in bif["branch"][m]:
                if b not in branches:
                    branches.append(b)
            for br in branches:
                mb = m & (bif["branch"] == br)
                x, y, st = bif["value"][mb], bif["lsc"][mb], stab[mb]
                order = np.lexsort((y, x))
                x, y, st = x[order], y[order], st[order]
                if br in ("leukemia_free", "empty_marrow") or np.all(y <= 0):
                    strip_rows.setdefault(("on" if on else "off"), []).append((setting, x, st))
                    continue
                # several equilibria of one branch at one value: split into sub-branches by rank
                rank = np.zeros(len(x), dtype=int)
                for i in range(1, len(x)):
                    rank[i] = rank[i - 1] + 1 if x[i] == x[i - 1] else 0
                for r in np.unique(rank):
                    sel = rank == r
                    for xs, ys, s_ in _stability_runs(x[sel], y[sel], st[sel]):
                        ax.plot(xs, ys, color=color, lw=1.3 if not on else 0.9,
                                ls="-" if s_ else (0, (3, 1.6)), marker="o" if on else None, ms=2.0,
                                zorder=4 if s_ else 3)
    ax.axhline(extinction_threshold, color="0.25", lw=0.7, ls=(0, (1, 1.5)), zorder=2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _mark_thresholds(ax, bif_meta, sweep, settings, strip)
    # strip: N = 0
    if strip is not None:
        levels = {"off": 1.0, "on": 0.0}
        for key, entries in strip_rows.items():
            for j, (setting, x, st) in enumerate(entries):
                off = 0.14 * (settings.index(setting) - 0.5) if setting in settings else 0.0
                order = np.argsort(x)
                for xs, _, s_ in _stability_runs(x[order], np.zeros(len(x)), st[order]):
                    strip.plot(xs, np.full(len(xs), levels[key] + off), color=gp.SETTING_COLORS[setting],
                               lw=1.3, ls="-" if s_ else (0, (3, 1.6)), solid_capstyle="butt")
        strip.set_ylim(-0.5, 1.5)
        strip.set_yticks([1.0, 0.0])
        strip.set_yticklabels(["off IM", "on IM"])
        strip.tick_params(axis="y", length=0)
        strip.set_xscale("log")
        strip.spines["left"].set_visible(False)
        strip.text(0.0, 1.02, "leukemia-free, N = 0", transform=strip.transAxes, ha="left", va="bottom",
                   fontsize=gp.SMALL_FONT_SIZE, color="0.25")
        strip.set_xlabel(SWEEP_LABELS.get(sweep, sweep))
        ax.tick_params(axis="x", labelbottom=False)
    else:
        ax.set_xlabel(SWEEP_LABELS.get(sweep, sweep))
    ax.set_ylabel("Equilibrium LSCs N (cells)")
    return ax


def on_im_has_leukemic_equilibria(bif, sweep) -> bool:
    """Whether any equilibrium with LSCs > 0 exists on IM in a sweep."""
    m = _param_matches(bif["parameter"], sweep) & (bif["dose_mg"] > 0) & (bif["lsc"] > 0)
    return bool(m.any())


def _mark_thresholds(ax, bif_meta, sweep, settings, strip=None):
    """Analytic thresholds (bifurcation.json) as vertical lines; the fitted value as a triangle on the x axis
    (setting colour; dark grey where every setting has the same value)."""
    fitted = []
    for setting in settings:
        ent = bif_meta.get("settings", {}).get(setting, {})
        thr = ent.get("thresholds", {})
        key = _sweep_key(bif_meta, setting, sweep)
        color = gp.SETTING_COLORS[setting]
        lines = []
        if sweep == "z_expand":
            lines = [(thr.get("rho_window"), "0.2", (0, (1, 1.2))), (thr.get("rho_control"), color, (0, (4, 1.5)))]
        elif sweep == "z_kill":
            lines = [(thr.get("z_kill_free_stable"), color, (0, (4, 1.5)))]
        for v, c, ls in lines:
            if v is None or not np.isfinite(v) or v <= 0:
                continue
            for a in (ax, strip):
                if a is not None:
                    a.axvline(v, color=c, lw=0.7, ls=ls, zorder=1)
        if key is not None:
            sv = ent.get("sweeps", {}).get(key, {}).get("set_value")
            if sv is not None and np.isfinite(sv):
                fitted.append((setting, float(sv)))
    if len(fitted) > 1 and np.allclose([v for _, v in fitted], fitted[0][1], rtol=1e-9):
        fitted = [(None, fitted[0][1])]
    a = strip if strip is not None else ax
    for setting, sv in fitted:
        color = "0.3" if setting is None else gp.SETTING_COLORS[setting]
        a.plot([sv], [0.0], transform=a.get_xaxis_transform(), ls="none", marker="^", ms=5.0, mfc=color,
               mec="white", mew=0.4, clip_on=False, zorder=10)


def plot_window(ax, window, bif_meta, sweep="z_expand", settings=SETTINGS, extinction_threshold=1.0):
    """Immune-window edges (LSC units) against an immune parameter, off and on IM; shaded band per setting."""
    for k, setting in enumerate(settings):
        m = (window["setting"] == setting) & _param_matches(window["parameter"], sweep)
        if not m.any():
            continue
        x = window["value"][m]
        order = np.argsort(x)
        x = x[order]
        color = gp.SETTING_COLORS[setting]
        for im in ("off_im", "on_im"):
            lo = window[f"window_low_lsc_{im}"][m][order]
            hi = window[f"window_high_lsc_{im}"][m][order]
            ok = np.isfinite(lo) & np.isfinite(hi) & (lo > 0) & (hi > 0)
            if not ok.any():
                continue
            if k == 0:
                ax.fill_between(x, np.where(ok, lo, np.nan), np.where(ok, hi, np.nan), color=color, alpha=0.28,
                                lw=0, zorder=2)
                ax.plot(x[ok], lo[ok], color=color, lw=0.9, zorder=3)
                ax.plot(x[ok], hi[ok], color=color, lw=0.9, zorder=3)
            else:
                ax.plot(x[ok], lo[ok], color=color, lw=0.9, ls=(0, (3, 1.6)), zorder=4)
                ax.plot(x[ok], hi[ok], color=color, lw=0.9, ls=(0, (3, 1.6)), zorder=4)
    ax.axhline(extinction_threshold, color="0.25", lw=0.7, ls=(0, (1, 1.5)), zorder=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _mark_thresholds(ax, bif_meta, sweep, settings)
    ax.set_xlabel(SWEEP_LABELS.get(sweep, sweep))
    ax.set_ylabel("Immune window (LSCs)")
    return ax


def _label_window_bands(ax, window, sweep, setting, dose_mg):
    """'off IM' / 'on IM' labels at the right end of the first setting's bands."""
    m = (window["setting"] == setting) & _param_matches(window["parameter"], sweep)
    if not m.any():
        return
    x = window["value"][m]
    i = int(np.nanargmax(x))
    for im, text in (("off_im", "off IM"), ("on_im", f"on IM\n{dose_mg:g} mg/day" if dose_mg else "on IM")):
        lo, hi = window[f"window_low_lsc_{im}"][m][i], window[f"window_high_lsc_{im}"][m][i]
        if np.isfinite(lo) and np.isfinite(hi) and lo > 0:
            ax.text(x[i] * 0.92, np.sqrt(lo * hi), text, ha="right", va="center", fontsize=gp.SMALL_FONT_SIZE,
                    color="0.1", linespacing=1.0, zorder=6)


# --------------------------------------------------------------------------
# minimal IM course (e)
# --------------------------------------------------------------------------


def profiles_of(table) -> list[str]:
    """Profiles of min_im_duration.csv in file order."""
    out = []
    for p in table["profile"]:
        if p not in out:
            out.append(p)
    return out


def plot_min_im(ax, table, sweep="z_expand", settings=SETTINGS, max_days=3650.0, bif_meta=None):
    """Minimal IM course (months, log) against an immune parameter; censored values (none durable up to
    ``max_days``) as open triangles at the cap."""
    cens = gp.as_bool(table["censored"])
    cap = max_days / gp.DAYS_PER_MONTH
    profiles = profiles_of(table)
    for setting in settings:
        color = gp.SETTING_COLORS[setting]
        for j, prof in enumerate(profiles):
            m = (table["setting"] == setting) & (table["profile"] == prof) & _param_matches(table["parameter"], sweep)
            if not m.any():
                continue
            marker, ls = PROFILE_STYLE.get(prof, ("^v<>"[j % 4], "-"))
            x = table["value"][m]
            order = np.argsort(x)
            x = x[order]
            t = table["t_min_days"][m][order] / gp.DAYS_PER_MONTH
            c = cens[m][order]
            y = np.where(c, cap, t)
            ax.plot(x, y, color=color, lw=1.0, ls=ls, zorder=3)
            ok = ~c & np.isfinite(t)
            ax.plot(x[ok], t[ok], ls="none", marker=marker, ms=3.2, mfc=color, mec="white", mew=0.4, zorder=4)
            ax.plot(x[c], np.full(c.sum(), cap), ls="none", marker="^", ms=4.0, mfc="white", mec=color, mew=0.9,
                    zorder=4)
    ax.axhline(cap, color="0.4", lw=0.6, ls=(0, (1, 1.5)), zorder=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    if bif_meta is not None:
        _mark_thresholds(ax, bif_meta, sweep, settings)
    ax.set_xlabel(SWEEP_LABELS.get(sweep, sweep))
    ax.set_ylabel("Minimal IM course (months)")
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ticks = [t for t in (0.5, 1, 2, 3, 6, 12, 24, 48, 96, 120) if t <= cap * 1.01]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(0.5, cap * 1.6)
    return ax


# --------------------------------------------------------------------------
# treated course over time (detail)
# --------------------------------------------------------------------------


def plot_course_time(ax_ratio, ax_cells, pp, setting, detection_limit_percent=None):
    """BCR-ABL (%) above, LSCs and effectors (cells) below, over months; IM shaded."""
    t = _pp(pp, setting, "course_t")
    if t is None:
        return ax_ratio, ax_cells
    tm = np.asarray(t, float) / gp.DAYS_PER_MONTH
    dose = _pp(pp, setting, "course_dose")
    for ax in (ax_ratio, ax_cells):
        gp.shade_dose(ax, tm, dose)
    kw = {} if detection_limit_percent is None else {"detection_limit_percent": detection_limit_percent}
    gp.plot_bcr_abl(ax_ratio, tm, _pp(pp, setting, "course_bcr_abl"), color=gp.SETTING_COLORS[setting],
                    label="BCR-ABL", ylim=(1e-10, 300.0), **kw)
    gp.response_levels(ax_ratio, show_labels=False, **kw)
    lsc = np.asarray(_pp(pp, setting, "course_lsc"), float)
    ax_cells.plot(tm, np.where(lsc > 0, lsc, np.nan), color=gp.STATE_COLORS["leukemic"], lw=1.2, label="LSCs N")
    gp.plot_effectors(ax_cells, tm, _pp(pp, setting, "course_z"), label="effectors Z")
    ax_cells.axhline(1.0, color="0.25", lw=0.7, ls=(0, (1, 1.5)), zorder=1)
    ax_cells.set_ylabel("Cells")
    ax_cells.set_ylim(0.3, 1e8)
    gp.months_axis(ax_cells, float(np.nanmax(t)), step_months=24, label="Time since start of IM (months)")
    ax_ratio.set_xlim(ax_cells.get_xlim())
    ax_ratio.tick_params(axis="x", labelbottom=False)
    from matplotlib.ticker import LogLocator, NullFormatter

    ax_ratio.yaxis.set_major_locator(LogLocator(base=100.0, numticks=10))
    ax_ratio.yaxis.set_minor_formatter(NullFormatter())
    ax_cells.yaxis.set_major_locator(LogLocator(base=100.0, numticks=10))
    ax_cells.yaxis.set_minor_formatter(NullFormatter())
    return ax_ratio, ax_cells


# --------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------


def _settings_present(pp) -> list[str]:
    return [s for s in SETTINGS if _pp(pp, s, "basin") is not None]


def _setting_handles(settings, extra=()):
    from matplotlib.lines import Line2D

    h = [Line2D([], [], color=gp.SETTING_COLORS[s], lw=1.3, label=gp.SETTING_LABELS[s]) for s in settings]
    return h + list(extra)


def draw(results: Path = Path("results"), out: Path = Path("figures/output")) -> list[Path]:
    d = load(Path(results))
    paths = []
    with gp.use_style():
        paths += _main_figure(out, d)
        paths += _detail_figure(out, d)
    return paths


def _main_figure(out, d) -> list[Path]:
    from matplotlib.lines import Line2D

    pp, meta = d["pp"], d["pp_meta"]
    settings = _settings_present(pp)
    thr = float(meta.get("extinction_threshold", 1.0))
    fig = gp.new_figure(gp.DOUBLE_COLUMN, 7.4)
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.12, 1.0], hspace=0.02)

    # (a, b) phase planes
    axes_pp = top.subplots(1, len(settings), squeeze=False)[0]
    letters = iter("abcdefgh")
    for i, (ax, setting) in enumerate(zip(axes_pp, settings)):
        phase_plane(ax, pp, meta, setting, label_equilibria=i == 0)
        course = meta.get("settings", {}).get(setting, {}).get("course", {})
        title = gp.SETTING_LABELS[setting]
        if course:
            title += f": IM {course.get('im_days', 0):.0f} d from {course.get('start_bcr_abl_percent', 0):g} % BCR-ABL"
        ax.set_title(title, loc="left", color=gp.SETTING_COLORS[setting], fontsize=gp.FONT_SIZE)
        gp.panel_label(ax, next(letters), x=-0.14)
    for ax in axes_pp[1:]:
        ax.set_ylabel("")
    top.legend(handles=phase_legend_handles(pp, settings), loc="outside upper center", ncol=5,
               columnspacing=1.0, handlelength=1.8, fontsize=gp.SMALL_FONT_SIZE)

    # (c) bifurcation, (d) window, (e) minimal IM course
    gs = bottom.add_gridspec(2, 3, height_ratios=[5.2, 1.0], hspace=0.06, wspace=0.12)
    ax_c = bottom.add_subplot(gs[0, 0])
    strip = bottom.add_subplot(gs[1, 0], sharex=ax_c)
    ax_d = bottom.add_subplot(gs[:, 1])
    ax_e = bottom.add_subplot(gs[:, 2])
    plot_bifurcation(ax_c, strip, d["bif"], d["bif_meta"], "z_expand", settings, thr)
    ax_c.set_ylim(1e-3, 1e7)
    _log_ticks(ax_c, "y")
    if not on_im_has_leukemic_equilibria(d["bif"], "z_expand"):
        ax_c.text(0.98, 0.5, "on IM: only N = 0", transform=ax_c.transAxes, ha="right", va="center",
                  fontsize=gp.SMALL_FONT_SIZE, color="0.25")
    ax_c.text(0.02, thr * 1.3, "1 LSC", transform=ax_c.get_yaxis_transform(), ha="left", va="bottom",
              fontsize=gp.SMALL_FONT_SIZE, color="0.25")
    gp.panel_label(ax_c, next(letters), x=-0.2)

    plot_window(ax_d, d["window"], d["bif_meta"], "z_expand", settings, thr)
    dose = _on_im_dose(d["bif"])
    if settings:
        _label_window_bands(ax_d, d["window"], "z_expand", settings[0], dose)
    ax_d.set_xlim(ax_c.get_xlim())
    ax_d.set_ylim(1e-3, 1e5)
    _log_ticks(ax_d, "y")
    ax_d.text(0.02, thr * 1.3, "1 LSC", transform=ax_d.get_yaxis_transform(), ha="left", va="bottom",
              fontsize=gp.SMALL_FONT_SIZE, color="0.25")
    gp.panel_label(ax_d, next(letters), x=-0.2)

    max_days = _max_days(d)
    plot_min_im(ax_e, d["min_im"], "z_expand", settings, max_days, d["bif_meta"])
    profiles = profiles_of(d["min_im"])
    ax_e.set_xlim(ax_c.get_xlim())
    gp.panel_label(ax_e, next(letters), x=-0.2)
    prof_handles = [Line2D([], [], color="0.3", lw=1.0, ls=PROFILE_STYLE.get(p, ("o", "-"))[1],
                           marker=PROFILE_STYLE.get(p, ("o", "-"))[0], ms=3.2, mec="white", mew=0.4,
                           label=PROFILE_LABELS.get(p, p.replace("_", " "))) for p in profiles]
    n_cens = int(np.sum(gp.as_bool(d["min_im"]["censored"]) & _param_matches(d["min_im"]["parameter"], "z_expand")))
    prof_handles.append(Line2D([], [], ls="none", marker="^", ms=4.0, mfc="white", mec="0.3", mew=0.9,
                               label=f"censored (> {max_days:.0f} d)" + ("" if n_cens else ": none")))
    ax_e.legend(handles=prof_handles, loc="center right", fontsize=gp.SMALL_FONT_SIZE, handlelength=2.0)

    extra = [
        Line2D([], [], color="0.3", lw=1.3, label="stable"),
        Line2D([], [], color="0.3", lw=1.3, ls=(0, (3, 1.6)), label="unstable"),
        Line2D([], [], color="0.2", lw=0.7, ls=(0, (1, 1.2)), label=r"window threshold $(1-s)\rho = d_z$"),
        Line2D([], [], color="0.3", lw=0.7, ls=(0, (4, 1.5)), label="onset of immune control"),
        Line2D([], [], ls="none", marker="^", ms=5, mfc="0.3", mec="white", label="fitted value"),
    ]
    bottom.legend(handles=_setting_handles(settings, extra), loc="outside lower center", ncol=4,
                  columnspacing=1.2, fontsize=gp.SMALL_FONT_SIZE)
    return gp.save_figure(fig, out, NAME)


def _on_im_dose(bif) -> float:
    doses = [float(x) for x in np.unique(bif["dose_mg"]) if float(x) > 0]
    return doses[0] if doses else 0.0


def _max_days(d) -> float:
    """``max_days`` of the min-IM scan (``provenance.json`` ``resolved.min_im``, optional; else 3650)."""
    p = Path(d["folder"]) / "provenance.json"
    if p.is_file():
        try:
            v = gp.read_json(p, d["command"]).get("resolved", {}).get("min_im", {}).get("max_days")
            if isinstance(v, (int, float)) and v > 0:
                return float(v)
        except (OSError, ValueError, AttributeError):
            pass
    return 3650.0


def _detail_figure(out, d) -> list[Path]:
    from matplotlib.lines import Line2D

    pp, meta = d["pp"], d["pp_meta"]
    settings = _settings_present(pp)
    thr = float(meta.get("extinction_threshold", 1.0))
    fig = gp.new_figure(gp.DOUBLE_COLUMN, 6.4)
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.0, 1.0], hspace=0.02)
    letters = iter("abcdefgh")
    gs = top.add_gridspec(2, len(settings), height_ratios=[1.0, 1.1], hspace=0.08, wspace=0.15)
    for j, setting in enumerate(settings):
        ax_r = top.add_subplot(gs[0, j])
        ax_n = top.add_subplot(gs[1, j], sharex=ax_r)
        plot_course_time(ax_r, ax_n, pp, setting)
        course = meta.get("settings", {}).get(setting, {}).get("course", {})
        title = gp.SETTING_LABELS[setting]
        te = course.get("t_extinct")
        title += f": last LSC lost on day {te:.0f}" if te is not None else ": LSCs persist"
        ax_r.set_title(title, loc="left", color=gp.SETTING_COLORS[setting], fontsize=gp.FONT_SIZE)
        gp.panel_label(ax_r, next(letters), x=-0.12)
        if j > 0:
            ax_r.set_ylabel("")
            ax_n.set_ylabel("")
    handles = [Line2D([], [], color=gp.STATE_COLORS["leukemic"], lw=1.2, label="LSCs N"),
               Line2D([], [], color=gp.STATE_COLORS["effector"], lw=1.2, label="effectors Z"),
               Line2D([], [], color="0.35", lw=0.6, ls="--", label="MMR/MR4/MR4.5"),
               Line2D([], [], color="0.35", lw=0.8, label="PCR limit"),
               Line2D([], [], color="0.25", lw=0.7, ls=(0, (1, 1.5)), label="1 LSC")]
    handles += gp.dose_legend_handles([_on_im_dose(d["bif"])])[1:]
    top.legend(handles=handles, loc="outside upper center", ncol=len(handles),
               columnspacing=1.0, fontsize=gp.SMALL_FONT_SIZE)

    gs2 = bottom.add_gridspec(2, 2, height_ratios=[5.2, 1.0], hspace=0.06, wspace=0.2)
    for j, sweep in enumerate(("z_kill", "z_half")):
        ax = bottom.add_subplot(gs2[0, j])
        strip = bottom.add_subplot(gs2[1, j], sharex=ax)
        plot_bifurcation(ax, strip, d["bif"], d["bif_meta"], sweep, settings, thr)
        ax.set_ylim(1e-3, 1e7)
        _log_ticks(ax, "y")
        ax.text(0.02, thr * 1.3, "1 LSC", transform=ax.get_yaxis_transform(), ha="left", va="bottom",
                fontsize=gp.SMALL_FONT_SIZE, color="0.25")
        gp.panel_label(ax, next(letters), x=-0.12)
    extra = [Line2D([], [], color="0.3", lw=1.3, label="stable"),
             Line2D([], [], color="0.3", lw=1.3, ls=(0, (3, 1.6)), label="unstable"),
             Line2D([], [], color="0.3", lw=0.7, ls=(0, (4, 1.5)),
                    label=r"$z_{kill} b_z/d_z = k^*$ (leukemia-free stable above)"),
             Line2D([], [], ls="none", marker="^", ms=5, mfc="0.3", mec="white", label="fitted value")]
    bottom.legend(handles=_setting_handles(settings, extra), loc="outside lower center", ncol=3,
                  columnspacing=1.2, fontsize=gp.SMALL_FONT_SIZE)
    return gp.save_figure(fig, out, NAME_DETAIL)


def main(argv=None):
    return gp.figure_cli(draw, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main(sys.argv[1:])
