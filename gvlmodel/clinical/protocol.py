"""The clinical protocol, compiled: a patient simulated visit by visit with decisions in the loop.

At every visit (day ``k * VISIT``, ``k = 0..N_VISITS``; visit 0 is enrolment) one
blood sample is taken (:func:`gvlmodel.model.measurement.pcr_sample`) and the rules of
:func:`visit_rules` update the patient's protocol state; the model is then
integrated to the next visit at the dose those rules chose.  Rules (Hess et al.,
J Clin Oncol 2005; ``gvlmodel/data/hess2005.toml``):

* **CMR** = three consecutive negative samples after an initial positive; its
  day is that of the first of the three negatives.
* **Escalation**: at the first visit on or after ``ESC_DAY`` (90 days) on the
  base dose, if the sample shows no MMR (> 0.1 %), the dose is raised (600 or
  800 mg/day); decided once.
* **Stop rules** (:class:`~gvlmodel.model.indices.StopRule`), evaluated while on
  imatinib and never stopped before: ``HESS2005`` — at least ``STOP_MIN_DAYS``
  (180) days of imatinib and CMR shown by the last three samples, all negative
  and within ``STOP_WINDOW_DAYS`` (90) days; ``AFTER_DAYS`` — a fixed course of
  ``STOP_MIN_DAYS``; ``STIM`` — at least ``STOP_MIN_DAYS`` of imatinib and
  undetectable for at least ``STOP_WINDOW_DAYS``; ``NEVER``.
* **Loss of CMR** after stopping (:class:`~gvlmodel.model.indices.LossRule`):
  ``CONFIRMED_POSITIVE`` (Hess 2005) — a positive sample confirmed by the next
  sample, its day that of the first positive; ``STIM1`` (Mahon et al., Lancet
  Oncol 2010) — loss of MMR at one sample (its day), or a positive confirmed by
  a one-log rise over the first positive after the stop at two successive
  samples (the day of the first of the two), so low-level fluctuating
  positivity is not a relapse.  With ``RESTART`` imatinib resumes at the
  confirming visit, at the dose taken before the stop.  There is no second
  stop.

The same :func:`visit_rules` serve the ODE-driven engine (:func:`run_patient`,
:func:`run_cohort`) and rule tests on hand-built sample sequences
(:func:`run_rules`), so the rules are written once.  Kernels draw no random
numbers: ``eps`` (normal) and ``uu`` (uniform) per visit come from the caller.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ..core._jit import jit
from ..model.indices import N_PS, N_RF, N_STATES, PP, PS, RF, RI, Dose, LossRule, State, StopRule
from ..model.measurement import bcr_abl_of_state, pcr_sample
from ..model.model import lsc_count, zero_lsc
from ..model.solver import N_STATS, ST_RHS, ST_STEPS, integrate_ws, new_workspace

_NEVER = int(StopRule.NEVER)
_HESS = int(StopRule.HESS2005)
_AFTER = int(StopRule.AFTER_DAYS)
_STIM = int(StopRule.STIM)
_LOSS_STIM1 = int(LossRule.STIM1)
_OFF = float(Dose.OFF)
_BASE = float(Dose.BASE)
_ESC = float(Dose.ESCALATED)
_Z = int(State.Z)


@jit
def reset_protocol_state(ps):
    """Enrolment: base dose, no samples yet, all event days ``nan``."""
    for i in range(N_PS):
        ps[i] = 0.0
    ps[PS.DOSE] = _BASE
    ps[PS.DOSE_AT_STOP] = _BASE
    for k in (PS.NEG_RUN_START, PS.NEG_T1, PS.NEG_T2, PS.NEG_T3, PS.T_CMR, PS.T_ESCALATE, PS.T_STOP,
              PS.DAYS_ON_IM_AT_STOP, PS.T_FIRST_POS, PS.T_LOSS, PS.T_RESTART, PS.FIRST_POS_VALUE,
              PS.T_RISE_START):
        ps[k] = np.nan


@jit
def _confirmed(ps, run, run_start, qualifies, t):
    """A qualifying sample confirmed by the next one: count the run in ``ps[run]`` (its first day in
    ``ps[run_start]``; a non-qualifying sample resets it); ``(True, first day)`` at the second."""
    if not qualifies:
        ps[run] = 0.0
        return False, np.nan
    ps[run] += 1.0
    if ps[run] == 1.0:
        ps[run_start] = t
    return ps[run] >= 2.0, ps[run_start]


@jit
def visit_rules(ps, t, measured, pp):
    """Update protocol state ``ps`` with the sample ``measured`` (%, 0 = negative) taken on day ``t``.

    ``ps[PS.DAYS_ON_IM]`` must already count imatinib days up to ``t``.  The
    dose for the next interval is ``ps[PS.DOSE]`` on return.
    """
    positive = measured > 0.0
    # --- sample bookkeeping ---
    if positive:
        ps[PS.EVER_POSITIVE] = 1.0
        ps[PS.NEG_RUN] = 0.0
    else:
        if ps[PS.NEG_RUN] == 0.0:
            ps[PS.NEG_RUN_START] = t
        ps[PS.NEG_RUN] += 1.0
        ps[PS.NEG_T1] = ps[PS.NEG_T2]
        ps[PS.NEG_T2] = ps[PS.NEG_T3]
        ps[PS.NEG_T3] = t
    # --- CMR: three consecutive negatives after an initial positive ---
    if ps[PS.REACHED_CMR] == 0.0 and ps[PS.EVER_POSITIVE] == 1.0 and ps[PS.NEG_RUN] >= 3.0:
        ps[PS.REACHED_CMR] = 1.0
        ps[PS.T_CMR] = ps[PS.NEG_T1]
    # --- after stopping: loss of the response under the loss rule, optional restart ---
    if ps[PS.STOPPED] == 1.0 and ps[PS.LOST_CMR] == 0.0 and t > ps[PS.T_STOP]:
        lost = False
        t_loss = np.nan
        if int(pp[PP.LOSS_RULE]) == _LOSS_STIM1:
            if positive and np.isnan(ps[PS.FIRST_POS_VALUE]):
                ps[PS.FIRST_POS_VALUE] = measured
                ps[PS.T_FIRST_POS] = t
            if measured > pp[PP.MMR_LEVEL]:
                lost = True
                t_loss = t
            else:
                rise = positive and t > ps[PS.T_FIRST_POS] and measured >= 10.0 * ps[PS.FIRST_POS_VALUE]
                lost, t_loss = _confirmed(ps, PS.RISE_RUN, PS.T_RISE_START, rise, t)
        else:
            lost, t_loss = _confirmed(ps, PS.POS_RUN, PS.T_FIRST_POS, positive, t)
        if lost:
            ps[PS.LOST_CMR] = 1.0
            ps[PS.T_LOSS] = t_loss
            if pp[PP.RESTART] != 0.0:
                ps[PS.DOSE] = ps[PS.DOSE_AT_STOP]
                ps[PS.RESTARTED] = 1.0
                ps[PS.T_RESTART] = t
    # --- escalation at the first visit on or after ESC_DAY, if no MMR ---
    if (pp[PP.ESCALATE] != 0.0 and ps[PS.ESCALATION_DONE] == 0.0 and ps[PS.DOSE] == _BASE
            and ps[PS.STOPPED] == 0.0 and t >= pp[PP.ESC_DAY]):
        ps[PS.ESCALATION_DONE] = 1.0
        if measured > pp[PP.MMR_LEVEL]:
            ps[PS.DOSE] = _ESC
            ps[PS.T_ESCALATE] = t
    # --- stop rule ---
    if ps[PS.STOPPED] == 0.0 and ps[PS.DOSE] != _OFF:
        rule = int(pp[PP.STOP_RULE])
        on = ps[PS.DAYS_ON_IM]
        stop = False
        if rule == _HESS:
            stop = (on >= pp[PP.STOP_MIN_DAYS] and ps[PS.REACHED_CMR] == 1.0 and ps[PS.NEG_RUN] >= 3.0
                    and ps[PS.NEG_T3] - ps[PS.NEG_T1] <= pp[PP.STOP_WINDOW_DAYS])
        elif rule == _AFTER:
            stop = on >= pp[PP.STOP_MIN_DAYS]
        elif rule == _STIM:
            stop = (on >= pp[PP.STOP_MIN_DAYS] and ps[PS.NEG_RUN] >= 1.0
                    and t - ps[PS.NEG_RUN_START] >= pp[PP.STOP_WINDOW_DAYS])
        if stop:
            ps[PS.STOPPED] = 1.0
            ps[PS.T_STOP] = t
            ps[PS.DAYS_ON_IM_AT_STOP] = on
            ps[PS.DOSE_AT_STOP] = ps[PS.DOSE]
            ps[PS.DOSE] = _OFF


@jit
def run_rules(times, measured, pp, history):
    """Apply the rules to a hand-built sample sequence (no ODE); ``history[k]`` = state after visit k."""
    ps = np.empty(N_PS)
    reset_protocol_state(ps)
    for k in range(times.shape[0]):
        if k > 0 and ps[PS.DOSE] != _OFF:
            ps[PS.DAYS_ON_IM] += times[k] - times[k - 1]
        visit_rules(ps, times[k], measured[k], pp)
        for j in range(N_PS):
            history[k, j] = ps[j]


@jit
def enrol(y0, y, ps, pp, eps, uu, measured):
    """Enrolment (visit 0): start state into ``y`` (a clone below the extinction level is extinct),
    fresh protocol state, the first sample.  Returns the day of extinction (0 or ``nan``)."""
    for i in range(N_STATES):
        y[i] = y0[i]
    for k in range(measured.shape[0]):
        measured[k] = np.nan
    reset_protocol_state(ps)
    event = np.nan
    thr = pp[PP.EXTINCTION]
    if thr > 0.0 and 0.0 < lsc_count(y, 0, 1, 0) < thr:  # below one LSC at enrolment
        zero_lsc(y, 0, 1, 0)
        event = 0.0
    sample_visit(ps, y, 0.0, 0.0, 0, pp, eps, uu, measured)
    return event


@jit(inline="always")  # inlined into the engines: no reference counting of its arrays per visit
def sample_visit(ps, y, t_prev, t, k, pp, eps, uu, measured):
    """Visit ``k`` on day ``t`` (the previous one on ``t_prev``): imatinib days, the PCR sample of
    state ``y`` and the protocol rules."""
    if ps[PS.DOSE] != _OFF:
        ps[PS.DAYS_ON_IM] += t - t_prev
    m = pcr_sample(bcr_abl_of_state(y), eps[k], uu[k], pp[PP.DETECTION_LIMIT], pp[PP.NOISE_SD])
    measured[k] = m
    visit_rules(ps, t, m, pp)


@jit
def write_results(ps, t_eradicated, y, t_reached, status, stats, res_f, res_i):
    """A patient's result rows from its protocol state, extinction day, state at the last visit
    reached (``y``, day ``t_reached``), solver status and counters."""
    for i in range(N_RF):
        res_f[i] = np.nan
    res_f[RF.DAYS_TO_CMR] = ps[PS.T_CMR]
    res_f[RF.DAYS_ON_IM_AT_STOP] = ps[PS.DAYS_ON_IM_AT_STOP]
    res_f[RF.T_STOP] = ps[PS.T_STOP]
    res_f[RF.DAYS_STOP_TO_LOSS] = ps[PS.T_LOSS] - ps[PS.T_STOP]
    res_f[RF.T_ESCALATE] = ps[PS.T_ESCALATE]
    res_f[RF.T_RESTART] = ps[PS.T_RESTART]
    res_f[RF.T_ERADICATED] = t_eradicated
    res_f[RF.FINAL_BCR_ABL] = bcr_abl_of_state(y)
    res_f[RF.FINAL_LSC] = lsc_count(y, 0, 1, 0)
    res_f[RF.FINAL_EFFECTORS] = y[_Z]
    res_f[RF.T_REACHED] = t_reached
    res_i[RI.REACHED_CMR] = int(ps[PS.REACHED_CMR])
    res_i[RI.STOPPED] = int(ps[PS.STOPPED])
    res_i[RI.LOST_CMR] = int(ps[PS.LOST_CMR])
    res_i[RI.ERADICATED] = 0 if np.isnan(t_eradicated) else 1
    res_i[RI.ESCALATED] = 0 if np.isnan(ps[PS.T_ESCALATE]) else 1
    res_i[RI.RESTARTED] = int(ps[PS.RESTARTED])
    res_i[RI.STATUS] = status
    res_i[RI.N_STEPS] = stats[ST_STEPS]
    res_i[RI.N_RHS] = stats[ST_RHS]


@jit
def run_patient(kp, y0, effects, pp, eps, uu, measured, ws, ps, res_f, res_i):
    """One patient through the protocol; fills ``measured`` (per visit, %), ``res_f`` and ``res_i``.

    ``effects`` (3,): imatinib effect of each :class:`~gvlmodel.model.indices.Dose`
    level for this patient.  Solver failure stops the patient: ``RI.STATUS``
    holds the code and ``RF.T_REACHED`` the last visit reached.
    """
    n = N_STATES
    n_vis = int(pp[PP.N_VISITS])
    visit = pp[PP.VISIT]
    y = np.empty(n)
    y_out = np.empty((1, n))
    seg = np.empty(2)
    eff = np.empty(1)
    t_out = np.empty(1)
    stats = np.zeros(N_STATS, dtype=np.int64)
    events = np.full(1, np.nan)
    h_io = np.zeros(1)
    events[0] = enrol(y0, y, ps, pp, eps, uu, measured)
    t = 0.0
    status = 0
    for k in range(1, n_vis + 1):
        t_next = k * visit
        seg[0] = t
        seg[1] = t_next
        t_out[0] = t_next
        eff[0] = effects[int(ps[PS.DOSE])]
        status = integrate_ws(y, kp, seg, eff, t_out, pp[PP.RTOL], pp[PP.ATOL], int(pp[PP.MAX_STEPS]),
                              pp[PP.EXTINCTION], y_out, stats, events, ws, h_io)
        if status != 0:
            break
        for i in range(n):
            y[i] = y_out[0, i]
        sample_visit(ps, y, t, t_next, k, pp, eps, uu, measured)
        t = t_next
    write_results(ps, events[0], y, t, status, stats, res_f, res_i)


@jit(parallel=True)
def run_cohort(kp_all, y0_all, effects_all, pp, eps, uu, measured, res_f, res_i):
    """:func:`run_patient` for every row, in parallel (``prange``).

    Each patient reads only its own rows (parameters, start, random numbers)
    and writes only its own result rows, so results do not depend on the
    number of threads or on how patients are scheduled.
    """
    n = kp_all.shape[0]
    for i in prange(n):
        ws = new_workspace()
        ps = np.empty(N_PS)
        run_patient(kp_all[i], y0_all[i], effects_all[i], pp, eps[i], uu[i], measured[i], ws, ps,
                    res_f[i], res_i[i])
