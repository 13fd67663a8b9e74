"""Figure 4: immune control after stopping imatinib -- basins, the controlled equilibrium, bifurcations, window.

``fig4_immune_window`` (double column):
(a, b) after allogeneic SCT and non-transplanted: which states at the imatinib (IM) stop
-- leukemic stem cells (LSCs) against effectors -- end eradicated, immune-controlled or in
relapse off IM (full model, clone shaped by IM 400 mg/day at the stop); nullclines of the
reduced plane off IM (LSC solid, effector dashed), full-model trajectories off IM, one
treated course (IM part in dark yellow, stop = diamond), and the equilibria off IM
(filled = stable, open = unstable).  The legend lists only the outcome classes that occur in
the drawn grids ("unresolved" only if a start state could not be classified).
(c) bifurcation in the peak effector expansion rate rho (``z_expand_allo`` /
``z_expand_auto``): equilibrium LSC count (stable solid, unstable dashed) per setting;
marked: the window threshold (1-s) rho = d_z, the onset of the controlled branch (with at
least one LSC), the one-LSC extinction level and the table's rho.
(d) the immune window in BCR-ABL % against rho (band between its edges) and the BCR-ABL of
the controlled equilibrium.
(e) minimal IM course for a durable response (no relapse off IM) against rho, per setting
and profile; censored (none up to ``max_days``) as open triangles at the cap.

``fig4_immune_window_detail``: (a, b) the treated course over time (BCR-ABL, LSCs,
effectors; IM shaded) per setting; (c, d) bifurcation in the kill rate per effector
``z_kill`` and in the BCR-ABL of peak stimulation ``z_half``.

Inputs: ``results/dynamics/phase_plane.npz``, ``phase_plane.json``, ``bifurcation.csv``,
``bifurcation_window.csv``, ``bifurcation.json``, ``min_im_duration.csv`` (schemas: module
docstring of ``gvlmodel/analysis/dynamics.py``).
Run: ``python figures/fig4_immune_window.py [--results results] [--out figures/output]``
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from gvlmodel.analysis import plotting as gp  # noqa: E402

NAME = "fig4_immune_window"
NAME_DETAIL = "fig4_immune_window_detail"
DYN = "dynamics"
SETTINGS = ("transplanted", "non_transplanted")
SETTING_LABELS = {"transplanted": "after allogeneic SCT", "non_transplanted": "non-transplanted"}
#: basin code -> (label, Okabe-Ito colour, tint)
BASIN_STYLE = {0: ("eradicated", "bluish_green", 0.35), 1: ("immune-controlled", "sky_blue", 0.55),
               2: ("relapse", "orange", 0.45), -1: ("unresolved", "grey", 0.45)}
BRANCH_MARKERS = {"controlled": "o", "threshold": "o", "high_burden": "s", "leukemia_free": "D"}
SWEEP_LABELS = {"z_expand": r"Peak effector expansion $\rho$ (1/day)",
                "z_kill": r"Kill rate per effector $z_{kill}$ (1/(cell$\cdot$day))",
                "z_half": r"BCR-ABL of peak stimulation $z_{half}$ (%)"}
PROFILE_STYLE = {"median": ("o", "-"), "slow_im_kill": ("s", (0, (3, 1.5)))}
PROFILE_LABELS = {"median": "typical patient", "slow_im_kill": "slow IM responder"}


def load(results: Path) -> dict:
    """Every input of the figure (raises :class:`gvlmodel.analysis.plotting.MissingResultError` naming a missing file)."""
    folder, command = gp.experiment(results, DYN)
    with np.load(gp.require_file(folder / "phase_plane.npz", command)) as z:
        pp = {k: z[k] for k in z.files}
    return {
        "pp": pp,
        "pp_meta": gp.read_json(folder / "phase_plane.json", command),
        "bif": gp.read_table(folder / "bifurcation.csv", command,
                             numeric=["dose_mg", "value", "lsc", "bcr_abl_percent", "effectors"]),
        "window": gp.read_table(folder / "bifurcation_window.csv", command,
                                numeric=["value", "window_low_bcr_abl", "window_high_bcr_abl"]),
        "bif_meta": gp.read_json(folder / "bifurcation.json", command),
        "min_im": gp.read_table(folder / "min_im_duration.csv", command, numeric=["value", "t_min_days"]),
        "folder": folder, "command": command,
    }


def _tint(color: str, amount: float) -> tuple:
    from matplotlib.colors import to_rgb

    c = np.array(to_rgb(color))
    return tuple(1.0 - amount * (1.0 - c))


def _basin_color(code: int) -> tuple:
    _, key, amount = BASIN_STYLE[code]
    return _tint(gp.OKABE_ITO[key], amount)


def _edges(c) -> np.ndarray:
    c = np.asarray(c, dtype=float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = 0.5 * (c[1:] + c[:-1])
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])


def basin_classes_present(pp, settings) -> list[int]:
    """Basin codes that occur in the drawn phase planes, in :data:`BASIN_STYLE` order (the legend lists
    only these: a class no start state reaches is left out)."""
    seen = set()
    for s in settings:
        seen.update(int(v) for v in np.unique(pp[f"{s}_basin"]))
    return [c for c in BASIN_STYLE if c in seen]


def _settings_present(pp) -> list[str]:
    return [s for s in SETTINGS if f"{s}_basin" in pp]


def _sweep_key(bif_meta, setting, sweep):
    for k in bif_meta.get("settings", {}).get(setting, {}).get("sweeps", {}):
        if k == sweep or k.startswith(sweep + "_"):
            return k
    return None


def _log_axes(ax):
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: f"$10^{{{int(round(v))}}}$" if abs(v - round(v)) < 1e-6 else "")
    ax.xaxis.set_major_formatter(fmt)
    ax.yaxis.set_major_formatter(fmt)


# --------------------------------------------------------------------------
# panels
# --------------------------------------------------------------------------
def phase_plane(ax, pp, meta, setting, show_labels=False):
    """Basins (log10 LSC x log10 Z at the stop), nullclines, trajectories, course, equilibria off IM."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    p = lambda k: pp[f"{setting}_{k}"]  # noqa: E731
    lx, lz, basin = p("log10_lsc"), p("log10_z"), p("basin")
    codes = sorted(BASIN_STYLE)
    cmap = ListedColormap([_basin_color(c) for c in codes])
    norm = BoundaryNorm(np.array(codes + [codes[-1] + 1]) - 0.5, len(codes))
    ax.pcolormesh(_edges(lx), _edges(lz), basin, cmap=cmap, norm=norm, shading="flat", rasterized=True)
    fx, fz = p("field_log10_lsc"), p("field_log10_z")
    with np.errstate(all="ignore"):
        ax.contour(fx, fz, p("growth_lsc_e0"), levels=[0.0], colors=[gp.STATE_COLORS["leukemic"]], linewidths=1.1)
        ax.contour(fx, fz, p("growth_z_e0"), levels=[0.0], colors=[gp.STATE_COLORS["effector"]], linewidths=1.1,
                   linestyles="--")
    t_lsc, t_z = p("traj_lsc"), p("traj_z")
    for k in range(t_lsc.shape[0]):
        ok = (t_lsc[k] > 0) & np.isfinite(t_lsc[k])
        ax.plot(np.log10(t_lsc[k][ok]), np.log10(t_z[k][ok]), color="0.3", lw=0.7, zorder=4)
        if ok.any():
            ax.plot(np.log10(t_lsc[k][0]), np.log10(t_z[k][0]), ls="none", marker="o", ms=2.5, color="0.3", zorder=4)
    # treated course: IM part, then off
    c_l, c_z, dose = p("course_lsc"), p("course_z"), p("course_dose")
    ok = (c_l > 0) & np.isfinite(c_l)
    on = ok & (dose > 0)
    off = ok & (dose <= 0)
    ax.plot(np.log10(c_l[on]), np.log10(c_z[on]), color="#B8A100", lw=1.6, zorder=5)
    ax.plot(np.log10(c_l[off]), np.log10(c_z[off]), color="k", lw=1.1, zorder=5)
    if off.any():
        i = int(np.flatnonzero(off)[0])
        ax.plot(np.log10(c_l[i]), np.log10(c_z[i]), ls="none", marker="D", ms=4, mfc="white", mec="k", zorder=8)
    ax.plot(np.log10(c_l[0]), np.log10(c_z[0]), ls="none", marker="s", ms=4, mfc="#B8A100", mec="k", zorder=8)
    # equilibria off IM
    for q in meta["settings"][setting]["equilibria"]:
        if q["lsc"] <= 0:
            continue
        m = BRANCH_MARKERS.get(q["branch"], "o")
        ax.plot(np.log10(q["lsc"]), np.log10(q["effectors"]), ls="none", marker=m, ms=6,
                mfc="k" if q["stable"] else "white", mec="k", mew=1.0, zorder=9, clip_on=False)
        if show_labels:
            txt = {"controlled": "controlled", "threshold": "threshold", "high_burden": "high burden"}.get(q["branch"])
            if txt:
                off, ha = {"controlled": ((-5, -16), "right"), "threshold": ((4, 6), "left")}.get(q["branch"],
                                                                                               ((4, 6), "left"))
                ax.annotate(f"{txt}\n{q['bcr_abl_percent']:.2g} %", (np.log10(q["lsc"]), np.log10(q["effectors"])),
                            xytext=off, textcoords="offset points", ha=ha, fontsize=gp.SMALL_FONT_SIZE, zorder=10,
                            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7})
    ax.set_xlim(_edges(lx)[[0, -1]])
    ax.set_ylim(_edges(lz)[[0, -1]])
    _log_axes(ax)
    ax.set_xlabel("LSCs when imatinib stops")
    ax.set_ylabel("Effectors when imatinib stops")
    ax.set_title(SETTING_LABELS[setting], fontsize=gp.FONT_SIZE)


