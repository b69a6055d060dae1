"""Every front end's options, derived from the one declaration of each option: the config fields."""

# A field of :class:`~sleapflow.options.config.InferenceConfig` (or of the
# :class:`~sleapflow.options.tracker.TrackerConfig` sub-config, whose options front ends take flat)
# is an option when its ``Annotated`` type carries an :func:`~sleapflow.options.spelling.opt`
# (command-line spelling and help) and a :class:`~sleapflow.options.role.Role`. From those this
# module derives the command line's option dataclasses (cyclopts flattens them), keyword
# signatures (``run_inference``), the provenance record's keys, the options a resume may change and
# the tracker's flat keywords, so an option added to the config reaches every front end with no
# other edit.

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import msgspec
from cyclopts import Parameter

from sleapflow.options.config import InferenceConfig
from sleapflow.options.role import FRONTS, Role

__all__ = (
    "Option", "cli_options", "declared", "front_options", "keyword_signature", "neutral_options", "option",
    "option_values", "provenance_keys", "tracker_keywords",
)


@dataclasses.dataclass(frozen=True)
class Option:
    """One declared option, as read from its field."""

    #: The flat keyword front ends take (``tracking_window_size``, ``tracker_name``).
    keyword: str
    #: The field that holds it, in ``within`` (the sub-config field, ``tracker``) or at top level.
    field: str
    within: str | None
    #: The config field's type (without the markers) and default.
    type: Any
    default: Any
    param: Parameter
    role: Role

    @property
    def flag(self) -> str:
        """The command-line spelling, ``--tracking_window_size``."""
        return str(self.param.name[0])  # type: ignore[index]

    @property
    def help(self) -> str:
        return str(self.param.help)

    @property
    def cli_type(self) -> Any:
        return self.role.cli_type if self.role.cli_type is not None else self.type

    def default_for(self, front: str) -> Any:
        """The default ``front`` gives it: its own where the role declares one."""
        return self.role.defaults.get(front, self.default)


def _markers(hint: Any) -> tuple[Any, Parameter | None, Role | None]:
    if typing.get_origin(hint) is not typing.Annotated:
        return hint, None, None
    params = [m for m in hint.__metadata__ if isinstance(m, Parameter)]
    roles = [m for m in hint.__metadata__ if isinstance(m, Role)]
    return hint.__origin__, params[0] if params else None, roles[0] if roles else None


def _default(info: msgspec.structs.FieldInfo) -> Any:
    if info.default is not msgspec.NODEFAULT:
        return info.default
    if info.default_factory is not msgspec.NODEFAULT:
        return info.default_factory()
    return inspect.Parameter.empty


@cache
def declared(config: type[msgspec.Struct] = InferenceConfig) -> tuple[Option, ...]:
    """The options ``config`` declares, in field order; a sub-config field whose own fields are
    options (the tracker) contributes those, flat, at its place."""
    out: list[Option] = []
    hints = typing.get_type_hints(config, include_extras=True)
    for info in msgspec.structs.fields(config):
        base, param, role = _markers(hints[info.name])
        if role is None:
            if isinstance(base, type) and issubclass(base, msgspec.Struct) and declared(base):
                out.extend(dataclasses.replace(o, within=info.name) for o in declared(base))
            continue
        if param is None:
            raise TypeError(f"{config.__name__}.{info.name}: a Role needs an opt() beside it")
        keyword = role.keyword or str(param.name[0]).removeprefix("--")  # type: ignore[index]
        out.append(Option(keyword=keyword, field=info.name, within=None, type=base,
                          default=_default(info), param=param, role=role))
    keywords = [o.keyword for o in out]
    clashes = sorted({k for k in keywords if keywords.count(k) > 1} |
                     ({k for k in keywords if k in config.__struct_fields__} -
                      {o.field for o in out if o.within is None and o.keyword == o.field}))
    if clashes:
        raise TypeError(f"{config.__name__}: option keyword(s) {clashes} are taken twice")
    return tuple(out)


