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
from .core.errors import InputError, SolverError
from .model.indices import KP, N_STATES, State, STATE_GROUPS
from .model.measurement import DEFAULT_DETECTION_LIMIT, RESPONSE_LEVELS_PERCENT, bcr_abl_percent
from .model.parameters import (PARAMETER_NAMES, PARAMETER_TABLE, Parameter, Variant, available_parameter_sets,
                               default_parameters, kernel_parameters, parameter_set, resolve_parameters, salib_problem, table_markdown)
from .model.simulate import DoseSchedule, SimulationResult, healthy_state, im_effect, initial_state, rhs, simulate
from .clinical.datasets import PatientSeries, load_hahnel2020, load_hess2005, load_michor2005, load_stim1
from .inference.calibrate import run_calibrate
from .inference.predict import read_history, run_predict_stop

from .core.version import __version__

__all__ = [
    "InputError", "SolverError", "KP", "N_STATES", "State", "STATE_GROUPS", "DEFAULT_DETECTION_LIMIT",
    "RESPONSE_LEVELS_PERCENT", "bcr_abl_percent", "im_effect", "rhs", "PARAMETER_NAMES", "PARAMETER_TABLE",
    "Parameter", "Variant", "available_parameter_sets", "parameter_set", "default_parameters", "kernel_parameters", "resolve_parameters", "salib_problem",
    "table_markdown", "DoseSchedule", "SimulationResult", "healthy_state", "initial_state", "simulate",
    "PatientSeries", "load_michor2005", "load_hahnel2020", "load_stim1", "load_hess2005", "run_calibrate",
    "read_history", "run_predict_stop",
    "__version__",
]
