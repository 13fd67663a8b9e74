"""Compiled, adaptive, error-controlled integrator for the model (nopython mode).

Method: the explicit Dormand-Prince 8(5,3) pair (DOP853; Hairer, Norsett &
Wanner, *Solving ODEs I*, §II.10) with its 7th-order dense output.  The Butcher
tableau is SciPy's: the stage and error sums are generated from it as
straight-line code (``_dop853_kernels.py`` by ``_dop853_codegen.py``), the dense
output reads it at import time, so no coefficient is retyped by hand.  The
error norm follows SciPy's ``DOP853`` so that both solvers mean the same thing
by ``rtol``/``atol``.  Step-size control is Gustafsson's PI controller in
Hairer's form (``dop853.f``/``dopri5.f``: ``fac = err**-(1/8 - 0.2 beta) *
err_old**beta``, beta = 0.08): the course is largely stability-bound by the
-1/day mature-cell decay, where the plain I-controller oscillates (measured:
120 rejected of 436 attempted steps; with PI control 13 of 338).  The factor is
evaluated as ``2**(...)`` from ``log2`` of the error norms by bit manipulation
and short series (:func:`accept_factor`, relative error < 1e-10) instead of
libm's ``pow``: the same bits in scalar and vector code, so the lock-step cohort
engine computes it for all its lanes at once and still equals the one-patient
engine bit for bit.

Why an explicit pair (measured by ``benchmarks/stiffness.py``; benchmarks/README.md,
"Other benchmarks"): along a 5-year Hess course the Jacobian's eigenvalues reach
-1.54/day (mature-cell turnover plus immune kill) while the slowest decay is
0.0002/day, a stiffness ratio of ~10^3 (median 835).  At rtol 1e-6 DOP853 needs
~310 steps, fewer than SciPy's Radau (359, with the exact Jacobian), BDF (502),
LSODA (592) or a 4th-order Rosenbrock method (Kaps-Rentrop/Shampine, 484 steps,
each with a Jacobian and an LU factorisation): at these tolerances the
8th-order pair's accuracy outweighs its stability bound (|h lambda| <~ 6).  A log-transformed state
was rejected: it does not change the eigenvalues (the stiffness is the same),
an L-stable Radau on it still needs 128 steps at 1e-4 and 362 at 1e-6 (the
transients after the stop and during effector expansion), and it cannot
represent extinct compartments (exactly 0).  Positivity: the state space's
boundary is invariant for the equations; a step that leaves the positive orthant
by more than the tolerance is rejected, and smaller excursions are projected to 0.

Events and restarts: the course is a sequence of segments with constant
imatinib effect; each segment boundary is a hard stop (the right-hand side
jumps there).  Output times are hard stops too: DOP853's dense output is not
error-controlled, and on steps near the stability bound it was measured
~2e4 tolerance units off in the stiff mature-cell compartment (SciPy's DOP853
interpolant shows the same), whereas step-end values are within a few units.
Because the pair is FSAL, a stop costs only the shortened step (~4% more steps
for monthly outputs over 5 years).  Extinction - fewer than ``threshold`` leukemic stem cells
(``D + Q + Y0 + R0``, :func:`gvlmodel.model.model.lsc_count`) - is located by bisection on the dense
output, all four LSC states are set to exactly zero there, and integration restarts.  The crossing is detected
at step ends, so a dip below the threshold that recovers within one step (a few
days) would be missed.  Re-solved on a quarter-day grid, no such dip occurred in
4,000 Hess-protocol patients of the fitted H2 set (``tests/test_properties.py``
checks 200 of them).

Failures are data: the kernel returns a status code and never raises.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir as llvm_ir
from numba.core import types
from numba.core.extending import intrinsic
from . import _dop853_kernels as _dop
from ._dop853_kernels import dop853_errors, dop853_stages
from ..core._jit import jit
from .indices import N_STATES
from .model import lsc_count, rhs, zero_lsc

# tableau (module-level arrays are frozen into the compiled code as constants)
_NS = _dop.N_STAGES  # 12
A = np.ascontiguousarray(_dop.A, dtype=np.float64)
D = np.ascontiguousarray(_dop.D, dtype=np.float64)
N_STAGES = _NS
N_STAGES_EXT = _dop.N_STAGES_EXTENDED  # 16
N_INTERP = _dop.INTERPOLATOR_POWER  # 7

SAFETY = 0.9
MIN_FACTOR = 0.2
MAX_FACTOR = 10.0
ERROR_EXPONENT = -1.0 / 8.0
BETA = 0.08
PI_EXPONENT = -(1.0 / 8.0 - 0.2 * BETA)
ERR_OLD_FLOOR = 1e-4  # the controller's memory of the last accepted error norm is at least this
#: least contribution of a negative component to the negativity sum (the smallest normal float): a negative
#: state so small that its squared scaled value underflows to 0.0 (e.g. -1e-168 / 1e-6) must still be seen
#: and projected; any other contribution is unchanged
NEG_FLOOR = float(np.finfo(np.float64).tiny)

# status codes (see gvlmodel.model.simulate.STATUS_MESSAGES)
SUCCESS = 0
MAX_STEPS_REACHED = 1
STEP_TOO_SMALL = 2
NON_FINITE = 3

# counters in the ``stats`` array
ST_STEPS = 0
ST_REJECTED = 1
ST_RHS = 2
ST_EXTINCTIONS = 3
N_STATS = 4

NS = N_STATES  # compile-time trip count: lets LLVM unroll/vectorise state loops


@jit
def _stage_states(y, K, s, h, out):
    """``out = y + h * sum_j A[s, j] K[j]`` (inner loop over states: independent chains)."""
    n = NS
    for i in range(n):
        out[i] = 0.0
    for j in range(s):
        a = A[s, j]
        if a != 0.0:
            for i in range(n):
                out[i] += a * K[j, i]
    for i in range(n):
        out[i] = y[i] + h * out[i]


@intrinsic
def _float_bits(typingctx, x):
    """The IEEE-754 bits of a float64 as an int64 (a bit cast, no conversion)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _bits_float(typingctx, b):
    """The float64 whose IEEE-754 bits are the int64 ``b``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_ir.DoubleType())

    return types.float64(types.int64), codegen


_SQRT2 = 1.4142135623730951
_INV_LN2 = 1.4426950408889634
_LN2 = 0.6931471805599453
_TINY_ERR = 1e-300  # below this any error norm gives the largest step factor
_TWO52_BIAS = 4503599627371519.0  # 2**52 + 1023: float <-> biased exponent by bit casts (no int64 conversion)


@jit(inline="always")
def _log2(x):
    """``log2(x)`` for a positive normal ``x`` (absolute error < 1e-10), from the bits and a series.

    ``x = 2**e m`` with ``m`` in ``[sqrt(1/2), sqrt(2))``; ``ln m = 2 atanh(s)``, ``s = (m - 1)/(m + 1)``,
    ``|s| < 0.172``, summed to ``s**11``.  Only IEEE operations and bit casts, without branches or
    int64/float conversions (which AVX2 lacks): the same bits in scalar and vector code, so the
    one-patient and the lock-step engines agree exactly, and a loop over lanes vectorises (libm's
    ``pow``, used before, does neither and cost ~10 % of a cohort run).
    """
    b = _float_bits(x)
    m = _bits_float((b & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)  # mantissa in [1, 2)
    big = m > _SQRT2
    m = m * (1.0 - 0.5 * big)  # exact: m or m / 2
    e = (_bits_float((b >> 52) | 0x4330000000000000) - _TWO52_BIAS) + big  # exponent, exact
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    ln_m = s * (2.0 + s2 * (2.0 / 3.0 + s2 * (0.4 + s2 * (2.0 / 7.0 + s2 * (2.0 / 9.0 + s2 * (2.0 / 11.0))))))
    return e + ln_m * _INV_LN2


@jit(inline="always")
def _exp2(y):
    """``2**y`` for ``y`` in ``[-1000, 1000]`` (relative error < 1e-11): ``2**n`` by bits times a
    Taylor series of ``exp`` on ``[-ln2/2, ln2/2]`` (see :func:`_log2` for why not libm)."""
    n = np.floor(y)
    r = (y - n - 0.5) * _LN2
    p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (
        1.0 / 720.0 + r * (1.0 / 5040.0 + r * (1.0 / 40320.0 + r * (1.0 / 362880.0)))))))))
    two_n = _bits_float(_float_bits(n + _TWO52_BIAS) << 52)  # 2**n: n + 1023 sits in the low bits
    return p * _SQRT2 * two_n


@jit(inline="always")
def error_norm(h, acc5, acc3, n):
    """SciPy's DOP853 error measure from the sums of squared scaled 5th- and 3rd-order errors:
    ``h e5**2 / sqrt(e5**2 + 0.01 e3**2)`` with ``e5**2 = acc5 / n``, ``e3**2 = acc3 / n`` (0 if both are 0)."""
    a5 = acc5 / n
    a3 = acc3 / n
    den = np.sqrt(a5 + 0.01 * a3)
    return 0.0 if den == 0.0 else h * a5 / den


@jit(inline="always")
def log2_err_memory(err):
    """The PI controller's memory of an accepted step: ``log2(max(err, ERR_OLD_FLOOR))``."""
    return _log2(max(err, ERR_OLD_FLOOR))