def option(name: str, config: type[msgspec.Struct] = InferenceConfig) -> Option:
    """The option with this keyword or command-line name (``tracker_name`` or ``tracker``)."""
    for o in declared(config):
        if name in (o.keyword, o.flag.removeprefix("--")):
            return o
    raise KeyError(f"no declared option {name!r}")


def front_options(front: str, config: type[msgspec.Struct] = InferenceConfig) -> tuple[Option, ...]:
    """The options ``front`` offers, in declaration order."""
    if front not in FRONTS:
        raise ValueError(f"unknown front end {front!r}; known: {sorted(FRONTS)}")
    return tuple(o for o in declared(config) if front in o.role.fronts)


@cache
def cli_options(front: str = "track", *, names: tuple[str, ...] | None = None,
                config: type[msgspec.Struct] = InferenceConfig,
                class_name: str | None = None) -> type:
    """A frozen dataclass of ``front``'s options (or of the ones in ``names``) for a cyclopts
    command to take flattened, ``Annotated[cls, Parameter(name="*")] = cls()``: each field is
    the option's keyword, its command-line type with its :func:`~sleapflow.options.spelling.opt`,
    and ``front``'s default."""
    chosen = front_options(front, config)
    if names is not None:
        known = {o.keyword: o for o in chosen}
        missing = sorted(set(names) - set(known))
        if missing:
            raise KeyError(f"{front} has no option(s) {missing}")
        chosen = tuple(o for o in chosen if o.keyword in names)
    fields = [(o.keyword, typing.Annotated[o.cli_type, o.param],
               dataclasses.field(default=o.default_for(front))) for o in chosen]
    # cyclopts only flattens a class it can tell apart from the standard library's (by module).
    return dataclasses.make_dataclass(class_name or f"{front.title().replace('_', '')}Options",
                                      fields, frozen=True, kw_only=True,
                                      namespace={"__module__": __name__})


def option_values(options: Any) -> dict[str, Any]:
    """An instance of a :func:`cli_options` class as a plain keyword dict (not deep-copied)."""
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


def _allows_none(tp: Any) -> bool:
    return tp is None or type(None) in typing.get_args(tp)


def keyword_signature(front: str, *, own: Mapping[str | None, Sequence[inspect.Parameter]] | None = None,
                      config: type[msgspec.Struct] = InferenceConfig,
                      return_annotation: Any = inspect.Signature.empty) -> inspect.Signature:
    """``front``'s keyword signature: its options in declaration order with their defaults, and
    the front end's own parameters (``own``) placed after the option each is keyed by (``None``:
    before every option), so a signature can keep the order a reference API has."""
    own = own or {}
    offered = {o.keyword for o in front_options(front, config)}
    stray = sorted(k for k in own if k is not None and k not in offered)
    if stray:
        raise KeyError(f"own parameters anchored on {stray}, not options of {front}")
    params = list(own.get(None, ()))
    for o in front_options(front, config):
        default = o.default_for(front)
        tp = o.type if default is not None or _allows_none(o.type) else o.type | None
        params.append(inspect.Parameter(o.keyword, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                        default=default, annotation=tp))
        params.extend(own.get(o.keyword, ()))
    return inspect.Signature(params, return_annotation=return_annotation)


def provenance_keys(config: type[msgspec.Struct] = InferenceConfig) -> tuple[str, ...]:
    """The options an output's provenance records in ``inference_config``, in their order."""
    recorded = sorted((o.role.provenance, o.field) for o in declared(config)
                      if o.role.provenance is not None and o.within is None)
    return tuple(name for _, name in recorded)


def neutral_options(config: type[msgspec.Struct] = InferenceConfig) -> frozenset[str]:
    """The config's top-level fields that do not change the predictions (a resume may differ)."""
    return frozenset(o.field for o in declared(config)
                     if not o.role.changes_results and o.within is None)


def tracker_keywords(config: type[msgspec.Struct] = InferenceConfig) -> dict[str, str]:
    """The tracker's flat keywords, each to its ``TrackerConfig`` field."""
    return {o.keyword: o.field for o in declared(config) if o.within == "tracker"}
