"""Layer 1, the model: state and parameter indices (:mod:`.indices`), the parameter table
(:mod:`.parameters`), the equations as compiled kernels (:mod:`.model`) and their sympy form
(:mod:`.symbolic`), the measurement model (:mod:`.measurement`), the compiled DOP853
integrator (:mod:`.solver`, with its generated stage sums :mod:`._dop853_kernels` from
:mod:`._dop853_codegen` and the lock-step workspace layout :mod:`._lane_layout`) and the
one-patient API (:mod:`.simulate`).  Imports only from :mod:`gvlmodel.core`.
"""
