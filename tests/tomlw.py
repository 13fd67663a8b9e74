"""A minimal TOML writer for test configs: top-level keys, tables (nested ones as dotted headers) of
scalars, lists and inline tables."""
from __future__ import annotations

import json
import math


def value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {value(x)}" for k, x in v.items()) + " }"
    return repr(v)


def dumps(d: dict) -> str:
    """``d`` as TOML: scalars first, then one ``[table]`` per dict value (its own dicts inline)."""
    lines = [f"{json.dumps(str(k))} = {value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for table, body in d.items():
        if isinstance(body, dict):
            lines.append(f"[{json.dumps(str(table))}]")
            lines += [f"{json.dumps(str(k))} = {value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"
