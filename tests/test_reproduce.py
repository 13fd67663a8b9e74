"""`gvlmodel reproduce --quick` end to end, step skipping, and the numbers file against its sources."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gvlmodel.core.errors import InputError, read_toml
from gvlmodel.core.experiments import experiment_kind

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ["fig1_schematic", "fig2_patients", "fig3_predictive", "fig4_immune_window", "fig5_stopping",
           "fig6_sensitivity", "fig7_posterior", "fig8_comparison"]


def test_every_committed_experiment_has_a_kind():
    kinds = {p.stem: experiment_kind(read_toml(p), str(p)) for p in (ROOT / "experiments").glob("*.toml")}
    assert kinds["fit_hess2005"] == "fit"
    assert kinds["sensitivity_hess2005"] == "sensitivity"
    assert kinds["dynamics"] == "dynamics"
    assert kinds["example"] == "example"
    assert {kinds[k] for k in ("hess2005", "nontransplanted_short", "continuous_diagnosis")} == {"simulate"}
    with pytest.raises(InputError, match="cannot tell"):
        experiment_kind({"something": {}})


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("reproduce")
    results, figures = base / "results", base / "figures"
    cmd = [sys.executable, "-m", "gvlmodel.workflow.cli", "reproduce", "--quick", "--results", str(results),
           "--figures", str(figures)]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    return results, figures, first, second


@pytest.mark.slow  # about 90 s: `gvlmodel reproduce --quick` end to end (run with -m slow)
def test_reproduce_quick_runs_end_to_end(quick_run):
    results, figures, first, _ = quick_run
    assert first.returncode == 0, first.stderr[-3000:]
    for name in FIGURES:
        for ext in ("pdf", "png"):
            f = figures / f"{name}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000, f
    for stem in ("fit_hess2005", "hess2005", "sensitivity_hess2005", "dynamics"):
        assert (results / stem / ".reproduce.json").is_file(), stem
    assert (results / "numbers.json").is_file() and (results / "numbers.tex").is_file()


@pytest.mark.slow  # about 90 s: `gvlmodel reproduce --quick` end to end (run with -m slow)
def test_second_run_skips_every_unchanged_step(quick_run):
    results, _, _, second = quick_run
    assert second.returncode == 0, second.stderr[-3000:]
    run = json.loads((results / "reproduce_run.json").read_text())["steps"]
    assert all(v["status"] == "skipped" for k, v in run.items() if k != "numbers"), run


@pytest.mark.slow  # about 90 s: `gvlmodel reproduce --quick` end to end (run with -m slow)
def test_numbers_agree_with_their_results(quick_run):
    results = quick_run[0]
    nums = json.loads((results / "numbers.json").read_text())["numbers"]
    tex = (results / "numbers.tex").read_text()
    assert (results / "numbers.md").is_file()
    rep = json.loads((results / "fit_hess2005" / "report.json").read_text())
    assert nums["fit_hess2005.best"]["value"] == rep["best"]
    for v, p in rep["comparison"]["result"]["probabilities"].items():
        assert nums[f"fit_hess2005.prob.{v}"]["value"] == pytest.approx(p)
    for v, pred in rep["predictive"].items():
        e = nums[f"fit_hess2005.predictive.{v}.frac_cmr"]
        assert (e["value"], e["low"], e["high"]) == pytest.approx(
            (pred["frac_cmr"]["median"], pred["frac_cmr"]["q05"], pred["frac_cmr"]["q95"]))
    summ = json.loads((results / "hess2005" / "summary.json").read_text())
    assert nums["hess2005.counts.reached_cmr"]["value"] == summ["rates"]["reached_cmr"]["k"]
    ind = json.loads((results / "sensitivity_hess2005" / "indices.json").read_text())
    for o, order in ind["sobol"]["ranking"].items():
        if order:
            assert nums[f"sensitivity_hess2005.sobol.{o}.1.factor"]["value"] == order[0]
    best = nums[f"fit_hess2005.prob.{rep['best']}"]
    assert f"\\newcommand{{\\{best['macro']}}}{{{best['value']:.3g}}}" in tex
