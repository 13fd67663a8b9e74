"""Figure 2: representative virtual patients, after allogeneic SCT vs non-transplanted.

Per patient: BCR-ABL (%) over time on a log axis (true ratio as a line, PCR
samples as dots, undetectable samples as open triangles at the detection
limit), imatinib dose as shaded background bands, the PCR detection limit and
the response levels MMR / MR4 / MR4.5 / MR5; below it, in cells, the effectors
Z and the leukemic stem-cell pools (deeply dormant D, quiescent Q, cycling Y0
and the imatinib-resistant subclone R0, each drawn where it reaches one cell).  Columns: transplanted (``results/hess2005``) and non-transplanted
(``results/nontransplanted_short``).  Patients are picked from those with a
saved trajectory, one per outcome class in the order: durable CMR off
imatinib, CMR lost after stopping, never in CMR, CMR on continuous imatinib
(save more trajectories with ``[output] trajectories = "all"`` in the
scenario to widen the choice).

Run: ``python figures/fig2_patients.py [--results results] [--out figures/output]``
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.ticker import LogLocator, NullFormatter  # noqa: E402

from gvlmodel.analysis import plotting as gp  # noqa: E402

NAME = "fig2_patients"
N_PATIENTS = 3
#: leukemic stem-cell pools drawn with the effectors (trajectory columns)
LSC_COLUMNS = tuple(c for c, _, _ in gp.LSC_POOLS)

#: setting -> scenario experiment read (gvlmodel.analysis.plotting.experiment)
SETTINGS = {"transplanted": "hess2005", "non_transplanted": "nontransplanted_short"}

#: outcome classes, in the order they are picked
OUTCOMES = ("durable", "lost", "never_cmr", "continued")
OUTCOME_LABELS = {
    "durable": "durable CMR off imatinib",
    "lost": "CMR lost after stop",
    "lost_never_cmr": "no CMR, relapse after stop",
    "never_cmr": "never in CMR",
    "continued": "CMR on continuous imatinib",
}


def outcome_class(reached_cmr: bool, stopped: bool, lost: bool) -> str:
    """Outcome class of a patient (see :data:`OUTCOMES`)."""
    if stopped and not lost and reached_cmr:
        return "durable"
    if stopped and lost:
        return "lost" if reached_cmr else "lost_never_cmr"
    if not reached_cmr:
        return "never_cmr"
    return "continued"


def pick_patients(patients: dict, candidate_ids, n: int = N_PATIENTS) -> list[tuple[int, str]]:
    """Up to ``n`` patients among ``candidate_ids``: one per outcome class in turn (first id of each)."""
    ids = np.asarray(patients["patient_id"], dtype=float).astype(int)
    reached = gp.as_bool(patients["reached_cmr"])
    stopped = gp.as_bool(patients["stopped"])
    lost = gp.as_bool(patients["lost_cmr"])
    classes = {int(i): outcome_class(r, s, l) for i, r, s, l in zip(ids, reached, stopped, lost)}
    order = ("durable", "lost", "lost_never_cmr", "never_cmr", "continued")
    queues = {c: [i for i in sorted(set(int(x) for x in candidate_ids)) if classes.get(i) == c] for c in order}
    picked: list[tuple[int, str]] = []
    while len(picked) < n and any(queues.values()):
        for c in order:
            if queues[c] and len(picked) < n:
                picked.append((queues[c].pop(0), c))
    return picked


def detection_limit_percent(folder: Path) -> float:
    """Detection limit (%) from the run's provenance.json, else the package default."""
    prov = folder / "provenance.json"
    if prov.is_file():
        try:
            d = json.loads(prov.read_text(encoding="utf-8"))
            for path in (("resolved", "protocol", "detection_limit"), ("config", "measurement", "detection_limit")):
                node = d
                for k in path:
                    node = node[k]
                return 100.0 * float(node)
        except (KeyError, TypeError, ValueError):
            pass
    return 100.0 * gp.DEFAULT_DETECTION_LIMIT


