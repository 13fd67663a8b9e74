"""Virtual cohorts: reproducible for any thread count, seed-sensitive, unbiased as size grows."""
import numpy as np
import pytest
from scipy.stats import chi2_contingency

from gvlmodel import InputError
from gvlmodel.clinical.cohort import BLOCK, CohortSpec, Population, Protocol, patient_trajectory, simulate_cohort
from gvlmodel.clinical.scenario import PATIENT_COLUMNS, table_csv


def csv_of(res):
    return table_csv({k: res.columns[k] for k in PATIENT_COLUMNS} | {f"p_{k}": v for k, v in
                                                                     res.patient_parameters.items()})


def test_same_seed_identical_with_one_and_two_threads_different_seeds_differ():
    spec = CohortSpec(size=300, seed=42)
    one = simulate_cohort(spec, threads=1, chunk=64)
    two = simulate_cohort(spec, threads=2)
    assert csv_of(one) == csv_of(two)
    assert np.array_equal(one.measured, two.measured, equal_nan=True)
    other = simulate_cohort(CohortSpec(size=300, seed=43), threads=2)
    assert csv_of(other) != csv_of(one)


def test_a_patient_does_not_depend_on_cohort_size():
    small = simulate_cohort(CohortSpec(size=50, seed=5, relapse_mix={"cytogenetic": 1}))
    big = simulate_cohort(CohortSpec(size=BLOCK + 50, seed=5, relapse_mix={"cytogenetic": 1}))
    for k in ("bcr_abl_start_percent", "days_to_cmr", "final_bcr_abl_percent"):
        np.testing.assert_array_equal(small.columns[k], big.columns[k][:50])


def test_relapse_mix_counts_are_exact_and_fractions_scale():
    assert list(CohortSpec(size=44, seed=0).relapse_types()).count("cytogenetic") == 19
    types = CohortSpec(size=10, seed=0, relapse_mix={"molecular": 0.5, "hematologic": 0.5}).relapse_types()
    assert list(types).count("molecular") == 5


def test_summary_rates_converge_without_bias_across_parallel_chunks():
    """Disjoint quarters of a large cohort estimate the same rates (chi-square homogeneity)."""
    res = simulate_cohort(CohortSpec(size=4000, seed=9, relapse_mix={"cytogenetic": 1}), Protocol(follow_up_days=900))
    ok = res.columns["solver_status"] == 0
    assert ok.all(), res.summary()["solver_failures"]
    # outcomes that vary at the default parameters (about 2/3 reach CMR, 1/3 are escalated, most who
    # stop lose CMR; no clone is eradicated within 900 days at the default rates)
    for key in ("reached_cmr", "lost_cmr", "escalated"):
        v = res.columns[key].reshape(4, -1)
        table = np.stack([v.sum(1), (~v).sum(1)], axis=1)
        assert table.min() > 0, f"{key}: every quarter needs events and non-events for the test to mean anything"
        assert chi2_contingency(table).pvalue > 1e-3, key


@pytest.mark.parametrize("kwargs,field", [
    ({"size": 0, "seed": 1}, "cohort.size"),
    ({"size": 10, "seed": -1}, "cohort.seed"),
    ({"size": 10, "seed": 1, "start": "remission"}, "cohort.start"),
    ({"size": 10, "seed": 1, "relapse_mix": {"blast": 3}}, "cohort.relapse_mix"),
    ({"size": 10, "seed": 1, "transplant": "yes"}, "cohort.transplant"),
    ({"size": 10**9, "seed": 1}, "cohort.size"),
    ({"size": 10, "seed": 1, "relapse_ranges": None}, "cohort.relapse_ranges"),
    ({"size": 10, "seed": 1, "relapse_ranges": "x"}, "cohort.relapse_ranges"),
])
def test_bad_cohort_spec_names_the_field(kwargs, field):
    with pytest.raises(InputError, match=field.replace(".", r"\.")):
        CohortSpec(**kwargs)


def test_bad_protocol_names_the_field():
    with pytest.raises(InputError, match="treatment.stop"):
        Protocol(stop="sometimes")
    with pytest.raises(InputError, match="treatment.stop"):
        Protocol(stop={"after": 3})
    with pytest.raises(InputError, match="treatment.dose_mg"):
        Protocol(dose_mg=-400)


def test_bad_api_arguments_name_the_field():
    spec = CohortSpec(size=4, seed=1)
    for kwargs, field in [({"chunk": -1}, "chunk"), ({"chunk": 0}, "chunk"), ({"protocol": "hess"}, "protocol"),
                          ({"protocol": {}}, "protocol"), ({"population": {"z_kill": 0.5}}, "population"),
                          ({"threads": 0}, "threads")]:
        with pytest.raises(InputError, match=field):
            simulate_cohort(spec, progress=False, **kwargs)
    for kwargs, field in [({"sd_log": 5}, "population.sd_log"), ({"sd_log": None}, "population.sd_log"),
                          ({"sd_log": {"z_kill": "x"}}, "population.z_kill"), ({"medians": 5}, "population.medians")]:
        with pytest.raises(InputError, match=field.replace(".", r"\.")):
            Population(**kwargs)


