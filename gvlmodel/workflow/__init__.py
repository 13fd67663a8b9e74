"""Layer 5, the workflow: the command-line interface (:mod:`.cli`), ``gvlmodel reproduce``
(:mod:`.reproduce`) and the first-run kernel compilation (:mod:`.warmup`).  May import from
every layer below; nothing imports it except the console script.
"""
