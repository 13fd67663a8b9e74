"""The calibration data load with citations and group sizes; simulated trials give the same statistics."""
import pytest

from gvlmodel import InputError
from gvlmodel.calibration import load_calibration, observed_statistics, trial_statistics
from gvlmodel.cohort import CohortSpec, HESS2005_RELAPSE_MIX, simulate_cohort


def test_every_item_has_a_citation_and_the_brief_numbers():
    d = load_calibration()
    for name, item in d["items"].items():
        assert item["citation"] and item["description"], name
    obs = observed_statistics(d)
    assert (obs["n_enrolled"], obs["n_cmr"], obs["n_stopped"], obs["n_durable"]) == (44, 34, 10, 4)
    assert (obs["median_im_days_durable"], obs["median_im_days_lost"]) == (269, 151)
    assert d["cohort"]["relapse_mix"] == HESS2005_RELAPSE_MIX
    assert d["items"]["durable_cmr_after_stop"]["follow_up_median_days"] == 494


def test_unknown_data_set_is_a_clear_error():
    with pytest.raises(InputError, match="hess2005"):
        load_calibration("hess2006")


def test_simulated_trial_has_the_observed_statistics_keys_and_consistent_counts():
    res = simulate_cohort(CohortSpec(size=44, seed=3))
    s = trial_statistics(res, follow_up_after_stop_days=494)
    assert set(observed_statistics()) <= set(s)
    assert s["n_durable"] <= s["n_stopped"] <= s["n_enrolled"] == 44
    assert s["n_solver_failures"] == 0