@jit(inline="always")
def accept_factor(err, log2_err_old):
    """Step-size factor after an accepted step (``err < 1``): Gustafsson's PI controller in Hairer's
    form, ``min(MAX_FACTOR, SAFETY err**PI_EXPONENT err_old**BETA)`` (``MAX_FACTOR`` if ``err`` is 0),
    evaluated as ``2**(PI_EXPONENT log2 err + BETA log2 err_old)`` (:func:`_log2`, :func:`_exp2`;
    relative error < 1e-10).  Branch-free, so the lock-step engine computes it for all lanes at once."""
    y = PI_EXPONENT * _log2(min(max(err, _TINY_ERR), 1.0)) + BETA * log2_err_old
    f = min(MAX_FACTOR, SAFETY * _exp2(min(y, 4.0)))  # 0.9 * 2**4 > MAX_FACTOR
    return MAX_FACTOR if err == 0.0 else f


@jit
def _step_floor(t):
    """Smallest step allowed at time ``t``: 10 ulp of ``t`` (a shorter step would not advance ``t`` reliably).

    ``nextafter(t, inf)`` is the float whose bits are one more than ``t``'s for ``0 <= t < inf`` (``+0.0``
    included), so that case is a bit cast instead of a libm call (the same value; called once per step).
    """
    b = _float_bits(t)
    if b >= 0 and t < np.inf:
        return 10.0 * (_bits_float(b + 1) - t)
    return 10.0 * (np.nextafter(t, np.inf) - t)


