"""Compile every kernel of the package once, with a progress bar (the first run of a version).

numba compiles each kernel on its first call and caches it on disk (:mod:`gvlmodel.core._jit`); a new
version of the package compiles afresh, which takes about a minute.  :func:`compile_kernels` does
that up front, on purpose: it calls the compiled entry points with tiny inputs (one solve, a
two-patient cohort through the lock-step engine and through the one-patient reference engine) and
shows a ``tqdm`` bar over :data:`gvlmodel.core._jit.KERNELS` that advances as numba finishes each one.
The command line calls it before a command that runs the model when stderr is a terminal, some
kernel is not cached yet and ``--no-progress`` is not given; elsewhere (pipes, CI, tests) kernels
still compile on first use, silently.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from ..core._jit import KERNELS, CompileListener, record_compiles, uncached_kernels


#: the modules that define kernels (imported before :data:`KERNELS` is read)
KERNEL_MODULES = ("core.csvtext", "model.measurement", "model.model", "model._dop853_kernels", "model.solver",
                  "clinical.protocol", "clinical.lanes")


def kernels_to_compile() -> list[str]:
    """Names of the package's kernels not in the on-disk cache yet (every kernel module imported first)."""
    import importlib

    for m in KERNEL_MODULES:
        importlib.import_module(f"gvlmodel.{m}")
    return uncached_kernels()


def _entry_points():
    """``(label, call)`` pairs; between them they compile every kernel in :data:`KERNELS`."""
    from ..clinical.cohort import CohortSpec, Population, Protocol, prepare_cohort, run_inputs
    from ..model.model import im_effect, rhs
    from ..model.parameters import Variant, parameter_set
    from ..model.simulate import initial_state, simulate

    params = parameter_set("default")

    def one_solve():
        y0 = initial_state(params, bcr_abl=1.0, variant="H2", transplant=True)
        simulate(params, y0=y0, t_out=[0.0, 5.0], schedule=((0.0, 400.0),), variant="H2", transplant=True)
        y = np.asarray(y0, dtype=float)
        from ..model.parameters import kernel_parameters

        rhs(y, kernel_parameters(params, "H2", transplant=True), float(im_effect(400.0, 979.0, 500.0)),
            np.empty_like(y))

    def cohorts():
        proto = Protocol(follow_up_days=60.0, visit_interval_days=30.0)
        inp = prepare_cohort(CohortSpec(size=2, seed=0, transplant=True), proto, params, Variant.H2,
                             Population(), 1e-6, 1e-9, 1.0, 100_000)
        run_inputs(inp, threads=1, progress=False)  # the lock-step engine (gvlmodel.clinical.lanes)
        from ..model.indices import N_RF, N_RI, PP
        from ..clinical.protocol import run_cohort

        n_vis = int(inp.pp[PP.N_VISITS])
        run_cohort(inp.kp, inp.y0, inp.effects, inp.pp, inp.eps, inp.uu, np.empty((2, n_vis + 1)),
                   np.empty((2, N_RF)), np.empty((2, N_RI), dtype=np.int64))  # the reference engine

    def rules():
        from ..clinical.cohort import Protocol
        from ..model.indices import PS
        from ..clinical.protocol import run_rules

        pp = Protocol(follow_up_days=30.0, visit_interval_days=30.0).kernel_vector(1e-6, 1e-6, 1.0, 1000)
        run_rules(np.array([0.0, 30.0]), np.array([1.0, 0.0]), pp, np.empty((2, len(PS))))

    def tables():
        from ..clinical.scenario import table_csv

        table_csv({"x": np.array([0.5, np.nan]), "n": np.array([1, 2]), "b": np.array([True, False])})

    return [("solver", one_solve), ("cohort engines", cohorts), ("protocol rules", rules), ("tables", tables)]


def compile_kernels(progress: bool = True, file=None) -> list[str]:
    """Compile (or load from the cache) every kernel; returns the names numba compiled, in order.

    With ``progress`` a ``tqdm`` bar over :data:`KERNELS` (already cached ones counted as done)
    advances as each kernel finishes compiling; the kernel's name is shown beside it.
    """
    todo = set(kernels_to_compile())
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(KERNELS), initial=len(KERNELS) - len(todo), unit="kernel",
                   desc="gvlmodel: compiling kernels (first run of this version, cached afterwards)",
                   file=file if file is not None else sys.stderr, leave=False, dynamic_ncols=True)
    t0 = time.perf_counter()
    import numba.core.event

    def tick(name):
        if bar is not None and name in todo:
            todo.discard(name)
            bar.update(1)
            bar.set_postfix_str(name.split(".")[-1], refresh=True)

    with record_compiles() as compiled, numba.core.event.install_listener("numba:compile", CompileListener(tick)):
        for _label, call in _entry_points():
            call()
    if bar is not None:
        bar.close()
        print(f"gvlmodel: compiled {len(compiled)} kernels in {time.perf_counter() - t0:.0f} s (cached for the next "
              "runs)", file=file if file is not None else sys.stderr, flush=True)
    return list(compiled)
