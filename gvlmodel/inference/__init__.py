"""Layer 4, inference from data: the ABC fit of H0/H1/H2 to Hess 2005 (:mod:`.fit`) and its
report (:mod:`.report`), the patient-level calibration (:mod:`.calibrate`) and stop prediction
for individual patients (:mod:`.predict`).  It sits above analysis because the fit uses the
sensitivity study's cluster connection and stop prediction draws with the plotting helpers.
"""