def _runs(mask):
    out, start = [], None
    for i, m in enumerate(mask):
        if m and start is None:
            start = i
        if not m and start is not None:
            out.append((start, i))
            start = None
    if start is not None:
        out.append((start, len(mask)))
    return out


def plot_bifurcation(ax, bif, bif_meta, sweep, settings, thr=1.0, mark=True):
    """Equilibrium LSC count of the sensitive clone off IM against a sweep parameter."""
    for s in settings:
        key = _sweep_key(bif_meta, s, sweep)
        if key is None:
            continue
        col = gp.SETTING_COLORS[s]
        wide = 1.0 if s == settings[-1] else 2.0  # the settings' branches nearly coincide: the first drawn wider
        sel = (bif["setting"] == s) & (bif["parameter"] == key) & (bif["dose_mg"] == 0)
        stable = gp.as_bool(bif["stable"][sel])
        x, y, br = bif["value"][sel], bif["lsc"][sel], bif["branch"][sel]
        for b in ("controlled", "threshold", "high_burden"):
            m = br == b
            if not m.any():
                continue
            o = np.argsort(x[m])
            xs, ys, st = x[m][o], y[m][o], stable[m][o]
            for flag, ls in ((True, "-"), (False, "--")):
                for i, j in _runs(st == flag):
                    ax.plot(xs[i:j], ys[i:j], color=col, ls=ls, lw=(1.3 if flag else 1.0) * wide)
        if mark:
            sw = bif_meta["settings"][s]["sweeps"][key]
            for lo, hi in sw.get("controlled_intervals") or []:
                if lo > sw["bounds"][0] * (1 + 1e-9):
                    ax.axvline(lo, color=col, ls=":", lw=0.9)
            ax.plot([sw["set_value"]], [0.0], transform=ax.get_xaxis_transform(), ls="none", marker="^", ms=6,
                    color=col, clip_on=False, zorder=6)
            if sweep == "z_expand":
                rw = bif_meta["settings"][s]["thresholds"].get("rho_window")
                if rw:
                    ax.axvline(rw, color="0.5", ls="-.", lw=0.8)
    ax.axhline(thr, color="0.5", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(SWEEP_LABELS[sweep])
    ax.set_ylabel("LSCs at equilibrium (off IM)")


def plot_window(ax, window, bif, bif_meta, settings):
    for s in settings:
        key = _sweep_key(bif_meta, s, "z_expand")
        if key is None:
            continue
        col = gp.SETTING_COLORS[s]
        w = (window["setting"] == s) & (window["parameter"] == key)
        x, lo, hi = window["value"][w], window["window_low_bcr_abl"][w], window["window_high_bcr_abl"][w]
        ok = np.isfinite(lo) & np.isfinite(hi)
        if s == settings[0]:  # in BCR-ABL terms the window depends on rho, d_z, s and z_half only: one band
            ax.fill_between(x[ok], lo[ok], hi[ok], color="0.85", lw=0)
            ax.plot(x[ok], lo[ok], color="0.45", lw=0.7)
            ax.plot(x[ok], hi[ok], color="0.45", lw=0.7)
        sel = (bif["setting"] == s) & (bif["parameter"] == key) & (bif["dose_mg"] == 0) & (bif["branch"] == "controlled")
        o = np.argsort(bif["value"][sel])
        ax.plot(bif["value"][sel][o], bif["bcr_abl_percent"][sel][o], color=col, lw=1.4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())  # a narrow range would label minor ticks on top of each other
    ax.set_xlabel(SWEEP_LABELS["z_expand"])
    ax.set_ylabel("BCR-ABL (%)")
    ax.text(0.03, 0.97, "grey band: immune window\n(effectors expand)\nlines: controlled equilibrium",
            transform=ax.transAxes, va="top", fontsize=gp.SMALL_FONT_SIZE)


def plot_min_im(ax, table, settings, max_days):
    for s in settings:
        col = gp.SETTING_COLORS[s]
        for prof in dict.fromkeys(table["profile"][table["setting"] == s]):
            sel = (table["setting"] == s) & (table["profile"] == prof)
            x, t = table["value"][sel], table["t_min_days"][sel]
            cens = gp.as_bool(table["censored"][sel])
            o = np.argsort(x)
            x, t, cens = x[o], t[o], cens[o]
            marker, ls = PROFILE_STYLE.get(prof, ("o", "-"))
            ax.plot(x[~cens], t[~cens] / 365.25, color=col, ls=ls, marker=marker, ms=3, lw=1.1)
            if cens.any():
                ax.plot(x[cens], np.full(cens.sum(), max_days / 365.25), ls="none", marker="^", ms=5, mfc="white",
                        mec=col)
    ax.axhline(max_days / 365.25, color="0.6", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel(SWEEP_LABELS["z_expand"])
    ax.set_ylabel("Minimal IM course (years)")
    ax.set_ylim(bottom=0)


def plot_course_time(ax, pp, setting):
    p = lambda k: pp[f"{setting}_{k}"]  # noqa: E731
    t, dose = p("course_t") / 365.25, p("course_dose")
    gp.shade_dose(ax, p("course_t") / 365.25, dose)
    ax.plot(t, p("course_bcr_abl"), color="k", lw=1.3, label="BCR-ABL (%)")
    ax.plot(t, p("course_lsc"), color=gp.STATE_COLORS["leukemic"], lw=1.1, label="LSCs")
    ax.plot(t, p("course_z"), color=gp.STATE_COLORS["effector"], lw=1.1, label="effectors")
    ax.axhline(1e-3, color="0.6", lw=0.6, ls=":")
    ax.set_yscale("log")
    ax.set_ylim(1e-6, 1e8)
    ax.set_xlim(t[0], t[-1])
    ax.set_xlabel("Years since start of imatinib")
    ax.set_ylabel("BCR-ABL (%) / cells")
    ax.set_title(SETTING_LABELS[setting], fontsize=gp.FONT_SIZE)


def _max_days(d) -> float:
    p = Path(d["folder"]) / "provenance.json"
    if p.is_file():
        v = gp.read_json(p, d["command"]).get("resolved", {}).get("min_im", {}).get("max_days")
        if v:
            return float(v)
    return 3650.0


# --------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------
def _main_figure(out, d) -> list[Path]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    pp, meta = d["pp"], d["pp_meta"]
    settings = _settings_present(pp)
    thr = float(meta.get("extinction_threshold", 1.0))
    fig = gp.new_figure(gp.DOUBLE_COLUMN, 7.6)
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.15, 1.0])
    axes = top.subplots(1, len(settings), squeeze=False)[0]
    letters = iter("abcdefgh")
    for ax, s in zip(axes, settings):
        phase_plane(ax, pp, meta, s, show_labels=True)
        gp.panel_label(ax, next(letters))
    handles = [Patch(facecolor=_basin_color(c), edgecolor="0.5", label=BASIN_STYLE[c][0])
               for c in basin_classes_present(pp, settings)]
    handles += [Line2D([], [], color=gp.STATE_COLORS["leukemic"], label="LSC nullcline"),
                Line2D([], [], color=gp.STATE_COLORS["effector"], ls="--", label="effector nullcline"),
                Line2D([], [], color="0.3", lw=0.7, label="trajectory off IM"),
                Line2D([], [], color="#B8A100", lw=1.6, label="course on IM"),
                Line2D([], [], color="k", lw=1.1, marker="D", mfc="white", ms=4, label="off IM after stop"),
                Line2D([], [], ls="none", marker="o", mfc="k", mec="k", label="stable"),
                Line2D([], [], ls="none", marker="o", mfc="white", mec="k", label="unstable")]
    top.legend(handles=handles, loc="outside lower center", ncol=5, fontsize=gp.SMALL_FONT_SIZE, columnspacing=1.0)
    bx = bottom.subplots(1, 3)
    plot_bifurcation(bx[0], d["bif"], d["bif_meta"], "z_expand", settings, thr)
    plot_window(bx[1], d["window"], d["bif"], d["bif_meta"], settings)
    bx[1].set_xlim(bx[0].get_xlim())  # the same rho axis as (c)
    plot_min_im(bx[2], d["min_im"], settings, _max_days(d))
    for ax in bx:
        gp.panel_label(ax, next(letters))
    sh = [Line2D([], [], color=gp.SETTING_COLORS[s], label=SETTING_LABELS[s]) for s in settings]
    sh += [Line2D([], [], color="0.5", ls="-.", lw=0.8, label=r"window exists: $(1-s)\rho > d_z$"),
           Line2D([], [], color="0.3", ls=":", lw=0.9, label="controlled branch appears"),
           Line2D([], [], color="0.3", ls="--", lw=1.0, label="unstable"),
           Line2D([], [], ls="none", marker="^", color="0.3", label="table value")]
    sh += [Line2D([], [], color="0.3", ls=PROFILE_STYLE.get(p, ("o", "-"))[1],
                  marker=PROFILE_STYLE.get(p, ("o", "-"))[0], ms=3, label=PROFILE_LABELS.get(p, p))
           for p in dict.fromkeys(d["min_im"]["profile"])]
    bottom.legend(handles=sh, loc="outside lower center", ncol=4, fontsize=gp.SMALL_FONT_SIZE, columnspacing=1.0)
    return gp.save_figure(fig, out, NAME)


