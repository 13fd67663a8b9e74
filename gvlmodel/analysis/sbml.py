"""SBML export of the model, and a libRoadRunner runner for cross-checks.

``gvlmodel export-sbml --variant H2 --parameters default --out model.xml``
writes one variant / setting / parameter set / initial state as SBML Level 3
Version 2 (python-libsbml; optional extra ``gvlmodel[sbml]``).

Layout of the exported model (it expresses exactly what the compiled kernel
:func:`gvlmodel.model.model.rhs` computes):

* one compartment ``patient`` (size 1); thirteen species ``X0..X3, Q, Y0..Y3,
  R0, R1, Z, D`` (:class:`gvlmodel.model.indices.State`) in cells
  (``hasOnlySubstanceUnits``: amounts, not concentrations), initial amounts
  from :func:`gvlmodel.model.simulate.initial_state`;
* every row of the parameter table :data:`gvlmodel.model.parameters.PARAMETER_TABLE`
  is a constant SBML parameter under its own name, with its unit (a unit
  definition: ``per_day``, ``cell``, ``ng_per_mL`` ...), its description as
  ``name``, and its source, bounds and scale in the ``notes`` and in a
  ``gvl:parameter`` annotation (namespace :data:`ANNOTATION_NS`);
* kernel parameters that are not table rows are assignment rules:
  ``K_N = x0_eq / (r_x/d0 - 1)``; ``K_z`` (leukemic mature cells of peak
  stimulation) from ``z_half`` (%) and the normal mature cells at homeostasis
  ``x3_eq`` (:func:`gvlmodel.model.parameters.stimulus_scale`); ``z_influx``, ``z_expand``,
  ``z_kill_active`` select the donor or autologous row and apply the variant
  (H0 zeroes all three, H1 ``z_expand``), as
  :func:`gvlmodel.model.parameters.kernel_parameters` does;
  :data:`KERNEL_PARAMETER_IDS` maps each :class:`gvlmodel.model.indices.KP` to its
  SBML id;
* imatinib: ``im_dose`` (mg/day, ``constant=false``; events of the dose
  schedule assign it), ``im_exposure = im_css_400 * im_dose / im_dose_ref``
  and ``im_effect`` (assignment rule, :func:`gvlmodel.model.model.im_effect`);
* the named fluxes of :mod:`gvlmodel.model.model` are reactions ``v_*`` (cells/day),
  auxiliary quantities (``phi``, ``lsc_total``, ``lsc_occupancy``,
  ``immune_kill``, ``stimulus_ratio``, ``effector_stimulation``,
  ``bcr_abl_percent``) assignment rules.  The one flux that can change sign,
  logistic LSC self-renewal ``r_y (1 - (D + Q + Y0 + R0)/K_L) Y0`` (and the same for
  ``R0``), is written as two irreversible reactions with non-negative rates:
  renewal ``r_y Y0`` and crowding loss ``r_y (D + Q + Y0 + R0)/K_L Y0``;
* dose changes after day 0 are SBML events ``dose_step_<i>`` (trigger
  ``time >= day``); an optional extinction event (``D + Q + Y0 + R0 < threshold``
  sets all four to 0, as the integrator's event does) is added only when asked for.

libsbml and roadrunner are imported lazily: the rest of the package works
without them.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..core.version import __version__
from ..core.errors import InputError
from ..core import limits
from ..model.indices import KP, STATE_DESCRIPTIONS, N_STATES, State
from ..model.parameters import PARAMETER_TABLE, Variant, available_parameter_sets, kernel_parameters, parameter_set, \
    resolve_parameters

INSTALL_HINT = 'pip install "gvlmodel[sbml]"'
ANNOTATION_NS = "urn:gvlmodel:sbml:annotation:1"
ANNOTATION_PREFIX = "gvl"
LEVEL, VERSION = 3, 2

#: table unit string -> SBML unit definition id
TABLE_UNITS = {
    "1/day": "per_day",
    "cells": "cell",
    "%": "percent",
    "cells/day": "cell_per_day",
    "1/(cell*day)": "per_cell_per_day",
    "ng/mL": "ng_per_mL",
    "1": "dimensionless",
}

#: kernel parameter -> SBML id (table name, or an assignment-rule parameter)
KERNEL_PARAMETER_IDS = {
    KP.D0: "d0", KP.D1: "d1", KP.D2: "d2", KP.D3: "d3",
    KP.RX: "r_x", KP.AX: "a_x", KP.BX: "b_x", KP.CX: "c_x", KP.KN: "K_N",
    KP.RY: "r_y", KP.KL: "lsc_capacity", KP.AY: "a_y", KP.BY: "b_y", KP.CY: "c_y",
    KP.QIN: "q_in", KP.QOUT: "q_out", KP.DIN: "dormancy_in", KP.DOUT: "dormancy_out",
    KP.IMKILL: "im_kill_lsc", KP.IMKILLP: "im_kill_progenitor",
    KP.ZIN: "z_influx", KP.ZD: "z_death", KP.ZRHO: "z_expand", KP.ZK: "K_z",
    KP.ZKILL: "z_kill_active", KP.ZQREL: "z_quiescent_kill", KP.ZDREL: "z_dormant_kill",
    KP.ZSUPP: "immunosuppression",
}
if set(KERNEL_PARAMETER_IDS) != set(KP):  # import-time guard; tests/test_sbml.py checks the values too
    raise RuntimeError("sbml: KERNEL_PARAMETER_IDS does not cover KP exactly: "
                       f"{sorted(k.name for k in set(KP) ^ set(KERNEL_PARAMETER_IDS))}")

VARIANT_NOTES = {
    Variant.H0: "H0: imatinib alone (no effector influx, expansion or killing)",
    Variant.H1: "H1: static GVL (effector influx, death and killing; no expansion)",
    Variant.H2: "H2: re-enabled GVL (antigen-driven effector expansion in an immune window)",
}


def _libsbml():
    try:
        import libsbml
    except ImportError:
        raise InputError(f"export-sbml: python-libsbml is not installed; install it with: {INSTALL_HINT}") from None
    return libsbml


def _roadrunner():
    try:
        import roadrunner
    except ImportError:
        raise InputError(f"libroadrunner is not installed; install it with: {INSTALL_HINT}") from None
    return roadrunner


# --------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------


def _check(rc, what: str) -> None:
    import libsbml

    if rc is not None and isinstance(rc, int) and rc != libsbml.LIBSBML_OPERATION_SUCCESS:
        raise RuntimeError(f"libsbml: {what} failed: {libsbml.OperationReturnValue_toString(rc)}")


def _math(model, formula: str):
    import libsbml

    ast = libsbml.parseL3FormulaWithModel(formula, model)  # numbers may carry unit ids: "1 dimensionless"
    if ast is None:
        raise RuntimeError(f"libsbml: cannot parse {formula!r}: {libsbml.getLastParseL3Error()}")
    return ast


def _notes(text: str) -> str:
    from xml.sax.saxutils import escape  # (imports urllib: ~20 ms that every command would pay, see the CLI's parser)

    paras = "".join(f"<p>{escape(line)}</p>" for line in text.split("\n"))
    return f'<body xmlns="http://www.w3.org/1999/xhtml">{paras}</body>'


def _annotation(tag: str, attrs: Mapping[str, object]) -> str:
    from xml.sax.saxutils import quoteattr

    body = " ".join(f"{k}={quoteattr(str(v))}" for k, v in attrs.items())
    return f'<{ANNOTATION_PREFIX}:{tag} xmlns:{ANNOTATION_PREFIX}="{ANNOTATION_NS}" {body}/>'


def _unit_definitions(model) -> None:
    import libsbml as L

    day = 86400.0
    defs = {
        "day": [(L.UNIT_KIND_SECOND, 1, 0, day)],
        "per_day": [(L.UNIT_KIND_SECOND, -1, 0, day)],
        "cell": [(L.UNIT_KIND_ITEM, 1, 0, 1.0)],
        "cell_per_day": [(L.UNIT_KIND_ITEM, 1, 0, 1.0), (L.UNIT_KIND_SECOND, -1, 0, day)],
        "per_cell_per_day": [(L.UNIT_KIND_ITEM, -1, 0, 1.0), (L.UNIT_KIND_SECOND, -1, 0, day)],
        "mg_per_day": [(L.UNIT_KIND_GRAM, 1, -3, 1.0), (L.UNIT_KIND_SECOND, -1, 0, day)],
        "ng_per_mL": [(L.UNIT_KIND_GRAM, 1, -9, 1.0), (L.UNIT_KIND_LITRE, -1, -3, 1.0)],
        "percent": [(L.UNIT_KIND_DIMENSIONLESS, 1, 0, 0.01)],
        "square_metre": [(L.UNIT_KIND_METRE, 2, 0, 1.0)],  # unused; set so that tools need not assume one
    }
    for uid, units in defs.items():
        ud = model.createUnitDefinition()
        _check(ud.setId(uid), f"unit {uid}")
        for kind, exponent, scale, multiplier in units:
            u = ud.createUnit()
            _check(u.setKind(kind), uid)
            _check(u.setExponent(exponent), uid)
            _check(u.setScale(scale), uid)
            _check(u.setMultiplier(multiplier), uid)


def _parameter(model, pid: str, value: float | None, units: str, *, constant: bool, name: str = "",
               notes: str = "", annotation: str = ""):
    p = model.createParameter()
    _check(p.setId(pid), pid)
    if name:
        _check(p.setName(name), pid)
    if value is not None:
        _check(p.setValue(float(value)), pid)
    _check(p.setUnits(units), pid)
    _check(p.setConstant(constant), pid)
    if notes:
        _check(p.setNotes(_notes(notes)), f"{pid} notes")
    if annotation:
        _check(p.setAnnotation(annotation), f"{pid} annotation")
    return p


def _assignment(model, pid: str, units: str, formula: str, name: str, notes: str = "") -> None:
    _parameter(model, pid, None, units, constant=False, name=name, notes=notes)
    r = model.createAssignmentRule()
    _check(r.setVariable(pid), pid)
    _check(r.setMath(_math(model, formula)), pid)


def _reaction(model, rid: str, name: str, rate: str, reactants=(), products=(), modifiers=()) -> None:
    r = model.createReaction()
    _check(r.setId(rid), rid)
    _check(r.setName(name), rid)
    _check(r.setReversible(False), rid)
    for sid in reactants:
        s = r.createReactant()
        _check(s.setSpecies(sid), rid)
        _check(s.setStoichiometry(1.0), rid)
        _check(s.setConstant(True), rid)
    for sid in products:
        s = r.createProduct()
        _check(s.setSpecies(sid), rid)
        _check(s.setStoichiometry(1.0), rid)
        _check(s.setConstant(True), rid)
    for sid in modifiers:
        m = r.createModifier()
        _check(m.setSpecies(sid), rid)
    kl = r.createKineticLaw()
    _check(kl.setMath(_math(model, rate)), rid)


def _event(model, eid: str, trigger: str, assignments: Mapping[str, str], name: str) -> None:
    ev = model.createEvent()
    _check(ev.setId(eid), eid)
    _check(ev.setName(name), eid)
    _check(ev.setUseValuesFromTriggerTime(True), eid)
    tr = ev.createTrigger()
    _check(tr.setInitialValue(False), eid)
    _check(tr.setPersistent(True), eid)
    _check(tr.setMath(_math(model, trigger)), eid)
    for var, formula in assignments.items():
        ea = ev.createEventAssignment()
        _check(ea.setVariable(var), eid)
        _check(ea.setMath(_math(model, formula)), eid)


def _fmt(x: float) -> str:
    return repr(float(x))


# --------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------

# (reaction id, name, rate law in cells/day, reactants, products, modifiers): the named fluxes of model.rhs
REACTIONS = (
    ("v_x0_renewal", "normal stem-cell self-renewal", "r_x * phi * X0", (), ("X0",), ("X0",)),
    ("v_x0_death", "normal stem-cell death", "d0 * X0", ("X0",), (), ()),
    ("v_x1_production", "normal progenitor production", "a_x * X0", (), ("X1",), ("X0",)),
    ("v_x1_death", "normal progenitor death", "d1 * X1", ("X1",), (), ()),
    ("v_x2_production", "normal differentiated-cell production", "b_x * X1", (), ("X2",), ("X1",)),
    ("v_x2_death", "normal differentiated-cell death", "d2 * X2", ("X2",), (), ()),
    ("v_x3_production", "normal mature-cell production", "c_x * X2", (), ("X3",), ("X2",)),
    ("v_x3_death", "normal mature-cell death", "d3 * X3", ("X3",), (), ()),
    ("v_to_quiescence", "cycling LSC entering quiescence", "q_in * Y0", ("Y0",), ("Q",), ()),
    ("v_from_quiescence", "quiescent LSC resuming cycling", "q_out * Q", ("Q",), ("Y0",), ()),
    ("v_q_immune_kill", "immune kill of quiescent LSCs", "z_quiescent_kill * immune_kill * Q", ("Q",), (), ("Z",)),
    ("v_to_dormancy", "quiescent LSC entering deep dormancy", "dormancy_in * Q", ("Q",), ("D",), ()),
    ("v_from_dormancy", "dormant LSC returning to quiescence", "dormancy_out * D", ("D",), ("Q",), ()),
    ("v_d_immune_kill", "immune kill of dormant LSCs", "z_dormant_kill * immune_kill * D", ("D",), (), ("Z",)),
    ("v_y0_renewal", "cycling LSC self-renewal at low density", "r_y * Y0", (), ("Y0",), ("Y0",)),
    ("v_y0_crowding", "cycling LSC self-renewal lost to crowding (logistic)", "r_y * lsc_occupancy * Y0",
     ("Y0",), (), ("D", "Q", "R0")),
    ("v_y0_death", "cycling LSC death", "d0 * Y0", ("Y0",), (), ()),
    ("v_y0_drug_kill", "imatinib kill of cycling LSCs", "im_kill_lsc * im_effect * Y0", ("Y0",), (), ()),
    ("v_y0_immune_kill", "immune kill of cycling LSCs", "immune_kill * Y0", ("Y0",), (), ("Z",)),
    ("v_y1_production", "leukemic progenitor production", "a_y * Y0", (), ("Y1",), ("Y0",)),
    ("v_y1_death", "leukemic progenitor death", "d1 * Y1", ("Y1",), (), ()),
    ("v_y1_drug_kill", "imatinib kill of leukemic progenitors", "im_kill_progenitor * im_effect * Y1",
     ("Y1",), (), ()),
    ("v_y1_immune_kill", "immune kill of leukemic progenitors", "immune_kill * Y1", ("Y1",), (), ("Z",)),
    ("v_y2_production", "leukemic differentiated-cell production (from both subclones' progenitors)",
     "b_y * (Y1 + R1)", (), ("Y2",), ("Y1", "R1")),
    ("v_y2_death", "leukemic differentiated-cell death", "d2 * Y2", ("Y2",), (), ()),
    ("v_y2_immune_kill", "immune kill of leukemic differentiated cells", "immune_kill * Y2", ("Y2",), (), ("Z",)),
    ("v_y3_production", "leukemic mature-cell production", "c_y * Y2", (), ("Y3",), ("Y2",)),
    ("v_y3_death", "leukemic mature-cell death", "d3 * Y3", ("Y3",), (), ()),
    ("v_y3_immune_kill", "immune kill of leukemic mature cells", "immune_kill * Y3", ("Y3",), (), ("Z",)),
    ("v_r0_renewal", "resistant LSC self-renewal at low density", "r_y * R0", (), ("R0",), ("R0",)),
    ("v_r0_crowding", "resistant LSC self-renewal lost to crowding (logistic)", "r_y * lsc_occupancy * R0",
     ("R0",), (), ("D", "Q", "Y0")),
    ("v_r0_death", "resistant LSC death", "d0 * R0", ("R0",), (), ()),
    ("v_r0_immune_kill", "immune kill of resistant LSCs", "immune_kill * R0", ("R0",), (), ("Z",)),
    ("v_r1_production", "resistant progenitor production", "a_y * R0", (), ("R1",), ("R0",)),
    ("v_r1_death", "resistant progenitor death", "d1 * R1", ("R1",), (), ()),
    ("v_r1_immune_kill", "immune kill of resistant progenitors", "immune_kill * R1", ("R1",), (), ("Z",)),
    ("v_z_influx", "effector influx", "z_influx", (), ("Z",), ()),
    ("v_z_death", "effector death / contraction", "z_death * Z", ("Z",), (), ()),
    ("v_z_expansion", "antigen-driven effector expansion", "effector_stimulation * Z", (), ("Z",), ("Z", "Y3")),
)


def _parse_schedule(schedule) -> list[tuple[float, float]]:
    from ..model.simulate import DoseSchedule

    sched = DoseSchedule.from_steps(schedule)
    if sched.start_day[0] != 0.0:
        raise InputError(f"schedule: the first step must start at day 0 (the model's start), got day {sched.start_day[0]:g}")
    return [(float(d), float(m)) for d, m in zip(sched.start_day, sched.dose_mg)]


def build_document(params: Mapping[str, float] | None = None, *, variant="H2", transplant: bool = True,
                   bcr_abl: float = 0.1, schedule=((0.0, 400.0),), extinction_threshold: float = 0.0,
                   parameter_set_name: str | None = None):
    """The model as a ``libsbml.SBMLDocument`` (SBML L3V2), not yet validated.

    ``params``: overrides of the parameter table (or a full set); ``variant``,
    ``transplant``: as in :func:`gvlmodel.simulate`; ``bcr_abl``: initial
    BCR-ABL % (:func:`gvlmodel.model.simulate.initial_state`); ``schedule``:
    ``[(day, dose_mg), ...]`` starting at day 0 (later steps become events);
    ``extinction_threshold``: LSCs (``D + Q + Y0 + R0``) below which ``Q``,
    ``Y0`` and ``R0`` are set to 0 by an event (0: no event, the default);
    ``parameter_set_name``: recorded in the annotation.
    """
    L = _libsbml()
    from ..model.parameters import parse_variant
    from ..model.simulate import initial_state

    p = resolve_parameters(params)
    variant = parse_variant(variant)
    kernel_parameters(p, variant, transplant)  # validates transplant as the kernel does
    y0 = initial_state(p, bcr_abl=bcr_abl, variant=variant, transplant=transplant)
    steps = _parse_schedule(schedule)
    if isinstance(extinction_threshold, bool) or not isinstance(extinction_threshold, (int, float, np.floating)) \
            or not math.isfinite(extinction_threshold) or extinction_threshold < 0:
        raise InputError(f"extinction_threshold: expected a non-negative number of cells, got {extinction_threshold!r}")
    setting = "allo" if transplant else "auto"
    setting_words = "transplanted (donor effectors)" if transplant else "not transplanted (autologous effectors)"

    doc = L.SBMLDocument(LEVEL, VERSION)
    model = doc.createModel()
    mid = f"gvlmodel_{variant.value}_{'transplant' if transplant else 'autologous'}"
    _check(model.setId(mid), "model id")
    _check(model.setName(f"gvlmodel {__version__}: CML stem cells, imatinib and GVL effectors; "
                         f"variant {variant.value}, {setting_words}"), "model name")
    _check(model.setNotes(_notes(
        f"Exported by gvlmodel {__version__} (gvlmodel.analysis.sbml).\n"
        f"{VARIANT_NOTES[variant]}; patient {setting_words}.\n"
        f"Parameter set: {parameter_set_name or 'custom'}; initial BCR-ABL {bcr_abl:g} %.\n"
        f"Imatinib schedule (day: mg/day): " + ", ".join(f"{d:g}: {m:g}" for d, m in steps) + ".\n"
        + ("Extinction event at D + Q + Y0 + R0 < " + f"{extinction_threshold:g} cells." if extinction_threshold > 0
           else "No extinction event (the clone is never set to zero).")
        + "\nTime in days, cells as amounts (compartment size 1).")), "model notes")
    _check(model.setAnnotation(_annotation("export", {
        "gvlmodel_version": __version__, "variant": variant.value, "transplant": str(bool(transplant)).lower(),
        "parameter_set": parameter_set_name or "custom", "bcr_abl_percent": _fmt(bcr_abl),
        "schedule": ";".join(f"{d:g}:{m:g}" for d, m in steps), "extinction_threshold": _fmt(extinction_threshold),
    })), "model annotation")
    _unit_definitions(model)
    for attr, unit in (("setTimeUnits", "day"), ("setSubstanceUnits", "cell"), ("setExtentUnits", "cell"),
                       ("setVolumeUnits", "litre"), ("setAreaUnits", "square_metre"), ("setLengthUnits", "metre")):
        _check(getattr(model, attr)(unit), attr)

    comp = model.createCompartment()
    _check(comp.setId("patient"), "compartment")
    _check(comp.setName("the patient (cells are counted as amounts; size 1)"), "compartment")
    _check(comp.setSpatialDimensions(3), "compartment")
    _check(comp.setSize(1.0), "compartment")
    _check(comp.setUnits("litre"), "compartment")
    _check(comp.setConstant(True), "compartment")

    for s in State:
        sp = model.createSpecies()
        _check(sp.setId(s.name), s.name)
        _check(sp.setName(STATE_DESCRIPTIONS[s]), s.name)
        _check(sp.setCompartment("patient"), s.name)
        _check(sp.setInitialAmount(float(y0[s])), s.name)
        _check(sp.setSubstanceUnits("cell"), s.name)
        _check(sp.setHasOnlySubstanceUnits(True), s.name)
        _check(sp.setBoundaryCondition(False), s.name)
        _check(sp.setConstant(False), s.name)

    # --- the parameter table, every row, with unit and source ---
    for row in PARAMETER_TABLE.values():
        if row.unit not in TABLE_UNITS:
            raise RuntimeError(f"sbml: no unit definition for table unit {row.unit!r} of {row.name}")
        note = (f"{row.description}. Source: {row.source}. Unit: {row.unit}; bounds [{row.lower:g}, {row.upper:g}] "
                f"({row.scale} scale); table default {row.value:g}.")
        ann = _annotation("parameter", {"source": row.source, "unit": row.unit, "lower": _fmt(row.lower),
                                        "upper": _fmt(row.upper), "scale": row.scale, "group": row.group,
                                        "default": _fmt(row.value)})
        _parameter(model, row.name, p[row.name], TABLE_UNITS[row.unit], constant=True, name=row.description,
                   notes=note, annotation=ann)

    # --- imatinib dose -> exposure -> effect ---
    _parameter(model, "im_dose", steps[0][1], "mg_per_day", constant=False, name="imatinib dose (mg/day)",
               notes="Imatinib dose; 0 = off drug. Changed by the dose_step_* events of the schedule.")
    _parameter(model, "im_dose_ref", 400.0, "mg_per_day", constant=True, name="reference imatinib dose",
               notes="The dose at which the table's imatinib kill rates apply.")
    _assignment(model, "im_exposure", "ng_per_mL", "im_css_400 * im_dose / im_dose_ref",
                "steady-state imatinib exposure", "Dose-linear steady-state exposure (gvlmodel.model.model.im_effect).")
    _assignment(model, "im_effect", "dimensionless",
                "piecewise(0 dimensionless, im_dose <= 0 mg_per_day, "
                "(im_exposure / (im_exposure + im_ec50)) / (im_css_400 / (im_css_400 + im_ec50)))",
                "imatinib effect relative to 400 mg/day",
                "Emax (Hill 1) on exposure, normalised to 1 at 400 mg/day, 0 off drug (gvlmodel.model.model.im_effect).")

    # --- derived kernel parameters: niche constant, setting and variant ---
    _assignment(model, "K_N", "cell", "x0_eq / (r_x / d0 - 1 dimensionless)", "niche feedback constant",
                "Homeostasis r_x / (1 + x0_eq / K_N) = d0 (gvlmodel.model.parameters.kernel_parameters).")
    _assignment(model, "x3_eq", "cell", "x0_eq * (a_x / d1) * (b_x / d2) * (c_x / d3)",
                "normal mature cells at homeostasis",
                "x0_eq (a_x/d1)(b_x/d2)(c_x/d3) (gvlmodel.model.parameters.normal_mature_cells).")
    _assignment(model, "K_z", "cell",
                "z_half / (100 percent) / (1 dimensionless - z_half / (100 percent)) * 2 dimensionless * x3_eq",
                "leukemic mature cells of peak effector stimulation",
                "Y3 giving the BCR-ABL ratio z_half against normal hematopoiesis at homeostasis: "
                "r / (1 - r) * 2 x3_eq with r = z_half / 100 (gvlmodel.model.parameters.stimulus_scale).")
    zero = {"z_influx": "0 cell_per_day", "z_expand": "0 per_day", "z_kill_active": "0 per_cell_per_day"}
    active = {"z_influx": f"z_influx_{setting}", "z_expand": f"z_expand_{setting}", "z_kill_active": "z_kill"}
    off = {Variant.H0: {"z_influx", "z_expand", "z_kill_active"}, Variant.H1: {"z_expand"}, Variant.H2: set()}[variant]
    for pid, units, name in (("z_influx", "cell_per_day", "effector influx in this variant and setting"),
                             ("z_expand", "per_day", "peak effector expansion in this variant and setting"),
                             ("z_kill_active", "per_cell_per_day", "kill rate per effector cell in this variant")):
        why = f"0 in variant {variant.value}" if pid in off else f"= {active[pid]} ({setting_words})"
        _assignment(model, pid, units, zero[pid] if pid in off else active[pid], name, why + ".")

    # --- auxiliary quantities of the fluxes ---
    _assignment(model, "phi", "dimensionless", "1 dimensionless / (1 dimensionless + X0 / K_N)",
                "niche feedback on normal stem-cell self-renewal", "phi = 1 / (1 + X0 / K_N).")
    _assignment(model, "lsc_total", "cell", "D + Q + Y0 + R0", "leukemic stem cells of both subclones",
                "D + Q + Y0 + R0: the crowding variable and the extinction variable.")
    _assignment(model, "lsc_occupancy", "dimensionless", "lsc_total / lsc_capacity",
                "occupancy of the leukemic stem-cell carrying capacity",
                "(D + Q + Y0 + R0) / K_L; the crowding factor of LSC self-renewal is 1 - lsc_occupancy.")
    _assignment(model, "immune_kill", "per_day", "z_kill_active * Z", "immune kill rate per leukemic cell")
    _assignment(model, "stimulus_ratio", "dimensionless", "Y3 / K_z", "effector stimulus u = Y3 / K_z")
    _assignment(model, "effector_stimulation", "per_day",
                "(1 dimensionless - immunosuppression) * z_expand * 2 dimensionless * stimulus_ratio "
                "/ (1 dimensionless + stimulus_ratio * stimulus_ratio)",
                "per-capita effector expansion (1-s) rho 2u/(1+u^2)")
    _assignment(model, "bcr_abl_percent", "percent", "100 percent * Y3 / (Y3 + 2 dimensionless * X3)",
                "BCR-ABL ratio (%) in mature cells",
                "100 Y3 / (Y3 + 2 X3) (gvlmodel.model.measurement.bcr_abl_percent).")

    for rid, name, rate, reactants, products, modifiers in REACTIONS:
        _reaction(model, rid, name, rate, reactants, products, modifiers)

    # --- events: dose schedule, optional extinction ---
    for i, (day, dose) in enumerate(steps[1:], start=1):
        _event(model, f"dose_step_{i}", f"time >= {_fmt(day)} day", {"im_dose": f"{_fmt(dose)} mg_per_day"},
               f"imatinib {dose:g} mg/day from day {day:g}")
    if extinction_threshold > 0:
        _parameter(model, "extinction_threshold", extinction_threshold, "cell", constant=True,
                   name="extinction threshold (LSCs)",
                   notes="Fewer leukemic stem cells (D + Q + Y0 + R0) than this: clone extinct.")
        _event(model, "extinction", "lsc_total < extinction_threshold",
               {"D": "0 cell", "Q": "0 cell", "Y0": "0 cell", "R0": "0 cell"}, "leukemic stem-cell clone extinct (both subclones)")
    return doc


def validate(doc) -> tuple[list[str], list[str]]:
    """libSBML consistency checks (all categories, units included): ``(errors, warnings)`` as messages."""
    L = _libsbml()
    doc.setConsistencyChecks(L.LIBSBML_CAT_UNITS_CONSISTENCY, True)
    doc.setConsistencyChecks(L.LIBSBML_CAT_MODELING_PRACTICE, True)
    doc.checkConsistency()
    errors, warnings = [], []
    for i in range(doc.getNumErrors()):
        e = doc.getError(i)
        msg = f"[{e.getCategoryAsString()} {e.getErrorId()}] line {e.getLine()}: {e.getMessage().strip()}"
        (errors if e.getSeverity() >= L.LIBSBML_SEV_ERROR else warnings).append(msg)
    return errors, warnings


def sbml_string(params: Mapping[str, float] | None = None, **kwargs) -> str:
    """The model as validated SBML text; raises ``RuntimeError`` on a libSBML error.

    Keyword arguments as :func:`build_document`.
    """
    return export(params, **kwargs)[0]


def export(params: Mapping[str, float] | None = None, **kwargs) -> tuple[str, list[str]]:
    """``(sbml_text, warnings)``; a validation error raises ``RuntimeError`` (a bug, not bad input)."""
    L = _libsbml()
    doc = build_document(params, **kwargs)
    # non-ASCII (author names) as character references: the file reads the same under any locale
    text = L.writeSBMLToString(doc).encode("ascii", "xmlcharrefreplace").decode("ascii")
    # validate the text as written (what other tools will read)
    reread = L.readSBMLFromString(text)
    errors, warnings = validate(reread)
    if errors:
        raise RuntimeError("sbml: the exported model fails libSBML validation:\n" + "\n".join(errors))
    return text, warnings


# --------------------------------------------------------------------------
# libRoadRunner
# --------------------------------------------------------------------------


def load_roadrunner(sbml: str, *, rtol: float = 1e-10, atol: float = 1e-10, max_steps: int = 100_000):
    """A ``roadrunner.RoadRunner`` for ``sbml`` with CVODE set to the given tolerances."""
    rr = _roadrunner()
    r = rr.RoadRunner(sbml)
    integ = r.getIntegrator()
    integ.setValue("relative_tolerance", float(rtol))
    integ.setValue("absolute_tolerance", float(atol))
    integ.setValue("maximum_num_steps", int(max_steps))
    return r


def roadrunner_simulate(sbml: str, t_out: Sequence[float], **kwargs) -> np.ndarray:
    """Simulate ``sbml`` from day 0 with libRoadRunner (CVODE); states at ``t_out`` in :class:`State` order.

    Dose changes come from the model's events (the schedule given at export).
    ``kwargs`` (``rtol``, ``atol``, ``max_steps``) go to :func:`load_roadrunner`.
    """
    r = load_roadrunner(sbml, **kwargs)
    t = np.asarray(t_out, dtype=float).reshape(-1)
    if t.size == 0 or not np.all(np.isfinite(t)) or t[0] < 0 or np.any(np.diff(t) <= 0):
        raise InputError("t_out: expected strictly increasing, finite output times >= 0 (days)")
    if t[0] != 0.0:
        t = np.concatenate(([0.0], t))
        drop = 1
    else:
        drop = 0
    r.timeCourseSelections = ["time"] + [s.name for s in State]
    res = np.asarray(r.simulate(times=t.tolist()))
    if not np.allclose(res[:, 0], t, rtol=0, atol=1e-9 * max(1.0, t[-1])):
        raise RuntimeError("roadrunner returned other output times than asked for")
    out = res[drop:, 1:]
    assert out.shape[1] == N_STATES
    return out


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------


def add_arguments(parser) -> None:
    """Options of ``gvlmodel export-sbml`` (called by :mod:`gvlmodel.workflow.cli`)."""
    parser.add_argument("--variant", default="H2", help="model variant: H0, H1 or H2 (default H2)")
    parser.add_argument("--parameters", default="default", metavar="NAME",
                        help="named parameter set (default: the table's values); see available_parameter_sets()")
    setting = parser.add_mutually_exclusive_group()
    setting.add_argument("--transplant", dest="transplant", action="store_true", default=True,
                         help="transplanted patient, donor effectors (default)")
    setting.add_argument("--autologous", "--no-transplant", dest="transplant", action="store_false",
                         help="non-transplanted patient, autologous effectors")
    parser.add_argument("--bcr-abl", default="0.1", metavar="PERCENT", help="initial BCR-ABL ratio in %% (default 0.1)")
    parser.add_argument("--schedule", default="0:400", metavar="DAY:MG,...",
                        help="imatinib schedule from day 0, e.g. 0:400,365:0,545:400 (later steps become SBML "
                             "events; default 0:400)")
    parser.add_argument("--extinction-threshold", default="0", metavar="CELLS",
                        help="add an event setting D, Q, Y0 and R0 to 0 below this many LSCs, D + Q + Y0 + R0 "
                             "(default 0: no event)")
    parser.add_argument("--out", required=True, type=Path, help="output SBML file")


def _number(option: str, text: str) -> float:
    from ..core.errors import parse_number

    return parse_number(option, text)


def _schedule_option(text: str) -> list[tuple[float, float]]:
    steps = []
    for item in text.split(","):
        parts = item.strip().split(":")
        if len(parts) != 2:
            raise InputError(f"--schedule: expected DAY:MG pairs separated by commas (e.g. 0:400,365:0), got {text!r}")
        steps.append((_number("--schedule", parts[0]), _number("--schedule", parts[1])))
    try:
        return _parse_schedule(steps)
    except InputError as exc:
        raise InputError(f"--{exc}") from None


def run_export(args) -> Path:
    """``gvlmodel export-sbml``: validate options, build, validate, write atomically."""
    from ..core.provenance import atomic_write_text

    if Path(args.out).is_dir():
        raise InputError(f"--out: {args.out} is a folder; give the name of the SBML file to write")
    if Path(args.out).is_symlink() or (Path(args.out).exists() and not Path(args.out).is_file()):
        # the atomic write would replace a link, a device (/dev/full) or a FIFO by a regular file
        raise InputError(f"--out: {args.out} is not a regular file (a link, device or FIFO); give the name of a "
                         "new or regular file")
    from ..core.errors import output_folder

    output_folder(Path(args.out).absolute().parent, "--out")  # its folder must be writable, checked before the work
    variants = [v.value for v in Variant]
    if args.variant not in variants:
        raise InputError(f"--variant: unknown variant {args.variant!r}; allowed: " + ", ".join(variants))
    sets = available_parameter_sets()
    if args.parameters not in sets:
        raise InputError(f"--parameters: unknown parameter set {args.parameters!r}; allowed: " + ", ".join(sets))
    bcr_abl = _number("--bcr-abl", args.bcr_abl)
    if not 0.0 <= bcr_abl < 100.0:
        raise InputError(f"--bcr-abl: initial BCR-ABL ratio in percent must lie in [0, 100), got {args.bcr_abl}")
    threshold = limits.extinction_threshold("--extinction-threshold",
                                            _number("--extinction-threshold", args.extinction_threshold))
    steps = _schedule_option(args.schedule)
    _libsbml()
    params = parameter_set(args.parameters)
    text, warnings = export(params, variant=args.variant, transplant=args.transplant, bcr_abl=bcr_abl,
                            schedule=steps, extinction_threshold=threshold, parameter_set_name=args.parameters)
    atomic_write_text(args.out, text)
    for w in warnings:
        print(f"gvlmodel: libSBML warning: {w}", file=sys.stderr)
    print(f"wrote {args.out} (SBML L{LEVEL}V{VERSION}, variant {args.variant}, "
          f"{'transplant' if args.transplant else 'autologous'}, parameter set {args.parameters}, "
          f"BCR-ABL {bcr_abl:g} %): libSBML validation 0 errors, {len(warnings)} warnings")
    return args.out

