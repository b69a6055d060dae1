"""Tracks the clips ``eval_trackers.py --write DIR`` saved with sleap-nn 0.3.5 ``predict``.

Run with the reference's own Python (it imports sleap_nn, never sleapflow); one process runs
every configuration on every clip, so its start-up is paid once::

    $HOME/sleapnn-peer/bin/python benchmarks/peer_tracking.py DIR

Writes ``DIR/CLIP__RUN.slp`` for each ``CLIP.slp`` (not ``*.gt.slp``) and each run below;
``python benchmarks/eval_trackers.py --peer DIR`` scores them beside sleapflow's rows.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

#: Run name (shown in the table with "+" as spaces) -> sleap-nn predict tracking flags.
RUNS: dict[str, list[str]] = {
    "classic+--link_tracklets": ["--link_tracklets"],
    "sort": ["--tracker", "sort"],
    "sort+--link_tracklets": ["--tracker", "sort", "--link_tracklets"],
    "bytetrack": ["--tracker", "bytetrack"],
    "bytetrack+--link_tracklets": ["--tracker", "bytetrack", "--link_tracklets"],
    "ocsort": ["--tracker", "ocsort"],
    "ocsort+--link_tracklets": ["--tracker", "ocsort", "--link_tracklets"],
    "bytetrack+--link_tracklets+--max_tracks+2": [
        "--tracker", "bytetrack", "--link_tracklets", "--max_tracks", "2"],
}


def main() -> None:
    # The reference's own Python runs this file (sleap_nn is not a sleapflow dependency).
    cli = importlib.import_module("sleap_nn.cli").cli

    folder = Path(sys.argv[1])
    only = sys.argv[2] if len(sys.argv) > 2 else ""
    for src in sorted(folder.glob("*.slp")):
        if src.name.endswith(".gt.slp") or "__" in src.name:
            continue
        for run, flags in RUNS.items():
            if only not in run:
                continue
            out = folder / f"{src.stem}__{run}.slp"
            if out.exists():
                continue
            args = ["predict", "-i", str(src), "-t", *flags, "-o", str(out), "--device", "cpu"]
            try:
                cli.main(args, standalone_mode=False)
            except Exception as exc:  # one failing run must not stop the others
                print(f"FAILED {src.name} {run}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    main()