def _detail_figure(out, d) -> list[Path]:
    from matplotlib.lines import Line2D

    pp = d["pp"]
    settings = _settings_present(pp)
    thr = float(d["pp_meta"].get("extinction_threshold", 1.0))
    fig = gp.new_figure(gp.DOUBLE_COLUMN, 6.0)
    axes = fig.subplots(2, 2)
    letters = iter("abcd")
    for ax, s in zip(axes[0], settings):
        plot_course_time(ax, pp, s)
        gp.panel_label(ax, next(letters))
    for ax, sweep in zip(axes[1], ("z_kill", "z_half")):
        plot_bifurcation(ax, d["bif"], d["bif_meta"], sweep, settings, thr)
        gp.panel_label(ax, next(letters))
    axes[0][0].legend(loc="upper right", fontsize=gp.SMALL_FONT_SIZE)
    fig.legend(handles=[Line2D([], [], color=gp.SETTING_COLORS[s], label=SETTING_LABELS[s]) for s in settings],
               loc="outside lower center", ncol=2, fontsize=gp.SMALL_FONT_SIZE)
    return gp.save_figure(fig, out, NAME_DETAIL)


def draw(results: Path = Path("results"), out: Path = Path("figures/output")) -> list[Path]:
    d = load(Path(results))
    paths = []
    with gp.use_style():
        paths += _main_figure(out, d)
        paths += _detail_figure(out, d)
    return paths


def main(argv=None):
    return gp.figure_cli(draw, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main(sys.argv[1:])
