"""A sympy form of the model, for analysis: Jacobian, steady states, immune window.

The expressions below are a second, symbolic transcription of
:mod:`gvlmodel.model.model`; tests check that both agree at
random states to ~1e-13 of each equation's gross flux (``tests/test_rhs.py``; steady
states and window edges against long simulations in ``tests/test_closed_forms.py``),
so analysis done here is analysis of the kernel.
Symbols carry the kernel-parameter names of :class:`gvlmodel.model.indices.KP`.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy as sp

from .indices import KP, N_STATES, State


@lru_cache(maxsize=None)
def symbols():
    """``(state_symbols, parameter_symbols, effect_symbol)``, all non-negative reals."""
    ys = sp.symbols([s.name for s in State], nonnegative=True, real=True)
    ps = sp.symbols([k.name for k in KP], nonnegative=True, real=True)
    e = sp.Symbol("e", nonnegative=True, real=True)
    return tuple(ys), tuple(ps), e


@lru_cache(maxsize=None)
def rhs_sympy() -> sp.Matrix:
    """The right-hand side as a sympy column vector (order of :class:`State`)."""
    y, p, e = symbols()
    X0, X1, X2, X3, Q, Y0, Y1, Y2, Y3, R0, R1, Z, D = (y[s] for s in State)
    P = {k: p[k] for k in KP}
    phi = 1 / (1 + X0 / P[KP.KN])
    growth = P[KP.RY] * (1 - (D + Q + Y0 + R0) / P[KP.KL])
    k = P[KP.ZKILL] * Z
    u = Y3 / P[KP.ZK]
    stim = (1 - P[KP.ZSUPP]) * P[KP.ZRHO] * 2 * u / (1 + u**2)
    f = [None] * N_STATES
    f[State.X0] = (P[KP.RX] * phi - P[KP.D0]) * X0
    f[State.X1] = P[KP.AX] * X0 - P[KP.D1] * X1
    f[State.X2] = P[KP.BX] * X1 - P[KP.D2] * X2
    f[State.X3] = P[KP.CX] * X2 - P[KP.D3] * X3
    f[State.Q] = (P[KP.QIN] * Y0 - P[KP.QOUT] * Q - P[KP.DIN] * Q + P[KP.DOUT] * D
                  - P[KP.ZQREL] * k * Q)
    f[State.D] = P[KP.DIN] * Q - P[KP.DOUT] * D - P[KP.ZDREL] * k * D
    f[State.Y0] = (growth - P[KP.D0] - P[KP.IMKILL] * e - k - P[KP.QIN]) * Y0 + P[KP.QOUT] * Q
    f[State.Y1] = P[KP.AY] * Y0 - (P[KP.D1] + P[KP.IMKILLP] * e + k) * Y1
    f[State.Y2] = P[KP.BY] * (Y1 + R1) - (P[KP.D2] + k) * Y2
    f[State.Y3] = P[KP.CY] * Y2 - (P[KP.D3] + k) * Y3
    f[State.R0] = (growth - P[KP.D0] - k) * R0
    f[State.R1] = P[KP.AY] * R0 - (P[KP.D1] + k) * R1
    f[State.Z] = P[KP.ZIN] - P[KP.ZD] * Z + stim * Z
    return sp.Matrix(f)


@lru_cache(maxsize=None)
def jacobian_sympy() -> sp.Matrix:
    y, _, _ = symbols()
    return rhs_sympy().jacobian(sp.Matrix(y))


@lru_cache(maxsize=None)
def _lambdified(which: str):
    y, p, e = symbols()
    expr = rhs_sympy() if which == "rhs" else jacobian_sympy()
    return sp.lambdify((y, p, e), expr, modules="numpy")


def rhs_numeric(y, kp, e) -> np.ndarray:
    """Evaluate the sympy right-hand side numerically (for cross-checks)."""
    return np.asarray(_lambdified("rhs")(tuple(y), tuple(kp), e), dtype=float).reshape(-1)


def jacobian_numeric(y, kp, e) -> np.ndarray:
    return np.asarray(_lambdified("jac")(tuple(y), tuple(kp), e), dtype=float)


# --------------------------------------------------------------------------
# immune window
# --------------------------------------------------------------------------


@lru_cache(maxsize=None)
def window_edges_sympy():
    """Edges of the immune window in leukemic load (mature leukemic cells ``Y3``), solved by sympy.

    Effectors expand (per capita) iff ``(1-s) rho 2u/(1+u^2) > d_z`` with
    ``u = Y3/K_z``.  Returns ``(condition, (L_low, L_high))``: the window exists
    iff ``condition`` holds, i.e. ``(1-s) rho > d_z`` (Hähnel et al. 2020:
    ``p_z > 2 a K_z`` with ``p_z = 2 rho K_z``).
    """
    _, p, _ = symbols()
    L = sp.Symbol("L", positive=True)
    rho = (1 - p[KP.ZSUPP]) * p[KP.ZRHO]
    u = L / p[KP.ZK]
    roots = sp.solve(sp.Eq(rho * 2 * u / (1 + u**2), p[KP.ZD]), L)
    roots = sorted(roots, key=lambda r: sp.count_ops(r))  # deterministic order, fixed below
    lo, hi = sorted(roots, key=lambda r: float(r.subs({p[KP.ZSUPP]: 0, p[KP.ZRHO]: 2, p[KP.ZD]: 1, p[KP.ZK]: 1})))
    condition = rho > p[KP.ZD]
    return condition, (sp.simplify(lo), sp.simplify(hi))


def window_edges(kp) -> tuple[float, float] | None:
    """Numeric window edges ``(L_low, L_high)`` in mature leukemic cells ``Y3``, or ``None`` if no window."""
    condition, (lo, hi) = window_edges_sympy()
    _, p, _ = symbols()
    subs = {p[k]: float(kp[k]) for k in KP}
    if not bool(condition.subs(subs)):
        return None
    return float(lo.subs(subs)), float(hi.subs(subs))


# --------------------------------------------------------------------------
# steady states
# --------------------------------------------------------------------------


@lru_cache(maxsize=None)
def healthy_steady_state_sympy() -> dict:
    """Leukemia-free equilibrium: normal hierarchy at homeostasis, Z = influx/death."""
    y, p, e = symbols()
    f = rhs_sympy()
    leuk = {y[s]: 0 for s in (State.D, State.Q, State.Y0, State.Y1, State.Y2, State.Y3, State.R0, State.R1)}
    X0s = sp.solve(sp.Eq(f[State.X0].subs(leuk) / y[State.X0], 0), y[State.X0])[0]
    sol = {y[State.X0]: X0s}
    for s in (State.X1, State.X2, State.X3):
        sol[y[s]] = sp.solve(f[s].subs(sol), y[s])[0]
    sol[y[State.Z]] = sp.solve(f[State.Z].subs(leuk), y[State.Z])[0]
    sol.update(leuk)
    return sol


@lru_cache(maxsize=None)
def leukemic_steady_state_sympy() -> dict:
    """Equilibrium of an imatinib-sensitive clone under static effectors, normal hematopoiesis at homeostasis.

    The expansion term is dropped (variants H0/H1, and the limit of a load far
    outside the immune window), so ``Z = influx/death``; no resistant subclone
    (``R0 = R1 = 0``).  Dormancy balance gives ``D`` in terms of ``Q`` and
    quiescence balance ``Q`` in terms of ``Y0``, the
    per-capita balance of cycling LSCs is then linear in ``Y0`` (logistic
    crowding), and the progeny follow by production / loss.  With expansion,
    ``Z`` solves a polynomial in the load; :mod:`gvlmodel.analysis.dynamics` finds those
    equilibria numerically.
    """
    y, p, e = symbols()
    f = rhs_sympy()
    sol = dict(healthy_steady_state_sympy())
    sub = {k: v for k, v in sol.items() if k in (y[State.X0], y[State.X1], y[State.X2], y[State.X3])}
    sub[p[KP.ZRHO]] = 0
    sub[y[State.R0]] = 0
    sub[y[State.R1]] = 0
    Zs = sp.solve(f[State.Z].subs(sub), y[State.Z], simplify=False)[0]
    sub_z = {**sub, y[State.Z]: Zs}
    Ds = sp.solve(f[State.D].subs(sub_z), y[State.D], simplify=False)[0]  # D in terms of Q
    Qs = sp.solve(f[State.Q].subs({**sub_z, y[State.D]: Ds}), y[State.Q], simplify=False)[0]  # Q in terms of Y0
    sub_q = {**sub_z, y[State.Q]: Qs, y[State.D]: Ds.subs(y[State.Q], Qs)}
    balance = sp.numer(sp.together(sp.expand(f[State.Y0].subs(sub_q) / y[State.Y0])))
    (Y0s,) = sp.solve(balance, y[State.Y0], simplify=False)
    out = {k: v for k, v in sub.items() if k != p[KP.ZRHO]}
    out.update({y[State.Z]: Zs, y[State.Y0]: Y0s, y[State.Q]: Qs.subs(y[State.Y0], Y0s),
                y[State.D]: Ds.subs(y[State.Q], Qs).subs(y[State.Y0], Y0s)})
    for s_ in (State.Y1, State.Y2, State.Y3):  # linear: production / loss
        expr = f[s_].subs(out)
        out[y[s_]] = -expr.subs(y[s_], 0) / sp.diff(expr, y[s_])
    return out


def evaluate_state(sol: dict, kp, e: float = 0.0) -> np.ndarray:
    """Numeric state vector from a sympy steady-state solution."""
    y, p, es = symbols()
    exprs = [sp.sympify(sol[y[s]]) for s in State]
    fn = sp.lambdify((p, es), exprs, modules="math")
    return np.array(fn(tuple(float(v) for v in kp), float(e)), dtype=float)