def load_setting(results: Path, setting: str) -> dict:
    folder, command = gp.experiment(results, SETTINGS[setting])
    patients = gp.read_table(folder / "patients.csv", command)
    traj = gp.read_table(folder / "trajectories.csv", command,
                         numeric=["time_days", "patient_id", "bcr_abl_percent", "measured_percent", "dose_mg", "Z",
                                  *LSC_COLUMNS])
    return {"folder": folder, "patients": patients, "traj": traj, "command": command,
            "limit": detection_limit_percent(folder)}


def x_limit_days(patients: dict, picked: list[tuple[int, str]], t_end: float, margin: float = 365.0) -> float:
    """End of the x axis: one year after the last event (stop, loss, restart, eradication, CMR) of the
    picked patients, rounded up to 6 months and capped at the end of follow-up."""
    ids = np.asarray(patients["patient_id"], dtype=float).astype(int)
    last = 0.0
    for pid, _ in picked:
        row = int(np.nonzero(ids == pid)[0][0])
        for col in ("days_to_cmr", "stop_day", "restart_day", "days_to_eradication"):
            if col in patients:
                try:
                    v = float(patients[col][row])
                except (TypeError, ValueError):
                    continue
                if np.isfinite(v):
                    last = max(last, v)
        if "stop_day" in patients and "days_stop_to_loss" in patients:
            try:
                last = max(last, float(patients["stop_day"][row]) + float(patients["days_stop_to_loss"][row]))
            except (TypeError, ValueError):
                pass
    half_year = 6 * gp.DAYS_PER_MONTH
    end = np.ceil((last + margin) / half_year) * half_year
    return float(min(t_end, end)) if np.isfinite(end) and end > 0 else float(t_end)


def _title(patients: dict, pid: int, cls: str) -> str:
    ids = np.asarray(patients["patient_id"], dtype=float).astype(int)
    row = int(np.nonzero(ids == pid)[0][0])
    start = str(patients.get("start", [""] * ids.size)[row])
    rtype = str(patients.get("relapse_type", [""] * ids.size)[row])
    what = f"{rtype} relapse" if rtype and rtype != "nan" else ("from diagnosis" if start == "diagnosis" else start)
    return f"Patient {pid}, {what}: {OUTCOME_LABELS[cls]}"


