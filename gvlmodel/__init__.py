"""gvlmodel: imatinib and graft-versus-leukemia control of CML after allogeneic SCT.

The public API is re-exported here; implementation lives in the named modules.

The package is layered.  Each layer is a subpackage, listed here lowest first; a module imports
only from its own layer and the layers before it (at module level and inside functions alike;
``tests/test_layers.py`` checks this, that module-level imports form no cycle and that every
module is in a layer):

1. ``core``: infrastructure: errors and config validators, run-size limits, provenance and atomic
   output writing, progress bars, numba's options and cache (``_jit``), the version, experiment kinds;
2. ``model``: the equations and what integrates them: indices, the parameter table, the compiled
   right-hand side (``model.model``) and its sympy form, the measurement model, the DOP853 solver
   (with its generated stage sums and the lock-step workspace layout), the one-patient ``simulate``;
3. ``clinical``: the compiled visit-by-visit protocol, virtual cohorts (one patient at a time or
   lock-step lanes) and their summaries, scenario files, virtual Hess 2005 trials, the clinical data
   (Hess 2005 calibration numbers, patient-level series);
4. ``analysis``: dynamics of immune control, sensitivity studies, SBML export, the manuscript
   numbers, the figures' shared plotting helpers;
5. ``inference``: the ABC fit of H0/H1/H2 and its report, patient-level calibration, stop
   prediction (above analysis: the fit uses the sensitivity study's cluster connection, stop
   prediction draws with the plotting helpers);
6. ``workflow``: the command-line interface, ``gvlmodel reproduce``, first-run kernel compilation.

This module (the public API) sits on top; nothing in the package imports it.  Data stay in
``gvlmodel/data/`` and ``gvlmodel/parameter_sets/``.
"""
from .core.version import __version__

#: public name -> the module (relative to this package) that defines it.  The modules are imported on
#: first use of a name (PEP 562), so that ``import gvlmodel`` and the ``gvlmodel`` command load only
#: what they use (the command starts faster, and can set up NumPy before it is imported:
#: :mod:`gvlmodel.workflow.cli`).
_EXPORTS = {
    "InputError": "core.errors", "SolverError": "core.errors",
    "KP": "model.indices", "N_STATES": "model.indices", "State": "model.indices", "STATE_GROUPS": "model.indices",
    "DEFAULT_DETECTION_LIMIT": "model.measurement", "RESPONSE_LEVELS_PERCENT": "model.measurement",
    "bcr_abl_percent": "model.measurement",
    **{name: "model.parameters" for name in (
        "PARAMETER_NAMES", "PARAMETER_TABLE", "Parameter", "Variant", "available_parameter_sets",
        "default_parameters", "kernel_parameters", "parameter_set", "resolve_parameters", "salib_problem",
        "table_markdown")},
    **{name: "model.simulate" for name in (
        "DoseSchedule", "SimulationResult", "healthy_state", "im_effect", "initial_state", "rhs", "simulate")},
    **{name: "clinical.datasets" for name in (
        "PatientSeries", "load_hahnel2020", "load_hess2005", "load_michor2005", "load_stim1")},
    "run_calibrate": "inference.calibrate",
    "read_history": "inference.predict", "run_predict_stop": "inference.predict",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gvlmodel' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later uses skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [*_EXPORTS, "__version__"]
