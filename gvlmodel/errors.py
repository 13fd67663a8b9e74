"""Error types.  Bad user input raises :class:`InputError`, naming the field."""


class InputError(ValueError):
    """A config value or call argument is invalid; the message names the field."""


class SolverError(RuntimeError):
    """Raised only on request (``raise_on_failure=True``) for a failed solve."""


def read_toml(path, label: str = "config") -> dict:
    """Parse a TOML file; a missing or malformed file is an :class:`InputError` naming it."""
    import tomllib

    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise InputError(f"{label}: file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{label} {path}: not valid TOML ({exc})") from None
