"""The experiment configs of ``experiments/``: which command runs each, told by its tables.

Used by ``gvlmodel reproduce`` (:mod:`gvlmodel.workflow.reproduce`) to run every experiment and by the
figure helpers (:func:`gvlmodel.analysis.plotting.experiment`) to name the command that writes a result.
"""
from __future__ import annotations

from .errors import InputError

#: a config's kind is decided by the table only that kind has
KIND_MARKERS = (("compare", "compare"), ("calibrate", "calibrate"), ("predict_stop", "predict-stop"), ("fit", "fit"), ("study", "sensitivity"), ("phase_plane", "dynamics"), ("bifurcation", "dynamics"),
                ("steady_states", "dynamics"), ("cohort", "simulate"))


def experiment_kind(cfg: dict, source: str = "config") -> str:
    """``calibrate``, ``predict-stop``, ``fit``, ``sensitivity``, ``dynamics``, ``simulate`` or ``example``
    from a config's tables."""
    for table, kind in KIND_MARKERS:
        if table in cfg:
            return kind
    if "variant" in cfg or "schedule" in cfg or not cfg:
        return "example"
    raise InputError(f"{source}: cannot tell which experiment this is; expected a [compare], [calibrate], [predict_stop], [fit], [study], "
                     "[phase_plane]/[bifurcation]/[steady_states] or [cohort] table, or an example config")