def draw(results: Path = Path("results"), out: Path = Path("figures/output"), n_patients: int = N_PATIENTS
         ) -> list[Path]:
    results = Path(results)
    data = {s: load_setting(results, s) for s in SETTINGS}
    picks = {}
    for s, d in data.items():
        cand = np.unique(d["traj"]["patient_id"][np.isfinite(d["traj"]["patient_id"])])
        picks[s] = pick_patients(d["patients"], cand, n_patients)
        if not picks[s]:
            raise ValueError(f"{d['folder'] / 'trajectories.csv'}: no patient trajectories; save some with "
                             f"[output] trajectories = N in the scenario and rerun `{d['command']}`")
    n_rows = max(len(p) for p in picks.values())

    with gp.use_style():
        fig = gp.new_figure(gp.DOUBLE_COLUMN, 1.0 + 2.6 * n_rows)
        gs = fig.add_gridspec(2 * n_rows, 2, height_ratios=[2.2, 1.25] * n_rows)
        all_doses = set()
        first_axes = {}
        cells = np.concatenate([d["traj"][c] for d in data.values() for c in ("Z", *LSC_COLUMNS)])
        cells = cells[np.isfinite(cells) & (cells >= 1.0)]
        # a factor 2 of headroom: a flat line (Z at its influx equilibrium) must not sit on the frame
        zlim = (10 ** np.floor(np.log10(cells.min() / 2.0)), 10 ** np.ceil(np.log10(cells.max() * 2.0))) \
            if cells.size else (1.0, 10.0)
        if zlim[1] / zlim[0] < 100.0:
            zlim = (zlim[0] / 10.0, zlim[1] * 10.0)
        for col, (setting, d) in enumerate(data.items()):
            tr = d["traj"]
            color = gp.SETTING_COLORS[setting]
            t_max = x_limit_days(d["patients"], picks[setting], float(np.nanmax(tr["time_days"])))
            for row, (pid, cls) in enumerate(picks[setting]):
                m = tr["patient_id"] == pid
                t = tr["time_days"][m]
                order = np.argsort(t, kind="stable")
                t = t[order]
                tm = t / gp.DAYS_PER_MONTH
                dose = tr["dose_mg"][m][order]
                all_doses.update(float(x) for x in dose if np.isfinite(x))
                meas = tr["measured_percent"][m][order]
                ax = fig.add_subplot(gs[2 * row, col])
                axz = fig.add_subplot(gs[2 * row + 1, col], sharex=ax)
                for a in (ax, axz):
                    gp.shade_dose(a, tm, dose)
                gp.response_levels(ax, d["limit"])
                gp.plot_bcr_abl(ax, tm, tr["bcr_abl_percent"][m][order], tm, meas, d["limit"], color=color,
                                label=f"model, {gp.SETTING_LABELS[setting]}")
                ax.set_title(_title(d["patients"], pid, cls), loc="left", fontsize=gp.FONT_SIZE)
                ax.tick_params(labelbottom=False)
                ax.set_yticks([1e-4, 1e-3, 1e-2, 1e-1, 1, 10, 100])
                ax.set_yticklabels(["$10^{-4}$", "$10^{-3}$", "0.01", "0.1", "1", "10", "100"])
                gp.plot_effectors(axz, tm, tr["Z"][m][order])
                gp.plot_stem_cells(axz, tm, {c: tr[c][m][order] for c in LSC_COLUMNS})
                axz.set_ylim(*zlim)
                axz.yaxis.set_major_locator(LogLocator(base=10.0, numticks=5))
                axz.yaxis.set_minor_formatter(NullFormatter())
                axz.set_ylabel("Cells")
                gp.months_axis(axz, t_max, step_months=6 if t_max > 800 else 3)
                if row < len(picks[setting]) - 1:
                    axz.set_xlabel("")
                ax.set_ylim(1e-5, 300.0)
                if row == 0:
                    first_axes[setting] = ax
            head = ("After allogeneic SCT: Hess 2005 protocol" if setting == "transplanted"
                    else "Non-transplanted: one year of imatinib from diagnosis")
            first_axes[setting].annotate(head, xy=(0.5, 1.0), xycoords="axes fraction",
                                         xytext=(0, 16), textcoords="offset points", ha="center", va="bottom",
                                         fontsize=gp.FONT_SIZE + 1, fontweight="bold", color=color)
        # one legend for the figure
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=gp.SETTING_COLORS[s], lw=1.2, label=f"BCR-ABL, {gp.SETTING_LABELS[s]}")
                   for s in SETTINGS]
        handles += [
            Line2D([], [], ls="none", marker="o", ms=3.0, mfc="k", mec="white", mew=0.4, label="PCR sample"),
            Line2D([], [], ls="none", marker="v", ms=3.6, mfc="white", mec="k", mew=0.7,
                   label="PCR undetectable (at limit)"),
            Line2D([], [], color=gp.STATE_COLORS["effector"], lw=1.2, label="effectors Z"),
        ]
        handles += [Line2D([], [], **gp.lsc_pool_style(c)) for c in LSC_COLUMNS]
        handles += gp.dose_legend_handles(all_doses)
        fig.legend(handles=handles, loc="outside lower center", ncol=5, frameon=False)
        return gp.save_figure(fig, out, NAME)


def main(argv=None):
    return gp.figure_cli(draw, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main(sys.argv[1:])
