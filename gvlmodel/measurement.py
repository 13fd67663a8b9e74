"""What the blood test sees (BRIEF §3.7): the BCR-ABL ratio and response levels."""
from __future__ import annotations

import numpy as np

from .indices import State

#: response levels, BCR-ABL ratio in percent (international scale)
RESPONSE_LEVELS_PERCENT = {"MMR": 0.1, "MR4": 0.01, "MR4.5": 0.0032, "MR5": 0.001}
#: default nested-PCR detection limit, as a ratio (1e-5 = 0.001 %)
DEFAULT_DETECTION_LIMIT = 1e-5


def bcr_abl_percent(y: np.ndarray) -> np.ndarray:
    """BCR-ABL ratio (%) = 100 L / (L + 2 N) in mature cells.

    A normal cell carries two BCR alleles, a leukemic cell one BCR-ABL fusion.
    ``y`` is a state vector or an array of them (last axis = states).
    """
    y = np.asarray(y, dtype=float)
    leuk = y[..., State.Y3]
    norm = y[..., State.X3]
    denom = leuk + 2.0 * norm
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 100.0 * leuk / np.where(denom > 0, denom, 1.0), np.nan)
