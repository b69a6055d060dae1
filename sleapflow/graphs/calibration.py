"""int8 calibration sets (``--calibration_frames``): planned up front, fed through the graph's stages."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import msgspec

from sleapflow.errors import ConfigError
from sleapflow.inputs import InputPlan, open_reader, plan_input
from sleapflow.messages import Frame
from sleapflow.options.config import InferenceConfig
from sleapflow.runtime.serial import iter_serial
from sleapflow.stages.calibrate import is_calibrator

__all__ = ("calibration_frames", "plan_calibration", "wire_calibration")


def plan_calibration(cfg: InferenceConfig, *, need_ground_truth: bool) -> InputPlan | None:
    """The frames of ``--calibration_frames`` (a video, image folder or .slp, read like an
    input: a .slp gives its labeled frames), checked before any weights load; None without it."""
    path = cfg.execution.calibration_frames
    if path is None:
        return None
    plain = msgspec.structs.replace(
        InferenceConfig(), data_path=path, model_paths=cfg.model_paths,
        video_dataset=cfg.video_dataset, video_input_format=cfg.video_input_format)
    plan = plan_input(plain, need_ground_truth=need_ground_truth)
    if not plan.items:
        raise ConfigError(f"--calibration_frames {path!r} has no frames to calibrate on")
    return plan


def calibration_frames(plan: InputPlan, limit: int) -> Iterator[Frame]:
    """Up to ``limit`` decoded frames of the calibration plan, as the decoder would send them."""
    readers: dict[int, Any] = {}
    try:
        sent = 0
        for item in plan.items:
            if sent >= limit:
                break
            reader = readers.get(item.video_id)
            if reader is None:
                reader = readers[item.video_id] = open_reader(plan, item.video_id)
            image = reader.read(item.frame_idx)
            if image is None:
                continue
            yield Frame(seq=sent, video_id=item.video_id, frame_idx=item.frame_idx, image=image,
                        gt_points=item.gt_points)
            sent += 1
    finally:
        for reader in readers.values():
            reader.close()


def wire_calibration(plan: InputPlan | None, stages: Sequence[Any], limit: int) -> None:
    """Give each calibration node of ``stages`` (a graph's model stages) the calibration set as
    its forward pass would see it: the set's frames through the stages before it, serially
    (earlier calibration nodes left out: by then they have calibrated their own model)."""
    if plan is None:
        return
    for i, stage in enumerate(stages):
        if is_calibrator(stage):
            stage.fn.calibration_set = _through(plan, [s for s in stages[:i] if not is_calibrator(s)],
                                                limit)


def _through(plan: InputPlan, upstream: list[Any], limit: int) -> Callable[[], Iterable[Any]]:
    def items() -> Iterable[Any]:
        return iter_serial(calibration_frames(plan, limit), upstream)

    return items
