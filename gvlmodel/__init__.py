"""gvlmodel: imatinib and graft-versus-leukemia control of CML after allogeneic SCT.

The public API is re-exported here; implementation lives in the named modules.
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
