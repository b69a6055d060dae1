"""Option spellings: one underscore name per option (sleap-nn's) in help, hyphenated ones accepted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cyclopts import Parameter

__all__ = ("KNOWN", "canonical_argv", "opt")


#: Every long option name registered through :func:`opt` (``--batch_size``, ``--no-ensure_rgb``).
KNOWN: set[str] = set()


def opt(name: str, *short: str, help: str, negative: bool = False, **kwargs: Any) -> Parameter:
    """An option spelled as sleap-nn spells it (underscores), with its help.

    Only the underscore name (and short flags) are listed; :func:`canonical_argv` maps the
    hyphenated spelling onto it. ``negative`` adds ``--no-NAME``; lists get no ``--empty-NAME``.
    The config's fields declare their options with it; commands use
    :func:`sleapflow.options.spelling.opt`, which finds the help of a name they share.
    """
    names = [f"--{name}", *short]
    KNOWN.add(f"--{name}")
    neg: Any = ()
    if negative:
        neg = [f"--no-{name}"]
        KNOWN.add(f"--no-{name}")
    return Parameter(name=names, help=help, negative=neg, negative_iterable=(), **kwargs)


def canonical_argv(argv: Sequence[str]) -> list[str]:
    """``--batch-size 4`` → ``--batch_size 4`` (and ``--x-y=v``) for every registered option;
    anything else (values, unknown options) is left for the parser to judge."""
    hyphenated = {name[:2] + name[2:].replace("_", "-"): name for name in KNOWN if "_" in name}
    out = []
    for token in argv:
        head, sep, tail = token.partition("=")
        if head in hyphenated:
            token = hyphenated[head] + sep + tail
        out.append(token)
    return out
