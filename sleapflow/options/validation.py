"""Up-front checks on every numeric option: no NaN, no infinity, nothing that overflows later."""

from __future__ import annotations

import math
import numbers
import typing
from functools import cache
from typing import Any

import msgspec
from cyclopts import Parameter

from sleapflow.errors import ConfigError
from sleapflow.options.frames import MAX_FRAME_INDEX

__all__ = ("MAX_INT_OPTION", "check_bounds", "check_numbers", "check_range")


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
    """Refuse NaN/inf floats and out-of-range integers in ``config`` and its nested structs,
    then any value outside its option's declared range (:func:`check_bounds`)."""
    flags = _flags(type(config))
    for field in config.__struct_fields__:
        value = getattr(config, field)
        if field == "frames" and value is not None:
            _check_frames(value)
            continue
        _check_value(field, value, flags[field])
    check_bounds(config)


@cache
def _bounds(struct: type) -> dict[str, tuple[bool, tuple[float | None, float | None]]]:
    """Each bounded field: whether it holds whole numbers, and its declared range (the
    :class:`~sleapflow.options.role.Role` beside its type)."""
    out = {}
    for field, hint in typing.get_type_hints(struct, include_extras=True).items():
        bounds = next((m.bounds for m in getattr(hint, "__metadata__", ())
                       if getattr(m, "bounds", None) is not None), None)
        if bounds is not None:
            base = hint.__origin__
            whole = base is int or int in typing.get_args(base)
            out[field] = (whole, bounds)
    return out


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"between {low} and {high}"
    return f"at least {low}" if low is not None else f"at most {high}"


def check_bounds(config: msgspec.Struct) -> None:
    """Refuse a value outside its option's declared range, naming the option as it is typed,
    the range and the value (a pair, ``peak_threshold``'s, is checked per value)."""
    flags = _flags(type(config))
    for field, (whole, (low, high)) in _bounds(type(config)).items():
        value = getattr(config, field)
        if value is None:
            continue
        for v in value if isinstance(value, (tuple, list)) else (value,):
            check_range(flags[field], v, low, high, whole=whole)


def check_range(flag: str, value: Any, low: float | None, high: float | None, *,
                whole: bool) -> None:
    """Refuse ``value`` outside ``[low, high]`` (or not a whole number when ``whole``) in the
    one message every range check gives: the option as typed, the range and the value."""
    wrong = isinstance(value, bool) or not isinstance(value, numbers.Real) or (
        whole and not isinstance(value, numbers.Integral))
    if wrong or (low is not None and not value >= low) or (high is not None and not value <= high):
        kind = "a whole number " if whole else ""
        raise ConfigError(f"{flag} must be {kind}{_range_text(low, high)} (got {value!r})")
