"""Up-front checks on every numeric option: no NaN, no infinity, nothing that overflows later."""

from __future__ import annotations

import math
import typing
from functools import cache
from typing import Any

import msgspec
from cyclopts import Parameter

from sleapflow.errors import ConfigError
from sleapflow.options.frames import MAX_FRAME_INDEX

__all__ = ("MAX_INT_OPTION", "check_numbers")


#: Integer options are counts, sizes and indices; anything past int32 is a typo that would
#: otherwise overflow a tensor shape or an HDF5 field long after inference started.
MAX_INT_OPTION = 2**31 - 1


@cache
def _flags(struct: type) -> dict[str, str]:
    """Each field's command-line name, from its declaration (``window_size`` is
    ``--tracking_window_size``); a field declared without one is ``--FIELD``."""
    out = {}
    for field, hint in typing.get_type_hints(struct, include_extras=True).items():
        params = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, Parameter)]
        out[field] = str(params[0].name[0]) if params else f"--{field}"  # type: ignore[index]
    return out


def _check_value(field: str, value: Any, flag: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{flag} must be a finite number (got {value!r})")
    elif isinstance(value, int):
        if abs(value) > MAX_INT_OPTION:
            raise ConfigError(f"{flag} is out of range (got {value}; at most "
                              f"{MAX_INT_OPTION})")
    elif isinstance(value, msgspec.Struct):
        check_numbers(value)
    elif isinstance(value, (tuple, list)) and field != "frames":
        for item in value:
            _check_value(field, item, flag)


def _check_frames(frames: Any) -> None:
    for entry in frames:
        values = entry if isinstance(entry, (tuple, list)) else (entry,)
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_FRAME_INDEX:
                raise ConfigError(f"--frames: {v!r} is not a frame index (0 to {MAX_FRAME_INDEX})")


def check_numbers(config: msgspec.Struct) -> None:
    """Refuse NaN/inf floats and out-of-range integers in ``config`` and its nested structs."""
    flags = _flags(type(config))
    for field in config.__struct_fields__:
        value = getattr(config, field)
        if field == "frames" and value is not None:
            _check_frames(value)
            continue
        _check_value(field, value, flags[field])
