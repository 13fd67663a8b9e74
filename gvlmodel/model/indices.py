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
    R0 = 9  # imatinib-resistant leukemic stem cells (a resistant subclone, cycling)
    R1 = 10  # progenitors of the resistant subclone (feed Y2, Y3 like sensitive progenitors)
    Z = 11  # anti-leukemia effector cells (donor GVL or autologous T cells)
    D = 12  # deeply dormant leukemic stem cells (exchange with Q only; imatinib-insensitive)


N_STATES = len(State)

NORMAL_STATES = (State.X0, State.X1, State.X2, State.X3)
LEUKEMIC_STATES = (State.D, State.Q, State.Y0, State.Y1, State.Y2, State.Y3, State.R0, State.R1)
#: leukemic stem cells of both subclones: the clone is extinct when their sum is below one cell
LEUKEMIC_STEM_STATES = (State.D, State.Q, State.Y0, State.R0)
RESISTANT_STATES = (State.R0, State.R1)
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
    State.R0: "imatinib-resistant leukemic stem cells",
    State.R1: "imatinib-resistant leukemic progenitors",
    State.Z: "effector cells",
    State.D: "deeply dormant leukemic stem cells",
}


class KP(IntEnum):
    """Kernel parameter vector: what the compiled right-hand side reads.

    Built from the user-facing parameter table by
    :func:`gvlmodel.model.parameters.kernel_parameters` (which applies the variant and
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
    KN = 8  # niche feedback constant of normal stem cells, cells (derived)
    RY = 9  # leukemic stem self-renewal at low density /day
    KL = 10  # leukemic stem-cell carrying capacity, cells
    AY = 11  # leukemic progenitor production /day
    BY = 12  # leukemic differentiated production /day
    CY = 13  # leukemic mature production /day
    QIN = 14  # cycling -> quiescent LSC /day
    QOUT = 15  # quiescent -> cycling LSC /day
    IMKILL = 16  # imatinib kill of cycling LSCs at the 400 mg/day effect /day
    IMKILLP = 17  # imatinib kill of leukemic progenitors at the 400 mg/day effect /day
    ZIN = 18  # effector influx cells/day (setting- and variant-specific)
    ZD = 19  # effector death /day
    ZRHO = 20  # peak effector expansion /day (0 in H0, H1)
    ZK = 21  # leukemic mature cells of peak stimulation, cells (derived from z_half, %)
    ZKILL = 22  # kill rate per effector cell /cell/day (0 in H0)
    ZQREL = 23  # relative susceptibility of quiescent LSC to effectors
    ZSUPP = 24  # immunosuppression factor, 0 (none) .. 1 (complete)
    DIN = 25  # quiescent -> deeply dormant LSC /day
    DOUT = 26  # deeply dormant -> quiescent LSC /day
    ZDREL = 27  # relative susceptibility of deeply dormant LSC to effectors


N_KP = len(KP)


# --------------------------------------------------------------------------
# clinical layer: protocol parameters, protocol state, per-patient results
# --------------------------------------------------------------------------
class StopRule(IntEnum):
    """When imatinib may be stopped (``PP.STOP_RULE``)."""

    NEVER = 0  # continuous imatinib
    HESS2005 = 1  # >= min days on IM and CMR at 3 consecutive visits within a window (Hess 2005)
    AFTER_DAYS = 2  # fixed course: stop at the first visit after N days on IM
    STIM = 3  # STIM-like: >= T days on IM and undetectable for >= U days


class LossRule(IntEnum):
    """What counts as losing the response after a stop (``PP.LOSS_RULE``)."""

    CONFIRMED_POSITIVE = 0  # a positive sample confirmed by the next one (Hess 2005)
    STIM1 = 1  # loss of MMR at one sample, or two successive samples >= 10x the first positive (Mahon 2010)


class PP(IntEnum):
    """Protocol parameter vector read by the compiled protocol engine (days, %, flags)."""

    VISIT = 0  # visit interval, days
    N_VISITS = 1  # number of visits after enrolment (the enrolment sample is visit 0)
    ESCALATE = 2  # 1: raise the dose at the escalation visit if no MMR
    ESC_DAY = 3  # escalation decided at the first visit on or after this day
    MMR_LEVEL = 4  # MMR threshold, BCR-ABL % (0.1)
    STOP_RULE = 5  # StopRule code
    STOP_MIN_DAYS = 6  # HESS2005: min days on IM; AFTER_DAYS: N; STIM: T
    STOP_WINDOW_DAYS = 7  # HESS2005: 3 negatives within this many days; STIM: U (undetectable days)
    RESTART = 8  # 1: restart imatinib at the confirmed loss of CMR
    DETECTION_LIMIT = 9  # nested-PCR detection limit, ratio (1e-5)
    NOISE_SD = 10  # natural-log SD of the quantitative PCR
    RTOL = 11  # solver relative tolerance
    ATOL = 12  # solver absolute tolerance, cells
    EXTINCTION = 13  # extinction threshold, LSCs
    MAX_STEPS = 14  # solver step budget per patient
    LOSS_RULE = 15  # LossRule code


N_PP = len(PP)


class Dose(IntEnum):
    """Dose levels of the protocol (the effect of each level is per patient)."""

    OFF = 0
    BASE = 1  # enrolment dose (400 mg/day)
    ESCALATED = 2  # escalated dose (600 or 800 mg/day)


class PS(IntEnum):
    """Per-patient protocol state, updated visit by visit by ``protocol.visit_rules``."""

    DOSE = 0  # current Dose level
    DOSE_AT_STOP = 1  # Dose level before stopping (restart dose)
    DAYS_ON_IM = 2  # cumulative days on imatinib
    EVER_POSITIVE = 3  # 1 once any sample was positive
    NEG_RUN = 4  # consecutive negative samples (current run)
    NEG_RUN_START = 5  # day of the first negative of the current run
    NEG_T1 = 6  # days of the last three negative samples (oldest first)
    NEG_T2 = 7
    NEG_T3 = 8
    REACHED_CMR = 9  # 1 once CMR (3 consecutive negatives after a positive)
    T_CMR = 10  # day of the first of the three negatives
    ESCALATION_DONE = 11  # 1 once the escalation visit has passed
    T_ESCALATE = 12  # day the dose was raised (nan if never)
    STOPPED = 13  # 1 once imatinib was stopped under the stop rule
    T_STOP = 14
    DAYS_ON_IM_AT_STOP = 15
    POS_RUN = 16  # consecutive positive samples after stopping
    T_FIRST_POS = 17  # day of the first positive of the current run after stopping
    LOST_CMR = 18  # 1 once a positive after stopping was confirmed by the next sample
    T_LOSS = 19  # day of the first (confirmed) positive
    RESTARTED = 20
    T_RESTART = 21
    FIRST_POS_VALUE = 22  # STIM1 rule: the first positive sample after stopping (%)
    RISE_RUN = 23  # STIM1 rule: consecutive samples >= 10x that value
    T_RISE_START = 24  # STIM1 rule: day of the first of them


N_PS = len(PS)


class RF(IntEnum):
    """Per-patient float results of the cohort engine (nan where not applicable)."""

    DAYS_TO_CMR = 0
    DAYS_ON_IM_AT_STOP = 1
    T_STOP = 2
    DAYS_STOP_TO_LOSS = 3
    T_ESCALATE = 4
    T_RESTART = 5
    T_ERADICATED = 6  # day the LSC count fell below the extinction threshold
    FINAL_BCR_ABL = 7  # true BCR-ABL % at the last visit reached
    FINAL_LSC = 8  # D + Q + Y0 + R0 at the last visit reached
    FINAL_EFFECTORS = 9  # Z at the last visit reached
    T_REACHED = 10  # last visit day reached (end of follow-up unless the solver failed)


N_RF = len(RF)


class RI(IntEnum):
    """Per-patient integer results of the cohort engine."""

    REACHED_CMR = 0
    STOPPED = 1
    LOST_CMR = 2
    ERADICATED = 3
    ESCALATED = 4
    RESTARTED = 5
    STATUS = 6  # solver status code (0 = success)
    N_STEPS = 7
    N_RHS = 8


N_RI = len(RI)
