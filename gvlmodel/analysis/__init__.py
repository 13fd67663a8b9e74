"""Layer 3, analysis of the model and of virtual trials: dynamics of immune control
(:mod:`.dynamics`), sensitivity studies (:mod:`.sensitivity`), SBML export (:mod:`.sbml`), the
manuscript numbers read from saved results (:mod:`.numbers`) and the figures' shared style and
panel helpers (:mod:`.plotting`).  Imports only from the clinical, model and core layers.
"""
