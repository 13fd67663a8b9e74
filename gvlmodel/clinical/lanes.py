"""Lock-step cohort engine: ``W`` patients integrated together, vectorised across patients.

The cohort engine of :func:`gvlmodel.clinical.protocol.run_cohort` integrates one
patient at a time; one DOP853 step costs ~480 ns, of which the twelve
right-hand-side calls and the stage sums are scalar code over the states.  Here
``W`` patients (lanes) share one flat workspace (layout in
:mod:`gvlmodel.model._lane_layout`) and every step computes the stages of all lanes
at once: the stage sums and the right-hand side (:func:`gvlmodel.model.model.rhs_strided`,
the same equations) run as SIMD loops over lanes.  Step-size control, the
protocol's visits and rare events (extinction, positivity projection, the
starting step) stay per lane, in scalar code that calls the very routines of
:mod:`gvlmodel.model.solver` and :mod:`gvlmodel.clinical.protocol`.

Each lane carries its own time, step size, controller memory and protocol
state, exactly as :func:`gvlmodel.clinical.protocol.run_patient` does, and every
floating-point operation of a lane is the one the scalar engine performs (no
fast-math: vector and scalar IEEE operations agree bit for bit), so a patient's
results do not depend on its lane, on its neighbours or on the thread count;
``tests/test_lanes.py`` checks that they equal the scalar engine's exactly.
A lane whose patient has finished takes the next patient of its block.

The normal hierarchy ``X0..X3`` is an autonomous block of the model (no other state enters its
equations) and start states put it at homeostasis.  Where that rounded state is an exact
floating-point rest point (its derivatives evaluate to 0.0, as for every shipped parameter set), the full
step would leave it unchanged and add exactly 0.0 to every error sum; a block whose patients all start
so takes steps over the clone and the effectors only (:func:`_run_block`), with the same results bit for
bit and about a quarter less work per step.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ..model._dop853_kernels import dop853_errors_at, dop853_stages_lanes, dop853_stages_lanes_clone
from ..core._jit import jit
from ..model._lane_layout import (BLOCK, CLONE, N_K, N_NORMAL, OFF_CK, OFF_E3, OFF_E5, OFF_EFF, OFF_ERR, OFF_F,
                                  OFF_FAC, OFF_H, OFF_HB, OFF_INV, OFF_K, OFF_LEN, OFF_LEO, OFF_NEG, OFF_P, OFF_SQN, OFF_T,
                                  OFF_Y, OFF_YN, W, WS_LEN)
from ..model.indices import N_KP, N_PS, N_STATES, PP, PS
from ..model.model import lsc_count, normal_rhs_strided, rhs_strided, zero_lsc
from .protocol import enrol, sample_visit, write_results
from ..model.solver import (ERR_OLD_FLOOR, ERROR_EXPONENT, EVENT_RHS, MAX_STEPS_REACHED, MIN_FACTOR, N_INTERP, NEG_FLOOR,
                            N_STAGES, N_STAGES_EXT, N_STATS, NON_FINITE, SAFETY, ST_EXTINCTIONS, ST_REJECTED, ST_RHS,
                            ST_STEPS, STEP_TOO_SMALL, _initial_step, _step_floor, accept_factor, error_norm,
                            extinction_in_step, log2_err_memory)

NS = N_STATES

# per-lane control (float array ``lc[l, C_*]``)
C_T = 0  # current time
C_H = 1  # proposed step size
C_REJECTED = 2  # 1 after a rejected attempt
C_H_TRY = 3  # unclipped step size of the current attempt
C_LAST = 4  # 1 if the attempt is clipped to the interval end
C_H_MIN = 5
C_T_END = 6  # next visit (end of the current interval)
C_T_VISIT = 7  # last visit reached
C_EVENT = 8  # day of extinction (nan if none)
N_C = 9
# per-lane integers ``li[l, I_*]``
I_PATIENT = 0  # row of the patient in this lane (-1: idle)
I_VISIT = 1  # index of the next visit
N_I = 2


@jit
def _load_lane(ws, l, y):
    for i in range(NS):
        y[i] = ws[OFF_Y + i * W + l]


@jit
def _store_lane(ws, off, l, y):
    for i in range(NS):
        ws[off + i * W + l] = y[i]


@jit
def _finish(l, status, lc, li, ws, ps_all, st_all, res_f, res_i, yv):
    """Results of the patient in lane ``l`` (as :func:`gvlmodel.clinical.protocol.run_patient`), lane freed."""
    i = li[l, I_PATIENT]
    write_results(ps_all[l], lc[l, C_EVENT], yv[l], lc[l, C_T_VISIT], status, st_all[l], res_f[i], res_i[i])
    li[l, I_PATIENT] = -1
    ws[OFF_H + l] = 0.0

@jit(inline="always")  # no call: passing its arrays would cost reference counting per visit
def _begin_interval(l, lc, li, ws, ps_all, st_all, kp_all, effects_all, pp, sy, sf, s1, s2):
    """Start of one :func:`gvlmodel.model.solver.integrate_ws` call: from the last visit to the next."""
    i = li[l, I_PATIENT]
    t = lc[l, C_T]
    t_end = li[l, I_VISIT] * pp[PP.VISIT]
    lc[l, C_T_END] = t_end
    e = effects_all[i, int(ps_all[l, PS.DOSE])]
    ws[OFF_EFF + l] = e
    thr = pp[PP.EXTINCTION]
    lsc = lsc_count(ws, OFF_Y, W, l)
    if thr > 0.0 and lsc > 0.0 and lsc < thr:
        zero_lsc(ws, OFF_Y, W, l)
        lc[l, C_EVENT] = t
        st_all[l, ST_EXTINCTIONS] += 1
    ws[OFF_LEO + l] = log2_err_memory(ERR_OLD_FLOOR)
    rhs_strided(ws, OFF_Y, ws, OFF_P, e, ws, OFF_F, W, l)
    st_all[l, ST_RHS] += 1
    if lc[l, C_H] <= 0.0:
        _load_lane(ws, l, sy)
        for k in range(NS):
            sf[k] = ws[OFF_F + k * W + l]
        lc[l, C_H] = _initial_step(sy, sf, kp_all[i], e, pp[PP.RTOL], pp[PP.ATOL], max(t_end - t, _step_floor(t)),
                                   s1, s2)
        st_all[l, ST_RHS] += 1
    lc[l, C_REJECTED] = 0.0


@jit(inline="always")  # no call: passing its arrays would cost reference counting per visit
def _visit(l, lc, li, ws, ps_all, pp, eps, uu, measured, yv):
    """Sample and protocol rules at the visit the lane has just reached."""
    i = li[l, I_PATIENT]
    k = li[l, I_VISIT]
    t_next = lc[l, C_T_END]
    y = yv[l]
    _load_lane(ws, l, y)
    sample_visit(ps_all[l], y, lc[l, C_T_VISIT], t_next, k, pp, eps[i], uu[i], measured[i])
    lc[l, C_T_VISIT] = t_next
    lc[l, C_T] = t_next  # the next interval starts exactly at the visit (an event step may end a rounding past it)
    li[l, I_VISIT] = k + 1

@jit
def _enrol(l, i, lc, li, ws, ps_all, st_all, kp_all, y0_all, pp, eps, uu, measured, yv):
    """Put patient ``i`` into lane ``l``: enrolment sample and rules (visit 0)."""
    li[l, I_PATIENT] = i
    li[l, I_VISIT] = 1
    for k in range(N_KP):
        ws[OFF_P + k * W + l] = kp_all[i, k]
    for k in range(N_STATS):
        st_all[l, k] = 0
    lc[l, C_H] = 0.0
    lc[l, C_T] = 0.0
    lc[l, C_T_VISIT] = 0.0
    lc[l, C_EVENT] = enrol(y0_all[i], yv[l], ps_all[l], pp, eps[i], uu[i], measured[i])
    _store_lane(ws, OFF_Y, l, yv[l])
    _store_lane(ws, OFF_YN, l, yv[l])  # a normal hierarchy at rest keeps these entries (_run_block)

@jit
def _extinction_step(l, lc, ws, st, kp, pp, sy, syn, sf, sK, sF, s1):
    """Extinction inside the accepted step of lane ``l``: the scalar solver's event code on a copy of the lane."""
    for k in range(NS):
        sy[k] = ws[OFF_Y + k * W + l]
        syn[k] = ws[OFF_YN + k * W + l]
        sf[k] = ws[OFF_F + k * W + l]
        for s in range(N_K):
            sK[s, k] = ws[OFF_K + s * BLOCK + k * W + l]
    h_ev = extinction_in_step(sy, syn, sf, sK, sF, s1, lc[l, C_H], kp, ws[OFF_EFF + l], pp[PP.EXTINCTION])
    st[ST_RHS] += EVENT_RHS
    lc[l, C_T] = lc[l, C_T] + h_ev
    lc[l, C_EVENT] = lc[l, C_T]
    st[ST_EXTINCTIONS] += 1
    _store_lane(ws, OFF_Y, l, sy)
    _store_lane(ws, OFF_F, l, sf)

