"""Bad input raises a clear error naming the field."""
import numpy as np
import pytest

from gvlmodel import InputError, initial_state, simulate
from gvlmodel.model.indices import N_STATES

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
    ({"rtol": 0.5}, "rtol"),
    ({"rtol": "1e-6"}, "rtol"),
    ({"atol": -1e-6}, "atol"),
    ({"atol": True}, "atol"),
    ({"extinction_threshold": "1"}, "extinction_threshold"),
    ({"extinction_threshold": None}, "extinction_threshold"),
    ({"extinction_threshold": -1.0}, "extinction_threshold"),
    ({"max_steps": 0}, "max_steps"),
    ({"max_steps": 10.5}, "max_steps"),
    ({"t0": "a"}, "t0"),
    ({"t0": float("nan")}, "t0"),
    ({"t0": 50.0}, "t0"),  # after the first output time
    ({"t_out": []}, "t_out"),
    ({"t_out": ["a", "b"]}, "t_out"),
    ({"t_out": [[0, 10], [20, 30]]}, "t_out"),
    ({"y0": "cells"}, "y0"),
    ({"y0": {**{s: 1.0 for s in ("X0", "X1", "X2", "X3", "Q", "Y0", "Y1", "Y2", "Y3", "Z")}, "W": 1.0}}, "y0"),
    ({"variant": "H0", "y0": np.ones(10)}, "y0"),  # H0 has no effector cells
    ({"schedule": "400 mg"}, "schedule"),
    ({"schedule": [(0, 400, 1)]}, "schedule"),
    ({"schedule": [(0, float("nan"))]}, "schedule"),
    ({"schedule": [(0, 1200)]}, "schedule"),
    # strings and booleans where numbers are expected: NumPy alone would convert them
    ({"t_out": "100"}, "t_out"),
    ({"t_out": ["0", "100"]}, "t_out"),
    ({"y0": ["1"] * 10}, "y0"),
    ({"schedule": [("0", "400")]}, "schedule"),
    ({"schedule": [(0, True)]}, "schedule"),
    ({"raise_on_failure": "yes"}, "raise_on_failure"),
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


@pytest.mark.parametrize("value", [150.0, -1.0, True, "1", float("nan")])
def test_bad_bcr_abl_values_name_the_field(value):
    with pytest.raises(InputError, match="bcr_abl"):
        initial_state(bcr_abl=value)


def test_unknown_state_name_in_result_lists_allowed_names():
    res = simulate(t_out=T)
    with pytest.raises(InputError, match="unknown state 'W'; allowed: X0"):
        res["W"]


def test_parameter_set_is_a_name_not_a_path():
    from gvlmodel import parameter_set

    for name in ("../data/hess2005", "hess2005/../hess2005_H2", "nope"):
        with pytest.raises(InputError, match="parameter set.*allowed: default"):
            parameter_set(name)


@pytest.mark.parametrize("days,doses", [([0, -1], [400, 400]), ([0], [400, 600]), ([0], [-400]), ([], []),
                                        ([np.nan], [400]), (["a"], [400])])
def test_dose_schedule_validates_direct_construction(days, doses):
    from gvlmodel.model.simulate import DoseSchedule

    with pytest.raises(InputError, match="schedule"):
        DoseSchedule(days, doses)


@pytest.mark.parametrize("y", [np.ones(9), np.ones((3, 4)), 5.0, "cells"])
def test_bcr_abl_percent_checks_the_state_axis(y):
    from gvlmodel import bcr_abl_percent

    with pytest.raises(InputError, match="y: expected"):
        bcr_abl_percent(y)


@pytest.mark.parametrize("call,field", [
    (lambda g, y, kp: g.rhs(y, kp, 1.0, np.zeros(3)), "out"),  # the bare kernel would write past its end
    (lambda g, y, kp: g.rhs(np.ones(3), kp, 1.0), "y"),
    (lambda g, y, kp: g.rhs("y", kp, 1.0), "y"),
    (lambda g, y, kp: g.rhs(y, {"d0": 0.003}, 1.0), "kp"),
    (lambda g, y, kp: g.rhs(y, kp[:-1], 1.0), "kp"),
    (lambda g, y, kp: g.rhs(y, kp, -1.0), "imatinib effect"),
    (lambda g, y, kp: g.rhs(np.r_[y[:-1], np.nan], kp, 1.0), "finite"),
    (lambda g, y, kp: g.rhs(y, kp, 1.0, np.zeros(10, dtype=np.float32)), "out"),
    (lambda g, y, kp: g.im_effect("400", 979.0, 500.0), "dose_mg"),
    (lambda g, y, kp: g.im_effect(None, 979.0, 500.0), "dose_mg"),
    (lambda g, y, kp: g.im_effect(np.array([400.0, 600.0]), 979.0, 500.0), "dose_mg"),
    (lambda g, y, kp: g.im_effect(-400.0, 979.0, 500.0), "dose_mg"),
    (lambda g, y, kp: g.im_effect(float("nan"), 979.0, 500.0), "dose_mg"),
    (lambda g, y, kp: g.im_effect(400.0, 0.0, 500.0), "css_400"),
    (lambda g, y, kp: g.im_effect(400.0, 979.0, -1.0), "ec50"),
])
def test_public_kernel_wrappers_check_their_input(call, field):
    """``gvlmodel.rhs`` / ``gvlmodel.im_effect`` are checked versions of the compiled kernels."""
    import gvlmodel as g

    y, kp = initial_state(), g.kernel_parameters()
    with pytest.raises(InputError, match=field):
        call(g, y, kp)


def test_public_kernel_wrappers_equal_the_kernels():
    import gvlmodel as g
    from gvlmodel.model import model

    y, kp = initial_state(), g.kernel_parameters()
    out = np.empty(N_STATES)
    model.rhs(y, kp, 0.7, out)
    assert np.array_equal(g.rhs(y, kp, 0.7), out)
    assert g.im_effect(600, 979.0, 500.0) == model.im_effect(600.0, 979.0, 500.0)


@pytest.mark.parametrize("call,field", [
    (lambda g: g.bcr_abl_percent(["1"] * N_STATES), "y"),
    (lambda g: g.salib_problem("d0"), "names"),
    (lambda g: g.salib_problem([]), "names"),
])
def test_other_api_functions_refuse_non_numbers_and_bad_names(call, field):
    import gvlmodel as g

    with pytest.raises(InputError, match=field):
        call(g)


@pytest.mark.parametrize("value,ok", [
    ([np.array(0.0), np.array(5.0)], True),  # 0-d arrays are numbers
    ([[0, 400.5], [90, 600]], True),
    ([[0, 1], [2, True]], False),  # a boolean hidden among numbers
    ([(0, 400), (90,)], False),  # ragged
    ([[1, 2], [3, "x"]], False),
])
def test_real_array_accepts_numbers_only(value, ok):
    from gvlmodel.core.errors import real_array

    if ok:
        assert real_array("f", value).dtype == float
    else:
        with pytest.raises(InputError, match="f: expected"):
            real_array("f", value)
