"""The lock-step cohort engine (gvlmodel.clinical.lanes) against the one-patient-at-a-time engine.

Every lane performs the scalar engine's floating-point operations in the same
order, so the results must be *identical* (not merely close) for every
patient, whatever its lane, its neighbours, the block size or the thread count.
"""
from __future__ import annotations

import dataclasses

import numba
import numpy as np
import pytest

from gvlmodel.model import _lane_layout as lay
from gvlmodel.clinical.cohort import CohortSpec, Population, Protocol, _resolve_base, prepare_cohort
from gvlmodel.model.indices import KP, N_RF, N_RI, PP, RF, RI, State, StopRule
from gvlmodel.clinical.lanes import run_cohort_lanes, run_rows_lanes
from gvlmodel.model.parameters import parse_variant
from gvlmodel.clinical.protocol import run_cohort
from gvlmodel.model.solver import MAX_STEPS_REACHED, NON_FINITE


def _inputs(cohort, protocol, max_steps=200_000, variant="H2"):
    return prepare_cohort(cohort, protocol, _resolve_base(None), parse_variant(variant), Population(), 1e-6, 1e-6,
                          1.0, max_steps)


def _run(engine, inp, pp=None, *extra):
    pp = inp.pp if pp is None else pp
    n = inp.kp.shape[0]
    measured = np.empty((n, int(pp[PP.N_VISITS]) + 1))
    res_f = np.empty((n, N_RF))
    res_i = np.empty((n, N_RI), dtype=np.int64)
    engine(inp.kp, inp.y0, inp.effects, pp, inp.eps, inp.uu, measured, res_f, res_i, *extra)
    return measured, res_f, res_i


def _assert_identical(a, b):
    for x, y, name in zip(a, b, ("measured", "res_f", "res_i")):
        assert np.array_equal(x, y, equal_nan=True), f"{name} differs in rows {np.unique(np.argwhere(x != y)[:, 0])}"


