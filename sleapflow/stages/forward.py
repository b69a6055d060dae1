"""The batched forward pass: a map node whose setup step loads the model onto its device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import torch

from sleapflow.backends import RuntimeChoice, make_runner
from sleapflow.backends.runners import TorchRunner
from sleapflow.messages import ModelOutput
from sleapflow.ops.preprocess import normalize
from sleapflow.runtime.adapters import MapStage

__all__ = ("ModelForward", "forward_stage", "is_forward")



class ModelForward:
    """The network for one batch; :meth:`setup` loads the model (and sets torch's threads)
    and builds its runner (torch, ONNX Runtime or TensorRT, from ``runtime``; torch by default).

    On CUDA the call synchronises before returning, so the stage's busy time is the real
    forward time.
    """

    def __init__(self, load: Callable[[], Any], *, device: str,
                 head_filter: tuple[str, ...] | None = None,
                 torch_threads: int | None = None, channels_last: bool = False,
                 runtime: RuntimeChoice | None = None, max_batch: int = 4) -> None:
        self._load = load
        self.device = torch.device(device)
        self.channels_last = channels_last and self.device.type == "cpu"
        self.head_filter = head_filter
        self.torch_threads = torch_threads
        #: Which runtime runs the network (torch, onnx, tensorrt); torch when not given.
        self.runtime = runtime or RuntimeChoice("torch", "torch", "default")
        self.max_batch = max_batch
        self.model: Any = None
        self.runner: Any = None
        self._exact: TorchRunner | None = None

    @property
    def approximates_torch(self) -> bool:
        """Whether the runner is an fp32 runtime other than torch (its maps differ by ~1e-5)."""
        return self.runtime.name in ("onnx", "tensorrt") and self.runtime.precision == "fp32"

    def setup(self) -> None:
        if self.torch_threads is not None:
            torch.set_num_threads(self.torch_threads)
        self.model = self._load()
        self.runner = make_runner(self.runtime, self.model.module, self.device,
                                  threads=self.torch_threads, channels_last=self.channels_last,
                                  max_batch=self.max_batch)
        if self.approximates_torch:
            # Built here, before any batch, because preparing the module changes it in place.
            self._exact = TorchRunner(self.model.module, self.device)

    def calibrated(self, shape: tuple[int, ...]) -> bool:
        """Whether inputs of (C, H, W) ``shape`` are ready to run: always, except for an int8
        runner that has not been calibrated on inputs of that shape yet."""
        check = getattr(self.runner, "calibrated", None)
        return True if check is None else bool(check(shape))

    def calibrate(self, tensors: list[torch.Tensor]) -> None:
        """Calibrate an int8 runner on uint8 network inputs (batches, as the stage gets them)."""
        with torch.inference_mode():
            self.runner.calibrate([normalize(t) for t in tensors if t.shape[0]])

    def exact_maps(self, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        """torch fp32 maps of a uint8 batch, whichever runtime runs the stage: for the rare
        decision (a crop on a rounding boundary) that must not depend on the runtime."""
        return self._kept((self._exact or self.runner)(tensor))

    def _kept(self, heads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.head_filter is None:
            return heads
        return {k: v for k, v in heads.items() if k in self.head_filter}

    def __call__(self, item: Any) -> ModelOutput:
        """``item`` is any message with a uint8 ``tensor`` (a frame batch or a crop batch)."""
        if item.tensor is None or item.tensor.shape[0] == 0:
            # A top-down batch whose frames found no animals: nothing to run.
            return ModelOutput(seq=item.seq, heads={}, input=item)
        return ModelOutput(seq=item.seq, heads=self._kept(self.runner(item.tensor)), input=item)


def forward_stage(load: Callable[[], Any], *, device: str, name: str = "forward",
                  limiter: anyio.CapacityLimiter | None = None, workers: int = 1,
                  torch_threads: int | None = None, channels_last: bool = False,
                  head_filter: tuple[str, ...] | None = None,
                  runtime: RuntimeChoice | None = None, max_batch: int = 4) -> MapStage:
    """The forward map node: the model loads in its setup step, before the stage starts, so a
    bad checkpoint fails the run before any frame is decoded; ``workers`` batches (CPU: each on
    its own core) are in flight at once, under ``limiter``. ``runtime`` (resolved by
    :func:`sleapflow.graphs.build.prepare`) chooses the network runner, built in the same setup
    step (an ONNX export or TensorRT build happens there, cached); ``max_batch`` bounds its
    batch axis."""
    fn = ModelForward(load, device=device, head_filter=head_filter, torch_threads=torch_threads,
                      channels_last=channels_last, runtime=runtime, max_batch=max_batch)
    return MapStage(name, fn, setup=fn.setup, limiter=limiter or anyio.CapacityLimiter(1),
                    workers=max(1, workers))


def is_forward(stage: Any) -> bool:
    """Whether ``stage`` is a forward map node."""
    return isinstance(stage, MapStage) and isinstance(stage.fn, ModelForward)
