"""Run-size limits and the memory check: one place for each limit every entry point applies.

The one-patient API (:func:`gvlmodel.simulate`), ``gvlmodel example``, scenarios
(``simulate``), cohorts (:func:`gvlmodel.clinical.cohort.simulate_cohort`), fits and
sensitivity studies read their solver tolerances, thread counts and sizes through
the validators here, so a value one of them accepts the others accept too
(``tests/test_limits.py`` checks that the paths agree).

Sizes that pass these checks can still describe a run this machine cannot hold
(``[sobol] n = 2**40``, ``[fit] population_size = 10**12``): each command
estimates its peak memory before it allocates or writes anything and
:func:`check_memory` refuses one above :data:`MEMORY_SHARE` of the memory
available now, naming the key to reduce (:class:`~gvlmodel.core.errors.InputError`,
exit 2).
"""
from __future__ import annotations

from pathlib import Path

from .errors import InputError, integer, real

#: solver tolerances accepted everywhere: below RTOL_MIN DOP853's steps shrink to rounding error
#: (the run never ends or fails on max_steps), above RTOL_MAX the error control is meaningless
RTOL_MIN, RTOL_MAX = 1e-13, 1e-2
#: absolute tolerance (cells): from ATOL_MIN (below it the error weight of a zero state overflows and every
#: step is rejected) up to ATOL_MAX (the relative tolerance bounds the steps)
ATOL_MIN, ATOL_MAX = 1e-20, 1e3
#: most steps a solve may take (above it a run is not bounded in time; the engines keep it as a float)
MAX_STEPS = 10 ** 9
#: largest extinction threshold (LSCs): an untreated clone holds ~1e5-1e6 LSCs
MAX_EXTINCTION_THRESHOLD = 1e6
#: largest cohort one call accepts (scenario, API, fit designs, sensitivity cohorts)
MAX_COHORT_SIZE = 10_000_000
#: most ABC generations a fit may ask for (each is at least one population of simulations; a fit
#: ends long before, when the acceptance rate reaches ``[fit] min_acceptance_rate``)
MAX_GENERATIONS = 1000
#: longest run name (``[fit] name``, ``[study] name``): it becomes part of file names (255 bytes at most)
MAX_NAME_LENGTH = 64
#: largest seed (TOML integers are 64-bit; NumPy's SeedSequence takes any, other readers do not)
MAX_SEED = 2 ** 63 - 1
#: share of the available memory a run may plan to use
MEMORY_SHARE = 0.8
#: engine throughput assumed for the rough time estimates (patients per second per thread)
PATIENTS_PER_S_PER_THREAD = 7000.0
GIB = 2.0 ** 30


def rtol(field: str, v, hi: float = RTOL_MAX) -> float:
    """A relative tolerance in ``[RTOL_MIN, hi]`` (``hi``: a command whose results need more accuracy than
    :data:`RTOL_MAX` gives, such as a likelihood or an equilibrium, passes its own, lower, ceiling)."""
    return real(field, v, lo=RTOL_MIN, hi=min(hi, RTOL_MAX))


def atol(field: str, v) -> float:
    """An absolute tolerance in ``[ATOL_MIN, ATOL_MAX]`` (cells)."""
    return real(field, v, lo=ATOL_MIN, hi=ATOL_MAX)


def max_steps(field: str, v) -> int:
    """A step budget in ``[1, MAX_STEPS]``."""
    return integer(field, v, lo=1, hi=MAX_STEPS)


def extinction_threshold(field: str, v) -> float:
    """An extinction threshold in ``[0, MAX_EXTINCTION_THRESHOLD]`` LSCs (0: no extinction event)."""
    return real(field, v, lo=0.0, hi=MAX_EXTINCTION_THRESHOLD)


def seed(field: str, v) -> int:
    """A random seed in ``[0, MAX_SEED]``."""
    return integer(field, v, lo=0, hi=MAX_SEED)


def run_identity(table: dict, where: str, default_name: str) -> tuple[int, str]:
    """``(seed, name)`` of a run's main config table ``[where]``: the seed required (in ``[0, MAX_SEED]``),
    the name a simple identifier (default ``default_name``); errors name ``[where] seed`` / ``[where] name``."""
    if "seed" not in table:
        raise InputError(f"[{where}] seed: required (an integer >= 0)")
    s = seed(f"[{where}] seed", table["seed"])
    return s, run_name(f"[{where}] name", table.get("name", default_name))


def run_name(field: str, name) -> str:
    """A run's name: a simple identifier of at most :data:`MAX_NAME_LENGTH` characters (it becomes part of file
    names, e.g. a shipped parameter set's, so no path separators, quotes or spaces)."""
    if not isinstance(name, str) or not name.isidentifier() or len(name) > MAX_NAME_LENGTH:
        shown = repr(name[:80]) + f"... ({len(name)} characters)" if isinstance(name, str) and len(name) > 80 else repr(name)
        raise InputError(f"{field}: expected a simple identifier of at most {MAX_NAME_LENGTH} characters "
                         f"(it names files), got {shown}")
    return name


def max_threads() -> int:
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)


def threads(field: str, v) -> int:
    """A numba thread count in ``[1, NUMBA_NUM_THREADS]``."""
    return integer(field, v, lo=1, hi=max_threads())


def cohort_size(field: str, v, lo: int = 1) -> int:
    """A number of patients in ``[lo, MAX_COHORT_SIZE]``."""
    return integer(field, v, lo=lo, hi=MAX_COHORT_SIZE)


