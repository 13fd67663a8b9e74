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
from gvlmodel.model.parameters import PARAMETER_TABLE  # noqa: E402

NAME = "fig7_posterior"
NAME_CORNER = "fig7_corner"
FIT = "fit_hess2005"  # experiment read (gvlmodel.analysis.plotting.experiment)

#: fitted parameter -> short symbol (as in gvlmodel/model/model.py); log10_ keys are shown on the log10 scale they
#: were fitted on.  Units are the parameter table's (gvlmodel.model.parameters.PARAMETER_TABLE), not copied here.
SYMBOLS = {
    "stop_uptake": "stop uptake",
    "im_kill_lsc": "$k_{IM}$",
    "im_kill_progenitor": "$k_{IM,P}$",
    "q_out": "$q_{out}$",
    "q_in": "$q_{in}$",
    "resistant_fraction": "$f_R$",
    "z_influx_allo": "$b_z$",
    "z_kill": "$z_{kill}$",
    "z_expand_allo": r"$\rho$",
    "z_half": "$z_{1/2}$",
    "z_death": "$d_z$",
}
#: units of fitted quantities that are not rows of the parameter table
OTHER_UNITS = {"stop_uptake": "fraction"}


def unit_of(name: str, row: dict | None = None) -> str:
    """Unit of a fitted parameter: the parameter table's, else :data:`OTHER_UNITS`, else the report row's."""
    if name in PARAMETER_TABLE:
        return PARAMETER_TABLE[name].unit
    return OTHER_UNITS.get(name) or (row or {}).get("unit") or "1"


def symbol_of(name: str) -> str:
    return SYMBOLS.get(name, name.replace("_", " "))


def describe(key: str, row: dict | None = None) -> tuple[str, str]:
    """(short label, label with unit) of a fitted key such as ``log10_z_kill`` or ``sd_im_kill_lsc``."""
    if key.startswith("log10_"):
        base = key[len("log10_"):]
        sym = symbol_of(base)
        return f"log$_{{10}}$ {sym}", f"log$_{{10}}$ {sym} ({unit_of(base, row)})"
    if key.startswith("sd_"):
        sym = symbol_of(key[len("sd_"):])
        return f"SD {sym}", f"SD of ln {sym} ({(row or {}).get('unit') or 'ln units'})"
    sym = symbol_of(key)
    return sym, f"{sym} ({unit_of(key, row)})"


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
    _width_ratio_columns(ax, keys, ratios, [info[k]["labels"][0] for k in keys])
    gp.panel_label(ax, "b", x=-0.06)
    return gp.save_figure(fig, out, NAME)


def _width_ratio_columns(ax, keys, ratios, labels):
    """Grouped vertical bars of the width ratio with the verdict regions (pinned / partly / not identified)."""
    thr = gp.IDENTIFIABILITY_THRESHOLDS
    variants = list(ratios)
    w = 0.8 / max(len(variants), 1)
    x = np.arange(len(keys), dtype=float)
    for j, v in enumerate(variants):
        vals = np.asarray(ratios[v], dtype=float)
        ok = np.isfinite(vals)
        ax.bar(x[ok] + (j - (len(variants) - 1) / 2) * w, vals[ok], width=w * 0.92, color=gp.variant_color(v),
               label=v, zorder=3)
    ax.axhline(thr["pinned"], color="0.25", lw=0.8, ls=(0, (4, 2)), zorder=4)
    ax.axhline(thr["partly"], color="0.25", lw=0.8, ls=(0, (4, 2)), zorder=4)
    ax.axhline(0.9, color="0.55", lw=0.6, ls=":", zorder=4)
    trans = ax.get_yaxis_transform()
    ax.text(1.005, thr["pinned"] / 2, "pinned", transform=trans, ha="left", va="center", fontsize=gp.SMALL_FONT_SIZE)
    ax.text(1.005, (thr["pinned"] + thr["partly"]) / 2, "partly", transform=trans, ha="left", va="center",
            fontsize=gp.SMALL_FONT_SIZE)
    ax.text(1.005, (thr["partly"] + 1.05) / 2, "not\nidentified", transform=trans, ha="left", va="center",
            fontsize=gp.SMALL_FONT_SIZE, linespacing=1.1)
    ax.text(-0.45, 0.905, "flat posterior (0.9)", ha="left", va="bottom", fontsize=gp.SMALL_FONT_SIZE,
            color="0.4")
    ax.set_xticks(x)
    ax.set_xticklabels(labels)
    ax.set_xlim(-0.5, len(keys) - 0.5)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("Posterior / prior\n90 % width (1)")
    ax.set_xlabel("Fitted quantity")
    return ax


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
