"""sleap-nn embedding (re-ID) model folders: decoding, strict loading, vectors vs the reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sleapflow.errors import ConfigError
from sleapflow.graphs.common import resolve_embedding, resolve_models
from sleapflow.models.embedding import (
    EMBEDDING_HEAD,
    is_embedding_folder,
    load_embedding_model,
    read_embedding_config,
    standardize_crops,
)
from sleapflow.ops.preprocess import normalize

EMBEDDING = Path(__file__).resolve().parent.parent / "assets" / "embedding_model"


def test_embedding_folder_is_recognised_and_decoded(assets: Path) -> None:
    assert is_embedding_folder(EMBEDDING)
    assert is_embedding_folder(EMBEDDING / "best.ckpt")
    assert not is_embedding_folder(assets / "model_ckpts" / "minimal_instance_centroid")
    cfg = read_embedding_config(EMBEDDING)
    # What train_config.yaml asked for, as sleap-nn resolved and saved it.
    assert (cfg.embedding_dim, cfg.num_fc_layers, cfg.num_fc_units) == (16, 1, 32)
    assert (cfg.pool, cfg.normalize, cfg.crop_size, cfg.in_channels) == ("avg", True, 64, 1)
    assert cfg.backbone.max_stride == 16 and cfg.anchor_part is None


def test_embedding_models_are_kept_apart_from_the_pose_models(assets: Path) -> None:
    paths = (str(assets / "model_ckpts/minimal_instance_centroid"), str(EMBEDDING),
             str(assets / "model_ckpts/minimal_instance_centered_instance"))
    assert sorted(resolve_models(paths)) == ["centered_instance", "centroid"]
    ref = resolve_embedding(paths)
    assert ref is not None and ref.path == EMBEDDING
    assert resolve_embedding(paths[:1]) is None
    with pytest.raises(ConfigError, match="2 embedding models"):
        resolve_embedding((str(EMBEDDING), str(EMBEDDING)))


def test_vectors_match_the_reference_on_the_same_crops() -> None:
    expected = np.load(EMBEDDING / "expected_vectors.npz")
    assert str(expected["sleap_nn_version"]) == "0.3.5"
    model = load_embedding_model(EMBEDDING)
    with torch.inference_mode():
        # The forward stage hands the network [0, 1] floats, as for every other model.
        ours = model.module(normalize(torch.from_numpy(expected["crops"])))[EMBEDDING_HEAD].numpy()
    np.testing.assert_allclose(ours, expected["vectors"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # Not a degenerate model: the crops of the two animals give different vectors.
    where = expected["where"]
    first = ours[(where[:, 0] == 0)]
    assert float(first[0] @ first[1]) < 0.95


def test_standardisation_is_per_crop_with_a_one_grey_level_floor() -> None:
    flat = torch.full((1, 1, 8, 8), 90.0)
    assert torch.equal(standardize_crops(flat), torch.zeros_like(flat))  # no division blow-up
    ramp = torch.arange(64, dtype=torch.float32).reshape(1, 1, 8, 8)
    out = standardize_crops(torch.cat([ramp, ramp * 3 + 7]))
    assert torch.allclose(out[0], out[1], atol=1e-4)  # brightness and contrast cancel
    assert abs(float(out[0].mean())) < 1e-5 and abs(float(out[0].std(unbiased=False)) - 1) < 1e-3


def test_weights_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "emb"
    folder.mkdir()
    (folder / "best.ckpt").write_bytes((EMBEDDING / "best.ckpt").read_bytes())
    text = (EMBEDDING / "training_config.yaml").read_text()
    (folder / "training_config.yaml").write_text(text.replace("embedding_dim: 16", "embedding_dim: 8"))
    from sleapflow.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="do not fit"):
        load_embedding_model(folder)
