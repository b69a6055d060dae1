"""int8 calibration in front of a forward pass: its first network inputs wait until they calibrate it."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any, cast

from sleapflow.logs import get_logger
from sleapflow.runtime.adapters import KeyedStage, MapStage
from sleapflow.stages.forward import ModelForward

__all__ = ("Calibrator", "HeldInputs", "calibrate_stage", "is_calibrator")


log = get_logger(__name__)


class HeldInputs:
    """Network inputs held until the forward pass is calibrated, in arrival order."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        #: Inputs (frames or crops) among ``items`` of shapes not calibrated yet.
        self.pending = 0


def _tensor(item: Any) -> Any:
    tensor = getattr(item, "tensor", None)
    return tensor if tensor is not None and tensor.shape[0] else None


def _one_key(item: Any) -> Hashable:
    # One state for the whole run: a calibration serves every video of it.
    return None


class Calibrator:
    """Calibrates an int8 forward pass on the inputs it is about to see.

    Without a calibration set, the items (batches of frames or of crops) are held until
    ``frames`` inputs of uncalibrated shapes have come (or ``frames`` items, so a stretch of
    empty batches cannot grow the hold without bound, or the stream ends); the forward pass is
    then calibrated on them and they go on, in order. So the run's first batches wait for the
    calibration, which runs in a worker thread; the hold is at most ``frames`` inputs plus one
    batch. With ``calibration_set`` (items as this forward pass would get them, from
    ``--calibration_frames``), the first item calibrates on the set's first ``frames`` inputs
    and nothing is held. A caller that pushes one frame and awaits its result before pushing
    the next (``open_graph``) should give a calibration set: held results only come once
    ``frames`` inputs have been pushed, or the stream ends.
    """

    def __init__(self, forward: ModelForward, *, frames: int,
                 calibration_set: Callable[[], Iterable[Any]] | None = None) -> None:
        self.forward = forward
        self.frames = max(1, frames)
        self.calibration_set = calibration_set
        self._set_done = False

    def __call__(self, state: HeldInputs, item: Any) -> list[Any]:
        if self.calibration_set is not None:
            if not self._set_done:
                self._calibrate_from_set()
            return [item]
        tensor = _tensor(item)
        ready = tensor is None or self.forward.calibrated(tuple(tensor.shape[1:]))
        if ready and not state.items:
            return [item]
        state.items.append(item)
        if not ready:
            state.pending += int(tensor.shape[0])
        if state.pending >= self.frames or len(state.items) >= self.frames:
            return self.release(state)
        return []

    def release(self, state: HeldInputs) -> list[Any]:
        """Calibrate on the held inputs of uncalibrated shapes and let every held item go."""
        inputs = [t for t in map(_tensor, state.items)
                  if t is not None and not self.forward.calibrated(tuple(t.shape[1:]))]
        if inputs:
            log.info("int8 calibration", inputs=sum(int(t.shape[0]) for t in inputs),
                     source="the run's first inputs")
            self.forward.calibrate(inputs)
        out, state.items, state.pending = state.items, [], 0
        return out

    def _calibrate_from_set(self) -> None:
        inputs: list[Any] = []
        count = 0
        for item in self.calibration_set():  # type: ignore[misc]
            tensor = _tensor(item)
            if tensor is None:
                continue
            inputs.append(tensor)
            count += int(tensor.shape[0])
            if count >= self.frames:
                break
        self._set_done = True
        if not inputs:
            log.warning("int8: --calibration_frames gave no network inputs for this model; "
                        "calibrating on the run's own batches as they come")
            return
        log.info("int8 calibration", inputs=count, source="--calibration_frames")
        self.forward.calibrate(inputs)


def calibrate_stage(forward: MapStage, *, frames: int,
                    calibration_set: Callable[[], Iterable[Any]] | None = None) -> KeyedStage[HeldInputs]:
    """The calibration node in front of the forward map node ``forward`` (set up before it
    gets an item, since stages start sink first); its work runs under the forward's limiter."""
    fn = Calibrator(cast(ModelForward, forward.fn), frames=frames, calibration_set=calibration_set)
    return KeyedStage(f"{forward.name}_calibrate", HeldInputs, fn, key=_one_key, flush=fn.release,
                      flatten=True, limiter=forward.limiter, requires_order=False)


def is_calibrator(stage: Any) -> bool:
    """Whether ``stage`` is a calibration node."""
    return isinstance(stage, KeyedStage) and isinstance(stage.fn, Calibrator)