@jit(inline="always")
def _norms_from(ws, rtol, atol, m0):
    """Per-lane finiteness sum, error norm, negativity sum and step-size factor, as the scalar solver
    computes them, from block element ``m0`` on (a constant after inlining: :func:`_norms`,
    :func:`_norms_clone`).

    Forms the error estimates from the stage blocks (:func:`dop853_errors_at`, inlined) and writes their
    squared scaled values to the error blocks.  The sums run over the states in the scalar
    solver's order, with the accumulators in registers; the error norm
    (:func:`gvlmodel.model.solver.error_norm`) and the factor an accepted step would give
    (:func:`gvlmodel.model.solver.accept_factor`, from the controller memory at ``OFF_LEO``) are
    computed for all lanes at once (vector instructions give the same IEEE results), so the per-lane
    accept/reject code only reads them.
    """
    for m in range(m0, BLOCK):
        a = abs(ws[OFF_Y + m])
        v = ws[OFF_YN + m]
        b = abs(v)
        inv = 1.0 / (atol + (a if a >= b else b) * rtol)  # = max(a, b) for the finite steps that count
        ws[OFF_INV + m] = inv
        e5, e3 = dop853_errors_at(ws, m)
        r5 = e5 * inv
        r3 = e3 * inv
        ws[OFF_E5 + m] = r5 * r5
        ws[OFF_E3 + m] = r3 * r3
        ws[OFF_T + m] = v + ws[OFF_K + N_STAGES * BLOCK + m]
        sq = (v * inv) ** 2
        ws[OFF_SQN + m] = max(sq, NEG_FLOOR) if v < 0.0 else 0.0  # adding 0.0 leaves the sum as the scalar solver's
    n = float(NS)
    for l in range(W):
        ck = 0.0
        a5 = 0.0
        a3 = 0.0
        neg = 0.0
        for i in range(NS):  # entries the element loop skipped are 0.0: the workspace starts zeroed
            ck += ws[OFF_T + i * W + l]
            a5 += ws[OFF_E5 + i * W + l]
            a3 += ws[OFF_E3 + i * W + l]
            neg += ws[OFF_SQN + i * W + l]
        ws[OFF_CK + l] = ck
        err = error_norm(ws[OFF_H + l], a5, a3, n)
        ws[OFF_ERR + l] = err
        ws[OFF_NEG + l] = neg
    for l in range(W):
        err = ws[OFF_ERR + l]
        ws[OFF_FAC + l] = accept_factor(err, ws[OFF_LEO + l])
        ws[OFF_LEN + l] = log2_err_memory(err)


