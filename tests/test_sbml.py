"""SBML export (issue 7): valid SBML L3V2, same equations as the kernel, same courses as libRoadRunner.

Tolerances of the cross-check (gvlmodel DOP853 vs libRoadRunner CVODE):

* both solvers at rtol 1e-10; gvlmodel atol 1e-10 cells, CVODE atol 1e-16
  cells (CVODE's absolute tolerance must sit far below the smallest states that
  matter: cycling LSCs fall to ~3e-3 cells on IM, and a resistant subclone
  starts from a few cells); no extinction event on either side
  (``extinction_threshold=0``), except in the test that adds the SBML
  extinction event and compares with the integrator's.  There the clone's
  progeny decay for up to 900 days after the event, to ~1e-9 cells, below the
  floor where the metric asks for 1e-11 cells absolute, so that test runs both
  solvers with absolute tolerances far below that (gvlmodel 1e-14, CVODE 1e-20
  cells; at 1e-10 / 1e-16 each solver alone is ~1e-4 relative off an
  rtol-1e-13 reference there);
* every state at every monthly output: ``|rr - gvl| <= 1e-5 * max(|gvl|, 1e-6 cells)``,
  i.e. relative error 1e-5 above a floor of 1e-6 cells and an absolute error of
  1e-11 cells below it.  A millionth of a cell is biologically nil and there the
  difference is set by the solvers' absolute tolerances, not by the model;
* log BCR-ABL ratio: ``|ln rr - ln gvl| <= 1e-5`` wherever ``Y3 >= 1e-6``
  cells (below that the ratio is < 1e-15 %, 12 decades under the PCR limit).

Errors are reported in units of that tolerance (``err / TOL``; <= 1 passes).
The courses run from :func:`gvlmodel.model.simulate.initial_state`, where the
table's ``resistant_fraction`` leaves no resistant cell; one extra case per
variant and setting seeds a resistant subclone (``R0 >= 1``) so that
``R0``, ``R1`` and their feed into ``Y2`` are compared along a course too.
"""
import numpy as np
import pytest

libsbml = pytest.importorskip("libsbml")
roadrunner = pytest.importorskip("roadrunner")

import gvlmodel as g  # noqa: E402
from gvlmodel.workflow import cli  # noqa: E402
from gvlmodel.analysis import sbml  # noqa: E402
from gvlmodel.model.indices import KP, State  # noqa: E402
from gvlmodel.model.model import im_effect, rhs  # noqa: E402
from gvlmodel.model.parameters import PARAMETER_TABLE  # noqa: E402

from conftest import draw_parameters  # noqa: E402

VARIANTS = ("H0", "H1", "H2")
COURSES = {
    "on-IM": [(0.0, 400.0)],
    "off-IM": [(0.0, 0.0)],
    "stop/restart": [(0.0, 400.0), (365.0, 0.0), (545.0, 400.0)],
}
#: a resistant subclone of a few cells at the start (none at the table's resistant_fraction)
RESISTANT = {"resistant_fraction": 1e-2}
#: (course name, schedule, parameter overrides): the cross-checked cases
CASES = [(name, schedule, None) for name, schedule in COURSES.items()] + [
    ("resistant on-IM", COURSES["on-IM"], RESISTANT)]
T_MONTHLY = np.arange(0.0, 1825.0 + 1e-9, 30.0)  # 5 years, monthly
RTOL = 1e-10
GVL_ATOL = 1e-10
RR_ATOL = 1e-16
EXT_GVL_ATOL = 1e-14  # extinction test: decaying progeny of an extinct clone (see above)
EXT_RR_ATOL = 1e-20
FLOOR = 1e-6  # cells
TOL = 1e-5


def _ln_ratio(y):
    return np.log(y[:, State.Y3] / (y[:, State.Y3] + 2.0 * y[:, State.X3]))


def _compare(y_rr, y_gvl):
    """(worst state error, (row, col)), worst |d ln BCR-ABL| under the stated tolerance metric."""
    err = np.abs(y_rr - y_gvl) / np.maximum(np.abs(y_gvl), FLOOR)
    i, j = np.unravel_index(np.argmax(err), err.shape)
    ok = y_gvl[:, State.Y3] >= FLOOR
    dlog = np.abs(_ln_ratio(y_rr[ok]) - _ln_ratio(y_gvl[ok]))
    return float(err[i, j]), (int(i), int(j)), float(dlog.max()) if dlog.size else 0.0


