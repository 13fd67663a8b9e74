"""Protocol rules on hand-built sample sequences (no ODE), and the engine against continuous solves."""
import numpy as np
import pytest

from gvlmodel import simulate
from gvlmodel.clinical.cohort import CohortSpec, Population, Protocol, patient_trajectory, simulate_cohort
from gvlmodel.model.indices import N_RF, N_RI, N_STATES, PS, RF, RI, Dose
from gvlmodel.model.measurement import detection_probability, pcr_sample
from gvlmodel.clinical.protocol import run_rules, write_results
from gvlmodel.model.solver import N_STATS

POS, NEG = 1.0, 0.0  # a positive sample at 1 % (no MMR) / an undetectable one


def rules(samples, stop="hess2005", visit=30.0, restart=False, escalate=True, loss_rule="confirmed_positive"):
    pp = Protocol(stop=stop, restart=restart, escalate=escalate, visit_interval_days=visit, loss_rule=loss_rule,
                  follow_up_days=visit * (len(samples) - 1)).kernel_vector(1e-6, 1e-6, 1.0, 1000)
    times = np.arange(len(samples)) * visit
    hist = np.empty((len(samples), len(PS)))
    run_rules(times, np.asarray(samples, dtype=float), pp, hist)
    return hist[-1], hist


def test_cmr_needs_three_consecutive_negatives_after_a_positive():
    last, _ = rules([POS, NEG, NEG, POS, NEG, NEG], stop="never")
    assert last[PS.REACHED_CMR] == 0  # runs of two only
    last, _ = rules([POS, NEG, NEG, NEG], stop="never")
    assert last[PS.REACHED_CMR] == 1 and last[PS.T_CMR] == 30.0  # day of the first of the three
    last, _ = rules([NEG, NEG, NEG, NEG], stop="never")
    assert last[PS.REACHED_CMR] == 0  # no initial positive


def test_escalation_only_without_mmr_at_three_months():
    last, hist = rules([POS, POS, POS, POS, POS], stop="never")
    assert last[PS.DOSE] == Dose.ESCALATED and last[PS.T_ESCALATE] == 90.0
    assert hist[2][PS.DOSE] == Dose.BASE
    last, _ = rules([POS, POS, POS, 0.05, POS], stop="never")  # 0.05 % at day 90: MMR
    assert last[PS.DOSE] == Dose.BASE and np.isnan(last[PS.T_ESCALATE])
    last, _ = rules([POS, POS, POS, POS, POS], stop="never", escalate=False)
    assert last[PS.DOSE] == Dose.BASE


def test_hess2005_stop_needs_six_months_and_three_negatives_within_three_months():
    # CMR from day 30 (negatives at 30, 60, 90) but stop only once >= 180 days on IM
    last, hist = rules([POS, NEG, NEG, NEG, NEG, NEG, NEG, NEG])
    assert hist[5][PS.STOPPED] == 0 and hist[6][PS.STOPPED] == 1
    assert last[PS.T_STOP] == 180.0 and last[PS.DAYS_ON_IM_AT_STOP] == 180.0 and last[PS.DOSE] == Dose.OFF
    # with 60-day visits three negatives span 120 days > 90: never a Hess stop
    last, _ = rules([POS, NEG, NEG, NEG, NEG, NEG, NEG], visit=60.0)
    assert last[PS.REACHED_CMR] == 1 and last[PS.STOPPED] == 0
    # with 45-day visits three negatives span exactly 90 days: the window's edge counts
    last, hist = rules([POS] + [NEG] * 6, visit=45.0)
    assert hist[3][PS.STOPPED] == 0 and last[PS.T_STOP] == 180.0
    # never positive: no CMR (it needs an initial positive), so no Hess stop however long undetectable
    last, _ = rules([NEG] * 8)
    assert last[PS.REACHED_CMR] == 0 and last[PS.STOPPED] == 0


