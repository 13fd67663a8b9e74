import numpy as np
import pytest

from gvlmodel.model.parameters import PARAMETER_TABLE


def draw_parameters(rng: np.random.Generator, names=None) -> dict:
    """Seeded draw over the parameter table's bounds (log-uniform for log rows)."""
    out = {}
    for name, row in PARAMETER_TABLE.items():
        if names is not None and name not in names:
            continue
        if row.scale == "log":
            out[name] = float(np.exp(rng.uniform(np.log(row.lower), np.log(row.upper))))
        else:
            out[name] = float(rng.uniform(row.lower, row.upper))
    if "r_x" in out and "d0" in out and out["r_x"] <= out["d0"] * 1.05:
        out["r_x"] = out["d0"] * 1.05 + 1e-4
    return out


@pytest.fixture
def rng():
    return np.random.default_rng(20261124)