@jit
def _norms(ws, rtol, atol):
    """:func:`_norms_from` over all states."""
    _norms_from(ws, rtol, atol, 0)


@jit
def _norms_clone(ws, rtol, atol):
    """:func:`_norms_from` over the clone and the effectors, for a normal hierarchy at rest: its error
    estimates are exactly 0.0 and its values finite and positive, and the entries skipped here stay 0.0
    (the workspace starts zeroed), so the per-lane sums are the same bit for bit."""
    _norms_from(ws, rtol, atol, CLONE)


@jit
def normal_at_rest(kp, y0, work):
    """Whether the normal hierarchy of start state ``y0`` (kernel parameters ``kp``) is at rest: all its
    derivatives are exactly 0.0 in floating point (``work``: scratch of at least ``N_NORMAL``).

    The normal hierarchy is autonomous (:func:`gvlmodel.model.model.normal_rhs_strided` reads neither the
    clone, the effectors nor the drug), so then every Runge-Kutta stage, the dense output and every
    later step leave it exactly where it is.  Start states put it at homeostasis
    (:func:`gvlmodel.model.simulate.fill_start_state`); whether the rounded state is an exact floating-point
    rest point depends on the parameters, hence the test.
    """
    normal_rhs_strided(y0, 0, kp, 0, work, 0, 1, 0)
    for k in range(N_NORMAL):
        if not work[k] == 0.0:
            return False
    return True


