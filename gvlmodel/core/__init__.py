"""Layer 0, infrastructure every other layer uses: errors and config validators
(:mod:`.errors`), run-size limits (:mod:`.limits`), provenance records and atomic output
writing (:mod:`.provenance`), progress bars (:mod:`.progress`), numba's compilation options
and cache (:mod:`._jit`), the package version (:mod:`.version`) and the experiment kinds
(:mod:`.experiments`).  Imports nothing from the package's other layers.
"""
