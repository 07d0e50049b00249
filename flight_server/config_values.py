"""Parsing one setting's value (YAML, environment or CLI text) into its field's type: booleans,
integers (sizes such as ``8GiB`` for paths about bytes), numbers or durations (``30s``, ``5m``),
strings and comma-separated lists. Used by :mod:`flight_server.config`."""

from __future__ import annotations

import re
import types
import typing
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$", re.I)
_SIZE_UNITS = {None: 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2,
               "mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gib": 1024**3}
_DURATION_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def coerce_value(path: str, tp: Any, value: Any) -> Any:
    """Convert a YAML/env/CLI value to the field type ``tp`` (``path`` names it: a path with
    ``bytes`` in it accepts sizes such as ``8GiB``); raises ValueError."""
    if tp is bool:
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"not an integer: {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        s = str(value).strip().replace("_", "")
        if "bytes" in path.lower():
            m = _SIZE.match(s)
            if m:
                return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower() or None])
        return int(s)
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"not a number: {value!r}")
        if isinstance(value, int | float):
            return float(value)
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"not a number or duration: {value!r}")
        return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if tp is str:
        if isinstance(value, dict | list):
            raise ValueError(f"not a string: {value!r}")
        return "" if value is None else str(value)
    origin = typing.get_origin(tp)
    if origin is tuple:
        if value is None:
            return ()
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        if isinstance(value, list | tuple):
            return tuple(str(v) for v in value)
        raise ValueError(f"not a list: {value!r}")
    if origin in (types.UnionType, typing.Union):
        raise ValueError("unsupported union")
    raise ValueError(f"unsupported type {tp!r}")