@jit
def _refill(l, nxt, stride, hi, rows, lc, li, ws, ps_all, st_all, kp_all, y0_all, effects_all, pp, eps, uu, measured,
            res_f, res_i, yv, sy, sf, s1, s2):
    """Give an idle lane the block's next patient ``rows[nxt]`` (then ``rows[nxt + stride]``, ...; one with no
    visit after enrolment finishes at once); returns the next ``nxt``."""
    while nxt < hi and li[l, I_PATIENT] < 0:
        _enrol(l, rows[nxt], lc, li, ws, ps_all, st_all, kp_all, y0_all, pp, eps, uu, measured, yv)
        nxt += stride
        if int(pp[PP.N_VISITS]) >= 1:
            _begin_interval(l, lc, li, ws, ps_all, st_all, kp_all, effects_all, pp, sy, sf, s1, s2)
        else:
            _finish(l, 0, lc, li, ws, ps_all, st_all, res_f, res_i, yv)
    return nxt


@jit
def _run_block(lo, stride, hi, rows, kp_all, y0_all, effects_all, pp, eps, uu, measured, res_f, res_i):
    """Patients ``rows[lo], rows[lo + stride], ...`` (positions below ``hi``) through the protocol, ``W`` at a time.

    If every patient of the block starts with the normal hierarchy at rest (:func:`normal_at_rest`),
    the steps integrate the clone and the effectors only (:func:`dop853_stages_lanes_clone`): the normal
    hierarchy is an autonomous block whose derivatives are then exactly 0.0, so the full step would
    leave it unchanged and add exactly 0.0 to every error sum.  The results are the same bit for bit
    (``tests/test_lanes.py``); the step costs about a quarter less.
    """
    n_vis = int(pp[PP.N_VISITS])
    rtol = pp[PP.RTOL]
    atol = pp[PP.ATOL]
    thr = pp[PP.EXTINCTION]
    max_steps = int(pp[PP.MAX_STEPS])
    ws = np.zeros(WS_LEN)
    lc = np.zeros((W, N_C))
    li = np.full((W, N_I), -1, dtype=np.int64)
    ps_all = np.zeros((W, N_PS))
    st_all = np.zeros((W, N_STATS), dtype=np.int64)
    yv = np.zeros((W, NS))
    stepping = np.zeros(W, dtype=np.bool_)
    sy = np.empty(NS)
    syn = np.empty(NS)
    sf = np.empty(NS)
    s1 = np.empty(NS)
    s2 = np.empty(NS)
    sK = np.empty((N_STAGES_EXT, NS))
    sF = np.empty((N_INTERP, NS))
    rest = True
    for j in range(lo, hi, stride):
        i = rows[j]
        if not normal_at_rest(kp_all[i], y0_all[i], s1):
            rest = False
            break
    s0 = N_NORMAL if rest else 0  # first state the steps integrate
    # idle lanes compute on a copy of the first patient (finite numbers, results unused)
    first = rows[lo]
    for l in range(W):
        for k in range(N_KP):
            ws[OFF_P + k * W + l] = kp_all[first, k]
        for k in range(NS):
            ws[OFF_Y + k * W + l] = y0_all[first, k]
    nxt = lo
    for l in range(W):
        nxt = _refill(l, nxt, stride, hi, rows, lc, li, ws, ps_all, st_all, kp_all, y0_all, effects_all, pp, eps, uu,
                      measured, res_f, res_i, yv, sy, sf, s1, s2)
    n = float(NS)
    while True:
        # --- per lane: step budget, step-size floor, clip to the next visit ---
        n_stepping = 0
        for l in range(W):
            stepping[l] = False
            ws[OFF_H + l] = 0.0
            if li[l, I_PATIENT] < 0:
                continue
            t = lc[l, C_T]
            h = lc[l, C_H]
            status = 0
            if st_all[l, ST_STEPS] >= max_steps:
                status = MAX_STEPS_REACHED
            else:
                h_min = _step_floor(t)
                lc[l, C_H_MIN] = h_min
                if not h >= h_min:  # as the scalar solver: a nan step is a failure, not an endless loop
                    status = NON_FINITE if np.isnan(h) else STEP_TOO_SMALL
            if status != 0:  # the lane's next patient steps from the next round on
                _finish(l, status, lc, li, ws, ps_all, st_all, res_f, res_i, yv)
                nxt = _refill(l, nxt, stride, hi, rows, lc, li, ws, ps_all, st_all, kp_all, y0_all, effects_all, pp,
                              eps, uu, measured, res_f, res_i, yv, sy, sf, s1, s2)
                n_stepping += 1 if li[l, I_PATIENT] >= 0 else 0  # keep the loop going
                continue
            lc[l, C_H_TRY] = h
            t_stop = lc[l, C_T_END]
            last = t + h >= t_stop
            if last:
                h = t_stop - t
            lc[l, C_LAST] = 1.0 if last else 0.0
            lc[l, C_H] = h
            ws[OFF_H + l] = h
            stepping[l] = True
            n_stepping += 1
        if n_stepping == 0:
            break
        # --- all lanes: one DOP853 step (idle lanes with h = 0) ---
        for k in range(s0, NS):  # K[0] = f(y) is already in place (OFF_F is the K[0] block)
            for l in range(W):
                ws[OFF_HB + k * W + l] = ws[OFF_H + l]
        if rest:
            dop853_stages_lanes_clone(ws)
            _norms_clone(ws, rtol, atol)
        else:
            dop853_stages_lanes(ws)
            _norms(ws, rtol, atol)
        # --- per lane: accept or reject (as gvlmodel.model.solver.integrate_ws), events, visits ---
        for l in range(W):
            if not stepping[l]:
                continue
            i = li[l, I_PATIENT]
            st_all[l, ST_RHS] += N_STAGES
            h = lc[l, C_H]
            t = lc[l, C_T]
            if not np.isfinite(ws[OFF_CK + l]):
                h *= 0.25
                lc[l, C_H] = h
                st_all[l, ST_REJECTED] += 1
                lc[l, C_REJECTED] = 1.0
                if not h >= lc[l, C_H_MIN]:
                    _finish(l, NON_FINITE, lc, li, ws, ps_all, st_all, res_f, res_i, yv)
                    nxt = _refill(l, nxt, stride, hi, rows, lc, li, ws, ps_all, st_all, kp_all, y0_all, effects_all, pp,
                                  eps, uu, measured, res_f, res_i, yv, sy, sf, s1, s2)
                continue
            err = ws[OFF_ERR + l]  # h e5^2 / sqrt(e5^2 + 0.01 e3^2) of the scaled error norms (_norms)
            if not err < 1.0:  # also rejects a nan error (overflowing sums)
                lc[l, C_H] = h * max(MIN_FACTOR, SAFETY * err ** ERROR_EXPONENT)
                st_all[l, ST_REJECTED] += 1
                lc[l, C_REJECTED] = 1.0
                continue
            # non-negativity: reject a step that leaves the orthant by more than the tolerance, else project
            neg = ws[OFF_NEG + l]  # sum of (y_new[k] / scale[k])^2 over negative components (_norms)
            if neg > 0.0:
                if np.sqrt(neg / n) > 1.0:
                    lc[l, C_H] = h * 0.5
                    st_all[l, ST_REJECTED] += 1
                    lc[l, C_REJECTED] = 1.0
                    continue
                for k in range(NS):
                    if ws[OFF_YN + k * W + l] < 0.0:
                        ws[OFF_YN + k * W + l] = 0.0
                rhs_strided(ws, OFF_YN, ws, OFF_P, ws[OFF_EFF + l], ws, OFF_K + N_STAGES * BLOCK, W, l)
                st_all[l, ST_RHS] += 1
            # accepted
            st_all[l, ST_STEPS] += 1
            last = lc[l, C_LAST] != 0.0
            lsc_old = lsc_count(ws, OFF_Y, W, l)
            lsc_new = lsc_count(ws, OFF_YN, W, l)
            if thr > 0.0 and lsc_old >= thr and lsc_new < thr:
                _extinction_step(l, lc, ws, st_all[l], kp_all[i], pp, sy, syn, sf, sK, sF, s1)
            else:
                lc[l, C_T] = lc[l, C_T_END] if last else t + h
                for k in range(s0, NS):
                    ws[OFF_Y + k * W + l] = ws[OFF_YN + k * W + l]
                    ws[OFF_F + k * W + l] = ws[OFF_K + N_STAGES * BLOCK + k * W + l]
                factor = ws[OFF_FAC + l]  # accept_factor(err, controller memory), from _norms
                ws[OFF_LEO + l] = ws[OFF_LEN + l]
                if lc[l, C_REJECTED] != 0.0:
                    factor = min(1.0, factor)
                lc[l, C_REJECTED] = 0.0
                # after a step clipped at a stop, carry the unclipped proposal
                lc[l, C_H] = max(h * factor, lc[l, C_H_TRY]) if last else h * factor
            if lc[l, C_T] >= lc[l, C_T_END]:  # reached the next visit
                _visit(l, lc, li, ws, ps_all, pp, eps, uu, measured, yv)
                if li[l, I_VISIT] <= n_vis:
                    _begin_interval(l, lc, li, ws, ps_all, st_all, kp_all, effects_all, pp, sy, sf, s1, s2)
                else:
                    _finish(l, 0, lc, li, ws, ps_all, st_all, res_f, res_i, yv)
                    nxt = _refill(l, nxt, stride, hi, rows, lc, li, ws, ps_all, st_all, kp_all, y0_all, effects_all, pp,
                                  eps, uu, measured, res_f, res_i, yv, sy, sf, s1, s2)