@jit
def _initial_step(y, f0, kp, e, rtol, atol, interval, work, f1):
    """Hairer's starting-step heuristic (as SciPy's ``select_initial_step``)."""
    n = y.shape[0]
    d0 = 0.0
    d1 = 0.0
    for i in range(n):
        sc = atol + abs(y[i]) * rtol
        d0 += (y[i] / sc) ** 2
        d1 += (f0[i] / sc) ** 2
    d0 = np.sqrt(d0 / n)
    d1 = np.sqrt(d1 / n)
    if d0 < 1e-5 or d1 < 1e-5:
        h0 = 1e-6
    else:
        h0 = 0.01 * d0 / d1
    h0 = min(h0, interval)
    for i in range(n):
        work[i] = y[i] + h0 * f0[i]
    rhs(work, kp, e, f1)
    d2 = 0.0
    for i in range(n):
        sc = atol + abs(y[i]) * rtol
        d2 += ((f1[i] - f0[i]) / sc) ** 2
    d2 = np.sqrt(d2 / n) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / 8.0)
    return min(100.0 * h0, h1, interval)


@jit
def _dense_coefficients(y_old, y_new, f_old, f_new, K, h, kp, e, F, tmp):
    """Fill the 7 interpolation coefficient rows ``F`` (3 extra stages)."""
    n = NS
    for s in range(N_STAGES + 1, N_STAGES_EXT):
        _stage_states(y_old, K, s, h, tmp)
        rhs(tmp, kp, e, K[s])
    for i in range(n):
        dy = y_new[i] - y_old[i]
        F[0, i] = dy
        F[1, i] = h * f_old[i] - dy
        F[2, i] = 2.0 * dy - h * (f_new[i] + f_old[i])
    for r in range(N_INTERP - 3):
        for i in range(n):
            F[3 + r, i] = 0.0
        for s in range(N_STAGES_EXT):
            d = D[r, s]
            if d != 0.0:
                for i in range(n):
                    F[3 + r, i] += d * K[s, i]
        for i in range(n):
            F[3 + r, i] *= h


@jit
def _dense_eval(F, y_old, x, out):
    """Evaluate the dense output at fraction ``x`` of the step (``out`` must not alias ``y_old``)."""
    n = y_old.shape[0]
    for i in range(n):
        out[i] = 0.0
    for k in range(N_INTERP):
        row = N_INTERP - 1 - k
        for i in range(n):
            out[i] += F[row, i]
            if k % 2 == 0:
                out[i] *= x
            else:
                out[i] *= 1.0 - x
    for i in range(n):
        out[i] += y_old[i]
        if out[i] < 0.0:  # the interpolant may undershoot between non-negative nodes
            out[i] = 0.0


@jit
def _lsc(y):
    return lsc_count(y, 0, 1, 0)


#: right-hand-side calls of :func:`extinction_in_step` (3 extra dense stages, the re-step, f at the crossing)
EVENT_RHS = (N_STAGES_EXT - N_STAGES - 1) + (N_STAGES - 1) + 1


