"""Error types.  Bad user input raises :class:`InputError`, naming the field."""


class InputError(ValueError):
    """A config value or call argument is invalid; the message names the field."""


class SolverError(RuntimeError):
    """Raised only on request (``raise_on_failure=True``) for a failed solve."""