SCENARIOS = {
    "hess2005": (CohortSpec(size=203, seed=11), Protocol()),
    "never_800": (CohortSpec(size=61, seed=12), Protocol(stop="never", escalated_dose_mg=800.0)),
    "non_transplanted_course_restart": (
        CohortSpec(size=77, seed=13, transplant=False, start="diagnosis"),
        Protocol(stop={"after_days": 360}, restart=True, follow_up_days=1500.0)),
    "stim_weekly": (CohortSpec(size=29, seed=14), Protocol(stop={"min_days": 300, "undetectable_days": 120},
                                                          visit_interval_days=14.0, follow_up_days=900.0)),
    # visit days that are not exact in binary (30.4 * k), where an extinction step can end a rounding past a visit
    "non_dyadic_visits": (CohortSpec(size=97, seed=15), Protocol(visit_interval_days=30.4, restart=True)),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("block", [16, 64])
def test_lanes_equal_scalar_engine_bit_for_bit(name, block):
    inp = _inputs(*SCENARIOS[name])
    _assert_identical(_run(run_cohort, inp), _run(run_cohort_lanes, inp, None, block))


def test_listed_rows_run_in_place_and_leave_the_others_alone():
    """run_rows_lanes (what run_inputs calls per group, without copies) gives the listed rows exactly the
    scalar engine's results, in any order of the list, and writes no other row."""
    inp = _inputs(*SCENARIOS["hess2005"])
    ref = _run(run_cohort, inp)
    n = inp.kp.shape[0]
    rows = np.arange(n)[::-3][:-1].copy()  # every third row from the last, not the first: unordered, a subset
    m = np.full((n, ref[0].shape[1]), -7.0)
    f = np.full((n, ref[1].shape[1]), -7.0)
    i = np.full((n, ref[2].shape[1]), -7, dtype=np.int64)
    run_rows_lanes(inp.kp, inp.y0, inp.effects, inp.pp, inp.eps, inp.uu, m, f, i, rows, 16)
    others = np.setdiff1d(np.arange(n), rows)
    assert others.size > 0 and (m[others] == -7.0).all() and (f[others] == -7.0).all() and (i[others] == -7).all()
    _assert_identical((m[rows], f[rows], i[rows]), tuple(x[rows] for x in ref))


def test_lanes_cover_events_and_every_stop_rule():
    """The comparison above is not vacuous: extinctions, stops, losses and restarts all occur."""
    seen = {}
    for name in SCENARIOS:
        inp = _inputs(*SCENARIOS[name])
        _, _, ri = _run(run_cohort_lanes, inp, None, 64)
        rule = StopRule(int(inp.pp[PP.STOP_RULE])).name
        seen[rule] = seen.get(rule, 0) + int(ri[:, RI.STOPPED].sum())
        seen["eradicated"] = seen.get("eradicated", 0) + int(ri[:, RI.ERADICATED].sum())
        seen["lost"] = seen.get("lost", 0) + int(ri[:, RI.LOST_CMR].sum())
        seen["restarted"] = seen.get("restarted", 0) + int(ri[:, RI.RESTARTED].sum())
        seen["escalated"] = seen.get("escalated", 0) + int(ri[:, RI.ESCALATED].sum())
    for key in ("HESS2005", "AFTER_DAYS", "STIM", "eradicated", "lost", "restarted", "escalated"):
        assert seen[key] > 0, (key, seen)


def test_solver_failures_are_per_patient_and_identical():
    cohort, protocol = SCENARIOS["hess2005"]
    steps = _run(run_cohort_lanes, _inputs(cohort, protocol), None, 64)[2][:, RI.N_STEPS]
    inp = _inputs(cohort, protocol, max_steps=int(np.median(steps)))  # about half the patients run out
    a = _run(run_cohort, inp)
    b = _run(run_cohort_lanes, inp, None, 16)
    _assert_identical(a, b)
    status = b[2][:, RI.STATUS]
    assert (status == MAX_STEPS_REACHED).any() and (status == 0).any()


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads to compare 1 with 2")
def test_lanes_independent_of_threads_and_position():
    cohort, protocol = SCENARIOS["hess2005"]
    inp = _inputs(cohort, protocol)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _run(run_cohort_lanes, inp, None, 64)
        numba.set_num_threads(2)
        two = _run(run_cohort_lanes, inp, None, 64)
    finally:
        numba.set_num_threads(old)
    _assert_identical(one, two)
    # a patient alone in its engine (other lanes idle) gives the same numbers as among neighbours
    for i in (0, 5, 202):
        single = dataclasses.replace(inp, kp=inp.kp[i:i + 1], y0=inp.y0[i:i + 1], effects=inp.effects[i:i + 1],
                                     eps=inp.eps[i:i + 1], uu=inp.uu[i:i + 1])
        alone = _run(run_cohort_lanes, single, None, 64)
        _assert_identical([x[i:i + 1] for x in one], alone)


def test_workspace_layout_blocks_do_not_overlap():
    blocks = [(lay.OFF_Y, lay.BLOCK), (lay.OFF_YN, lay.BLOCK), (lay.OFF_T, lay.BLOCK),
              (lay.OFF_E5, lay.BLOCK), (lay.OFF_E3, lay.BLOCK), (lay.OFF_INV, lay.BLOCK),
              (lay.OFF_K, lay.N_K * lay.BLOCK), (lay.OFF_P, lay.N_KP * lay.W), (lay.OFF_EFF, lay.W), (lay.OFF_H, lay.W),
              (lay.OFF_HB, lay.BLOCK), (lay.OFF_SQN, lay.BLOCK), (lay.OFF_CK, lay.W), (lay.OFF_ERR, lay.W),
              (lay.OFF_NEG, lay.W), (lay.OFF_LEO, lay.W), (lay.OFF_LEN, lay.W), (lay.OFF_FAC, lay.W)]
    covered = np.zeros(lay.WS_LEN, dtype=int)
    for off, size in blocks:
        covered[off:off + size] += 1
    assert (covered == 1).all()
    assert lay.OFF_F == lay.OFF_K  # f(y) is kept in the first stage's block, by design


def test_rare_paths_equal_scalar_engine():
    """Enrolment below one LSC, no visit after enrolment, and solver failures from non-finite numbers.

    The parameter rows here bypass validation on purpose (a nan rate, a negative
    death rate): the kernels must report a failure per patient, never hang.
    """
    cohort, protocol = SCENARIOS["hess2005"]
    inp = _inputs(dataclasses.replace(cohort, size=40), protocol, max_steps=3000)
    y0 = inp.y0.copy()
    y0[::7, State.D] = 0.1
    y0[::7, State.Q] = 0.2
    y0[::7, State.Y0] = 0.2
    below = dataclasses.replace(inp, y0=y0)
    _assert_identical(_run(run_cohort, below), _run(run_cohort_lanes, below, None, 16))
    assert (_run(run_cohort_lanes, below, None, 16)[1][::7, RF.T_ERADICATED] == 0.0).all()

    pp = inp.pp.copy()
    pp[PP.N_VISITS] = 0
    _assert_identical(_run(run_cohort, inp, pp), _run(run_cohort_lanes, inp, pp, 16))

    kp = inp.kp.copy()
    kp[::3, KP.D3] = -2.0  # mature cells grow without bound: overflow
    kp[1::5, KP.ZIN] = np.nan
    bad = dataclasses.replace(inp, kp=kp)
    a = _run(run_cohort, bad)
    b = _run(run_cohort_lanes, bad, None, 16)
    _assert_identical(a, b)
    status = b[2][:, RI.STATUS]
    assert (status[1::5] == NON_FINITE).all() and (status == 0).any()
    assert (status[::3] == NON_FINITE).all()  # the overflowing rows fail too, not only the nan ones


def test_a_lane_resumes_exactly_at_the_visit_after_an_event_step_rounding_past_it():
    """An extinction step can end a rounding past a visit (``t + h_ev`` with ``h_ev`` up to ``t_visit - t``);
    the scalar engine starts the next interval at the visit day itself, so a lane must too."""
    from gvlmodel.clinical import lanes
    from gvlmodel.clinical.protocol import reset_protocol_state

    inp = _inputs(CohortSpec(size=1, seed=15), Protocol(visit_interval_days=30.4))
    t_visit = 30.4
    lc = np.zeros((lay.W, lanes.N_C))
    li = np.zeros((lay.W, lanes.N_I), dtype=np.int64)
    ws = np.zeros(lay.WS_LEN)
    ps_all = np.zeros((lay.W, lanes.N_PS))
    reset_protocol_state(ps_all[0])
    li[0, lanes.I_PATIENT], li[0, lanes.I_VISIT] = 0, 1
    lc[0, lanes.C_T_END] = t_visit
    lc[0, lanes.C_T] = np.nextafter(t_visit, np.inf)
    measured = np.full((1, int(inp.pp[PP.N_VISITS]) + 1), np.nan)
    lanes._visit(0, lc, li, ws, ps_all, inp.pp, inp.eps, inp.uu, measured, np.zeros((lay.W, lanes.NS)))
    assert lc[0, lanes.C_T] == t_visit and lc[0, lanes.C_T_VISIT] == t_visit and li[0, lanes.I_VISIT] == 2
    assert measured[0, 1] == 0.0  # the visit's sample was taken (an empty marrow reads undetectable)


def test_normal_hierarchy_at_rest_is_detected_exactly():
    """Start states put the normal hierarchy at homeostasis; the engine's clone-only step needs its
    derivatives to be exactly 0.0, and a one-ulp nudge must be seen."""
    from gvlmodel.clinical.lanes import normal_at_rest

    for name in sorted(SCENARIOS):
        inp = _inputs(*SCENARIOS[name])
        work = np.empty(lay.N_NORMAL)
        assert all(normal_at_rest(inp.kp[i], inp.y0[i], work) for i in range(inp.kp.shape[0])), name
    y = inp.y0[0].copy()
    y[State.X2] = np.nextafter(y[State.X2], np.inf)
    assert not normal_at_rest(inp.kp[0], y, work)
    kp = inp.kp[0].copy()
    kp[KP.RX] = np.nan
    assert not normal_at_rest(kp, inp.y0[0], work)


@pytest.mark.parametrize("name", ["hess2005", "non_transplanted_course_restart"])
def test_clone_only_steps_equal_full_steps_bit_for_bit(name):
    """A block takes the clone-only step when all its patients' normal hierarchies are at rest and the full
    step otherwise.  Nudging every fifth patient off rest sends every block through the full step: the
    other patients' results must not change in any bit, and both paths equal the scalar engine."""
    inp = _inputs(*SCENARIOS[name])
    at_rest = _run(run_cohort_lanes, inp, None, 16)
    y0 = inp.y0.copy()
    y0[::5, State.X0] *= 1.001
    nudged = dataclasses.replace(inp, y0=y0)
    full = _run(run_cohort_lanes, nudged, None, 16)
    _assert_identical(_run(run_cohort, nudged), full)
    keep = np.ones(inp.kp.shape[0], dtype=bool)
    keep[::5] = False
    _assert_identical([x[keep] for x in at_rest], [x[keep] for x in full])
    # the nudged patients' normal hierarchies did move (the full step integrated them)
    assert not np.array_equal(at_rest[0][~keep], full[0][~keep], equal_nan=True)


def test_lane_norms_see_a_negative_state_whose_square_underflows():
    """The lock-step engine's negativity sum counts a component of -1e-168 (scaled by 1/atol = 1e6 it
    squares to below the smallest float), in its lane only, so the step is projected as in the scalar solver."""
    from gvlmodel.clinical.lanes import _norms
    from gvlmodel.model.solver import NEG_FLOOR

    ws = np.zeros(lay.WS_LEN)
    ws[lay.OFF_Y:lay.OFF_Y + 2 * lay.BLOCK] = 1.0  # state and proposed state positive
    ws[lay.OFF_H:lay.OFF_H + lay.W] = 1.0
    lane = 3
    ws[lay.OFF_YN + State.Y1 * lay.W + lane] = -1e-168
    _norms(ws, 1e-6, 1e-6)
    neg = ws[lay.OFF_NEG:lay.OFF_NEG + lay.W]
    assert neg[lane] >= NEG_FLOOR
    assert np.all(np.delete(neg, lane) == 0.0)
