"""``--output_format``: the predictions in the formats other tools read (SLEAP's analysis HDF5,
CSV in SLEAP's or DeepLabCut's layout, NWB), each written through the same atomic
temp-file-and-rename path as the ``.slp``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
import sleap_io as sio

from sleapflow.errors import ConfigError
from sleapflow.logs import get_logger
from sleapflow.outputs.analysis_h5 import analysis_arrays, write_analysis_h5
from sleapflow.outputs.csv_table import CSV_LAYOUTS, write_csv
from sleapflow.outputs.files import write_atomically
from sleapflow.outputs.nwb import NO_METADATA, NwbMetadata, write_nwb

__all__ = ("FORMATS", "SUFFIXES", "ExportSettings", "check_formats", "export", "export_written",
           "format_path", "output_paths", "slp_output")

log = get_logger("sleapflow")


class ExportSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How the other formats are written (``track``'s ``--csv_format`` ...)."""

    #: ``sleap`` (SLEAP's analysis CSV columns) or ``dlc`` (DeepLabCut's header rows).
    csv_format: str = "sleap"
    #: The NWB file's subject and session (``--nwb_*``, ``--nwb_metadata``).
    nwb: NwbMetadata = NO_METADATA

    def __post_init__(self) -> None:
        if self.csv_format not in CSV_LAYOUTS:
            raise ConfigError(f"--csv_format {self.csv_format!r} is not one of "
                              f"{', '.join(CSV_LAYOUTS)}")


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


def _writer(labels: sio.Labels, fmt: str, slp_path: Path,
            settings: ExportSettings) -> Callable[[Path], None]:
    if fmt == "slp":
        return lambda tmp: sio.save_slp(labels, tmp.as_posix(), restore_original_videos=False,
                                        verbose=False)
    if fmt == "analysis_h5":
        # The analysis format holds one video; sleapflow outputs have one unless the input
        # .slp had several, and then the first is written (as SLEAP's export does by default).
        return lambda tmp: write_analysis_h5(labels, tmp, labels_path=slp_path.as_posix())
    if fmt == "csv":
        return lambda tmp: write_csv(labels, tmp, settings.csv_format)
    return lambda tmp: write_nwb(labels, tmp, settings.nwb)


def _note_left_out(labels: sio.Labels, formats: Sequence[str], settings: ExportSettings) -> None:
    """Say so when a one-animal-per-slot layout could not hold every untracked animal."""
    one_per_frame = [f for f in formats
                     if f == "analysis_h5" or (f == "csv" and settings.csv_format == "dlc")]
    if not one_per_frame or not labels.videos or not labels.skeletons:
        return
    left_out = analysis_arrays(labels).left_out
    if left_out:
        log.warning("untracked animals left out", formats=", ".join(one_per_frame),
                    instances=left_out,
                    hint="these layouts hold one untracked animal per frame (the best-scoring, "
                         "as SLEAP's export): track (-t) to keep every animal as its own track, "
                         "or use --csv_format sleap")


def export(labels: sio.Labels, slp_path: str | Path, formats: Sequence[str],
           settings: ExportSettings | None = None) -> list[Path]:
    """Write ``labels`` in each of ``formats`` beside ``slp_path``; returns the paths written."""
    settings = settings or ExportSettings()
    slp = format_path(slp_path, "slp")
    formats = check_formats(formats)
    _note_left_out(labels, formats, settings)
    written = []
    for fmt in formats:
        path = format_path(slp_path, fmt)
        write_atomically(path, _writer(labels, fmt, slp, settings))
        written.append(path)
    return written


def output_paths(slp_path: str | Path, formats: Sequence[str]) -> list[tuple[str, Path]]:
    """Every file ``formats`` write for the ``.slp`` path ``slp_path``, with the option that
    names it (for the output checks' messages)."""
    return [("--output_path" if fmt == "slp" else f"--output_format {fmt}",
             Path(slp_path) if fmt == "slp" else format_path(slp_path, fmt))
            for fmt in check_formats(formats)]


def export_written(slp_path: str | Path, formats: Sequence[str],
                   settings: ExportSettings | None = None) -> list[Path]:
    """The formats other than ``slp`` of a ``.slp`` already written (read back: the outputs of
    several inputs, of Ray workers); blocking."""
    from sleapflow.outputs.slp_read import read_slp

    others = [f for f in formats if f != "slp"]
    if not others:
        return []
    return export(read_slp(str(slp_path), "output"), slp_path, others, settings)
