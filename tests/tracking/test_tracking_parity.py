"""Parity of the track-only workflow with sleap-nn 0.3.5's ``trackonly_*`` reference files.

Each reference is ``sleap-nn track -i topdown__centered_pair_small.slp -t <options>``; the same
input is retracked here with the options of its manifest entry. Instances are paired per frame by
identical coordinates (both files come from the same predictions), track names are mapped between
the two files, and the assignments must agree on >= 99% of the instances with the same number of
tracks.
"""

from __future__ import annotations

import json
import typing
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio

from sleapflow.tracking import TrackerConfig, track_labels

SOURCE = "topdown__centered_pair_small.slp"
# Same location as tests/conftest.py's REFERENCE; needed at collection time for parametrisation.
REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"
_CLI_NAMES = {"--tracking_window_size": "window_size"}


def config_from_cli(options: list[str]) -> TrackerConfig:
    """Turn ``sleap-nn track`` tracking flags into a :class:`TrackerConfig`."""
    hints = typing.get_type_hints(TrackerConfig)
    kwargs: dict[str, object] = {}
    i = 0
    while i < len(options):
        flag = options[i]
        name = _CLI_NAMES.get(flag, flag.removeprefix("--"))
        hint = hints[name]
        if hint is bool:
            kwargs[name] = True
            i += 1
            continue
        raw = options[i + 1]
        i += 2
        if hint in (int, int | None):
            kwargs[name] = int(raw)
        elif hint in (float, float | None):
            kwargs[name] = float(raw)
        else:
            kwargs[name] = raw
    return TrackerConfig(**kwargs)  # type: ignore[arg-type]


def _manifest(reference: Path) -> dict[str, dict]:
    return json.loads((reference / "manifest.json").read_text())


def _trackonly_cases() -> list[str]:
    if not (REFERENCE / "manifest.json").exists():
        return []
    return sorted(k for k in _manifest(REFERENCE) if k.startswith("trackonly_"))


@pytest.fixture(scope="module")
def source_labels(reference: Path, assets: Path) -> sio.Labels:
    labels = sio.load_slp(str(reference / SOURCE))
    # The .slp stores videos relative to the project root; point them at the real assets.
    labels.replace_filenames(prefix_map={"../shared/assets/datasets": str(assets / "datasets")})
    return labels


def compare_tracks(ref: sio.Labels, ours: sio.Labels) -> tuple[float, int, int, int]:
    """(agreement up to renaming, instances in ref, instances matched by coordinates, tracking
    scores that differ beyond float32 storage precision)."""
    pairs: Counter[tuple[str | None, str | None]] = Counter()
    matched = 0
    score_mismatch = 0
    ref_frames = {(Path(lf.video.filename).name, lf.frame_idx): lf for lf in ref}
    for lf in ours:
        ref_lf = ref_frames.get((Path(lf.video.filename).name, lf.frame_idx))
        if ref_lf is None:
            continue
        for inst in ref_lf.instances:
            pts = inst.numpy()
            same = [o for o in lf.instances if np.array_equal(o.numpy(), pts, equal_nan=True)]
            ref_name = inst.track.name if inst.track else None
            our_name = (same[0].track.name if same[0].track else None) if same else "<missing>"
            matched += bool(same)
            pairs[(ref_name, our_name)] += 1
            if same and not np.isclose(float(same[0].tracking_score), float(inst.tracking_score),
                                       rtol=1e-5, atol=1e-6):
                score_mismatch += 1
    mapping: dict[str | None, str | None] = {}
    for (ref_name, our_name), _ in pairs.most_common():
        if ref_name not in mapping and our_name not in mapping.values() and our_name != "<missing>":
            mapping[ref_name] = our_name
    total = sum(pairs.values())
    agree = sum(c for (r, o), c in pairs.items() if mapping.get(r, "<unmapped>") == o)
    return agree / max(total, 1), total, matched, score_mismatch


def _track_names(labels: sio.Labels) -> set[str]:
    return {inst.track.name for lf in labels for inst in lf.instances if inst.track}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", _trackonly_cases())
def test_trackonly_parity(case: str, reference: Path, source_labels: sio.Labels) -> None:
    entry = _manifest(reference)[case]
    assert entry["input"] == SOURCE
    cfg = config_from_cli(entry["cli_options"])
    ref = sio.load_slp(str(reference / f"{case}.slp"))

    ours = track_labels(source_labels, cfg)

    agreement, n_ref, n_matched, score_mismatch = compare_tracks(ref, ours)
    n_ours = sum(len(lf.instances) for lf in ours)
    assert agreement >= 0.99, (case, agreement)
    assert score_mismatch <= 0.01 * n_ref, (case, score_mismatch)
    assert n_matched == n_ref == n_ours, (case, n_ref, n_matched, n_ours)
    assert len(_track_names(ours)) == len(_track_names(ref)), case
    assert len(ours) == len(ref)


def test_parity_cases_found() -> None:
    """The parametrisation above must not silently collect nothing."""
    assert len(_trackonly_cases()) >= 8
