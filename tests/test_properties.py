"""Properties over seeded random draws from the parameter table's bounds."""
import numpy as np
import pytest

from gvlmodel import State, initial_state, simulate
from gvlmodel import parameter_set as gvl_parameter_set
from gvlmodel.model.indices import LEUKEMIC_STATES

from conftest import draw_parameters

T_OUT = np.linspace(0.0, 1095.0, 37)
SCHEDULE = [(0.0, 400.0), (365.0, 0.0), (730.0, 400.0)]
N_DRAWS = 25


def leukemic_cells(res):
    return res.y[:, list(LEUKEMIC_STATES)].sum(axis=1)


def sensitive_draw(rng) -> dict:
    """A draw over the bounds with no resistant subclone (its share far below one cell)."""
    p = draw_parameters(rng)
    p["resistant_fraction"] = 1e-10
    return p


@pytest.mark.parametrize("variant", ["H0", "H1", "H2"])
def test_states_stay_non_negative(rng, variant):
    for _ in range(N_DRAWS):
        p = draw_parameters(rng)
        transplant = bool(rng.integers(2))
        y0 = initial_state(p, bcr_abl=float(10 ** rng.uniform(-3, 1.5)), variant=variant, transplant=transplant)
        res = simulate(p, y0=y0, t_out=T_OUT, schedule=SCHEDULE, variant=variant, transplant=transplant)
        assert res.success, res.message
        assert np.all(res.y >= 0.0)


def test_tiny_negative_states_are_projected_not_reported():
    """A negative state too small for its squared scaled value to be representable (-1e-168 / atol 1e-6
    squares to below the smallest float) must still be projected onto the orthant, not returned with
    ``success``.  Both cases were reported as success with negative states (-4.5e-174, -1.4e-168)."""
    from gvlmodel.model.indices import N_STATES

    y0 = np.zeros(N_STATES)
    y0[State.X2] = 1e-300
    res = simulate(y0=y0, t_out=np.linspace(0.0, 1825.0, 61), variant="H0", transplant=False, rtol=1e-2)
    assert res.success, res.message
    assert res.y.min() >= 0.0
    p = {"d2": 0.07539, "z_dormant_kill": 0.1708, "x0_eq": 446200.0, "z_influx_auto": 1000.0, "d1": 0.1852,
         "z_quiescent_kill": 0.3802, "z_kill": 1.388e-05, "z_death": 0.02853, "a_x": 1.071}
    y0 = initial_state(p, bcr_abl=1e-6, variant="H2", transplant=False)
    res = simulate(p, y0=y0, t_out=np.linspace(0.0, 7300.0, 80), schedule=[(0.0, 400.0)], variant="H2",
                   transplant=False, rtol=1e-10, extinction_threshold=0.0)
    assert res.success, res.message
    assert res.y.min() >= 0.0


def test_extinct_clone_stays_extinct(rng):
    for _ in range(N_DRAWS):
        p = draw_parameters(rng)
        y0 = initial_state(p, bcr_abl=1.0)
        y0[State.D] = y0[State.Q] = y0[State.Y0] = y0[State.R0] = 0.0  # clone gone (downstream cells still present)
        res = simulate(p, y0=y0, t_out=T_OUT, schedule=SCHEDULE)
        assert res.success
        assert all(np.all(res[s] == 0.0) for s in ("D", "Q", "Y0", "R0"))
        # no relapse without leukemia: the leftover progeny only die out
        assert np.all(np.diff(res["Y3"][1:]) <= 1e-9 * res["Y3"][1] + 1e-12)
        # and once extinct during a course, it never returns
        res = simulate(p, y0=initial_state(p, bcr_abl=0.01), t_out=T_OUT, schedule=[(0.0, 800.0), (200.0, 0.0)])
        if res.extinct:
            after = res.t >= res.t_extinct
            assert np.all(res.leukemic_stem_cells[after] == 0.0)


@pytest.mark.parametrize("variant", ["H0", "H1"])
def test_higher_dose_never_leaves_more_leukemic_cells(rng, variant):
    """0 <= 400 <= 600 <= 800 mg/day ordering of the leukemic burden at every time (H0, H1), for a clone
    without a resistant subclone (with one, see the competitive-release test below)."""
    for _ in range(N_DRAWS):
        p = sensitive_draw(rng)
        y0 = initial_state(p, bcr_abl=float(10 ** rng.uniform(-2, 1.5)), variant=variant)
        burdens = []
        for dose in (0.0, 400.0, 600.0, 800.0):
            res = simulate(p, y0=y0, t_out=T_OUT, schedule=[(0.0, dose)], variant=variant, extinction_threshold=0.0)
            assert res.success
            burdens.append(leukemic_cells(res))
        for low, high in zip(burdens, burdens[1:]):
            # slack: global error (<= 50 tolerance units, atol = 1e-6 cells) on both runs
            assert np.all(high <= low * (1 + 1e-4) + 1e-4)