@pytest.fixture(scope="module")
def cross_checks():
    """All cases x variants x settings, simulated by both tools (~4 s)."""
    rows = []
    for variant in VARIANTS:
        for transplant in (True, False):
            for course, schedule, params in CASES:
                text = sbml.sbml_string(params, variant=variant, transplant=transplant, schedule=schedule)
                y_rr = sbml.roadrunner_simulate(text, T_MONTHLY, rtol=RTOL, atol=RR_ATOL)
                res = g.simulate(params, t_out=T_MONTHLY, schedule=schedule, variant=variant, transplant=transplant,
                                 rtol=RTOL, atol=GVL_ATOL, extinction_threshold=0.0, raise_on_failure=True)
                # a much tighter gvlmodel solve attributes the differences to one solver or the other
                ref = g.simulate(params, t_out=T_MONTHLY, schedule=schedule, variant=variant,
                                 transplant=transplant, rtol=1e-13, atol=1e-20, extinction_threshold=0.0,
                                 raise_on_failure=True).y
                err, (i, j), dlog = _compare(y_rr, res.y)
                rows.append(dict(variant=variant, transplant=transplant, course=course, schedule=schedule,
                                 err=err, state=State(j).name, day=float(T_MONTHLY[i]), value=float(res.y[i, j]),
                                 dlog=dlog, y_rr=y_rr, y_gvl=res.y, rr_vs_ref=_compare(y_rr, ref)[0],
                                 gvl_vs_ref=_compare(res.y, ref)[0]))
    return rows


# --------------------------------------------------------------------------
# export and validation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("transplant", [True, False])
def test_export_passes_libsbml_validation(variant, transplant):
    text, warnings = sbml.export(variant=variant, transplant=transplant)
    doc = libsbml.readSBMLFromString(text)
    assert (doc.getLevel(), doc.getVersion()) == (3, 2)
    errors, warnings2 = sbml.validate(doc)
    assert errors == []
    # units consistency is checked too, and the model has none to report
    assert warnings == warnings2 == []


def test_unit_checks_are_active():
    """A dimensionally wrong rule is reported: the zero-warning result above means something."""
    doc = sbml.build_document()
    doc.getModel().getAssignmentRuleByVariable("K_N").setMath(libsbml.parseL3Formula("x0_eq / r_x"))
    errors, warnings = sbml.validate(doc)
    assert errors == [] and any("K_N" in w for w in warnings)


def test_every_table_parameter_with_unit_value_and_source():
    params = draw_parameters(np.random.default_rng(7))
    doc = libsbml.readSBMLFromString(sbml.sbml_string(params, variant="H1", transplant=False))
    model = doc.getModel()
    for name, row in PARAMETER_TABLE.items():
        p = model.getParameter(name)
        assert p is not None, name
        assert p.getConstant()
        assert p.getUnits() == sbml.TABLE_UNITS[row.unit]
        assert p.getValue() == pytest.approx(params[name], rel=1e-14)
        ann = p.getAnnotationString()
        assert sbml.ANNOTATION_NS in ann
        ann_source = p.getAnnotation().getChild(0).getAttrValue("source")
        assert ann_source == row.source
        assert row.source.replace("&", "&amp;") in p.getNotesString()
    dose = model.getParameter("im_dose")
    assert not dose.getConstant() and dose.getUnits() == "mg_per_day"
    assert model.getAssignmentRuleByVariable("im_effect") is not None
    for sid in ("day", "per_day", "cell", "mg_per_day", "ng_per_mL", "cell_per_day", "per_cell_per_day"):
        assert model.getUnitDefinition(sid) is not None
    assert model.getTimeUnits() == "day"


def test_schedule_steps_become_events():
    model = libsbml.readSBMLFromString(sbml.sbml_string(schedule=COURSES["stop/restart"])).getModel()
    assert model.getNumEvents() == 2
    assert model.getParameter("im_dose").getValue() == 400.0
    ev = model.getEvent("dose_step_1")
    assert ev.getEventAssignment(0).getVariable() == "im_dose"
    assert "365" in libsbml.formulaToL3String(ev.getTrigger().getMath())


# --------------------------------------------------------------------------
# same equations
# --------------------------------------------------------------------------