@jit(parallel=True)
def run_rows_lanes(kp_all, y0_all, effects_all, pp, eps, uu, measured, res_f, res_i, rows, block):
    """:func:`run_cohort_lanes` for the patients (rows of every array) listed in ``rows`` only: their results
    are written to their rows, the other rows are left as they are.

    Lets a caller run groups of a cohort (e.g. under different protocol vectors ``pp``) without copying
    their inputs and results out of the cohort's arrays and back.
    """
    n = rows.shape[0]
    block = max(1, block)
    nb = (n + block - 1) // block
    for b in prange(nb):
        # block b takes positions b, b + nb, ...: cost varies with patient id (relapse types are assigned in id
        # order), so interleaving keeps the threads' shares of the work equal
        _run_block(np.int64(b), np.int64(nb), np.int64(n), rows, kp_all, y0_all, effects_all, pp, eps, uu,
                   measured, res_f, res_i)


@jit
def run_cohort_lanes(kp_all, y0_all, effects_all, pp, eps, uu, measured, res_f, res_i, block):
    """:func:`gvlmodel.clinical.protocol.run_cohort` with the lock-step engine: blocks of about ``block`` patients in parallel.

    Same arguments and results as the scalar engine (bit for bit); ``block``
    patients share one ``W``-lane engine and blocks run in a ``prange``
    (:func:`run_rows_lanes` over every row).
    """
    run_rows_lanes(kp_all, y0_all, effects_all, pp, eps, uu, measured, res_f, res_i,
                   np.arange(kp_all.shape[0]), block)
