"""Memory layout of the lock-step cohort engine (:mod:`gvlmodel.clinical.lanes`): one flat array per engine.

``W`` patients (lanes) advance together.  Every per-lane vector lives in one
flat ``float64`` workspace at a *constant* offset: component ``i`` of lane
``l`` of a state-sized block at ``OFF + i * W + l``.  With one base array and
compile-time offsets LLVM can prove that the blocks do not overlap and
vectorise the stage sums and the right-hand side across lanes without runtime
alias checks (numba cannot mark separate array arguments ``noalias``).
"""
from __future__ import annotations

from .indices import N_KP, N_STATES, NORMAL_STATES

W = 8  #: lanes per engine (two AVX2 registers; measured faster than 4, 12 or 16 lanes)
BLOCK = N_STATES * W  #: one state-sized block (all lanes)
N_NORMAL = len(NORMAL_STATES)  #: the normal hierarchy: the first states of every block
if tuple(int(i) for i in NORMAL_STATES) != tuple(range(N_NORMAL)):  # pragma: no cover - guards State edits
    raise ImportError("the lock-step layout needs the normal states first in State (indices 0..N_NORMAL-1)")
CLONE = N_NORMAL * W  #: first element of a block after the normal hierarchy (clone and effectors)
N_K = 13  #: DOP853 stages kept per step (12 + the FSAL stage)

OFF_Y = 0  # state
OFF_YN = OFF_Y + BLOCK  # proposed state at the end of the step
OFF_T = OFF_YN + BLOCK  # stage state (scratch)
OFF_E5 = OFF_T + BLOCK  # 5th-order error estimate
OFF_E3 = OFF_E5 + BLOCK  # 3rd-order error estimate
OFF_INV = OFF_E3 + BLOCK  # 1 / (atol + rtol max(|y|, |y_new|))
OFF_K = OFF_INV + BLOCK  # stage derivatives K[s] at OFF_K + s * BLOCK, s = 0..12
OFF_F = OFF_K  # f(y) is the first stage K[0]: kept there between steps (the stages never write it), not copied
OFF_P = OFF_K + N_K * BLOCK  # kernel parameters, parameter k of lane l at OFF_P + k * W + l
OFF_EFF = OFF_P + N_KP * W  # imatinib effect per lane
OFF_H = OFF_EFF + W  # step size per lane (0 for idle lanes)
OFF_HB = OFF_H + W  # step size broadcast to a state-sized block (element i * W + l = h of lane l)
OFF_SQN = OFF_HB + BLOCK  # squared scaled negative components of the proposed state (0 for the others)
OFF_CK = OFF_SQN + BLOCK  # per-lane finiteness check: sum of the proposed state and its derivative
OFF_ERR = OFF_CK + W  # per-lane error norm of the attempt (the scalar solver's ``err``)
OFF_NEG = OFF_ERR + W  # per-lane sum of squared scaled negative components of the proposed state
OFF_LEO = OFF_NEG + W  # PI controller memory per lane: log2 of the last accepted error norm (solver.log2_err_memory)
OFF_LEN = OFF_LEO + W  # the same for the current attempt (becomes OFF_LEO if it is accepted)
OFF_FAC = OFF_LEN + W  # step-size factor per lane if the attempt is accepted (solver.accept_factor)
WS_LEN = OFF_FAC + W