def test_kernel_parameter_ids_cover_kp():
    """Every kernel parameter has exactly one SBML id, and every id is a parameter of the exported model.

    The ids are table rows (constant) or the derived assignment-rule
    parameters; no two kernel parameters share one.
    """
    assert set(sbml.KERNEL_PARAMETER_IDS) == set(KP)
    ids = [sbml.KERNEL_PARAMETER_IDS[k] for k in KP]
    assert len(set(ids)) == len(ids)
    for variant in VARIANTS:
        model = libsbml.readSBMLFromString(sbml.sbml_string(variant=variant)).getModel()
        for k in KP:
            pid = sbml.KERNEL_PARAMETER_IDS[k]
            p = model.getParameter(pid)
            assert p is not None, (k.name, pid)
            if pid in PARAMETER_TABLE:
                assert p.getConstant() and model.getAssignmentRuleByVariable(pid) is None, (k.name, pid)
            else:
                assert not p.getConstant() and model.getAssignmentRuleByVariable(pid) is not None, (k.name, pid)
    # the derived ones are what kernel_parameters() derives
    derived = {k.name for k in KP if sbml.KERNEL_PARAMETER_IDS[k] not in PARAMETER_TABLE}
    assert derived == {"KN", "ZK", "ZIN", "ZRHO", "ZKILL"}


def test_rates_of_change_equal_kernel_rhs(rng):
    """roadrunner's dy/dt of the exported model equals model.rhs at random parameters, states and doses.

    Kernel parameters are read back from the SBML (assignment rules included)
    and equal :func:`kernel_parameters` to the 15 significant digits libSBML
    writes; with those, the rates agree to ~1e-15 of the gross flux per state.
    """
    worst_rate = worst_kp = 0.0
    for k in range(9):
        params = draw_parameters(rng)
        variant, transplant = VARIANTS[k % 3], bool(k % 2)
        r = sbml.load_roadrunner(sbml.sbml_string(params, variant=variant, transplant=transplant))
        kp = g.kernel_parameters(params, variant, transplant)
        kp_sbml = np.array([r.getValue(sbml.KERNEL_PARAMETER_IDS[i]) for i in KP])
        np.testing.assert_array_equal(kp_sbml == 0.0, kp == 0.0)  # the variant's zeros are exact
        worst_kp = max(worst_kp, float(np.max(np.abs(kp_sbml - kp) / np.where(kp == 0, 1.0, np.abs(kp)))))
        ids = list(r.model.getFloatingSpeciesIds())
        order = [ids.index(s.name) for s in State]
        stoich = np.abs(np.asarray(r.getFullStoichiometryMatrix()))[order]
        for _ in range(4):
            y = np.exp(rng.uniform(np.log(1e-3), np.log(1e11), len(State)))
            dose = float(rng.choice([0.0, 200.0, 400.0, 600.0, 800.0]))
            r.setValue("im_dose", dose)
            for s in State:
                r.setValue(s.name, float(y[s]))
            e = im_effect(dose, params["im_css_400"], params["im_ec50"])
            assert r.getValue("im_effect") == pytest.approx(e, rel=1e-13, abs=0.0)
            rates = np.asarray(r.getRatesOfChange())[order]
            gross = stoich @ np.abs(np.asarray(r.model.getReactionRates()))
            expected = np.empty(len(State))
            rhs(y, kp_sbml, e, expected)
            worst_rate = max(worst_rate, float(np.max(np.abs(rates - expected) / gross)))
    assert worst_kp < 1e-13
    assert worst_rate < 1e-12


def test_im_effect_rule_matches_im_effect():
    r = sbml.load_roadrunner(sbml.sbml_string())
    p = g.default_parameters()
    for dose in (0.0, 1e-9, 100.0, 400.0, 600.0, 800.0, 1000.0):
        r.setValue("im_dose", dose)
        assert r.getValue("im_effect") == pytest.approx(im_effect(dose, p["im_css_400"], p["im_ec50"]), rel=1e-15, abs=0.0)
    r.setValue("im_dose", 400.0)
    assert r.getValue("im_effect") == pytest.approx(1.0, rel=1e-15)


