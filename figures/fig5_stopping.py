"""Figure 5: when is it safe to stop imatinib? Durable CMR against imatinib duration before stopping.

Probability of staying PCR-negative for ``tfr_window_days`` (2 years) after a
fixed imatinib course of the given length (no CMR condition), after allogeneic
SCT (relapse mix of Hess 2005) and non-transplanted (from diagnosis): median
over posterior draws of the best hypothesis with the 5-95 % credible band
(``report.json`` ``answers.result.tfr_by_im_days``).  For orientation, the
Hess et al. 2005 outcome (4 of 10 durable after stopping *in CMR*, exact 95 %
CI) is drawn across the observed median imatinib durations of the lost (151
days) and durable (269 days) groups.

Inputs: ``results/fit_hess2005/report.json``.
Run: ``python figures/fig5_stopping.py [--results results] [--out figures/output]``
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from gvlmodel import plotting as gp  # noqa: E402

NAME = "fig5_stopping"
FIT = "fit_hess2005"  # experiment read (gvlmodel.plotting.experiment)
MONTH_TICKS = (3, 6, 9, 12, 18, 24, 30, 36)


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


def draw(results: Path = Path("results"), out: Path = Path("figures/output")) -> list[Path]:
    d = load(Path(results))
    report, ans, curves = d["report"], d["answers"], d["curves"]
    window = float(ans.get("tfr_window_days", 730.0))
    variant = ans.get("variant") or report.get("best", "")
    n_draws = ans.get("n_draws")
    obs = report.get("observed", {})

    with gp.use_style():
        fig = gp.new_figure(gp.SINGLE_COLUMN, 3.2)
        ax = fig.add_subplot()
        t_max = 0.0
        for setting in ("transplanted", "non_transplanted"):
            if setting not in curves or not curves[setting]:
                continue
            c = _curve(curves[setting])
            t_max = max(t_max, float(np.nanmax(c["days"])))
            gp.credible_band(ax, c["days"] / gp.DAYS_PER_MONTH, 100 * c["median"], 100 * c["q05"],
                             100 * c["q95"], gp.SETTING_COLORS[setting], label=gp.SETTING_LABELS[setting])
        # Hess 2005 for orientation (stopped in CMR; not a fixed course)
        size = report.get("design", {}).get("size")
        if all(k in obs for k in ("frac_durable", "frac_stopped", "median_im_days_durable",
                                  "median_im_days_lost")) and size:
            from scipy.stats import beta

            n = int(round(obs["frac_stopped"] * size))
            k = int(round(obs["frac_durable"] * n))
            lo = 0.0 if k == 0 else beta.ppf(0.025, k, n - k + 1)
            hi = 1.0 if k == n else beta.ppf(0.975, k + 1, n - k)
            x0, x1 = sorted((obs["median_im_days_lost"], obs["median_im_days_durable"]))
            xm = 0.5 * (x0 + x1) / gp.DAYS_PER_MONTH
            ax.errorbar([xm], [100 * k / n], yerr=[[100 * (k / n - lo)], [100 * (hi - k / n)]],
                        xerr=[[xm - x0 / gp.DAYS_PER_MONTH], [x1 / gp.DAYS_PER_MONTH - xm]], fmt="D", ms=4,
                        mfc="white", mec="k", ecolor="k", elinewidth=0.8, capsize=2, zorder=6,
                        label=f"Hess 2005: {k}/{n} stopping in CMR")
        ax.set_xlim(0, t_max / gp.DAYS_PER_MONTH * 1.03)
        ax.set_xticks([m for m in MONTH_TICKS if m <= t_max / gp.DAYS_PER_MONTH + 0.5])
        ax.set_ylim(0, 100)
        ax.set_xlabel("Imatinib before stopping (months)")
        ax.set_ylabel(f"PCR-negative {window / 365.25:.0f} years after stop (%)")
        band_note = f"{variant} posterior: median, 5–95 %"
        if n_draws:
            band_note += f" ({n_draws} draws)"
        ax.set_title(band_note, fontsize=gp.SMALL_FONT_SIZE, color="0.25", loc="left")
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2, columnspacing=1.0)
        return gp.save_figure(fig, out, NAME)


def main(argv=None):
    return gp.figure_cli(draw, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main(sys.argv[1:])
