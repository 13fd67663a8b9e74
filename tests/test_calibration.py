"""The calibration data load with citations and group sizes; simulated trials give the same statistics."""
import pytest

from gvlmodel import InputError
from gvlmodel.clinical.calibration import load_calibration
from gvlmodel.clinical.cohort import CohortSpec, HESS2005_RELAPSE_MIX, simulate_cohort
from gvlmodel.clinical.trial import STATISTICS, TrialDesign, observed, statistics


def test_every_item_has_a_citation_and_the_brief_numbers():
    d = load_calibration()
    for name, item in d["items"].items():
        assert item["citation"] and item["description"], name
    obs = observed(d)
    assert d["cohort"]["enrolled"] == 44
    assert (obs["frac_cmr"], obs["frac_stopped"], obs["frac_durable"]) == (34 / 44, 10 / 44, 4 / 10)
    assert (obs["median_im_days_durable"], obs["median_im_days_lost"]) == (269, 151)
    assert d["cohort"]["relapse_mix"] == HESS2005_RELAPSE_MIX
    assert d["items"]["durable_cmr_after_stop"]["follow_up_median_days"] == 494


def test_unknown_data_set_is_a_clear_error():
    with pytest.raises(InputError, match="hess2005"):
        load_calibration("hess2006")


def test_simulated_trial_has_the_observed_statistics_keys_and_consistent_counts():
    res = simulate_cohort(CohortSpec(size=44, seed=3))
    s = statistics(res, None, TrialDesign(follow_up_after_stop_days=494))
    assert set(observed()) == set(STATISTICS) <= set(s)
    n_stopped = round(s["frac_stopped"] * 44)
    n_durable = s["frac_durable"] * n_stopped
    assert abs(n_durable - round(n_durable)) < 1e-9 and 0 <= n_durable <= n_stopped <= 44
    assert s["n_solver_failures"] == 0