def test_more_drug_never_leaves_more_sensitive_stem_cells_even_with_resistance(rng):
    """With a resistant subclone, more drug can raise the total burden (competitive release: the
    resistant cells take the capacity the sensitive ones leave), but never the sensitive LSCs."""
    released = 0
    for _ in range(N_DRAWS):
        p = draw_parameters(rng)
        p["resistant_fraction"] = float(10 ** rng.uniform(-3, -2))
        y0 = initial_state(p, bcr_abl=float(10 ** rng.uniform(1, 1.9)), variant="H0")
        assert y0[State.R0] >= 1.0
        runs = [simulate(p, y0=y0, t_out=T_OUT, schedule=[(0.0, d)], variant="H0", extinction_threshold=0.0)
                for d in (0.0, 400.0, 800.0)]
        assert all(r.success for r in runs)
        for low, high in zip(runs, runs[1:]):
            s_lo, s_hi = low["Q"] + low["Y0"], high["Q"] + high["Y0"]
            assert np.all(s_hi <= s_lo * (1 + 1e-4) + 1e-4)
            assert np.all(high["R0"] >= low["R0"] * (1 - 1e-4) - 1e-4)
            released += bool(np.any(leukemic_cells(high) > leukemic_cells(low) * (1 + 1e-3)))
    assert released > 0  # the draws reach competitive release, so the first property is exercised


@pytest.mark.parametrize("parameter_set", ["default", "hess2005_H2"])
def test_higher_dose_ordering_in_h2_at_default_and_fitted_parameters(parameter_set):
    p = gvl_parameter_set(parameter_set)
    y0 = initial_state(p, bcr_abl=1.0, variant="H2")
    burdens = [leukemic_cells(simulate(p, y0=y0, t_out=T_OUT, schedule=[(0.0, d)], extinction_threshold=0.0))
               for d in (400.0, 600.0, 800.0)]
    for low, high in zip(burdens, burdens[1:]):
        assert np.all(high <= low * (1 + 1e-4) + 1e-4)


def test_h2_dose_inversions_happen_only_through_the_immune_window():
    """Over the whole bounds H2 can invert the dose ordering: a dose that pushes the load
    below the immune window stalls effector expansion, and the clone then fares better
    than under a lower dose.  The other route is crowding release near capacity: more drug empties
    the stem-cell pool, and the surviving cycling LSCs renew faster (the same competitive release as
    with a resistant subclone, above).  Measured on these 120 draws (seed 1): 29 inversions, 27
    immune-mediated, 2 by crowding release, none both.  Property: every inversion is preceded by more effectors on
    the lower dose, or happens in a clone whose stem cells on the lower dose fill >= 10 % of the
    capacity; with static effectors (H1, above) there is none."""
    rng = np.random.default_rng(1)
    t_out = np.linspace(0.0, 5 * 365.0, 61)
    immune_inversions = 0
    for _ in range(120):
        p = sensitive_draw(rng)
        y0 = initial_state(p, bcr_abl=float(10 ** rng.uniform(-2, 1.5)), variant="H2")
        runs = [simulate(p, y0=y0, t_out=t_out, schedule=[(0.0, d)], variant="H2", extinction_threshold=0.0)
                for d in (0.0, 400.0, 600.0, 800.0)]
        assert all(r.success for r in runs)
        for low, high in zip(runs, runs[1:]):
            lo, hi = leukemic_cells(low), leukemic_cells(high)
            worse = (hi > lo * (1 + 1e-4) + 1e-4) & (hi >= 1.0)
            if worse.any():
                j = int(np.flatnonzero(worse)[0])
                immune = np.any(low["Z"][:j + 1] > high["Z"][:j + 1])
                stem_low = low["D"][j] + low["Q"][j] + low["Y0"][j]
                crowded = stem_low >= 0.1 * p["lsc_capacity"]
                assert immune or crowded, (p, j)
                immune_inversions += bool(immune)
    assert immune_inversions > 0  # the draws reach the immune window's inverting region: the property is exercised


def test_h0_has_no_effectors_at_all(rng):
    for _ in range(N_DRAWS):
        p = draw_parameters(rng)
        for transplant in (True, False):
            y0 = initial_state(p, bcr_abl=5.0, variant="H0", transplant=transplant)
            assert y0[State.Z] == 0.0
            res = simulate(p, y0=y0, t_out=T_OUT, schedule=SCHEDULE, variant="H0", transplant=transplant)
            assert np.all(res["Z"] == 0.0)


def test_extinction_event_misses_no_dip_below_one_lsc():
    """The event looks at step ends; a course whose LSCs dip below one and recover
    within a step would escape it.  Every patient that is not extinct must stay at
    or above one LSC on a quarter-day grid (solved without the event); some come
    within [1, 2) LSCs, so the check is exercised near the threshold."""
    from gvlmodel.clinical.cohort import CohortSpec, Protocol, simulate_cohort

    # without the dormant pool and with fast exit from quiescence, so that imatinib exhausts clones within the
    # course and some pass close to the threshold (measured: 54 of 200 eradicated, 20 others within [1, 2) LSCs)
    params = {**gvl_parameter_set("hess2005_H2"), "dormancy_in": 0.0, "q_out": 0.02}
    res = simulate_cohort(CohortSpec(size=200, seed=7), Protocol(), params, progress=False)
    near = 0
    for i in np.flatnonzero(~res.columns["eradicated"]):
        grid = np.arange(0.0, float(res.columns["last_day_reached"][i]) + 1e-9, 0.25)
        free = simulate(res.patient_params(i), y0=res.y0[i], t_out=grid, schedule=res.dose_schedule(i),
                        variant=res.variant, transplant=bool(res.columns["transplant"][i]), extinction_threshold=0.0)
        assert free.success
        lowest = free.leukemic_stem_cells.min()
        assert lowest >= 1.0, (i, lowest)
        near += lowest < 2.0
    assert near > 0
