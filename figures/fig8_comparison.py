"""Figure 8: how far the hypothesis comparison holds (``gvlmodel compare``).

(a) ABC model probabilities of H0, H1, H2 (± 1.96 Monte Carlo SE) under each
alternative of the Hess data model (``robustness``; drawn only when the refits
were run: ``gvlmodel compare`` without ``--no-refits`` or ``gvlmodel reproduce
--refit``). (b) Held-out STIM1: relapse-free share 6 and 60 months after the
stop predicted by each variant's Hess posterior (median, 5-95 % over posterior
draws) against the observed shares with exact 95 % CIs; the log score of each
variant under its name. (c) What would decide H2 against H1: the probability
that a study of n patients gives a Bayes factor of at least the threshold for
the true variant, for durable-CMR counts and for the effector fold change over
the first months of imatinib, each with H2 true (solid) and H1 true (dashed).

Inputs: ``results/compare_hess2005/report.json``.
Run: ``python figures/fig8_comparison.py [--results results] [--out figures/output]``
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from gvlmodel.analysis import plotting as gp  # noqa: E402
from gvlmodel.clinical.summary import rate  # noqa: E402

NAME = "fig8_comparison"
COMPARE = "compare_hess2005"  # experiment read (gvlmodel.analysis.plotting.experiment)
VARIANTS = ("H0", "H1", "H2")


def load(results: Path) -> dict:
    folder, command = gp.experiment(results, COMPARE)
    report = gp.read_json(folder / "report.json", command)
    for key in ("holdout", "decisive"):
        if key not in report:
            raise KeyError(f"{folder / 'report.json'}: no '{key}' (rerun `{command}`)")
    return report


def robustness_panel(ax, rows: list[dict]):
    """Model probabilities per data-model alternative (grouped bars, ± 1.96 SE); returns ``ax``."""
    if not rows:
        ax.text(0.5, 0.5, "robustness refits not run here\n(gvlmodel compare without --no-refits,\n"
                "or gvlmodel reproduce --refit)", ha="center", va="center", transform=ax.transAxes,
                fontsize=gp.SMALL_FONT_SIZE, color="0.35")
        ax.set_axis_off()
        return ax
    y = np.arange(len(rows), dtype=float)[::-1]
    h = 0.8 / len(VARIANTS)
    for j, v in enumerate(VARIANTS):
        p = np.array([np.nan if r.get(f"p_{v}") is None else r[f"p_{v}"] for r in rows], dtype=float)
        se = np.array([0.0 if r.get(f"se_{v}") is None else r[f"se_{v}"] for r in rows], dtype=float)
        ax.barh(y + (1 - j) * h, p, height=h * 0.9, xerr=1.96 * se, color=gp.variant_color(v),
                error_kw={"lw": 0.7, "capsize": 1.5}, label=v)
    ax.axvline(1 / 3, color="0.5", lw=0.7, ls=":", zorder=0)
    ax.set_yticks(y)
    ax.set_yticklabels([r["alternative"].replace("_", " ") for r in rows], fontsize=gp.SMALL_FONT_SIZE)
    ax.set_xlim(0, 1)
    ax.set_xlabel("ABC model probability (1)")
    ax.legend(loc="lower right", frameon=False, fontsize=gp.SMALL_FONT_SIZE)
    ax.set_title("Hess data model alternatives (dotted: equal odds)", fontsize=gp.SMALL_FONT_SIZE, loc="left")
    return ax


def holdout_panel(ax, hold: dict):
    """Predicted vs observed STIM1 relapse-free shares at 6 and 60 months; returns ``ax``."""
    obs = hold["observed"]
    n = int(obs["patients"])
    months = (6, 60)
    for i, m in enumerate(months):
        x0 = i * (len(VARIANTS) + 1.5)
        free = obs["relapse_free"].get(str(m), obs["relapse_free"].get(m))
        lo, hi = rate(int(round(free * n)), n)["ci95"]
        ax.fill_between([x0 - 0.6, x0 + len(VARIANTS) - 0.4], 100 * lo, 100 * hi, color="0.88", lw=0, zorder=0)
        gp.observed_line(ax, 100 * free, label="observed (STIM1), exact 95 % CI" if i == 0 else None,
                         x0=x0 - 0.6, x1=x0 + len(VARIANTS) - 0.4)
        for j, v in enumerate(VARIANTS):
            e = hold["variants"].get(v)
            if not e:
                continue
            b = e[f"relapse_free_{m}_months"]
            if b["median"] is None:
                continue
            gp.interval_bar(ax, x0 + j, 100 * b["median"], 100 * b["q05"], 100 * b["q95"], gp.variant_color(v))
    ticks, labels = [], []
    for i, m in enumerate(months):
        for j, v in enumerate(VARIANTS):
            ticks.append(i * (len(VARIANTS) + 1.5) + j)
            score = hold["variants"].get(v, {}).get("log_score")
            labels.append(f"{v}\n{score:.0f}" if score is not None else v)
        ax.text(i * (len(VARIANTS) + 1.5) + (len(VARIANTS) - 1) / 2, 103, f"{m} months", ha="center",
                va="bottom", fontsize=gp.SMALL_FONT_SIZE)
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, fontsize=gp.SMALL_FONT_SIZE)
    ax.set_ylim(0, 112)
    ax.set_ylabel("Relapse-free after stop (%)")
    ax.set_title("Held-out STIM1 (under each name: log score)", fontsize=gp.SMALL_FONT_SIZE, loc="left")
    ax.legend(loc="upper right", frameon=False, fontsize=gp.SMALL_FONT_SIZE, bbox_to_anchor=(1.0, 0.93))
    return ax


def decisive_panel(ax, dec: dict, threshold: float, a: str = "H2", b: str = "H1"):
    """P(decisive study) against study size for ``a`` vs ``b`` (both directions); returns ``ax``."""
    # measurement kinds in colours that are not the variants' (line style: which variant is true)
    styles = {"durable": ("s", gp.OKABE_ITO["grey"]), "effector": ("o", gp.OKABE_ITO["reddish_purple"])}
    drawn = False
    for meas_key, (marker, color) in styles.items():
        for true, other, ls in ((a, b, "-"), (b, a, (0, (3, 2)))):
            rows = sorted((r for r in dec["rows"] if r["true"] == true and r["alternative"] == other
                           and r["measurement"].startswith(meas_key) and r["p_decisive"] is not None),
                          key=lambda r: r["patients"])
            if not rows:
                continue
            what = rows[0]["measurement"]
            ax.plot([r["patients"] for r in rows], [100 * r["p_decisive"] for r in rows], color=color, ls=ls,
                    marker=marker, ms=3.5, lw=1.2, label=f"{what}, {true} true")
            drawn = True
    ax.set_xscale("log")
    sizes = sorted({r["patients"] for r in dec["rows"]})
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_ylim(0, 100)
    ax.set_xlabel("Patients in the study")
    ax.set_ylabel(f"P(Bayes factor ≥ {threshold:g} for the true variant) (%)")
    ax.set_title(f"What would decide {a} vs {b}", fontsize=gp.SMALL_FONT_SIZE, loc="left")
    if drawn:
        ax.legend(loc="center right", frameon=False, fontsize=gp.SMALL_FONT_SIZE)
    return ax


def draw(results: Path = Path("results"), out: Path = Path("figures/output")) -> list[Path]:
    report = load(Path(results))
    rows = report.get("robustness") or []
    with gp.use_style():
        if rows:
            fig = gp.new_figure(gp.DOUBLE_COLUMN, 6.2)
            top, bottom = fig.subfigures(2, 1, height_ratios=[1.0, 1.0])
            ax_a = top.subplots()
            robustness_panel(ax_a, rows)
            gp.panel_label(ax_a, "a", x=-0.2)
        else:  # panel (a) needs the refits: say so instead of leaving half the figure empty
            fig = gp.new_figure(gp.DOUBLE_COLUMN, 3.4)
            bottom = fig
            fig.suptitle("(a) robustness refits not run here: gvlmodel compare without --no-refits, or "
                         "gvlmodel reproduce --refit", fontsize=gp.SMALL_FONT_SIZE, color="0.35", x=0.02,
                         ha="left")
        ax_b, ax_c = bottom.subplots(1, 2)
        holdout_panel(ax_b, report["holdout"])
        decisive_panel(ax_c, report["decisive"], float(report["settings"]["bayes_factor"]))
        gp.panel_label(ax_b, "b", x=-0.12)
        gp.panel_label(ax_c, "c", x=-0.12)
        return gp.save_figure(fig, out, NAME)


def main(argv=None):
    return gp.figure_cli(draw, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main(sys.argv[1:])
