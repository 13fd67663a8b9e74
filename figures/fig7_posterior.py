"""Figure 7: posteriors and identifiability of the fitted parameters.

``fig7_posterior``: (a) weighted posterior marginals of every fitted quantity
for each hypothesis over its prior range (flat prior dashed; legend gives the
effective sample size of the weighted ABC population); (b) identifiability:
posterior/prior 90 % width ratio per parameter and hypothesis with the verdict
thresholds 0.5 (pinned) and 0.8 (not identified).
``fig7_corner``: pair plot of the best-supported hypothesis (``report.json``
``best``).

Inputs: ``results/fit_hess2005/report.json`` and ``posterior_H*.csv``
(parameter columns plus ``weight``).
Run: ``python figures/fig7_posterior.py [--results results] [--out figures/output]``
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from gvlmodel.analysis import plotting as gp  # noqa: E402

NAME = "fig7_posterior"
NAME_CORNER = "fig7_corner"
FIT = "fit_hess2005"  # experiment read (gvlmodel.analysis.plotting.experiment)


def describe(key: str, row: dict | None = None) -> tuple[str, str]:
    """(short label, label with unit) of a fitted key such as ``log10_z_kill`` or ``sd_im_kill_lsc``: the
    equations' symbols and the parameter table's units (:func:`gvlmodel.analysis.plotting.factor_label`,
    :func:`~gvlmodel.analysis.plotting.factor_axis_label`; a report row's unit for a name the table lacks)."""
    return gp.factor_label(key), gp.factor_axis_label(key, (row or {}).get("unit"))


def load(results: Path):
    folder, command = gp.experiment(results, FIT)
    report = gp.read_json(folder / "report.json", command)
    variants = report.get("variants") or sorted(report.get("identifiability", {}))
    post = {}
    for v in variants:
        t = gp.read_table(folder / f"posterior_{v}.csv", command)
        if "weight" not in t:
            raise ValueError(f"{folder / f'posterior_{v}.csv'}: no 'weight' column (rerun `{command}`)")
        post[v] = t
    return report, variants, post


def _ess(w) -> float:
    w = np.asarray(w, dtype=float)
    w = w[np.isfinite(w) & (w > 0)]
    return float(w.sum() ** 2 / np.sum(w * w)) if w.size else 0.0


def _rows(report: dict) -> dict[str, dict[str, dict]]:
    """identifiability rows by variant and key."""
    out = {}
    for v, ident in report.get("identifiability", {}).items():
        out[v] = {r["key"]: r for r in ident.get("parameters", [])}
    return out


def draw(results: Path = Path("results"), out: Path = Path("figures/output")) -> list[Path]:
    report, variants, post = load(Path(results))
    rows = _rows(report)
    keys: list[str] = []
    for v in variants:
        for k in post[v]:
            if k != "weight" and k not in keys:
                keys.append(k)
    info = {}
    for k in keys:
        row = next((rows[v][k] for v in variants if k in rows.get(v, {})), None)
        prior = None if row is None else row.get("prior")
        if prior is None:
            vals = np.concatenate([post[v][k] for v in variants if k in post[v]])
            prior = [float(np.nanmin(vals)), float(np.nanmax(vals))]
        info[k] = {"row": row, "prior": (float(prior[0]), float(prior[1])), "labels": describe(k, row)}
    best = report.get("best") or variants[-1]
    paths = []
    with gp.use_style():
        paths += _marginals_figure(out, variants, post, keys, info, rows)
        if best in post:
            paths += _corner_figure(out, best, post[best], info)
    return paths


def _marginals_figure(out, variants, post, keys, info, rows) -> list[Path]:
    ncols = 5
    nrows = int(np.ceil(len(keys) / ncols))
    fig = gp.new_figure(gp.DOUBLE_COLUMN, 1.75 * nrows + 2.9)
    sub_a, sub_b = fig.subfigures(2, 1, height_ratios=[1.75 * nrows + 0.35, 2.55])
    axes = sub_a.subplots(nrows, ncols, squeeze=False)
    for i, k in enumerate(keys):
        ax = axes.flat[i]
        lo, hi = info[k]["prior"]
        for v in variants:
            if k not in post[v]:
                continue
            gp.weighted_density(ax, post[v][k], post[v]["weight"], bounds=(lo, hi), color=gp.variant_color(v),
                                label=v)
        ax.plot([lo, hi], [1.0 / (hi - lo)] * 2, color=gp.STATE_COLORS["prior"], lw=0.9, ls=(0, (3, 2)),
                label="prior")
        ax.set_xlim(lo, hi)
        ax.set_ylim(bottom=0)
        ax.set_xlabel(info[k]["labels"][1])
        ax.locator_params(axis="x", nbins=4)
        if i % ncols == 0:
            ax.set_ylabel("Density (1/unit)")
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    gp.panel_label(axes.flat[0], "a", x=-0.3)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=gp.variant_color(v), lw=1.1,
                      label=f"{gp.variant_label(v)}, ESS {_ess(post[v]['weight']):.0f}/{len(post[v]['weight'])}")
               for v in variants]
    handles.append(Line2D([], [], color=gp.STATE_COLORS["prior"], lw=0.9, ls=(0, (3, 2)), label="prior (uniform)"))
    sub_a.legend(handles=handles, loc="outside upper center", ncol=len(handles), frameon=False)

    # (b) identifiability
    ax = sub_b.subplots()
    ratios = {v: [rows.get(v, {}).get(k, {}).get("width_ratio", np.nan) for k in keys] for v in variants}
    gp.width_ratio_bars(ax, keys, ratios, labels=[info[k]["labels"][0] for k in keys])
    gp.panel_label(ax, "b", x=-0.06)
    return gp.save_figure(fig, out, NAME)


def _corner_figure(out, variant, table, info) -> list[Path]:
    keys = [k for k in table if k != "weight"]
    n = len(keys)
    fig = gp.new_figure(gp.DOUBLE_COLUMN, gp.DOUBLE_COLUMN, layout=None)
    axes = fig.subplots(n, n, squeeze=False)
    fig.subplots_adjust(left=0.1, right=0.985, bottom=0.09, top=0.985, wspace=0.1, hspace=0.1)
    samples = {k: table[k] for k in keys}
    labels = {k: info[k]["labels"][1].replace(" (", "\n(", 1) for k in keys}
    gp.pair_plot(axes, samples, table["weight"], ranges={k: info[k]["prior"] for k in keys}, labels=labels,
                 color=gp.variant_color(variant), bins=14)
    for ax in axes.flat:
        ax.xaxis.label.set_size(gp.SMALL_FONT_SIZE)
        ax.yaxis.label.set_size(gp.SMALL_FONT_SIZE)
    w = np.asarray(table["weight"], dtype=float)
    if w.size and np.allclose(w, w[0]):  # e.g. the shipped set's posterior sample (gvlmodel reproduce)
        sample_note = f"posterior sample: {w.size} equally weighted draws\ndots: draws\n"
    else:
        sample_note = (f"weighted ABC population: {w.size} particles, ESS {_ess(w):.0f}\n"
                       "dots: particles, area proportional to weight\n")
    fig.text(0.45, 0.97, f"Posterior of {gp.variant_label(variant)}\n" + sample_note +
             "+ and dotted lines: posterior medians\naxes span the prior ranges",
             ha="left", va="top", fontsize=gp.FONT_SIZE, linespacing=1.4)
    return gp.save_figure(fig, out, NAME_CORNER)


def main(argv=None):
    return gp.figure_cli(draw, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main(sys.argv[1:])
