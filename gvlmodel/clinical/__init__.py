"""Layer 2, the clinic: the protocol compiled with its visit rules (:mod:`.protocol`), virtual
cohorts (:mod:`.cohort`, the lock-step engine :mod:`.lanes`) and their summaries
(:mod:`.summary`), scenario files (:mod:`.scenario`), virtual trials of the Hess 2005 design
(:mod:`.trial`), and the clinical data: the Hess 2005 calibration numbers (:mod:`.calibration`)
and the patient-level series (:mod:`.datasets`).  Imports only from :mod:`gvlmodel.model` and
:mod:`gvlmodel.core`.
"""
