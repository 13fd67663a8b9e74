"""Issue 17's population-level targets on the shipped sets, each an executable check.

The model meets every target here, so each is an ordinary test. A target it stops meeting, or a new
one it does not yet meet, belongs here as a strict xfail (it runs, shows the measured number, and
fails the day the model meets it), so an unmet target can neither be forgotten nor silently pass.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gvlmodel.clinical.scenario import load_scenario
from gvlmodel.clinical.summary import CONTROL_MAX_BCR_ABL_PERCENT, CONTROL_MIN_LSC

ROOT = Path(__file__).resolve().parents[1]


def test_no_washout_losses_in_the_hess_scenario():
    """< 5 % of losses of CMR happen with the LSC clone already extinct at the stop (v1: 32-67 %)."""
    sc = load_scenario(ROOT / "experiments" / "hess2005.toml")
    from dataclasses import replace

    sc = replace(sc, cohort=replace(sc.cohort, size=2000))
    c = sc.run(progress=False).columns
    lost = c["stopped"] & c["lost_cmr"]
    extinct = c["eradicated"] & (c["days_to_eradication"] <= c["stop_day"])
    assert lost.sum() >= 50, "too few losses to judge"
    assert (lost & extinct).sum() / lost.sum() < 0.05


def test_residual_control_transplanted_target():
    """Transplanted molecular relapses, one year of imatinib, stop, ten years: >= 5 % end with
    >= 100 LSCs at BCR-ABL <= 0.01 % (experiments/residual_control_transplanted.toml)."""
    sc = load_scenario(ROOT / "experiments" / "residual_control_transplanted.toml")
    c = sc.run(progress=False).columns
    ok = c["solver_status"] == 0
    held = ok & (np.asarray(c["final_lsc"]) >= CONTROL_MIN_LSC) & (
        np.asarray(c["final_bcr_abl_percent"]) <= CONTROL_MAX_BCR_ABL_PERCENT)
    assert held.sum() / ok.sum() >= 0.05, f"{held.sum()} of {ok.sum()}"


@pytest.fixture(scope="module")
def stim1_trial():
    from gvlmodel.inference.calibrate import stim_check
    from gvlmodel.model.parameters import parameter_set_info

    info = parameter_set_info("patients")
    return stim_check(info["parameters"], info["population"], info["variant"], size=2000, seed=2010,
                      correlation=info["correlation"])


def test_stim1_relapse_free_within_binomial_error(stim1_trial):
    """43 / 41 / 38 % molecular-relapse-free at 6 / 12 / 60 months, within the binomial 95 % of 100 patients;
    most relapses within 6-7 months.  The calibration's STIM1 stage set the median of z_expand_auto
    (seed 2020); this trial is another seed, so the check is not the fit's own sample."""
    r = stim1_trial
    assert r["stopped_in_window"] >= 100
    assert all(r["within_binomial_95"].values()), r["simulated"]
    assert r["share_of_relapses_within_7_months"] >= 0.5


def test_stim1_lasting_tfr_carries_100_lsc(stim1_trial):
    """Non-transplanted: most patients in lasting TFR after a STIM-like stop carry >= 100 LSCs."""
    assert stim1_trial["lasting_tfr_share_with_100_lsc"] > 0.5, stim1_trial["lasting_tfr_share_with_100_lsc"]
