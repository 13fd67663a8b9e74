"""The calibration data (``gvlmodel/data/``, sources in its README.md) as data.

``gvlmodel/data/hess2005.toml`` holds every number with its citation and group
size.  :func:`gvlmodel.clinical.trial.observed` reads them as statistics and
:func:`gvlmodel.clinical.trial.statistics` computes the same statistics from a simulated
trial, so observed and simulated trials are compared item by item (counts with
their denominators, not percentages).
"""
from __future__ import annotations

import tomllib
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


#: trial-level calibration sets a Hess-type fit accepts (the other files in ``data/``
#: are patient-level series and trial summaries, read by :mod:`gvlmodel.clinical.datasets`)
TRIAL_CALIBRATIONS = ("hess2005",)


def available_calibrations() -> list[str]:
    """Names accepted by :func:`load_calibration`: the trial-level sets in ``gvlmodel/data/``."""
    return sorted(n for n in TRIAL_CALIBRATIONS if (DATA_DIR / f"{n}.toml").is_file())


def load_calibration(name: str = "hess2005") -> dict:
    """The calibration data set ``name`` (a TOML file in ``gvlmodel/data/``; a name, not a path)."""
    allowed = available_calibrations()
    if not isinstance(name, str) or name not in allowed:
        from ..core.errors import InputError

        raise InputError(f"calibration data: unknown set {name!r}; allowed: " + ", ".join(allowed))
    with open(DATA_DIR / f"{name}.toml", "rb") as fh:
        return tomllib.load(fh)
