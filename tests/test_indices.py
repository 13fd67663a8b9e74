"""Index groupings and the parameter table are complete and consistent."""
import numpy as np

from gvlmodel import KP, PARAMETER_TABLE, N_STATES, STATE_GROUPS, State, kernel_parameters
from gvlmodel.model.indices import LEUKEMIC_STEM_STATES, N_KP, STATE_DESCRIPTIONS


def test_state_groups_partition_the_state_vector():
    members = [s for group in STATE_GROUPS.values() for s in group]
    assert len(members) == len(set(members)), "a state appears in two groups"
    assert set(members) == set(State), "a state belongs to no group"
    assert sorted(int(s) for s in State) == list(range(N_STATES))
    assert set(LEUKEMIC_STEM_STATES) <= set(STATE_GROUPS["leukemic"])
    assert set(STATE_DESCRIPTIONS) == set(State)


def test_kernel_indices_contiguous_and_unique():
    assert sorted(int(k) for k in KP) == list(range(N_KP))
    assert len({k.name for k in KP}) == N_KP


def test_every_parameter_has_value_unit_bounds_scale_source():
    for name, row in PARAMETER_TABLE.items():
        assert row.name == name
        assert row.unit and row.source and row.description and row.group
        assert row.scale in ("log", "linear")


def test_every_bound_of_the_table_is_a_valid_model_on_its_own():
    """Each parameter at its lower or upper bound, the others at their values, passes the model's own checks
    (positive rates, fractions below 1, ...), so sampling one parameter over its table range never stops a run.
    The ordered pairs (r_x > d0) are the exception the table documents: their bounds overlap, and the
    commands refuse ranges that cross before a run (``check_ordered_ranges``)."""
    from gvlmodel.model.parameters import ORDERED_PARAMETERS, resolve_parameters

    ordered = {name for pair in ORDERED_PARAMETERS for name in pair[:2]}
    for name, row in PARAMETER_TABLE.items():
        for value in (row.lower, row.upper):
            if name in ordered:
                continue
            resolve_parameters({name: value}, check_bounds=True)
    low, high, _ = ORDERED_PARAMETERS[0]
    assert PARAMETER_TABLE[low].value < PARAMETER_TABLE[high].value


def test_kernel_vector_fully_filled_for_every_variant_and_setting():
    for variant in ("H0", "H1", "H2"):
        for transplant in (True, False):
            k = kernel_parameters(None, variant, transplant)
            assert k.shape == (N_KP,) and np.all(np.isfinite(k)) and np.all(k >= 0)


def test_variants_differ_only_in_effector_entries():
    h0, h1, h2 = (kernel_parameters(None, v) for v in ("H0", "H1", "H2"))
    effector = {KP.ZIN, KP.ZRHO, KP.ZKILL}
    for k in KP:
        if k not in effector:
            assert h0[k] == h1[k] == h2[k]
    assert h0[KP.ZIN] == h0[KP.ZRHO] == h0[KP.ZKILL] == 0
    assert h1[KP.ZRHO] == 0 and h1[KP.ZIN] > 0 and h1[KP.ZKILL] > 0
    assert h2[KP.ZRHO] > 0


def test_transplant_switches_donor_and_autologous_effectors():
    allo = kernel_parameters(None, "H2", True)
    auto = kernel_parameters(None, "H2", False)
    assert allo[KP.ZIN] == PARAMETER_TABLE["z_influx_allo"].value
    assert auto[KP.ZIN] == PARAMETER_TABLE["z_influx_auto"].value
    assert auto[KP.ZRHO] == PARAMETER_TABLE["z_expand_auto"].value
