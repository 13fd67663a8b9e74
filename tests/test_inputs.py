"""Bad input raises a clear error naming the field."""
import numpy as np
import pytest

from gvlmodel import InputError, initial_state, simulate

T = np.linspace(0, 100, 5)


@pytest.mark.parametrize("kwargs,field", [
    ({"params": {"d0": -0.1}}, "d0"),
    ({"params": {"z_kill": float("nan")}}, "z_kill"),
    ({"params": {"no_such_rate": 1.0}}, "no_such_rate"),
    ({"params": {"r_y": "fast"}}, "r_y"),
    ({"params": {"immunosuppression": 1.5}}, "immunosuppression"),
    ({"y0": np.ones(9)}, "y0"),
    ({"y0": np.r_[np.ones(9), np.nan]}, "y0"),
    ({"y0": np.r_[np.ones(9), -1.0]}, "y0"),
    ({"y0": {"X0": 1.0}}, "y0"),
    ({"t_out": [0, 50, 20]}, "t_out"),
    ({"t_out": [0, np.inf]}, "t_out"),
    ({"schedule": [(0, -400)]}, "schedule"),
    ({"schedule": [(0, 400), (0, 600)]}, "schedule"),
    ({"schedule": [(10, 400)]}, "schedule"),
    ({"variant": "H7"}, "variant"),
    ({"rtol": 0.0}, "rtol"),
    ({"transplant": "yes"}, "transplant"),
])
def test_bad_input_names_the_field(kwargs, field):
    args = {"t_out": T} | kwargs
    params = args.pop("params", None)
    with pytest.raises(InputError, match=field):
        simulate(params, **args)


def test_unknown_parameter_error_lists_allowed_names():
    with pytest.raises(InputError, match="allowed names: .*d0"):
        simulate({"dO": 0.003}, t_out=T)


def test_bad_bcr_abl_in_initial_state():
    with pytest.raises(InputError, match="bcr_abl"):
        initial_state(bcr_abl=150.0)
