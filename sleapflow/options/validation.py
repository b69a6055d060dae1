"""Up-front checks on every numeric option: no NaN, no infinity, nothing that overflows later."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from sleapflow.errors import ConfigError
from sleapflow.options.frames import MAX_FRAME_INDEX

__all__ = ("MAX_INT_OPTION", "check_numbers")


#: Integer options are counts, sizes and indices; anything past int32 is a typo that would
#: otherwise overflow a tensor shape or an HDF5 field long after inference started.
MAX_INT_OPTION = 2**31 - 1

#: Struct fields whose command-line name differs from the field name.
_CLI_NAMES = {"window_size": "tracking_window_size"}


def _name(field: str) -> str:
    return "--" + _CLI_NAMES.get(field, field)


def _check_value(field: str, value: Any) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{_name(field)} must be a finite number (got {value!r})")
    elif isinstance(value, int):
        if abs(value) > MAX_INT_OPTION:
            raise ConfigError(f"{_name(field)} is out of range (got {value}; at most "
                              f"{MAX_INT_OPTION})")
    elif isinstance(value, msgspec.Struct):
        check_numbers(value)
    elif isinstance(value, (tuple, list)) and field != "frames":
        for item in value:
            _check_value(field, item)


def _check_frames(frames: Any) -> None:
    for entry in frames:
        values = entry if isinstance(entry, (tuple, list)) else (entry,)
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_FRAME_INDEX:
                raise ConfigError(f"--frames: {v!r} is not a frame index (0 to {MAX_FRAME_INDEX})")


def check_numbers(config: msgspec.Struct) -> None:
    """Refuse NaN/inf floats and out-of-range integers in ``config`` and its nested structs."""
    for field in config.__struct_fields__:
        value = getattr(config, field)
        if field == "frames" and value is not None:
            _check_frames(value)
            continue
        _check_value(field, value)
