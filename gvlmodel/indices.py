"""Names of every state and kernel-parameter index, in one place numba can read.

``State`` and ``KP`` are ``IntEnum`` classes: compiled code uses ``y[State.Y0]``
and ``p[KP.D0]``, never a bare literal.  The groupings below (normal, leukemic,
stem, effector) are checked by a test to partition the index sets exactly.
"""
from __future__ import annotations

from enum import IntEnum


class State(IntEnum):
    """Model state vector (all in cells)."""

    X0 = 0  # normal (donor) hematopoietic stem cells
    X1 = 1  # normal progenitors
    X2 = 2  # normal differentiated cells
    X3 = 3  # normal mature blood cells
    Q = 4  # quiescent leukemic stem cells (imatinib-insensitive)
    Y0 = 5  # cycling leukemic stem cells
    Y1 = 6  # leukemic progenitors
    Y2 = 7  # leukemic differentiated cells
    Y3 = 8  # leukemic mature blood cells (carry the measured BCR-ABL transcripts)
    Z = 9  # anti-leukemia effector cells (donor GVL or autologous T cells)


N_STATES = len(State)

NORMAL_STATES = (State.X0, State.X1, State.X2, State.X3)
LEUKEMIC_STATES = (State.Q, State.Y0, State.Y1, State.Y2, State.Y3)
LEUKEMIC_STEM_STATES = (State.Q, State.Y0)
EFFECTOR_STATES = (State.Z,)
STATE_GROUPS = {
    "normal": NORMAL_STATES,
    "leukemic": LEUKEMIC_STATES,
    "effector": EFFECTOR_STATES,
}

STATE_DESCRIPTIONS = {
    State.X0: "normal stem cells",
    State.X1: "normal progenitors",
    State.X2: "normal differentiated cells",
    State.X3: "normal mature cells",
    State.Q: "quiescent leukemic stem cells",
    State.Y0: "cycling leukemic stem cells",
    State.Y1: "leukemic progenitors",
    State.Y2: "leukemic differentiated cells",
    State.Y3: "leukemic mature cells",
    State.Z: "effector cells",
}


class KP(IntEnum):
    """Kernel parameter vector: what the compiled right-hand side reads.

    Built from the user-facing parameter table by
    :func:`gvlmodel.parameters.kernel_parameters` (which applies the variant and
    the transplant setting); never filled by hand.
    """

    D0 = 0  # stem-cell death /day
    D1 = 1  # progenitor death /day
    D2 = 2  # differentiated-cell death /day
    D3 = 3  # mature-cell death /day
    RX = 4  # normal stem self-renewal (maximal) /day
    AX = 5  # normal progenitor production /day
    BX = 6  # normal differentiated production /day
    CX = 7  # normal mature production /day
    KN = 8  # niche feedback constant, cells (derived)
    RY = 9  # leukemic stem self-renewal (maximal) /day
    AY = 10  # leukemic progenitor production /day
    BY = 11  # leukemic differentiated production /day
    CY = 12  # leukemic mature production /day
    QIN = 13  # cycling -> quiescent LSC /day
    QOUT = 14  # quiescent -> cycling LSC /day
    IMKILL = 15  # imatinib kill of cycling LSC at reference effect /day
    IMFA = 16  # fold reduction of AY at reference effect
    IMFB = 17  # fold reduction of BY at reference effect
    ZIN = 18  # effector influx cells/day (setting- and variant-specific)
    ZD = 19  # effector death /day
    ZRHO = 20  # peak effector expansion /day (0 in H0, H1)
    ZK = 21  # leukemic load of peak stimulation, cells
    ZKILL = 22  # kill rate per effector cell /cell/day (0 in H0)
    ZQREL = 23  # relative susceptibility of quiescent LSC to effectors
    ZSUPP = 24  # immunosuppression factor, 0 (none) .. 1 (complete)


N_KP = len(KP)
