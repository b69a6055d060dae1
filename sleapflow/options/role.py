"""The marker a config field carries to be an option: its sub-config, effect and front ends."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ("FRONTS", "SLEAPFLOW", "SLEAP_NN", "TRACK_ONLY", "Group", "Role")


#: The front ends that take inference options: ``sleapflow track``, ``run_inference``,
#: ``sleapflow serve`` and ``open_graph``.
FRONTS: frozenset[str] = frozenset({"track", "run_inference", "serve", "open_graph"})

#: sleap-nn's own options: ``track`` and ``run_inference`` take them, as does ``open_graph``.
SLEAP_NN: frozenset[str] = frozenset({"track", "run_inference", "open_graph"})
#: sleapflow's additions: not in sleap-nn's ``run_inference``, so not in ours (same keywords).
SLEAPFLOW: frozenset[str] = frozenset({"track", "open_graph"})
#: What only a command-line run over files does (journals, shards, existing outputs).
TRACK_ONLY: frozenset[str] = frozenset({"track"})

#: The sub-config an option belongs to (:class:`~sleapflow.options.config.InferenceConfig`'s views).
Group = Literal["input", "preprocessing", "peaks", "grouping", "filters", "tracking", "output",
                "execution"]


# eq=False: hashed by identity, so a Role can sit in Annotated metadata (typing hashes it) while
# holding a plain dict of per-front-end defaults.
@dataclass(frozen=True, eq=False)
class Role:
    """What an option is for, beside its type, default and help (which the field itself holds).

    ``changes_results=False``: the predictions do not depend on it, so a resumed run may differ in
    it. ``provenance``: its position in the output provenance's ``inference_config`` record (the
    order sleap-nn writes), None when not recorded. ``fronts``: the front ends that offer it.
    ``defaults``: a front end's own default where it deliberately differs from the config's
    (a server batches small and waits briefly). ``cli_type``: the command line's type where it
    differs from the config's (text that :func:`~sleapflow.options.boundary.build_config`
    parses). ``keyword``: the flat keyword where it is not the option's name (the tracker's
    ``--tracker`` is ``tracker_name=``, since ``tracker`` is the config's tracker sub-config).
    ``bounds``: the range a numeric option's values must lie in.
    """

    group: Group
    changes_results: bool = True
    provenance: int | None = None
    fronts: frozenset[str] = SLEAP_NN
    defaults: Mapping[str, Any] = field(default_factory=dict)
    cli_type: Any = None
    keyword: str | None = None
    #: The valid range, inclusive (``None``: open at that end), checked on every construction of
    #: the config, before any model loads; a pair (``peak_threshold``) is checked per value.
    bounds: tuple[float | None, float | None] | None = None

    def __post_init__(self) -> None:
        unknown = (set(self.fronts) | set(self.defaults)) - FRONTS
        if unknown:
            raise ValueError(f"unknown front end(s) {sorted(unknown)}; known: {sorted(FRONTS)}")
