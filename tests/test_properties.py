"""Properties over seeded random draws from the parameter table's bounds."""
import numpy as np
import pytest

from gvlmodel import State, initial_state, simulate
from gvlmodel.indices import LEUKEMIC_STATES

from conftest import draw_parameters

T_OUT = np.linspace(0.0, 1095.0, 37)
SCHEDULE = [(0.0, 400.0), (365.0, 0.0), (730.0, 400.0)]
N_DRAWS = 25


def leukemic_cells(res):
    return res.y[:, list(LEUKEMIC_STATES)].sum(axis=1)


@pytest.mark.parametrize("variant", ["H0", "H1", "H2"])
def test_states_stay_non_negative(rng, variant):
    for _ in range(N_DRAWS):
        p = draw_parameters(rng)
        transplant = bool(rng.integers(2))
        y0 = initial_state(p, bcr_abl=float(10 ** rng.uniform(-3, 1.5)), variant=variant, transplant=transplant)
        res = simulate(p, y0=y0, t_out=T_OUT, schedule=SCHEDULE, variant=variant, transplant=transplant)
        assert res.success, res.message
        assert np.all(res.y >= 0.0)


def test_extinct_clone_stays_extinct(rng):
    for _ in range(N_DRAWS):
        p = draw_parameters(rng)
        y0 = initial_state(p, bcr_abl=1.0)
        y0[State.Q] = y0[State.Y0] = 0.0  # clone already gone (downstream cells still present)
        res = simulate(p, y0=y0, t_out=T_OUT, schedule=SCHEDULE)
        assert res.success
        assert np.all(res["Q"] == 0.0) and np.all(res["Y0"] == 0.0)
        # and once extinct during a course, it never returns
        res = simulate(p, y0=initial_state(p, bcr_abl=0.01), t_out=T_OUT, schedule=[(0.0, 800.0), (200.0, 0.0)])
        if res.extinct:
            after = res.t >= res.t_extinct
            assert np.all(res.leukemic_stem_cells[after] == 0.0)


@pytest.mark.parametrize("variant", ["H0", "H1"])
def test_higher_dose_never_leaves_more_leukemic_cells(rng, variant):
    """400 <= 600 <= 800 mg/day ordering of the leukemic burden at every time (H0, H1)."""
    for _ in range(N_DRAWS):
        p = draw_parameters(rng)
        y0 = initial_state(p, bcr_abl=float(10 ** rng.uniform(-2, 1.5)), variant=variant)
        burdens = []
        for dose in (0.0, 400.0, 600.0, 800.0):
            res = simulate(p, y0=y0, t_out=T_OUT, schedule=[(0.0, dose)], variant=variant, extinction_threshold=0.0)
            assert res.success
            burdens.append(leukemic_cells(res))
        for low, high in zip(burdens, burdens[1:]):
            # slack: global error (<= 50 tolerance units, atol = 1e-6 cells) on both runs
            assert np.all(high <= low * (1 + 1e-4) + 1e-4)


def test_higher_dose_ordering_at_default_h2_parameters():
    """H2 at the default parameters; over the whole bounds the immune window can
    invert the ordering (a dose that drops the load below the window stalls
    effector expansion), so the random-draw property is stated for H0/H1 only."""
    y0 = initial_state(bcr_abl=1.0, variant="H2")
    burdens = [leukemic_cells(simulate(y0=y0, t_out=T_OUT, schedule=[(0.0, d)], extinction_threshold=0.0))
               for d in (400.0, 600.0, 800.0)]
    for low, high in zip(burdens, burdens[1:]):
        assert np.all(high <= low * (1 + 1e-4) + 1e-4)


def test_h0_has_no_effectors_at_all(rng):
    for _ in range(N_DRAWS):
        p = draw_parameters(rng)
        for transplant in (True, False):
            y0 = initial_state(p, bcr_abl=5.0, variant="H0", transplant=transplant)
            assert y0[State.Z] == 0.0
            res = simulate(p, y0=y0, t_out=T_OUT, schedule=SCHEDULE, variant="H0", transplant=transplant)
            assert np.all(res["Z"] == 0.0)