def generations(field: str, v) -> int:
    """A number of ABC generations in ``[1, MAX_GENERATIONS]``."""
    return integer(field, v, lo=1, hi=MAX_GENERATIONS)


def available_memory() -> float:
    """Bytes of memory this process can still take now (0 = unknown): the system's ``MemAvailable``
    (/proc/meminfo; else physical memory), lowered to what is left under the process's address-space limit
    (``ulimit -v``) and its control group's memory limit (a container's), where those are set."""
    import os

    avail = 0.0
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = float(line.split()[1]) * 1024.0
                    break
    except OSError:
        pass
    if not avail:
        try:
            avail = float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            avail = 0.0
    left = [x for x in (_address_space_left(), _cgroup_memory_left()) if x is not None]
    if left:  # (at least a byte: 0 means unknown, no check)
        return max(min([avail] + left) if avail else min(left), 1.0)
    return max(avail, 0.0)


def _address_space_left() -> float | None:
    """What ``ulimit -v`` (RLIMIT_AS) leaves beyond this process's current virtual size, or ``None``."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return float(soft) - float(line.split()[1]) * 1024.0
    except (ImportError, OSError, ValueError):
        pass
    return None


def _cgroup_memory_left() -> float | None:
    """What this process's control group's memory limit leaves (cgroup v2 ``memory.max``, v1
    ``memory.limit_in_bytes``, minus the group's current use), or ``None`` without a limit."""
    try:
        with open("/proc/self/cgroup") as fh:
            lines = [ln.rstrip("\n").split(":", 2) for ln in fh]
    except OSError:
        return None
    for _, controllers, path in lines:
        if controllers == "":  # v2
            base = Path("/sys/fs/cgroup") / path.lstrip("/")
            files = ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):  # v1
            base = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        try:
            limit = (base / files[0]).read_text().strip()
            if limit == "max" or float(limit) >= 2.0 ** 60:  # no limit
                continue
            return float(limit) - float((base / files[1]).read_text().strip())
        except (OSError, ValueError):
            continue
    return None


def engine_bytes_per_patient(n_visits: int) -> float:
    """Memory of one patient in the cohort engine: per-visit measurements and draws, states, parameters."""
    return ((n_visits + 1) * 3 + 256) * 8.0


def check_memory(parts: dict[str, float], hints: dict[str, str], available: float | None = None,
                 what: str = "this run") -> None:
    """Refuse (:class:`~gvlmodel.core.errors.InputError`) a run whose estimated peak memory, the sum of
    ``parts`` (label -> bytes), exceeds :data:`MEMORY_SHARE` of the memory available now
    (``available`` bytes, default :func:`available_memory`; unknown = no check).  The message gives the
    estimate, each part, and ``hints[label]`` (what to reduce) of the largest part."""
    total = float(sum(parts.values()))
    avail = available_memory() if available is None else float(available)
    if avail and total > MEMORY_SHARE * avail:
        big = max(parts, key=lambda k: parts[k])
        detail = ", ".join(f"{k} {v / GIB:.3g}" for k, v in parts.items())
        raise InputError(f"{what} needs about {total / GIB:.3g} GiB of memory ({detail} GiB), more than "
                         f"{100 * MEMORY_SHARE:.0f} % of the {avail / GIB:.1f} GiB available; reduce "
                         f"{hints.get(big, big)}")


def free_disk(folder) -> float:
    """Bytes free on the file system that holds ``folder`` (or would: its nearest existing parent)."""
    import shutil
    from pathlib import Path

    p = Path(folder).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return float(shutil.disk_usage(p).free)
    except OSError:
        return 0.0


def check_disk(parts: dict[str, float], hints: dict[str, str], folder, what: str = "this run") -> None:
    """Refuse (:class:`~gvlmodel.core.errors.InputError`) output whose estimated size, the sum of ``parts``,
    exceeds the free space of ``folder``'s file system (unknown = no check)."""
    total = float(sum(parts.values()))
    free = free_disk(folder)
    if free and total > free:
        big = max(parts, key=lambda k: parts[k])
        detail = ", ".join(f"{k} {v / GIB:.3g}" for k, v in parts.items())
        raise InputError(f"{what} would write about {total / GIB:.3g} GiB of tables ({detail} GiB), more than "
                         f"the {free / GIB:.3g} GiB free for {folder}; reduce {hints.get(big, big)}")


def duration_text(seconds: float) -> str:
    """``seconds`` as a rough human duration (``"about 3 h"``)."""
    for unit, s in (("years", 365.25 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= s:
            return f"about {seconds / s:.3g} {unit}"
    return f"about {seconds:.2g} s"


def patients_time(n_patients: float, n_threads: int | None = None) -> float:
    """Rough engine time (s) of ``n_patients`` patient-runs on ``n_threads`` (default all) threads."""
    t = max_threads() if n_threads is None else n_threads
    return float(n_patients) / (PATIENTS_PER_S_PER_THREAD * max(1, t))


__all__ = ["RTOL_MIN", "RTOL_MAX", "ATOL_MAX", "MAX_COHORT_SIZE", "MAX_GENERATIONS", "MEMORY_SHARE",
           "rtol", "atol", "seed", "threads", "MAX_SEED", "cohort_size", "generations", "available_memory", "check_memory",
           "free_disk", "check_disk",
           "engine_bytes_per_patient", "duration_text", "patients_time", "run_identity", "InputError"]
