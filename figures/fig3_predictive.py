"""Figure 3: posterior predictive checks of H0/H1/H2 against the Hess et al. 2005 outcomes.

One panel per calibration statistic: for each hypothesis the distribution of
the statistic over posterior predictive virtual trials (violin, from
``predictive.csv``; draws where the statistic is undefined are left out and
counted) and its median with the 5-95 % interval (from ``report.json``); the
observed value as a dashed line (with the exact binomial 95 % interval of the
observed proportion where the group size is known).  ABC model probabilities
(+- Monte Carlo SE) under each hypothesis label.

Inputs: ``results/fit_hess2005/report.json`` and ``predictive.csv``.
Run: ``python figures/fig3_predictive.py [--results results] [--out figures/output]``
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from gvlmodel.analysis import plotting as gp  # noqa: E402
from gvlmodel.clinical.summary import rate  # noqa: E402

NAME = "fig3_predictive"
FIT = "fit_hess2005"  # experiment read (gvlmodel.analysis.plotting.experiment)

#: statistic -> (panel title, y label, scale to display units, kind)
STATISTICS = {
    "frac_cmr": ("Reached CMR", "Patients (% of cohort)", 100.0, "fraction"),
    "frac_stopped": ("Stopped imatinib", "Patients (% of cohort)", 100.0, "fraction"),
    "frac_durable": ("Durable CMR after stop", "Patients (% of those stopping)", 100.0, "fraction"),
    "median_im_days_durable": ("IM before stop: durable CMR", "Median imatinib duration (days)", 1.0, "days"),
    "median_im_days_lost": ("IM before stop: CMR lost", "Median imatinib duration (days)", 1.0, "days"),
    "nontx_frac_relapse": ("Non-transplanted: relapse\n≤ 90 days after stop", "Patients (% of those stopping)",
                           100.0, "fraction"),
}
#: Hess 2005 stop rule: at least 6 months of imatinib before stopping
MIN_IM_DAYS_BEFORE_STOP = 180.0


def observed_group_sizes(report: dict) -> dict[str, int]:
    """Group sizes of the observed proportions (cohort size; stoppers for the durable fraction)."""
    size = int(report.get("design", {}).get("size", 0) or 0)
    obs = report.get("observed", {})
    out = {}
    if size:
        out["frac_cmr"] = size
        out["frac_stopped"] = size
        if "frac_stopped" in obs:
            n_stop = int(round(obs["frac_stopped"] * size))
            if n_stop > 0:
                out["frac_durable"] = n_stop
    return out


def load(results: Path):
    folder, command = gp.experiment(results, FIT)
    report = gp.read_json(folder / "report.json", command)
    for key in ("predictive", "observed", "comparison"):
        if key not in report:
            raise KeyError(f"{folder / 'report.json'}: no {key!r} section (rerun `{command}`)")
    pred = gp.read_table(folder / "predictive.csv", command)
    return report, pred


def draw(results: Path = Path("results"), out: Path = Path("figures/output")) -> list[Path]:
    report, pred = load(Path(results))
    variants = [v for v in report.get("variants", sorted(report["predictive"])) if v in report["predictive"]]
    probs = report["comparison"]["result"].get("probabilities", {})
    ses = report["comparison"]["result"].get("se", {})
    best = report.get("best") or report["comparison"]["result"].get("best")
    stats = [s for s in STATISTICS if any(s in report["predictive"][v] for v in variants)]
    sizes = observed_group_sizes(report)
    vcol = np.asarray(pred["variant"], dtype=str)

    with gp.use_style():
        ncols = 3
        nrows = int(np.ceil(len(stats) / ncols))
        fig = gp.new_figure(gp.DOUBLE_COLUMN, 0.6 + 2.35 * nrows)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        x = np.arange(len(variants), dtype=float)
        tick_labels = []
        for v in variants:
            p = probs.get(v)
            lab = v
            if p is not None:
                lab += f"\n{p:.2f}"
                if ses.get(v) is not None:
                    lab += f"\n± {ses[v]:.2f}"
            tick_labels.append(lab)
        for k, stat in enumerate(stats):
            ax = axes.flat[k]
            title, ylabel, scale, kind = STATISTICS[stat]
            observed = report["observed"].get(stat)
            all_vals = []
            for i, v in enumerate(variants):
                summ = report["predictive"][v].get(stat)
                color = gp.variant_color(v)
                vals = pred[stat][vcol == v] if stat in pred else np.array([])
                vals = vals[np.isfinite(vals) & (vals >= 0)] * scale
                all_vals.append(vals)
                gp.violin(ax, x[i], vals, color, width=0.75,
                          bounds=(0.0, 100.0) if kind == "fraction" else (0.0, None))
                if summ:
                    gp.interval_bar(ax, x[i], summ["median"] * scale, summ["q05"] * scale, summ["q95"] * scale,
                                    color)
                    n_def, n_all = summ.get("defined"), summ.get("n_draws")
                    if n_def is not None and n_all and n_def < n_all:
                        ax.text(x[i], 0.995, f"{n_def}/{n_all}", transform=ax.get_xaxis_transform(),
                                ha="center", va="top", fontsize=gp.SMALL_FONT_SIZE, color="0.3")
            if observed is not None and stat in sizes:
                n = sizes[stat]
                lo, hi = rate(int(round(observed * n)), n)["ci95"]  # exact (Clopper-Pearson) 95 %
                ax.axhspan(lo * scale, hi * scale, color="0.5", alpha=0.15, lw=0, zorder=0)
            if observed is not None:
                gp.observed_line(ax, observed * scale)
            if kind == "days":
                ax.axhline(MIN_IM_DAYS_BEFORE_STOP, color="0.45", lw=0.7, ls=":", zorder=1)
                vmax = max([float(np.max(a)) for a in all_vals if a.size] + [observed or 0.0, 400.0])
                ax.set_ylim(0.0, 1.15 * vmax)
            else:
                ax.set_ylim(0.0, 112.0)
                ax.set_yticks([0, 25, 50, 75, 100])
            ax.set_xticks(x)
            ax.set_xticklabels(tick_labels)
            ax.set_xlim(-0.6, len(variants) - 0.4)
            ax.set_title(title)
            ax.set_ylabel(ylabel)
            gp.panel_label(ax, "abcdefghij"[k], x=-0.2)
            for tl, v in zip(ax.get_xticklabels(), variants):
                tl.set_color(gp.variant_color(v) if v != best else "k")
                if v == best:
                    tl.set_fontweight("bold")
        for ax in axes.flat[len(stats):]:
            ax.set_visible(False)
        # legend
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        n_draws = max((s.get("n_draws", 0) for v in variants for s in report["predictive"][v].values()), default=0)
        handles = [
            Patch(facecolor="0.6", alpha=0.5, label=f"posterior predictive ({n_draws} virtual trials)"),
            Line2D([], [], color="0.3", lw=2.2, marker="o", ms=4.5, mfc="white", mec="0.3",
                   label="median and 5–95 % interval"),
            Line2D([], [], color="k", lw=1.0, ls=(0, (4, 2)), label="observed (Hess et al. 2005)"),
            Patch(facecolor="0.5", alpha=0.15, label="observed, exact 95 % CI"),
            Line2D([], [], color="0.45", lw=0.7, ls=":", label="protocol minimum, 180 days"),
        ]
        fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False)
        if any(ses.get(v) is not None for v in variants):
            note = "Under each hypothesis: ABC model probability ± Monte Carlo SE"
        else:  # e.g. a report from the shipped sets: the probabilities the fit stored, without their SE
            note = "Under each hypothesis: ABC model probability (no Monte Carlo SE in this report)"
        if best:
            note += f" (best: {best}, bold)"
        note += "; n/N: draws where the statistic is defined"
        fig.suptitle(note, fontsize=gp.SMALL_FONT_SIZE, color="0.25", x=0.01, ha="left")
        return gp.save_figure(fig, out, NAME)


def main(argv=None):
    return gp.figure_cli(draw, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main(sys.argv[1:])