# --------------------------------------------------------------------------
# same courses
# --------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_roadrunner_matches_gvlmodel(cross_checks, variant):
    rows = [r for r in cross_checks if r["variant"] == variant]
    assert len(rows) == 2 * len(CASES)
    for r in rows:
        where = f"{r['course']} {variant} transplant={r['transplant']}: {r['state']} day {r['day']:g}"
        assert np.all(np.isfinite(r["y_rr"])), where
        assert r["err"] / TOL <= 1.0, f"{where}: error {r['err'] / TOL:.3g} x tolerance"
        assert r["dlog"] / TOL <= 1.0, f"{r['course']} {variant}: |d ln BCR-ABL| {r['dlog'] / TOL:.3g} x tolerance"
    # the courses differ (the dose events act): on-IM ends far below off-IM
    ends = {r["course"]: r["y_gvl"][-1, State.Y3] for r in rows if r["transplant"]}
    assert ends["on-IM"] < 1e-3 * ends["off-IM"]
    # the resistant subclone is present in both tools and only in its case
    for r in rows:
        for y in (r["y_rr"], r["y_gvl"]):
            if r["course"] == "resistant on-IM":
                assert y[0, State.R0] >= 1.0 and y[0, State.R1] > 0.0
            else:
                assert np.all(y[:, [State.R0, State.R1]] == 0.0)
    if variant == "H0":  # imatinib alone: the resistant clone escapes and, through R1 -> Y2, drives Y3 up
        res = {r["transplant"]: r for r in rows if r["course"] == "resistant on-IM"}
        assert res[True]["y_gvl"][-1, State.R0] > 1e5 * res[True]["y_gvl"][0, State.R0]
        assert res[True]["y_gvl"][-1, State.Y3] > 1e3 * ends["on-IM"]


def test_report_largest_disagreement(cross_checks):
    """Print (``pytest -rP -k largest``) the largest disagreement and which solver it comes from."""
    worst = max(cross_checks, key=lambda r: r["err"])
    worst_log = max(cross_checks, key=lambda r: r["dlog"])
    setting = "transplant" if worst["transplant"] else "autologous"
    print(f"largest state disagreement: {worst['err']:.2e} (relative; {worst['err'] / TOL:.2g} x tolerance) "
          f"in {worst['state']} "
          f"({worst['value']:.3g} cells) at day {worst['day']:g}, course {worst['course']}, "
          f"variant {worst['variant']}, {setting}; largest |d ln BCR-ABL|: {worst_log['dlog']:.2e} "
          f"({worst_log['dlog'] / TOL:.2g} x tolerance) "
          f"({worst_log['course']}, {worst_log['variant']})")
    print(f"  in that course, against gvlmodel at rtol 1e-13: roadrunner {worst['rr_vs_ref']:.1e}, "
          f"gvlmodel {worst['gvl_vs_ref']:.1e}")
    for who in ("rr_vs_ref", "gvl_vs_ref"):
        r = max(cross_checks, key=lambda r: r[who])
        print(f"  largest {who}: {r[who]:.1e} ({r['course']}, {r['variant']}, transplant={r['transplant']})")
    off = [r["err"] for r in cross_checks if r["course"] == "off-IM"]
    print(f"  off-IM courses: largest disagreement {max(off):.1e}")
    assert worst["err"] / TOL <= 1.0 and worst_log["dlog"] / TOL <= 1.0


LSC = [State.D, State.Q, State.Y0, State.R0]
#: without the dormant pool imatinib exhausts the clone within the course, so the event fires
NO_DORMANCY = {"dormancy_in": 0.0}


@pytest.mark.parametrize("params, threshold", [(NO_DORMANCY, 1.0), ({**RESISTANT, **NO_DORMANCY}, 8.0)],
                         ids=["sensitive", "resistant"])
