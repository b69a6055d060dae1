"""run_inference(make_labels=False) for the top-down and bottom-up graphs vs the reference arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sleapflow.predict import run_inference

CKPT = "model_ckpts/minimal_instance_"
CASES = {
    "topdown__minimal_instance": ["centroid", "centered_instance"],
    "multiclass_topdown__minimal_instance": ["centroid", "multiclass_centered_instance"],
    "centered_instance_only__minimal_instance": ["centered_instance"],
    "bottomup__minimal_instance": ["bottomup"],
    "multiclass_bottomup__minimal_instance": ["multiclass_bottomup"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_raw_arrays_match_reference(case: str, assets: Path, reference: Path) -> None:
    _check_against_reference(case, assets, reference)


@pytest.mark.parametrize("case", ["topdown__minimal_instance",
                                  "multiclass_topdown__minimal_instance"])
def test_raw_arrays_of_a_frame_whose_crops_came_in_parts(case: str, assets: Path,
                                                          reference: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A frame's crops travel in parts (``limits.MAX_CROPS_PER_PART``); its raw dict is still
    one, with every crop (and the identity classes assigned over the whole frame)."""
    from sleapflow.stages import topdown

    monkeypatch.setattr(topdown, "MAX_CROPS_PER_PART", 1)  # the frame's two crops: two parts
    _check_against_reference(case, assets, reference)


def _check_against_reference(case: str, assets: Path, reference: Path) -> None:
    out = run_inference(data_path=str(assets / "datasets/minimal_instance.pkg.slp"),
                        model_paths=[str(assets / f"{CKPT}{m}") for m in CASES[case]],
                        make_labels=False, return_confmaps=True, device="cpu")
    ref = np.load(reference / f"{case}.raw.npz")
    batches = sorted({k.split("__", 1)[0] for k in ref})
    assert len(out) == len(batches)
    for i, batch in enumerate(out):
        for key in (k.split("__", 1)[1] for k in ref if k.startswith(f"b{i}__")):
            assert key in batch, key
            expected = ref[f"b{i}__{key}"]
            ours = np.asarray(batch[key])
            assert ours.shape == expected.shape, key
            assert ours.dtype == expected.dtype, key
            np.testing.assert_allclose(ours, expected, atol=1e-4, equal_nan=True, err_msg=key)