def test_varied_parameter_with_median_outside_the_bounds_is_an_error_not_a_silent_clip():
    # im_kill_lsc varies between patients (draws kept in [0.01, 3]); a median of 5 would clip every patient
    with pytest.raises(InputError, match="im_kill_lsc.*bounds"):
        simulate_cohort(CohortSpec(size=4, seed=1), parameters={"im_kill_lsc": 5.0}, progress=False)


def test_patient_trajectory_checks_its_arguments():
    res = simulate_cohort(CohortSpec(size=3, seed=1), Protocol(follow_up_days=120), progress=False)
    for i, step, field in [(-1, 7.0, "patient"), (3, 7.0, "patient"), (0, 0.0, "time_step_days"),
                           (0, -1.0, "time_step_days")]:
        with pytest.raises(InputError, match=field):
            patient_trajectory(res, i, step)
    assert patient_trajectory(res, 2, 7.0)["patient_id"][0] == 2


def test_median_a_rounding_past_a_bound_is_put_on_the_bound():
    """10**log10(upper) can exceed ``upper`` by an ulp (a sampler on the prior's edge produces it):
    that is the bound, not an error; the patients' values equal the bound."""
    import math

    upper = 3000.0  # im_ec50's upper bound
    med = 10.0 ** math.log10(upper)
    assert med > upper
    res = simulate_cohort(CohortSpec(size=4, seed=1), Protocol(follow_up_days=60), parameters={"im_ec50": med},
                          population=Population(sd_log={"im_ec50": 0.0}), progress=False)
    assert np.all(res.patient_parameters["im_ec50"] == upper)


def test_truncated_population_stays_inside_the_bounds_without_piling_up():
    """``Population(bounds="truncate")``: draws follow the log-normal truncated to the table bounds
    (KS test against its CDF), no patient sits on a bound, and ``"clip"`` (the default) is unchanged."""
    from scipy.stats import kstest, norm

    from gvlmodel.model.parameters import PARAMETER_TABLE, default_parameters

    sd = {"im_kill_lsc": 1.4, "q_out": 1.2}
    spec, proto = CohortSpec(size=3000, seed=11), Protocol(follow_up_days=60)
    clip = simulate_cohort(spec, proto, None, population=Population(sd_log=sd), progress=False)
    assert clip.cohort == spec
    default = simulate_cohort(spec, proto, None, population=Population(sd_log=sd, bounds="clip"), progress=False)
    trunc = simulate_cohort(spec, proto, None, population=Population(sd_log=sd, bounds="truncate"), progress=False)
    p = default_parameters()
    for name, s in sd.items():
        row = PARAMETER_TABLE[name]
        c, t = clip.patient_parameters[name], trunc.patient_parameters[name]
        assert np.array_equal(c, default.patient_parameters[name])
        assert np.mean((c <= row.lower) | (c >= row.upper)) > 0.05  # clipping piles patients on a bound
        assert np.all((t > row.lower) & (t < row.upper))
        # truncated log-normal CDF on log scale
        a = (np.log(row.lower) - np.log(p[name])) / s if row.lower > 0 else -np.inf
        b = (np.log(row.upper) - np.log(p[name])) / s
        lo, hi = norm.cdf(a), norm.cdf(b)
        cdf = lambda x: (norm.cdf((np.log(x) - np.log(p[name])) / s) - lo) / (hi - lo)  # noqa: E731
        assert kstest(t, cdf).pvalue > 1e-3
        # the same random numbers: a monotone map of each patient's normal draw
        inside = (c > row.lower) & (c < row.upper)
        order = np.argsort(c[inside], kind="stable")
        assert np.all(np.diff(t[inside][order]) >= 0)


def test_population_bounds_is_validated():
    """One check for the Population, the engine's input builder and the trial design."""
    from gvlmodel.clinical.cohort import prepare_replicates
    from gvlmodel.clinical.trial import TrialDesign

    with pytest.raises(InputError, match="population.bounds"):
        Population(bounds="reflect")
    with pytest.raises(InputError, match="population.bounds: unknown value 'reflect'; allowed: clip, truncate"):
        prepare_replicates(CohortSpec(size=2, seed=0), Protocol(), [], [], [], None, (), 1e-6, 1e-6, 1.0, 10,
                           bounds="reflect")
    with pytest.raises(InputError, match="TrialDesign.population_bounds"):
        TrialDesign(population_bounds="reflect")


