"""Figure 5: when is it safe to stop imatinib? Durable CMR against imatinib duration before stopping.

Probability of staying PCR-negative for ``tfr_window_days`` (2 years) after a
fixed imatinib course of the given length (no CMR condition), after allogeneic
SCT (relapse mix of Hess 2005) and non-transplanted (from diagnosis): median
over posterior draws of the best hypothesis with the 5-95 % credible band
(``report.json`` ``answers.result.tfr_by_im_days``).

Safe stop: the dotted line is P(durable) = 50 %; for each setting the first
course length at which the posterior median reaches it (linear interpolation
between the simulated course lengths) is marked by a vertical line and given in
the legend; "not reached" if it stays below within the simulated courses.

For orientation, Hess et al. 2005 (patients who stopped *in CMR*, not a fixed
course): the share of stoppers whose CMR lasted (4 of 10) is the dashed
horizontal line, its exact 95 % CI in the legend; the median imatinib durations
before the stop of the two groups (lost CMR: 151 days, durable: 269 days) are
the two markers on that line.

Inputs: ``results/fit_hess2005/report.json``.
Run: ``python figures/fig5_stopping.py [--results results] [--out figures/output]``
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from gvlmodel.analysis import plotting as gp  # noqa: E402
from gvlmodel.analysis.numbers import SAFE_STOP_LEVEL  # noqa: E402
from gvlmodel.clinical.summary import first_crossing, rate  # noqa: E402

NAME = "fig5_stopping"
FIT = "fit_hess2005"  # experiment read (gvlmodel.analysis.plotting.experiment)
MONTH_TICKS = (3, 6, 9, 12, 18, 24, 30, 36)
SAFE_LEVEL = SAFE_STOP_LEVEL  # P(durable) at which a stop is called safe (the numbers file uses the same)


def load(results: Path) -> dict:
    folder, command = gp.experiment(results, FIT)
    path = folder / "report.json"
    report = gp.read_json(path, command)
    try:
        ans = report["answers"]["result"]
        curves = ans["tfr_by_im_days"]
    except (KeyError, TypeError):
        raise KeyError(f"{path}: no answers.result.tfr_by_im_days (rerun `{command}`)") from None
    return {"report": report, "answers": ans, "curves": curves}


def _curve(rows) -> dict[str, np.ndarray]:
    rows = sorted(rows, key=lambda r: r["stop_after_days"])
    out = {"days": np.array([r["stop_after_days"] for r in rows], dtype=float)}
    for k in ("median", "q05", "q95"):
        out[k] = np.array([np.nan if r.get(k) is None else r[k] for r in rows], dtype=float)
    return out


def hess_observed(ax, obs: dict, size):
    """Hess 2005: the durable share of stoppers (dashed line, exact 95 % CI in the label) and the median
    imatinib days before the stop of the lost and durable groups as two markers on it.  Returns ``ax``."""
    keys = ("frac_durable", "frac_stopped", "median_im_days_durable", "median_im_days_lost")
    if not size or not all(obs.get(k) is not None for k in keys):
        return ax
    n = int(round(obs["frac_stopped"] * size))
    k = int(round(obs["frac_durable"] * n))
    if n == 0:
        return ax
    lo, hi = rate(k, n)["ci95"]  # exact (Clopper-Pearson) 95 %
    y = 100 * k / n
    ax.axhline(y, color=gp.STATE_COLORS["observed"], lw=0.8, ls=(0, (4, 2)), zorder=3,
               label=f"Hess 2005: {k}/{n} durable after stopping in CMR (95 % CI {100 * lo:.0f}–"
                     f"{100 * hi:.0f} %)")
    for key, marker, fill, what in (("median_im_days_lost", "v", "white", "lost CMR"),
                                    ("median_im_days_durable", "D", "k", "durable")):
        days = obs[key]
        ax.plot([days / gp.DAYS_PER_MONTH], [y], ls="none", marker=marker, ms=5, mfc=fill, mec="k", mew=1.0,
                zorder=7, label=f"Hess 2005 median before stop, {what}: {days:.0f} days")
    return ax


def draw(results: Path = Path("results"), out: Path = Path("figures/output")) -> list[Path]:
    d = load(Path(results))
    report, ans, curves = d["report"], d["answers"], d["curves"]
    window = float(ans.get("tfr_window_days", 730.0))
    variant = ans.get("variant") or report.get("best", "")
    n_draws = ans.get("n_draws")
    obs = report.get("observed", {})

    with gp.use_style():
        fig = gp.new_figure(gp.SINGLE_COLUMN, 3.9)
        ax = fig.add_subplot()
        t_max = 0.0
        for setting in ("transplanted", "non_transplanted"):
            if setting not in curves or not curves[setting]:
                continue
            c = _curve(curves[setting])
            t_max = max(t_max, float(np.nanmax(c["days"])))
            safe = first_crossing(c["days"], c["median"], SAFE_LEVEL)
            text = (f"not reached by {t_max / gp.DAYS_PER_MONTH:.0f} months" if safe is None else
                    f"from {safe / gp.DAYS_PER_MONTH:.1f} months (dotted)")
            gp.credible_band(ax, c["days"] / gp.DAYS_PER_MONTH, 100 * c["median"], 100 * c["q05"],
                             100 * c["q95"], gp.SETTING_COLORS[setting],
                             label=f"{gp.SETTING_LABELS[setting]}: median ≥ {100 * SAFE_LEVEL:.0f} % {text}")
            if safe is not None:
                ax.axvline(safe / gp.DAYS_PER_MONTH, color=gp.SETTING_COLORS[setting], lw=0.9, ls=(0, (1, 1.5)),
                           zorder=2)
        ax.axhline(100 * SAFE_LEVEL, color="0.5", lw=0.7, ls=":", zorder=1,
                   label=f"safe-stop level: {100 * SAFE_LEVEL:.0f} % PCR-negative")
        # Hess 2005 for orientation (stopped in CMR; not a fixed course)
        hess_observed(ax, obs, report.get("design", {}).get("size"))
        ax.set_xlim(0, t_max / gp.DAYS_PER_MONTH * 1.03)
        ax.set_xticks([m for m in MONTH_TICKS if m <= t_max / gp.DAYS_PER_MONTH + 0.5])
        ax.set_ylim(0, 100)
        ax.set_xlabel("Imatinib before stopping (months)")
        ax.set_ylabel(f"PCR-negative {window / 365.25:.0f} years after stop (%)")
        band_note = f"{variant} posterior: median, 5–95 %"
        if n_draws:
            band_note += f" ({n_draws} draws)"
        ax.set_title(band_note, fontsize=gp.SMALL_FONT_SIZE, color="0.25", loc="left")
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=1, fontsize=gp.SMALL_FONT_SIZE)
        return gp.save_figure(fig, out, NAME)


def main(argv=None):
    return gp.figure_cli(draw, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main(sys.argv[1:])