def test_fixed_course_and_stim_rules():
    last, _ = rules([POS] * 14, stop={"after_days": 365})
    assert last[PS.STOPPED] == 1 and last[PS.T_STOP] == 390.0  # first visit with >= 365 days on IM
    last, hist = rules([POS, POS] + [NEG] * 10, stop={"min_days": 180, "undetectable_days": 120})
    # negatives from day 60; undetectable for >= 120 days at day 180, which is also >= 180 days on IM
    assert last[PS.T_STOP] == 180.0
    last, _ = rules([POS, POS] + [NEG] * 3 + [POS] + [NEG] * 6, stop={"min_days": 0, "undetectable_days": 120})
    assert last[PS.T_STOP] == 300.0  # the run restarted after the positive at day 150


def test_loss_of_cmr_is_a_confirmed_positive_and_can_restart():
    seq = [POS, NEG, NEG, NEG, NEG, NEG, NEG]  # stop at day 180
    last, _ = rules(seq + [NEG, POS, NEG, NEG], restart=True)
    assert last[PS.STOPPED] == 1 and last[PS.LOST_CMR] == 0  # an unconfirmed blip
    last, _ = rules(seq + [NEG, POS, POS, NEG], restart=True)
    assert last[PS.LOST_CMR] == 1 and last[PS.T_LOSS] == 240.0  # the first positive
    assert last[PS.RESTARTED] == 1 and last[PS.T_RESTART] == 270.0 and last[PS.DOSE] == Dose.BASE
    last, _ = rules(seq + [NEG, POS, POS, NEG], restart=False)
    assert last[PS.LOST_CMR] == 1 and last[PS.DOSE] == Dose.OFF
    # the result row: days from the stop to the first positive of the confirmed loss
    res_f, res_i = np.empty(N_RF), np.empty(N_RI, dtype=np.int64)
    write_results(last, np.nan, np.zeros(N_STATES), 330.0, 0, np.zeros(N_STATS, dtype=np.int64), res_f, res_i)
    assert res_f[RF.DAYS_STOP_TO_LOSS] == 240.0 - 180.0 and res_f[RF.T_STOP] == 180.0
    assert res_i[RI.LOST_CMR] == 1 and res_i[RI.STOPPED] == 1


def test_stim1_loss_rule_is_loss_of_mmr_or_a_one_log_rise_at_two_successive_samples():
    stop = {"after_days": 60}  # stops at day 60 (visit 2)
    base = [POS, POS, NEG]
    # low-level fluctuating positivity (0.002-0.01 %, never 10x the first positive, never > MMR): no relapse
    low = base + [0.002, 0.005, NEG, 0.01, 0.004, 0.002, NEG, 0.015]
    last, _ = rules(low, stop=stop, escalate=False, loss_rule="stim1")
    assert last[PS.STOPPED] == 1 and last[PS.LOST_CMR] == 0
    assert last[PS.FIRST_POS_VALUE] == 0.002 and last[PS.T_FIRST_POS] == 90.0
    # the same samples under the Hess rule: two consecutive positives are a loss
    last, _ = rules(low, stop=stop, escalate=False)
    assert last[PS.LOST_CMR] == 1 and last[PS.T_LOSS] == 90.0
    # one-log rise at two successive samples: the day of the first of the two
    rise = base + [0.002, 0.03, 0.05]
    last, hist = rules(rise, stop=stop, escalate=False, loss_rule="stim1")
    assert hist[4][PS.LOST_CMR] == 0 and last[PS.LOST_CMR] == 1 and last[PS.T_LOSS] == 120.0
    # a one-log rise not confirmed by the next sample does not count (the run restarts)
    last, _ = rules(base + [0.002, 0.03, 0.004, 0.03], stop=stop, escalate=False, loss_rule="stim1")
    assert last[PS.LOST_CMR] == 0
    # loss of MMR at a single sample is a relapse on its own, on that day
    last, _ = rules(base + [NEG, 0.5], stop=stop, escalate=False, loss_rule="stim1")
    assert last[PS.LOST_CMR] == 1 and last[PS.T_LOSS] == 120.0
    with pytest.raises(Exception, match="loss_rule"):
        Protocol(loss_rule="mmr")