def _varied(population, size=4000, seed=3):
    from gvlmodel.clinical.cohort import _resolve_base, prepare_cohort
    from gvlmodel.model.parameters import parse_variant

    inp = prepare_cohort(CohortSpec(size=size, seed=seed), Protocol(follow_up_days=60.0), _resolve_base(None),
                         parse_variant("H2"), population, 1e-6, 1e-6, 1.0, 1000)
    return inp.varied


def test_correlated_population_draws_have_the_requested_correlation_and_marginals():
    sd = {"q_out": 0.4, "im_kill_lsc": 0.5, "q_in": 0.3}
    corr = {"q_out": {"im_kill_lsc": -0.6}, "q_in": {"q_out": 0.3}}
    ind = _varied(Population(sd_log=sd))
    cor = _varied(Population(sd_log=sd, correlation=corr))
    lo = {k: np.log(v) for k, v in cor.items() if k in sd}
    r = np.corrcoef([lo["q_out"], lo["im_kill_lsc"], lo["q_in"]])
    se = 1.0 / np.sqrt(4000)
    assert abs(r[0, 1] + 0.6) < 4 * se and abs(r[0, 2] - 0.3) < 4 * se and abs(r[1, 2]) < 4 * se
    for k, s in sd.items():  # the marginal spreads are kept
        assert abs(np.std(lo[k]) - s) < 0.05 * s
    # no correlation table (or an empty one): exactly the independent draws
    same = _varied(Population(sd_log=sd, correlation={}))
    for k in sd:
        np.testing.assert_array_equal(same[k], ind[k])
    # the first parameter in name order is drawn from the same normals either way (L is lower triangular)
    first = sorted(sd)[0]
    np.testing.assert_array_equal(cor[first], ind[first])


@pytest.mark.parametrize("corr, field", [
    ({"q_out": {"z_half": 0.2}}, "does not vary between patients"),
    ({"q_out": {"q_out": 0.2}}, "itself"),
    ({"q_out": {"q_in": 1.0}}, "strictly between -1 and 1"),
    ({"q_out": {"q_in": 0.2}, "q_in": {"q_out": 0.2}}, "given twice"),
    ({"q_out": {"q_in": 0.9, "im_kill_lsc": 0.9}, "q_in": {"im_kill_lsc": -0.9}}, "positive definite"),
    ({"q_out": 0.3}, "expected a table"),
])
def test_bad_correlations_name_the_field(corr, field):
    with pytest.raises(InputError, match=field):
        Population(sd_log={"q_out": 0.4, "q_in": 0.3, "im_kill_lsc": 0.5}, correlation=corr)


def test_a_set_with_correlations_brings_them_to_a_scenario_unless_the_config_sets_the_population():
    from gvlmodel.model.parameters import parameter_set_info
    from gvlmodel.clinical.scenario import parse_scenario

    info = parameter_set_info("patients")
    assert info["correlation"], "the calibrated set carries correlations"
    base = {"cohort": {"size": 10, "seed": 1, "transplant": False, "start": "diagnosis"},
            "parameters": {"set": "patients"}}
    sc = parse_scenario(base)
    assert sc.population.correlation and sc.population.correlation_matrix().shape == (len(info["population"]),) * 2
    sc = parse_scenario({**base, "population": {"q_out": 0.3}})
    assert sc.population.correlation is None


def test_table_csv_quotes_text_that_holds_a_comma_so_every_row_keeps_its_fields():
    import csv
    import io

    text = table_csv({"patient_id": np.arange(3), "solver_message": ["ok", 'step size 1e-12, at t=3.5', 'a "quote"'],
                      "rate": np.array([0.5, np.nan, 1.0])})
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["patient_id", "solver_message", "rate"]
    assert rows[2] == ["1", "step size 1e-12, at t=3.5", ""] and rows[3] == ["2", 'a "quote"', "1"]
    assert text.splitlines()[1] == "0,ok,0.5"  # plain text unquoted, as before


def test_summary_rate_interval_is_clopper_pearson():
    """``rate`` takes the beta-quantile form of the exact interval (no scipy.stats at start-up): it must
    agree with SciPy's binomial test, and a limit at 0 or n is the closed end."""
    from scipy.stats import binomtest

    from gvlmodel.clinical.summary import rate

    for n, k in [(1, 0), (1, 1), (10, 3), (44, 0), (44, 9), (44, 44), (2000, 131), (100000, 99999)]:
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        got = rate(k, n)
        assert got["rate"] == k / n
        assert got["ci95"] == pytest.approx([ci.low, ci.high], abs=1e-10)
        assert (got["ci95"][0] == 0.0) == (k == 0) and (got["ci95"][1] == 1.0) == (k == n)
    assert rate(0, 0)["ci95"] is None
