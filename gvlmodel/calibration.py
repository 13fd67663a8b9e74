"""The calibration data (BRIEF §2) as data.

``gvlmodel/data/hess2005.toml`` holds every number with its citation and group
size.  :func:`gvlmodel.trial.observed` reads them as statistics and
:func:`gvlmodel.trial.statistics` computes the same statistics from a simulated
trial, so observed and simulated trials are compared item by item (counts with
their denominators, not percentages).
"""
from __future__ import annotations

import tomllib
from pathlib import Path

DATA_DIR = Path(__file__).with_name("data")


def load_calibration(name: str = "hess2005") -> dict:
    """The calibration data set ``name`` (a TOML file in ``gvlmodel/data/``)."""
    path = DATA_DIR / f"{name}.toml"
    if not path.is_file():
        from .errors import InputError

        raise InputError(f"calibration data: unknown set {name!r}; allowed: "
                         + ", ".join(sorted(p.stem for p in DATA_DIR.glob("*.toml"))))
    with open(path, "rb") as fh:
        return tomllib.load(fh)