def test_restart_resumes_the_dose_at_stop_and_there_is_no_second_stop():
    # no MMR at day 90 -> escalated; negatives from day 120 (CMR), Hess stop at day 180 on the escalated dose;
    # confirmed loss (positives at 240 and 270) -> restart at 270 on the escalated dose
    seq = [POS] * 4 + [NEG] * 3 + [NEG, POS, POS]
    last, hist = rules(seq, restart=True)
    assert last[PS.T_ESCALATE] == 90.0 and last[PS.T_CMR] == 120.0
    assert last[PS.T_STOP] == 180.0 and last[PS.DOSE_AT_STOP] == Dose.ESCALATED
    assert last[PS.RESTARTED] == 1 and last[PS.T_RESTART] == 270.0 and last[PS.DOSE] == Dose.ESCALATED
    # five more negatives after the restart (a second Hess stop would otherwise fire): the course goes on
    last, hist = rules(seq + [NEG] * 5, restart=True)
    assert last[PS.STOPPED] == 1 and last[PS.T_STOP] == 180.0 and last[PS.DOSE] == Dose.ESCALATED
    # imatinib days are not counted while off drug (days 180-270): 180 before the stop + 150 after the restart
    assert last[PS.DAYS_ON_IM] == 180.0 + 150.0
    assert hist[9][PS.DAYS_ON_IM] == 180.0  # at the restart visit: nothing counted since the stop


def test_escalation_at_the_first_visit_on_or_after_day_90():
    last, hist = rules([POS] * 6, stop="never", visit=28.0)  # visits 0, 28, 56, 84, 112, 140
    assert hist[3][PS.DOSE] == Dose.BASE  # day 84: too early
    assert last[PS.DOSE] == Dose.ESCALATED and last[PS.T_ESCALATE] == 112.0


def test_pcr_detection_matches_poisson_probability():
    rng = np.random.default_rng(3)
    limit = 1e-5
    for ratio in (1e-4, 1e-3, 3e-3):  # percent: 0.1x, 1x, 3x the limit
        u = rng.random(40000)
        pos = np.array([pcr_sample(ratio, 0.0, ui, limit, 0.0) > 0 for ui in u])
        p = float(detection_probability(ratio, limit))
        assert abs(pos.mean() - p) < 4 * np.sqrt(p * (1 - p) / u.size)
    assert pcr_sample(0.0, 0.0, 0.0, limit, 0.45) == 0.0
    assert pcr_sample(10.0, 1.0, 0.5, limit, 0.45) == pytest.approx(10.0 * np.exp(0.45))


@pytest.mark.parametrize("stop,transplant", [({"after_days": 365}, True), ("never", False)])
def test_visit_by_visit_equals_one_continuous_solve(stop, transplant):
    """No noise and certain detection: every measured value is the true ratio at the visit."""
    proto = Protocol(stop=stop, follow_up_days=720, noise_sd_log=0.0, detection_limit=1e-300)
    res = simulate_cohort(CohortSpec(size=6, seed=4, transplant=transplant), proto, rtol=1e-9, atol=1e-9)
    assert np.all(res.columns["solver_status"] == 0)
    for i in range(res.n):
        cont = simulate(res.patient_params(i), y0=res.y0[i], t_out=res.visit_days, schedule=res.dose_schedule(i),
                        variant=res.variant, transplant=transplant, rtol=1e-9, atol=1e-9)
        assert cont.success
        np.testing.assert_allclose(res.measured[i], cont.bcr_abl, rtol=1e-6, atol=1e-12)
        traj = patient_trajectory(res, i, 10.0)
        at_visits = np.isin(traj["time_days"], res.visit_days)
        np.testing.assert_allclose(traj["bcr_abl_percent"][at_visits], res.measured[i], rtol=1e-6, atol=1e-12)
    if stop == "never":
        assert not res.columns["stopped"].any()
    else:
        assert res.columns["stopped"].all() and np.all(res.columns["stop_day"] == 390.0)


def test_identical_patients_without_population_variation():
    res = simulate_cohort(CohortSpec(size=3, seed=1, relapse_mix={"molecular": 1}, relapse_ranges={
        "molecular": [0.1, 0.1]}), Protocol(follow_up_days=360, noise_sd_log=0.0, detection_limit=1e-300),
        population=Population(sd_log={}))
    assert np.all(res.measured[0] == res.measured[1])
