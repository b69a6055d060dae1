"""The one configuration boundary: user options (CLI flags, ``run_inference`` and ``open_graph``
keywords) become an :class:`~sleapflow.options.config.InferenceConfig` here and nowhere else."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sleapflow.errors import ConfigError
from sleapflow.options.config import InferenceConfig, parse_frames
from sleapflow.options.declared import tracker_keywords
from sleapflow.options.tracker import TrackerConfig, parse_node_indices

__all__ = ("TRACKER_KEYS", "build_config", "tracker_config")


#: Each flat tracking keyword (sleap-nn's spelling: ``tracking_window_size``) to its
#: ``TrackerConfig`` field (``window_size``), from the tracker's declared options.
_TRACKER_FIELDS = tracker_keywords()

#: Every flat tracking keyword an option set may carry (sleap-nn's spelling).
TRACKER_KEYS: tuple[str, ...] = tuple(_TRACKER_FIELDS)


def tracker_config(options: dict[str, Any]) -> TrackerConfig:
    """A ``TrackerConfig`` from flat sleap-nn tracking keywords (lists become tuples)."""
    fields = {_TRACKER_FIELDS.get(k, k): v for k, v in options.items()}
    nodes = fields.get("kf_node_indices")
    if isinstance(nodes, str):
        fields["kf_node_indices"] = parse_node_indices(nodes)
    elif nodes is not None:
        fields["kf_node_indices"] = tuple(nodes)
    return TrackerConfig(**fields)


def _frames(frames: Sequence[Any] | str | None) -> tuple[int | tuple[int, int], ...] | None:
    """Frame indices, and inclusive ``(start, end)`` ranges kept as ranges (``"0-99999"`` or
    ``[(0, 99999)]`` costs nothing); see :mod:`sleapflow.options.frames`."""
    if frames is None:
        return None
    if isinstance(frames, str):
        return parse_frames(frames)
    out: list[int | tuple[int, int]] = []
    for f in frames:
        if isinstance(f, (tuple, list)):
            if len(f) != 2:
                raise ConfigError(f"frames: {list(f)!r} is not an inclusive (start, end) range")
            start, end = int(f[0]), int(f[1])
            if end < start:
                raise ConfigError(f"frames: range {start}-{end} ends before it starts")
            out.append((start, end))
        else:
            out.append(int(f))
    return tuple(out)


def _peak_threshold(value: float | Sequence[float]) -> float | tuple[float, float]:
    if isinstance(value, (int, float)):
        return float(value)
    values = tuple(float(v) for v in value)
    if len(values) != 2:
        raise ConfigError(
            f"peak_threshold must be a number or a [centroid, instance] pair (got {list(values)})"
        )
    return values  # type: ignore[return-value]


def _refinement(value: str | None) -> str | None:
    if value is None or str(value).lower() in ("none", "null", ""):
        return None
    return value


def build_config(**options: Any) -> InferenceConfig:
    """An :class:`InferenceConfig` from option keywords, as the CLI, ``run_inference`` and
    ``open_graph`` spell them.

    Lists become tuples, ``frames`` may be a list or a ``"0-100,200"`` string,
    ``integral_refinement="none"`` is ``None``; sleap-nn's flat tracking keywords
    (``tracking_window_size``, ``max_tracks``, ...) become the ``tracker`` sub-config (built,
    and so validated, whether or not ``tracking`` is on).
    """
    options = dict(options)
    if isinstance(options.get("tracker"), str):  # the tracker's name, as sleap-nn predict spells it
        options["tracker_name"] = options.pop("tracker")
    flat_tracker = {k: options.pop(k) for k in TRACKER_KEYS if k in options}
    if flat_tracker or "tracker" not in options:
        if "tracker" in options:
            raise ConfigError("pass either tracker= or the tracking keywords, not both")
        options["tracker"] = tracker_config(flat_tracker)
    if "model_paths" in options:
        paths = options["model_paths"]
        options["model_paths"] = (paths,) if isinstance(paths, (str, Path)) else tuple(paths or ())
        options["model_paths"] = tuple(str(p) for p in options["model_paths"])
    if "data_path" in options and options["data_path"] is not None:
        options["data_path"] = str(options["data_path"])
    if "frames" in options:
        options["frames"] = _frames(options["frames"])
    if "peak_threshold" in options:
        options["peak_threshold"] = _peak_threshold(options["peak_threshold"])
    if "integral_refinement" in options:
        options["integral_refinement"] = _refinement(options["integral_refinement"])
    unknown = sorted(set(options) - set(InferenceConfig.__struct_fields__))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; see sleapflow track --help")
    return InferenceConfig(**options)
