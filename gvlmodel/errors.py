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


def check_tables(cfg: dict, tables: dict, source: str, allowed_text=None) -> None:
    """Config tables and their keys against ``tables`` (name -> allowed keys); the error names the
    table and key.  ``allowed_text(table, allowed)`` may phrase the allowed keys of a table."""
    unknown = set(cfg) - set(tables)
    if unknown:
        raise InputError(f"{source}: unknown table(s) {sorted(unknown)}; allowed: {sorted(tables)}")
    for table, allowed in tables.items():
        sub = cfg.get(table, {})
        if not isinstance(sub, dict):
            raise InputError(f"[{table}]: expected a table, got {type(sub).__name__}")
        bad = set(sub) - allowed
        if bad:
            text = allowed_text(table, allowed) if allowed_text else ", ".join(sorted(allowed))
            raise InputError(f"[{table}]: unknown key(s) {sorted(bad)}; allowed: {text}")