@jit
def extinction_in_step(y, y_new, f, K, F, tmp, h, kp, e, threshold):
    """The LSC count crossed ``threshold`` inside the accepted step ``y -> y_new`` (length ``h``).

    The crossing is located by bisection on the dense output; the state there
    comes from a fresh, shorter (hence accurate) step, because the interpolant
    is not error-controlled for stiff states.  On return ``y`` holds that state
    with every LSC compartment (``Q``, ``Y0``, ``R0``) exactly zero and ``f = f(y)``; ``K`` and
    ``y_new`` are overwritten.  Returns the time from the step's start to the
    crossing.  Shared by :func:`integrate_ws` and the lock-step engine.
    """
    _dense_coefficients(y, y_new, f, K[N_STAGES], K, h, kp, e, F, tmp)
    lo = 0.0
    hi = 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        _dense_eval(F, y, mid, tmp)
        if _lsc(tmp) < threshold:
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-14:
            break
    h_ev = hi * h
    dop853_stages(y, K, h_ev, kp, e, tmp, y_new)
    for i in range(y.shape[0]):
        y[i] = max(y_new[i], 0.0)
    zero_lsc(y, 0, 1, 0)
    rhs(y, kp, e, f)
    return h_ev


N_WORK_ROWS = N_STAGES_EXT + N_INTERP + 7  # K (16) | F (7) | y, y_new, f, tmp, inv_scale, err5, err3


@jit
def new_workspace():
    """Scratch memory for :func:`integrate_ws` (allocate once, reuse for many solves)."""
    return np.empty((N_WORK_ROWS, NS))


@jit
def integrate(y0, kp, seg_bounds, seg_effect, t_out, rtol, atol, max_steps, threshold, y_out, stats, events):
    """Integrate the model over constant-effect segments; fill ``y_out``.

    Parameters (all arrays preallocated by the caller):
    ``y0`` (n,) initial state at ``seg_bounds[0]``; ``kp`` kernel parameters;
    ``seg_bounds`` (m+1,) increasing segment edges (days); ``seg_effect`` (m,)
    imatinib effect on each segment; ``t_out`` (k,) sorted output times within
    ``[seg_bounds[0], seg_bounds[-1]]``; ``y_out`` (k, n) receives the states;
    ``stats`` (4,) int64 counters; ``events`` (1,) receives the extinction time
    (``nan`` if none).  ``threshold`` is the extinction level in LSCs (<= 0
    disables the event).  Returns a status code (``SUCCESS`` etc.); on failure
    unreached rows of ``y_out`` are ``nan``.
    """
    for i in range(N_STATS):
        stats[i] = 0
    events[0] = np.nan
    h_io = np.zeros(1)
    return integrate_ws(y0, kp, seg_bounds, seg_effect, t_out, rtol, atol, max_steps, threshold, y_out, stats,
                        events, new_workspace(), h_io)


