"""``--output_format``: the predictions in sleap-io's other formats (analysis HDF5, CSV, NWB),
each written through the same atomic temp-file-and-rename path as the ``.slp``."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import sleap_io as sio

from sleapflow.errors import ConfigError
from sleapflow.outputs.files import write_atomically

__all__ = ("FORMATS", "SUFFIXES", "check_formats", "export", "format_path", "slp_output")


#: Format name → the suffix that replaces ``.slp`` in the output's name.
SUFFIXES = {"slp": ".slp", "analysis_h5": ".analysis.h5", "csv": ".csv", "nwb": ".nwb"}
FORMATS = tuple(SUFFIXES)


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """The requested formats, deduplicated in order; an unknown one is a usage error."""
    out: list[str] = []
    for fmt in formats:
        if fmt not in SUFFIXES:
            raise ConfigError(f"--output_format {fmt!r} is not one of {', '.join(FORMATS)}")
        if fmt not in out:
            out.append(fmt)
    return tuple(out) or ("slp",)


def format_path(output: str | Path, fmt: str) -> Path:
    """Where format ``fmt`` goes for the output path ``output``: its name with the suffix of any
    format replaced (``x.slp`` or ``x.csv`` → ``x.csv``, ``x.analysis.h5``), so ``-o x.csv
    --output_format csv`` writes ``x.csv``; a name with another suffix keeps it
    (``x.out`` → ``x.out.csv``)."""
    path = Path(output)
    stem = path.name
    for suffix in sorted(SUFFIXES.values(), key=len, reverse=True):
        if stem.endswith(suffix) and len(stem) > len(suffix):
            stem = stem[: -len(suffix)]
            break
    return path.with_name(stem + SUFFIXES[fmt])


def slp_output(output: str) -> str:
    """The ``.slp`` a run writes for ``-o output``: ``output`` itself, unless it names another
    format's file (``-o x.csv --output_format slp --output_format csv`` writes ``x.slp``)."""
    others = [s for f, s in SUFFIXES.items() if f != "slp"]
    return str(format_path(output, "slp")) if output.endswith(tuple(others)) else output


def _writer(labels: sio.Labels, fmt: str) -> Callable[[Path], None]:
    if fmt == "slp":
        return lambda tmp: sio.save_slp(labels, tmp.as_posix(), restore_original_videos=False,
                                        verbose=False)
    if fmt == "analysis_h5":
        # The analysis format holds one video; sleapflow outputs have one unless the input
        # .slp had several, and then the first is written (as sleap-io does by default).
        return lambda tmp: sio.save_analysis_h5(labels, tmp.as_posix(), video=0)
    if fmt == "csv":
        return lambda tmp: sio.save_csv(labels, tmp.as_posix())
    return lambda tmp: _save_nwb(labels, tmp)


def _save_nwb(labels: sio.Labels, path: Path) -> None:
    # sleap-io 0.9 fills pynwb / ndx-pose fields those packages now deprecate; the file is
    # still valid, and users should not see other packages' deprecation notices on every export.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        sio.save_nwb(labels, path.as_posix())


def export(labels: sio.Labels, slp_path: str | Path, formats: Sequence[str]) -> list[Path]:
    """Write ``labels`` in each of ``formats`` beside ``slp_path``; returns the paths written."""
    written = []
    for fmt in check_formats(formats):
        path = format_path(slp_path, fmt)
        write_atomically(path, _writer(labels, fmt))
        written.append(path)
    return written
