"""Figure 1: model schematic (drawn with matplotlib patches; needs no results).

Model v2: normal hierarchy X0 -> X1 -> X2 -> X3 under niche feedback phi and
leukemic hierarchy D <-> Q <-> Y0 -> Y1 -> Y2 -> Y3 (deeply dormant, quiescent and
cycling LSCs) growing logistically (crowding g of all leukemic stem cells),
regulated separately; an imatinib-resistant
subclone R0 -> R1 feeding Y2; imatinib kills cycling LSCs and proliferating
progenitors (no output block) and spares D, Q and the resistant subclone;
effectors Z with influx, death, expansion inside an immune window of mature
leukemic cells Y3 (scaled down by immunosuppression) and killing of every
leukemic compartment (quiescent LSCs with relative susceptibility kappa_Q, deeply dormant
ones with kappa_D, 0 by default: immune-privileged).
Equations: ``gvlmodel/model/model.py``.

Run: ``python figures/fig1_schematic.py [--out figures/output]``
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from gvlmodel.analysis import plotting as gp  # noqa: E402

NAME = "fig1_schematic"

# canvas in data units (aspect 1): 7.2 in wide
W, H = 80.0, 50.0
BOX_W, BOX_H = 8.6, 5.0
Y_NORMAL, Y_LEUK, Y_Z = 41.0, 25.0, 9.5
X_COL = {"Q": 5.2, "0": 18.5, "1": 31.5, "2": 44.5, "3": 57.5}
X_Z = 31.5
Y_D = 16.6  # deeply dormant LSCs, below Q

C_N = gp.STATE_COLORS["normal"]
C_L = gp.STATE_COLORS["leukemic"]
C_Z = gp.STATE_COLORS["effector"]
C_IM = gp.STATE_COLORS["imatinib"]
FS = gp.FONT_SIZE
FS_S = gp.SMALL_FONT_SIZE


def _box(ax, x, y, text, color, w=BOX_W, h=BOX_H, sub=None, fill_alpha=0.15, ls="-"):
    from matplotlib.colors import to_rgba

    patch = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=1.0",
                           fc=to_rgba(color, fill_alpha), ec=color, lw=1.0, ls=ls, zorder=3)
    ax.add_patch(patch)
    if sub is None:
        ax.text(x, y, text, ha="center", va="center", fontsize=FS + 1.5, zorder=4)
    else:
        ax.text(x, y + 0.9, text, ha="center", va="center", fontsize=FS + 1.5, zorder=4)
        ax.text(x, y - 1.3, sub, ha="center", va="center", fontsize=FS_S, color="0.25", zorder=4)
    return patch


def _arrow(ax, p0, p1, color="0.2", style="-|>", lw=1.0, ls="-", rad=0.0, mut=7, z=2):
    arr = FancyArrowPatch(p0, p1, arrowstyle=style, mutation_scale=mut, color=color, lw=lw, ls=ls,
                          connectionstyle=f"arc3,rad={rad}", shrinkA=0.0, shrinkB=0.0, zorder=z)
    ax.add_patch(arr)
    return arr


def _inhibit(ax, p0, p1, color, lw=1.0, ls="-", rad=0.0, width=2.0, z=2):
    """Line ending in a flat bar (inhibition / kill)."""
    return _arrow(ax, p0, p1, color=color, style=f"-[, widthB={width}, lengthB=0.0", lw=lw, ls=ls, rad=rad,
                  mut=4, z=z)


def _loop(ax, x, y, color, label):
    """Self-renewal loop on the top edge of a box."""
    dy = BOX_H / 2
    _arrow(ax, (x - 2.2, y + dy), (x + 2.2, y + dy), color=color, rad=-1.6, lw=1.0)
    ax.text(x, y + dy + 3.9, label, ha="center", va="bottom", fontsize=FS_S, color=color)


def _schematic(ax):
    ax.set_xlim(0, W)
    ax.set_ylim(0, H)
    ax.set_aspect("equal")
    ax.axis("off")

    # ---------------- stem-cell regulation (separate pools) -----------------
    ax.text(0.8, 3.2, "leukemic stem-cell crowding\n" r"$g = 1 - (D + Q + Y_0 + R_0)/K_L$", ha="left",
            va="bottom", fontsize=FS_S, color=C_L, linespacing=1.25)

    # ---------------- normal hierarchy --------------------------------------
    names = ["0", "1", "2", "3"]
    for k, sub in zip(names, ["stem", "progenitor", "differentiated", "mature"]):
        _box(ax, X_COL[k], Y_NORMAL, f"$X_{k}$", C_N, sub=sub)
    for (a, b), lab in zip(zip(names[:-1], names[1:]), ["$a_x$", "$b_x$", "$c_x$"]):
        _arrow(ax, (X_COL[a] + BOX_W / 2, Y_NORMAL), (X_COL[b] - BOX_W / 2, Y_NORMAL), color=C_N)
        ax.text((X_COL[a] + X_COL[b]) / 2, Y_NORMAL + 0.7, lab, ha="center", va="bottom", fontsize=FS_S, color=C_N)
    _loop(ax, X_COL["0"], Y_NORMAL, C_N, r"self-renewal $r_x\varphi$,  niche feedback $\varphi = 1/(1 + X_0/K_N)$")
    ax.text((X_COL["1"] + X_COL["3"]) / 2, Y_NORMAL + BOX_H / 2 + 2.2, "normal (donor) hematopoiesis",
            ha="center", va="center", fontsize=FS, color=C_N, style="italic")

    # ---------------- leukemic hierarchy ------------------------------------
    _box(ax, X_COL["Q"], Y_LEUK, "$Q$", C_L, sub="quiescent", fill_alpha=0.06, ls=(0, (3, 1.5)))
    # deeply dormant LSCs below Q, exchanging with it only
    y_d, w_d, h_d = Y_D, 6.4, 4.0
    _box(ax, X_COL["Q"], y_d, "$D$", C_L, w=w_d, h=h_d, sub="dormant", fill_alpha=0.03, ls=(0, (1.5, 1.5)))
    yq_lo, yd_hi = Y_LEUK - BOX_H / 2, y_d + h_d / 2
    _arrow(ax, (X_COL["Q"] - 1.4, yq_lo), (X_COL["Q"] - 1.4, yd_hi), color=C_L)
    _arrow(ax, (X_COL["Q"] + 1.4, yd_hi), (X_COL["Q"] + 1.4, yq_lo), color=C_L)
    ax.text(X_COL["Q"] - 1.8, (yq_lo + yd_hi) / 2, r"$\delta_{in}$", ha="right", va="center", fontsize=FS_S, color=C_L)
    ax.text(X_COL["Q"] + 1.8, (yq_lo + yd_hi) / 2 - 0.4, r"$\delta_{out}$", ha="left", va="center", fontsize=FS_S,
            color=C_L)
    for k, sub in zip(names, ["cycling LSC", "progenitor", "differentiated", "mature"]):
        _box(ax, X_COL[k], Y_LEUK, f"$Y_{k}$", C_L, sub=sub)
    xq, x0 = X_COL["Q"] + BOX_W / 2, X_COL["0"] - BOX_W / 2
    _arrow(ax, (x0, Y_LEUK + 0.9), (xq, Y_LEUK + 0.9), color=C_L)
    _arrow(ax, (xq, Y_LEUK - 0.9), (x0, Y_LEUK - 0.9), color=C_L)
    ax.text((xq + x0) / 2, Y_LEUK + 1.2, "$q_{in}$", ha="center", va="bottom", fontsize=FS_S, color=C_L)
    ax.text((xq + x0) / 2, Y_LEUK - 1.2, "$q_{out}$", ha="center", va="top", fontsize=FS_S, color=C_L)
    for (a, b), lab in zip(zip(names[:-1], names[1:]), ["$a_y$", "$b_y$", "$c_y$"]):
        _arrow(ax, (X_COL[a] + BOX_W / 2, Y_LEUK), (X_COL[b] - BOX_W / 2, Y_LEUK), color=C_L)
        ax.text((X_COL[a] + X_COL[b]) / 2, Y_LEUK - 0.7, lab, ha="center", va="top", fontsize=FS_S, color=C_L)
    _loop(ax, X_COL["0"], Y_LEUK, C_L, r"$r_y g$")
    # imatinib-resistant subclone: stem cells R0 -> progenitors R1, which feed Y2 (b_y (Y1 + R1))
    y_r, w_r, h_r = (Y_NORMAL + Y_LEUK) / 2 + 1.3, 6.4, 4.0
    x_r0, x_r1 = 4.0, 12.4
    _box(ax, x_r0, y_r, "$R_0$", C_L, w=w_r, h=h_r, sub="stem", fill_alpha=0.06, ls=(0, (1, 1)))
    _box(ax, x_r1, y_r, "$R_1$", C_L, w=w_r, h=h_r, sub=r"$\to Y_2$", fill_alpha=0.06, ls=(0, (1, 1)))
    _arrow(ax, (x_r0 + w_r / 2, y_r), (x_r1 - w_r / 2, y_r), color=C_L)
    _loop(ax, x_r0, y_r + h_r / 2 - BOX_H / 2, C_L, "")  # self-renewal r_y g
    ax.text(0.8, y_r - h_r / 2 - 1.0, "resistant (no IM effect)", ha="left", va="top", fontsize=FS_S, color=C_L,
            style="italic")

    # ---------------- measurement -------------------------------------------
    xm = X_COL["3"] + BOX_W / 2 + 0.8
    ax.plot([xm, xm + 1.0, xm + 1.0, xm], [Y_NORMAL - 1.5, Y_NORMAL - 1.5, Y_LEUK + 1.5, Y_LEUK + 1.5],
            color="0.3", lw=0.8)
    ax.plot([xm + 1.0, xm + 1.8], [(Y_NORMAL + Y_LEUK) / 2] * 2, color="0.3", lw=0.8)
    ax.text(xm + 2.2, (Y_NORMAL + Y_LEUK) / 2, "blood PCR:\nBCR-ABL (%) =\n" r"$100\,Y_3/(Y_3 + 2X_3)$",
            ha="left", va="center", fontsize=FS_S, color="0.15", linespacing=1.4)
    ax.text(xm + 0.2, Y_LEUK - BOX_H / 2 - 0.8, "leukemic clone\n(BCR-ABL+)", ha="left", va="top", fontsize=FS,
            color=C_L, style="italic", linespacing=1.2)

    # ---------------- imatinib ----------------------------------------------
    xi, yi = 31.0, (Y_NORMAL + Y_LEUK) / 2
    pill = FancyBboxPatch((xi - 6.0, yi - 1.6), 12.0, 3.2, boxstyle="round,pad=0.0,rounding_size=1.6",
                          fc=gp.OKABE_ITO["yellow"], ec=C_IM, lw=1.0, zorder=3)
    ax.add_patch(pill)
    ax.text(xi, yi, "imatinib, effect $e$", ha="center", va="center", fontsize=FS_S, zorder=4)
    _inhibit(ax, (xi - 4.0, yi - 1.6), (X_COL["0"] + BOX_W / 2 - 1.0, Y_LEUK + BOX_H / 2 + 0.2), C_IM, lw=1.2)
    _inhibit(ax, (xi + 0.5, yi - 1.6), (X_COL["1"], Y_LEUK + BOX_H / 2 + 0.2), C_IM, lw=1.2)
    ax.text(xi + 6.6, yi, r"kills cycling LSCs ($k_{IM}\,e\,Y_0$)" "\n"
            r"and progenitors ($k_{IM,P}\,e\,Y_1$)" "\n" r"spares $D$, $Q$ and $R_0$, $R_1$",
            ha="left", va="center", fontsize=FS_S, color="0.2", linespacing=1.3)

    # ---------------- effectors ---------------------------------------------
    zw = 11.0
    _box(ax, X_Z, Y_Z, "$Z$", C_Z, w=zw, sub="GVL effectors")
    xl, xr = X_Z - zw / 2, X_Z + zw / 2
    _arrow(ax, (xl - 8.0, Y_Z + 1.0), (xl, Y_Z + 1.0), color=C_Z)
    ax.text(xl - 8.3, Y_Z + 1.0, "influx $b_z$", ha="right", va="center", fontsize=FS_S, color=C_Z)
    _arrow(ax, (xl, Y_Z - 1.2), (xl - 8.0, Y_Z - 1.2), color="0.4")
    ax.text(xl - 8.3, Y_Z - 1.2, "death $d_z Z$", ha="right", va="center", fontsize=FS_S, color="0.35")
    # expansion loop on the right edge, driven by the leukemic load, suppressed by immunosuppression
    _arrow(ax, (xr, Y_Z - 1.6), (xr, Y_Z + 1.6), color=C_Z, rad=1.3, lw=1.1)
    xe = xr + 2.6
    # stimulus: mature leukemic cells Y3, down and into the loop
    xs = X_COL["3"] + BOX_W / 2 - 0.8
    ax.plot([xs, xs], [Y_LEUK - BOX_H / 2, Y_Z + 0.2], color="0.35", lw=0.8, ls=(0, (3, 2)))
    _arrow(ax, (xs, Y_Z + 0.2), (xe + 0.3, Y_Z + 0.2), color="0.35", ls=(0, (3, 2)), lw=0.8)
    ax.text(xs - 0.6, Y_Z + 0.8, "stimulus: mature leukemic cells $Y_3$", ha="right", va="bottom",
            fontsize=FS_S, color="0.3")
    ax.text(xe + 0.8, Y_Z - 0.6, r"expansion $(1 - s)\,\rho\,2u/(1 + u^2)\,Z$,  $u = Y_3/K_z$",
            ha="left", va="top", fontsize=FS_S, color=C_Z)
    _inhibit(ax, (xe - 1.2, Y_Z - 6.0), (xr + 1.7, Y_Z - 1.9), "0.3", lw=0.9, width=1.6)
    ax.text(xe - 0.6, Y_Z - 6.0, "immunosuppression $s$", ha="left", va="center", fontsize=FS_S, color="0.3")
    # kill of every leukemic compartment (quiescent LSCs with relative susceptibility kappa_Q)
    top = Y_Z + BOX_H / 2
    starts = {"Q": -4.5, "0": -2.5, "1": 0.0, "2": 2.5, "3": 4.5}
    for k, dx in starts.items():
        q = k == "Q"
        _inhibit(ax, (X_Z + dx, top), (X_COL[k], Y_LEUK - BOX_H / 2 - 0.3), C_Z, lw=0.7 if q else 1.0,
                 ls=(0, (2, 1.5)) if q else "-", width=1.8)
    _inhibit(ax, (X_Z - 5.2, top - 0.3), (X_COL["Q"] + 3.2 + 0.3, Y_D - 0.6), C_Z, lw=0.7, ls=(0, (2, 1.5)),
             width=1.8)
    ax.text(13.2, 13.6, r"$\kappa_Q\,k\,Q$,  $\kappa_D\,k\,D$", ha="center", va="center", fontsize=FS_S, color=C_Z)
    ax.text(X_Z + 0.6, 17.2, "kill $k\\,Y_i$, $k\\,R_i$\n$k = z_{kill} Z$", ha="left", va="center", fontsize=FS_S,
            color=C_Z, linespacing=1.25)

    # ---------------- hypotheses --------------------------------------------
    ax.text(0.8, 1.2, "H0: no effectors (imatinib alone)   H1: $Z$ constant (no expansion)   "
            "H2: antigen-driven expansion in the immune window",
            ha="left", va="center", fontsize=FS_S, color="0.15")
    return ax


def _window_inset(ax):
    """Immune window: per-capita expansion vs leukemic load and the effector death rate."""
    u = np.logspace(-2.3, 2.3, 300)
    rho, dz = 1.0, 0.45
    g = rho * 2 * u / (1 + u * u)
    ax.plot(u, g, color=C_Z, lw=1.2)
    ax.axhline(dz, color="0.35", lw=0.8, ls=(0, (3, 2)))
    inside = g > dz
    ax.fill_between(u, 0, 1.5, where=inside, color=C_Z, alpha=0.12, lw=0)
    ax.set_xscale("log")
    ax.set_xlim(u[0], u[-1])
    ax.set_ylim(0, 1.5)
    ax.set_xticks([1.0])
    ax.set_xticklabels(["$K_z$"])
    ax.set_yticks([0, dz, 1.0])
    ax.set_yticklabels(["0", "$d_z$", r"$\rho$"])
    ax.minorticks_off()
    ax.set_xlabel("$Y_3$ (cells, log)", fontsize=FS_S, labelpad=1)
    ax.set_ylabel("rate (1/day)", fontsize=FS_S, labelpad=1)
    ax.text(1.0, 1.47, "immune window", ha="center", va="top", fontsize=FS_S, color=C_Z)
    ax.text(u[-1] * 0.8, dz + 0.04, "death", ha="right", va="bottom", fontsize=FS_S, color="0.35")
    ax.tick_params(labelsize=FS_S, pad=1)
    return ax


def draw(results: Path | None = None, out: Path = Path("figures/output")) -> list[Path]:
    """Draw the schematic (``results`` is unused: the figure needs no results)."""
    with gp.use_style():
        fig = gp.new_figure(gp.DOUBLE_COLUMN, gp.DOUBLE_COLUMN * H / W, layout=None)
        ax = fig.add_axes([0.0, 0.0, 1.0, 1.0])
        _schematic(ax)
        inset = fig.add_axes([0.845, 0.12, 0.13, 0.15])
        _window_inset(inset)
        return gp.save_figure(fig, out, NAME)


def main(argv=None):
    return gp.figure_cli(draw, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main(sys.argv[1:])
