"""Public API for one patient: validate, convert, call the compiled kernel."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..core import limits
from . import solver
from ..core.errors import InputError, SolverError, boolean, real, real_array
from .indices import KP, N_KP, N_STATES, State
from .measurement import bcr_abl_percent
from . import model
from .parameters import (Variant, _check_transplant, _fill_kernel, kernel_parameters, leukemic_mature_cells, parse_variant,
                         resolve_parameters)

STATUS_MESSAGES = {
    solver.SUCCESS: "success",
    solver.MAX_STEPS_REACHED: "maximum number of steps reached before the end time",
    solver.STEP_TOO_SMALL: "step size fell below the floating-point resolution of t",
    solver.NON_FINITE: "non-finite state or derivative encountered",
}
#: largest accepted dose; 800 mg/day is the highest clinical dose
MAX_DOSE_MG = 1000.0
#: longest simulated course (days, 100 years): the upper bound of every duration in configs
MAX_DAYS = 36500.0


@dataclass(frozen=True)
class DoseSchedule:
    """Piecewise-constant imatinib dose: ``dose_mg[i]`` from ``start_day[i]`` on."""

    start_day: np.ndarray
    dose_mg: np.ndarray

    def __post_init__(self):
        days = real_array("schedule: start_day", self.start_day, "a sequence of days (numbers)").reshape(-1)
        doses = real_array("schedule: dose_mg", self.dose_mg, "a sequence of doses in mg/day (numbers)").reshape(-1)
        if days.size == 0 or days.size != doses.size:
            raise InputError(f"schedule: expected as many start days as doses (at least one), got "
                             f"{days.size} and {doses.size}")
        if not (np.isfinite(days).all() and np.isfinite(doses).all()):
            raise InputError("schedule: days and doses must be finite numbers")
        if (days[1:] <= days[:-1]).any():
            raise InputError("schedule: start days must be strictly increasing")
        if (doses < 0).any() or (doses > MAX_DOSE_MG).any():
            raise InputError(f"schedule: dose_mg must lie in [0, {MAX_DOSE_MG:g}] mg/day (400/600/800 clinical), "
                             f"got {doses.tolist()}")
        object.__setattr__(self, "start_day", days)
        object.__setattr__(self, "dose_mg", doses)

    @classmethod
    def from_steps(cls, steps: Sequence[tuple[float, float]]) -> "DoseSchedule":
        """``[(day, dose_mg), ...]`` with strictly increasing days."""
        if isinstance(steps, DoseSchedule):
            return steps
        arr = real_array("schedule", steps, "a sequence of (day, dose_mg) pairs of numbers")
        if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
            raise InputError(f"schedule: expected a non-empty sequence of (day, dose_mg) pairs, got shape {arr.shape}")
        return cls(arr[:, 0].copy(), arr[:, 1].copy())  # values checked in __post_init__

    def segments(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """Segment edges covering ``[t0, t1]`` and the dose on each segment."""
        if t0 < self.start_day[0]:
            raise InputError(f"schedule: first start day {self.start_day[0]:g} is after the start time {t0:g}")
        inner = self.start_day[(self.start_day > t0) & (self.start_day < t1)]
        edges = np.concatenate(([t0], inner, [t1]))
        idx = np.searchsorted(self.start_day, edges[:-1], side="right") - 1
        return edges, self.dose_mg[idx]


def im_effect(dose_mg, css_400: float, ec50: float) -> float:
    """Imatinib effect of a dose relative to 400 mg/day (0 off drug, 1 at 400 mg/day), checked.

    The public version of the compiled :func:`gvlmodel.model.model.im_effect` (the
    kernel does no checks): ``dose_mg`` in [0, ``MAX_DOSE_MG``] mg/day,
    ``css_400`` (steady-state exposure at 400 mg/day, table row ``im_css_400``)
    and ``ec50`` (``im_ec50``) positive, in the same exposure unit.
    """
    dose_mg = real("dose_mg (mg/day)", dose_mg, lo=0.0, hi=MAX_DOSE_MG)
    css_400 = real("css_400 (exposure at 400 mg/day)", css_400, lo=0.0, lo_open=True)
    ec50 = real("ec50 (exposure)", ec50, lo=0.0, lo_open=True)
    return float(model.im_effect(dose_mg, css_400, ec50))


def rhs(y, kp, e: float, out=None) -> np.ndarray:
    """Right-hand side ``dy/dt`` (cells/day) at state ``y``, checked; returns ``out`` (new if ``None``).

    The public version of the compiled :func:`gvlmodel.model.model.rhs` (the kernel
    does no checks and writes ``out`` in place): ``y`` has the
    ``N_STATES`` states in :class:`State` order, ``kp`` is a kernel parameter
    vector (:func:`gvlmodel.kernel_parameters`, ``N_KP`` entries), ``e`` the
    imatinib effect (:func:`im_effect`, >= 0), ``out`` a float array of
    ``N_STATES`` entries.
    """
    y = real_array("y", y, "a state vector of numbers (cells)")
    if y.shape != (N_STATES,):
        raise InputError(f"y: expected {N_STATES} states ({', '.join(State.__members__)}), got shape {y.shape}")
    kp = real_array("kp", kp, "a kernel parameter vector of numbers (kernel_parameters())")
    if kp.shape != (N_KP,):
        raise InputError(f"kp: expected the {N_KP} kernel parameters of kernel_parameters(), got shape {kp.shape}")
    if not (np.isfinite(y).all() and np.isfinite(kp).all()):
        raise InputError("y, kp: states and kernel parameters must be finite")
    e = real("e (imatinib effect)", e, lo=0.0)
    if out is None:
        out = np.empty(N_STATES)
    elif not (isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (N_STATES,)
              and out.flags.writeable):
        raise InputError(f"out: expected a writeable float64 array of shape ({N_STATES},)")
    model.rhs(y, kp, e, out)
    return out


def healthy_state(params: Mapping[str, float] | None = None) -> np.ndarray:
    """Normal hematopoiesis at homeostasis, no leukemia, no effectors."""
    p = resolve_parameters(params)
    y = np.empty(N_STATES)
    fill_start_state(p, 0.0, kernel_parameters(p, "H0"), y)  # H0: no effector influx, so Z = 0
    return y


def initial_state(params: Mapping[str, float] | None = None, *, bcr_abl: float = 0.1, variant="H2",
                  transplant: bool = True) -> np.ndarray:
    """A starting state with a given BCR-ABL ratio (percent), off drug.

    Normal cells at homeostasis; leukemic compartments in the proportions of an
    untreated clone (each compartment at quasi-steady state with its source,
    quiescent LSCs at ``q_in/q_out`` of cycling ones and dormant ones at
    ``dormancy_in/dormancy_out`` of quiescent ones, a resistant subclone of
    ``resistant_fraction`` of the LSCs if that is at least one cell); effectors at their
    baseline ``influx/death`` (none in H0).  Starting states by clinical relapse
    type are built on this in the clinical layer.
    """
    bcr_abl = real("bcr_abl (ratio in percent)", bcr_abl, lo=0.0)
    if not bcr_abl < 100.0:
        raise InputError(f"bcr_abl (ratio in percent): must lie in [0, 100), got {bcr_abl:g}")
    p = resolve_parameters(params)
    kp = kernel_parameters(p, variant, transplant)
    y = np.empty(N_STATES)
    fill_start_state(p, bcr_abl, kp, y)
    return y


def fill_start_state(p, bcr_abl, kp, y) -> None:
    """Start state(s) ``y[..., State]`` for table parameters ``p`` (scalars or per-patient arrays).

    The equations of :func:`initial_state`, written once for one patient and
    for cohorts: normal hierarchy at homeostasis; leukemic compartments at
    quasi-steady state behind the cycling stem cells, with ``Y3`` set by the
    ratio ``bcr_abl = 100 Y3 / (Y3 + 2 X3)``; quiescent LSCs at ``q_in/q_out``
    of cycling ones and dormant LSCs at ``dormancy_in/dormancy_out`` of quiescent
    ones (the exchange balances of an untreated clone: ~85 % quiescent or
    dormant at the table's rates); a share ``resistant_fraction`` of all LSCs in the
    resistant subclone ``R0`` (cycling), or none if that is below one cell;
    effectors at ``influx / death`` read from the kernel vector(s) ``kp``.
    """
    y[..., State.X0] = p["x0_eq"]
    y[..., State.X1] = p["a_x"] * y[..., State.X0] / p["d1"]
    y[..., State.X2] = p["b_x"] * y[..., State.X1] / p["d2"]
    y[..., State.X3] = p["c_x"] * y[..., State.X2] / p["d3"]
    y3 = leukemic_mature_cells(bcr_abl, y[..., State.X3])
    amplification = (p["a_y"] / p["d1"]) * (p["b_y"] / p["d2"]) * (p["c_y"] / p["d3"])
    cycling = y3 / amplification  # cycling stem cells of both subclones behind Y3
    qr = np.asarray(p["q_in"] / p["q_out"], dtype=float)
    dr = np.asarray(p["dormancy_in"] / p["dormancy_out"], dtype=float)
    f = np.asarray(p["resistant_fraction"], dtype=float)
    # R0 = f/(1-f) (D + Q + Y0) and Y0 + R0 = cycling, Q = qr Y0, D = dr Q
    share = f / (1.0 - f) * (1.0 + qr * (1.0 + dr))
    y0 = cycling / (1.0 + share)
    r0 = share * y0
    none = r0 < 1.0
    y0 = np.where(none, cycling, y0)
    r0 = np.where(none, 0.0, r0)
    y[..., State.Y0] = y0
    y[..., State.Q] = y0 * qr
    y[..., State.D] = y0 * qr * dr
    y[..., State.Y1] = p["a_y"] * y0 / p["d1"]
    y[..., State.R0] = r0
    y[..., State.R1] = p["a_y"] * r0 / p["d1"]
    y[..., State.Y2] = p["b_y"] * (y[..., State.Y1] + y[..., State.R1]) / p["d2"]
    y[..., State.Y3] = y3
    y[..., State.Z] = kp[..., KP.ZIN] / kp[..., KP.ZD]


@dataclass
class SimulationResult:
    """One patient's time course.

    ``t`` (days), ``y`` (len(t) x n_states, cells); named access via
    ``result["Y0"]`` or ``result.state(State.Y0)``; ``bcr_abl`` in percent.
    A failed solve keeps the rows it reached and ``nan`` after; check
    ``success`` / ``status`` / ``message`` or call :meth:`raise_for_status`.
    """

    t: np.ndarray
    y: np.ndarray
    status: int
    n_steps: int
    n_rejected: int
    n_rhs: int
    t_extinct: float
    variant: Variant
    transplant: bool
    dose_mg: np.ndarray  # dose in force at each output time
    params: dict = field(repr=False)

    @property
    def success(self) -> bool:
        return self.status == solver.SUCCESS

    @property
    def message(self) -> str:
        return STATUS_MESSAGES.get(self.status, f"unknown status {self.status}")

    @property
    def extinct(self) -> bool:
        """Whether the leukemic stem-cell clone fell below the extinction level.

        ``False`` both for a clone that survived and for a course that started
        with no leukemic stem cell at all (no clone to go extinct; ``t_extinct``
        is ``nan`` in both cases): check the initial ``D + Q + Y0 + R0`` to tell them apart.
        """
        return bool(np.isfinite(self.t_extinct))

    @property
    def bcr_abl(self) -> np.ndarray:
        """BCR-ABL ratio in percent at each output time."""
        return bcr_abl_percent(self.y)

    @property
    def leukemic_stem_cells(self) -> np.ndarray:
        """``D + Q + Y0 + R0``: leukemic stem cells of both subclones."""
        return self.y[:, State.D] + self.y[:, State.Q] + self.y[:, State.Y0] + self.y[:, State.R0]

    def state(self, which) -> np.ndarray:
        return self.y[:, _state_index(which)]

    def __getitem__(self, which) -> np.ndarray:
        return self.state(which)

    def raise_for_status(self) -> "SimulationResult":
        if not self.success:
            raise SolverError(f"solve failed (status {self.status}): {self.message}")
        return self

    def as_dict(self) -> dict[str, np.ndarray]:
        out = {"time_days": self.t, "dose_mg": self.dose_mg, "bcr_abl_percent": self.bcr_abl}
        out.update({s.name: self.y[:, s] for s in State})
        return out


def _state_index(which) -> int:
    if isinstance(which, State):
        return int(which)
    if isinstance(which, str) and which in State.__members__:
        return int(State[which])
    raise InputError(f"state: unknown state {which!r}; allowed: " + ", ".join(State.__members__))


def _as_state(y0) -> np.ndarray:
    if isinstance(y0, Mapping):
        unknown = set(y0) - set(State.__members__)
        if unknown:
            raise InputError(f"y0: unknown state name(s) {sorted(unknown)}; allowed: " + ", ".join(State.__members__))
        missing = set(State.__members__) - set(y0)
        if missing:
            raise InputError(f"y0: missing state(s) {sorted(missing)}")
        y0 = [y0[s.name] for s in State]
    y = real_array("y0", y0, "a sequence of numbers (cells) or a mapping of state name to cells")
    if y.shape != (N_STATES,):
        raise InputError(f"y0: expected {N_STATES} states ({', '.join(State.__members__)}), got shape {y.shape}")
    if not (np.isfinite(y).all() and (y >= 0).all()):
        bad = [State(i).name for i in range(N_STATES) if not np.isfinite(y[i]) or y[i] < 0]
        raise InputError(f"y0: states must be finite and non-negative (cells); offending: {', '.join(bad)}")
    return y


def _as_times(t_out) -> np.ndarray:
    t = real_array("t_out", t_out, "a sequence of output times in days (numbers)")
    if t.ndim > 1:
        raise InputError(f"t_out: expected a one-dimensional sequence of output times, got shape {t.shape}")
    t = t.reshape(-1)
    if t.size == 0:
        raise InputError("t_out: at least one output time is required")
    if not np.isfinite(t).all():
        raise InputError("t_out: output times must be finite")
    if (t[1:] < t[:-1]).any():
        raise InputError("t_out: output times must be sorted in increasing order")
    # (no cap on the span: equilibrium analyses integrate for centuries; a solve is bounded by max_steps)
    # the result holds the states and outputs at every time: refuse what this machine cannot hold
    limits.check_memory({"trajectory": t.size * (N_STATES + 8) * 8.0}, {"trajectory": "the number of t_out times"},
                        what="this simulation")
    return t


def simulate(params: Mapping[str, float] | None = None, *, y0=None, t_out, schedule=((0.0, 400.0),),
             variant="H2", transplant: bool = True, t0: float | None = None, rtol: float = 1e-6,
             atol: float = 1e-6, extinction_threshold: float = 1.0, max_steps: int = 1_000_000,
             raise_on_failure: bool = False) -> SimulationResult:
    """Simulate one patient.

    ``params``: overrides of the parameter table by name; ``y0``: initial state
    (array in :class:`State` order, or mapping by name; default
    :func:`initial_state` at 0.1 % BCR-ABL); ``t_out``: sorted output times in
    days, the last one ends the solve; ``schedule``: ``[(day, dose_mg), ...]``
    (dose 0 = off drug); ``variant``: "H0" | "H1" | "H2"; ``transplant``:
    donor (True) or autologous (False) effector parameters; ``t0``: start time
    (default ``t_out[0]``); ``rtol``/``atol``: local error tolerances (atol in
    cells); ``extinction_threshold``: leukemic stem cells below which the clone
    is extinct (0 disables).  Failure is reported in the result's ``status``;
    pass ``raise_on_failure=True`` to raise :class:`SolverError` instead.
    """
    p = resolve_parameters(params)  # validated once; the helpers below take the resolved table
    variant = parse_variant(variant)
    _check_transplant(transplant)
    kp = np.empty(N_KP)
    _fill_kernel(p, variant, transplant, kp)
    if y0 is None:  # initial_state(p, variant=variant, transplant=transplant) without re-validating p
        y_init = np.empty(N_STATES)
        fill_start_state(p, 0.1, kp, y_init)
    else:
        y_init = _as_state(y0)
    if variant is Variant.H0 and y_init[State.Z] != 0.0:
        raise InputError("y0: variant H0 has no effector cells; the initial Z must be 0")
    times = _as_times(t_out)
    # start time: not after the first output time
    start = times[0] if t0 is None else real("t0", t0, hi=times[0])
    rtol = limits.rtol("rtol", rtol)
    atol = limits.atol("atol (cells)", atol)
    extinction_threshold = limits.extinction_threshold("extinction_threshold (LSCs)", extinction_threshold)
    max_steps = limits.max_steps("max_steps", max_steps)
    raise_on_failure = boolean("raise_on_failure", raise_on_failure)
    sched = DoseSchedule.from_steps(schedule)
    end = max(times[-1], start)
    edges, doses = sched.segments(start, max(end, start))  # (a zero-length solve: one segment of one point)
    effects = np.array([model.im_effect(d, p["im_css_400"], p["im_ec50"]) for d in doses])
    if end == start:
        edges, effects = np.array([start]), np.empty(0)
    y_out = np.empty((times.size, N_STATES))
    stats = np.zeros(solver.N_STATS, dtype=np.int64)
    events = np.empty(1)
    status = solver.integrate(y_init, kp, edges, effects, times, rtol, atol, int(max_steps),
                              float(extinction_threshold), y_out, stats, events)
    dose_at = sched.dose_mg[np.maximum(np.searchsorted(sched.start_day, times, side="right") - 1, 0)]
    result = SimulationResult(t=times, y=y_out, status=int(status), n_steps=int(stats[solver.ST_STEPS]),
                              n_rejected=int(stats[solver.ST_REJECTED]), n_rhs=int(stats[solver.ST_RHS]),
                              t_extinct=float(events[0]), variant=variant, transplant=bool(transplant),
                              dose_mg=dose_at, params=p)
    if raise_on_failure:
        result.raise_for_status()
    return result
