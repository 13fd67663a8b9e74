"""What the blood test sees (docs/model.md): the BCR-ABL ratio, response levels and the PCR.

Measurement model of one sample (compiled, :func:`pcr_sample`):

* the true ratio ``R`` (%) = 100 L / (L + 2 N) in mature blood cells
  (``Y3``, ``X3``; a normal cell carries two BCR alleles);
* quantitative PCR noise is log-normal: ``M = R * exp(sd * eps)``, ``eps ~ N(0, 1)``
  (``sd`` = natural-log SD, ~0.45 typical of BCR-ABL series);
* count noise near the detection limit: a nested PCR whose sensitivity is
  ``limit`` (1e-5: one transcript among 10^5 control transcripts) sees a
  Poisson number of BCR-ABL transcripts with mean ``lambda = (M / 100) / limit``;
  the sample is positive iff at least one is seen, probability
  ``1 - exp(-lambda)`` (decided by a uniform draw ``u``).  At ``R`` equal to the
  limit a sample is positive with probability 63 %; at 10x the limit, ~100 %.
* a positive sample reports ``M``; a negative one reports 0 ("undetectable").

Random numbers are drawn by the Python wrapper (per-patient streams) and
passed in, so the compiled code draws none.
"""
from __future__ import annotations

import math

import numpy as np

from ..core._jit import jit
from ..core.errors import InputError, real_array
from .indices import N_STATES, State

#: response levels, BCR-ABL ratio in percent (international scale)
RESPONSE_LEVELS_PERCENT = {"MMR": 0.1, "MR4": 0.01, "MR4.5": 0.0032, "MR5": 0.001}
#: default nested-PCR detection limit, as a ratio (1e-5 = 0.001 %)
DEFAULT_DETECTION_LIMIT = 1e-5
#: default natural-log SD of quantitative BCR-ABL measurements
DEFAULT_NOISE_SD = 0.45

_X3 = int(State.X3)
_Y3 = int(State.Y3)


def bcr_abl_percent(y: np.ndarray) -> np.ndarray:
    """BCR-ABL ratio (%) = 100 L / (L + 2 N) in mature cells.

    A normal cell carries two BCR alleles, a leukemic cell one BCR-ABL fusion.
    ``y`` is a state vector or an array of them (last axis = states).
    """
    y = real_array("y", y, "a state vector or an array of them (numbers)")
    if y.ndim == 0 or y.shape[-1] != N_STATES:
        raise InputError(f"y: expected {N_STATES} states on the last axis ({', '.join(State.__members__)}), "
                         f"got shape {y.shape}")
    leuk = y[..., State.Y3]
    norm = y[..., State.X3]
    denom = leuk + 2.0 * norm
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 100.0 * leuk / np.where(denom > 0, denom, 1.0), np.nan)


@jit
def bcr_abl_of_state(y):
    """Compiled :func:`bcr_abl_percent` of one state vector (0 for an empty marrow)."""
    leuk = y[_Y3]
    denom = leuk + 2.0 * y[_X3]
    if denom <= 0.0:
        return 0.0
    return 100.0 * leuk / denom


@jit
def pcr_sample(ratio_percent, eps, u, limit, sd):
    """One PCR result (%, 0 = undetectable) for true ratio ``ratio_percent``.

    ``eps`` standard normal, ``u`` uniform on [0, 1); see the module docstring.
    """
    if ratio_percent <= 0.0:
        return 0.0
    m = ratio_percent * math.exp(sd * eps)
    lam = m / 100.0 / limit
    if u < -math.expm1(-lam):
        return m
    return 0.0


def detection_probability(ratio_percent, limit: float = DEFAULT_DETECTION_LIMIT, sd: float = 0.0):
    """Probability that a sample at true ratio ``ratio_percent`` is positive (``sd = 0``: no qPCR noise)."""
    r = np.asarray(ratio_percent, dtype=float)
    if sd == 0.0:
        return -np.expm1(-r / 100.0 / limit)
    # average over the log-normal noise (Gauss-Hermite, 40 nodes)
    x, w = np.polynomial.hermite_e.hermegauss(40)
    lam = r[..., None] * np.exp(sd * x) / 100.0 / limit
    return (-np.expm1(-lam) * w).sum(-1) / w.sum()
