"""Preprocessing overrides fall back to the training config, field by field."""

from __future__ import annotations

from pathlib import Path

import pytest

from sleapflow.errors import ConfigError
from sleapflow.graphs.common import BuildContext, preprocess_plan, resolve_models
from sleapflow.graphs.topdown import _crop_size, anchor_index
from sleapflow.options.config import InferenceConfig

CKPT = "model_ckpts/minimal_instance_"


def test_training_config_fills_what_the_user_leaves_unset(assets: Path) -> None:
    models = resolve_models((str(assets / f"{CKPT}single_instance"),))
    config = models["single_instance"].config
    plan = preprocess_plan(InferenceConfig(), config)
    assert (plan.max_height, plan.max_width, plan.scale) == (320, 560, 0.5)
    assert (plan.ensure_rgb, plan.ensure_grayscale, plan.max_stride) == (False, False, 4)
    user = InferenceConfig(max_height=200, max_width=300, input_scale=1.0, ensure_grayscale=True)
    plan = preprocess_plan(user, config)
    assert (plan.max_height, plan.max_width, plan.scale, plan.ensure_grayscale) == (200, 300, 1.0, True)


def test_topdown_centroid_config_first_then_instance_config(assets: Path) -> None:
    models = resolve_models((str(assets / f"{CKPT}centroid"), str(assets / f"{CKPT}centered_instance")))
    ctx = BuildContext(cfg=InferenceConfig(), models=models, plan=None, device="cpu")
    assert _crop_size(ctx, models["centered_instance"]) == 96
    ctx = BuildContext(cfg=InferenceConfig(crop_size=128), models=models, plan=None, device="cpu")
    assert _crop_size(ctx, models["centered_instance"]) == 128


def test_anchor_part_override_and_unknown_node(assets: Path) -> None:
    models = resolve_models((str(assets / f"{CKPT}centered_instance"),))
    config = models["centered_instance"].config
    ctx = BuildContext(cfg=InferenceConfig(anchor_part="B"), models=models, plan=None, device="cpu")
    assert anchor_index(ctx, config) == 1
    ctx = BuildContext(cfg=InferenceConfig(anchor_part="tail"), models=models, plan=None, device="cpu")
    with pytest.raises(ConfigError, match="tail"):
        anchor_index(ctx, config)