def test_extinction_event_matches_integrator(params, threshold):
    """With ``extinction_threshold`` the SBML event sets D, Q, Y0, R0 to 0 when D + Q + Y0 + R0 falls below it,
    as the integrator does.

    The event fires in the same month in both tools (LSCs above the threshold
    at the output before, exactly zero after), and every state agrees at every
    output.  In H2 the effectors hold a resistant subclone at a few cells, so
    its case uses a threshold of 8 cells: the event then has to clear ``R0``.
    """
    schedule = COURSES["stop/restart"]
    model = libsbml.readSBMLFromString(sbml.sbml_string(params, variant="H2", schedule=schedule,
                                                        extinction_threshold=threshold)).getModel()
    ev = model.getEvent("extinction")
    assert ev is not None
    assert sorted(ev.getEventAssignment(i).getVariable() for i in range(ev.getNumEventAssignments())) == \
        sorted(s.name for s in LSC)
    y_rr = sbml.roadrunner_simulate(libsbml.writeSBMLToString(model.getSBMLDocument()), T_MONTHLY,
                                    rtol=RTOL, atol=EXT_RR_ATOL)
    res = g.simulate(params, t_out=T_MONTHLY, schedule=schedule, variant="H2", rtol=RTOL, atol=EXT_GVL_ATOL,
                     extinction_threshold=threshold)
    # extinct inside the course, with half a year of outputs after it
    assert res.extinct and res.t_extinct < T_MONTHLY[-1] - 180
    before, after = T_MONTHLY < res.t_extinct, T_MONTHLY > res.t_extinct
    for y in (y_rr, res.y):
        assert y[before][-1, LSC].sum() >= threshold
        if "resistant_fraction" in params:
            assert y[before][-1, State.R0] >= 1.0  # the event clears a resistant clone, not an empty one
    assert np.all(res.y[after][:, LSC] == 0.0)
    # CVODE leaves round-off (~1e-24 cells) where the integrator has exact zeros
    assert np.all(np.abs(y_rr[after][:, LSC]) < 1e-20)
    err, _, dlog = _compare(y_rr, res.y)
    assert err / TOL <= 1.0 and dlog / TOL <= 1.0, f"error {err / TOL:.3g}, |d ln BCR-ABL| {dlog / TOL:.3g} x tolerance"


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------


def test_cli_export_loads_in_roadrunner(tmp_path, capsys):
    out = tmp_path / "model.xml"
    rc = cli.main(["export-sbml", "--variant", "H1", "--parameters", "default", "--no-transplant",
                   "--bcr-abl", "0.05", "--schedule", "0:400,365:0", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "0 errors" in capsys.readouterr().out
    text = out.read_text()
    assert text == sbml.sbml_string(variant="H1", transplant=False, bcr_abl=0.05, schedule=[(0, 400), (365, 0)],
                                     parameter_set_name="default")
    r = sbml.load_roadrunner(text)
    y0 = g.initial_state(bcr_abl=0.05, variant="H1", transplant=False)
    assert r.getValue("bcr_abl_percent") == pytest.approx(0.05, rel=1e-12)
    assert r.getValue("Z") == pytest.approx(y0[State.Z], rel=1e-14)
    res = r.simulate(0, 730, 3)
    assert np.all(np.isfinite(res))
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("args, option, allowed", [
    (["--variant", "H3"], "--variant", "H0, H1, H2"),
    (["--parameters", "no_such_set"], "--parameters", "default"),
    (["--bcr-abl", "150"], "--bcr-abl", "[0, 100)"),
    (["--bcr-abl", "lots"], "--bcr-abl", "number"),
    (["--schedule", "0:400,100"], "--schedule", "DAY:MG"),
    (["--schedule", "30:400"], "--schedule", "day 0"),
    (["--schedule", "0:400,90:5000"], "--schedule", "mg/day"),
    (["--extinction-threshold", "-1"], "--extinction-threshold", "must be >= 0"),
])
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, args, option, allowed):
    out = tmp_path / "model.xml"
    rc = cli.main(["export-sbml", *args, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert option in err and allowed in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.iterdir())


def test_cli_without_libsbml_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "libsbml", None)  # import libsbml -> ImportError
    out = tmp_path / "model.xml"
    rc = cli.main(["export-sbml", "--out", str(out)])
    assert rc == 2
    assert 'pip install "gvlmodel[sbml]"' in capsys.readouterr().err
    assert not out.exists()


def test_dose_set_between_roadrunner_calls_equals_events():
    """The other way to change the dose: set ``im_dose`` between ``simulate`` calls (no events)."""
    schedule = COURSES["stop/restart"]
    with_events = sbml.roadrunner_simulate(sbml.sbml_string(schedule=schedule), [0.0, 1825.0], rtol=RTOL,
                                           atol=RR_ATOL)[-1]
    r = sbml.load_roadrunner(sbml.sbml_string(), rtol=RTOL, atol=RR_ATOL)
    r.timeCourseSelections = [s.name for s in State]
    edges = [day for day, _ in schedule] + [1825.0]
    for (day, dose), end in zip(schedule, edges[1:]):
        r["im_dose"] = dose
        y = np.asarray(r.simulate(day, end, 2))[-1]
    np.testing.assert_allclose(y, with_events, rtol=1e-8, atol=1e-12)