@jit
def integrate_ws(y0, kp, seg_bounds, seg_effect, t_out, rtol, atol, max_steps, threshold, y_out, stats, events,
                 ws, h_io):
    """:func:`integrate` on caller-owned scratch memory, for solves chained in a loop.

    ``ws`` from :func:`new_workspace`; ``h_io[0]`` is the first step to try
    (<= 0: Hairer's starting-step heuristic) and receives the step proposed for
    a continuation.  ``stats`` accumulate and ``events[0]`` is written only if an
    extinction occurs, so counts and the event carry over a chain of calls.
    """
    n = NS
    n_out = t_out.shape[0]
    n_seg = seg_effect.shape[0]
    K = ws[0:N_STAGES_EXT]
    F = ws[N_STAGES_EXT:N_STAGES_EXT + N_INTERP]
    r0 = N_STAGES_EXT + N_INTERP
    y = ws[r0]
    y_new = ws[r0 + 1]
    f = ws[r0 + 2]
    tmp = ws[r0 + 3]
    inv_scale = ws[r0 + 4]  # 1 / (atol + rtol |y|)
    err5 = ws[r0 + 5]
    err3 = ws[r0 + 6]
    for i in range(n):
        y[i] = y0[i]
    for r in range(n_out):
        for i in range(n):
            y_out[r, i] = np.nan

    t = seg_bounds[0]
    if threshold > 0.0 and _lsc(y) > 0.0 and _lsc(y) < threshold:
        zero_lsc(y, 0, 1, 0)
        events[0] = t
        stats[ST_EXTINCTIONS] += 1
    k_out = 0
    while k_out < n_out and t_out[k_out] <= t:
        for i in range(n):
            y_out[k_out, i] = y[i]
        k_out += 1

    h = h_io[0]
    log2_err_old = log2_err_memory(ERR_OLD_FLOOR)
    for seg in range(n_seg):
        e = seg_effect[seg]
        t_end = seg_bounds[seg + 1]
        rhs(y, kp, e, f)
        stats[ST_RHS] += 1
        if h <= 0.0:
            # a first segment shorter than the step floor (a dose change a few ulp after the start, as
            # 0.1 + 0.2 after 0.3) still gets a step at the floor, which the stop then clips
            h = _initial_step(y, f, kp, e, rtol, atol, max(t_end - t, _step_floor(t)), tmp, K[1])
            stats[ST_RHS] += 1
        rejected = False
        while t < t_end:
            if stats[ST_STEPS] >= max_steps:
                return MAX_STEPS_REACHED
            h_min = _step_floor(t)
            if not h >= h_min:  # also catches a nan step (non-finite parameters), which would loop forever
                return NON_FINITE if np.isnan(h) else STEP_TOO_SMALL
            h_try = h
            # hard stop at the next segment end or output time
            t_stop = t_end
            if k_out < n_out and t_out[k_out] < t_stop:
                t_stop = t_out[k_out]
            last = t + h >= t_stop
            if last:
                h = t_stop - t
            # --- one DOP853 step ---
            for i in range(n):
                K[0, i] = f[i]
            dop853_stages(y, K, h, kp, e, tmp, y_new)
            rhs(y_new, kp, e, K[N_STAGES])
            stats[ST_RHS] += N_STAGES
            dop853_errors(K, err5, err3)
            # one pass: finiteness (a sum is non-finite iff a term is) and the error norms
            check = 0.0
            acc5 = 0.0
            acc3 = 0.0
            for i in range(n):
                check += y_new[i] + K[N_STAGES, i]
                inv = 1.0 / (atol + max(abs(y[i]), abs(y_new[i])) * rtol)
                inv_scale[i] = inv
                r5 = err5[i] * inv
                r3 = err3[i] * inv
                acc5 += r5 * r5
                acc3 += r3 * r3
            if not np.isfinite(check):
                h *= 0.25
                stats[ST_REJECTED] += 1
                rejected = True
                if not h >= h_min:
                    return NON_FINITE
                continue
            err = error_norm(h, acc5, acc3, float(n))
            if not err < 1.0:  # also rejects a nan error (overflowing sums)
                h *= max(MIN_FACTOR, SAFETY * err ** ERROR_EXPONENT)
                stats[ST_REJECTED] += 1
                rejected = True
                continue
            # --- non-negativity (Shampine et al., Appl Math Comput 2005) ---
            # the positive orthant is invariant for the model; a step that
            # leaves it by more than the tolerance is rejected, a smaller
            # excursion is projected back onto it.
            neg = 0.0
            for i in range(n):
                if y_new[i] < 0.0:
                    neg += max((y_new[i] * inv_scale[i]) ** 2, NEG_FLOOR)
            if neg > 0.0:
                if np.sqrt(neg / n) > 1.0:
                    h *= 0.5
                    stats[ST_REJECTED] += 1
                    rejected = True
                    continue
                for i in range(n):
                    if y_new[i] < 0.0:
                        y_new[i] = 0.0
                rhs(y_new, kp, e, K[N_STAGES])
                stats[ST_RHS] += 1
            # --- accepted ---
            stats[ST_STEPS] += 1
            t_new = t_stop if last else t + h
            # extinction event inside the step?
            if threshold > 0.0 and _lsc(y) >= threshold and _lsc(y_new) < threshold:
                h_ev = extinction_in_step(y, y_new, f, K, F, tmp, h, kp, e, threshold)
                stats[ST_RHS] += EVENT_RHS
                t = t + h_ev  # no output lies inside a step: outputs are hard stops
                events[0] = t
                stats[ST_EXTINCTIONS] += 1
                while k_out < n_out and t_out[k_out] <= t:
                    for i in range(n):
                        y_out[k_out, i] = y[i]
                    k_out += 1
                continue
            t = t_new
            for i in range(n):
                y[i] = y_new[i]
                f[i] = K[N_STAGES, i]
            while k_out < n_out and t_out[k_out] <= t:
                for i in range(n):
                    y_out[k_out, i] = y[i]
                k_out += 1
            factor = accept_factor(err, log2_err_old)
            log2_err_old = log2_err_memory(err)
            if rejected:
                factor = min(1.0, factor)
            rejected = False
            # after a step clipped at a stop, carry the unclipped proposal
            h = max(h * factor, h_try) if last else h * factor
    h_io[0] = h
    return SUCCESS

