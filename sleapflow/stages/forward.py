"""The batched forward pass: a map node whose setup step loads the model onto its device."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio

from sleapflow.backends import RuntimeChoice, make_runner
from sleapflow.backends.fused import FusedPeaks, overflows, split_outputs
from sleapflow.lazy import lazy_module
from sleapflow.logs import get_logger
from sleapflow.messages import ModelOutput
from sleapflow.ops.preprocess import normalize
from sleapflow.runtime.adapters import MapStage

# torch loads on first use: a run on ONNX Runtime with a warm export cache never needs it.
torch = lazy_module("torch")

__all__ = ("ModelForward", "forward_stage", "is_forward")

log = get_logger(__name__)



class ModelForward:
    """The network for one batch; :meth:`setup` loads the model (and sets torch's threads)
    and builds its runner (torch, ONNX Runtime or TensorRT, from ``runtime``; torch by default).

    On CUDA the call synchronises before returning, so the stage's busy time is the real
    forward time.
    """

    def __init__(self, load: Callable[[], Any], *, device: str,
                 head_filter: tuple[str, ...] | None = None,
                 torch_threads: int | None = None, channels_last: bool = False,
                 runtime: RuntimeChoice | None = None, max_batch: int = 4,
                 fuse: FusedPeaks | None = None,
                 files: Mapping[str, Path] | None = None, ready_first: bool = False,
                 exact_early: bool = False) -> None:
        self._load = load
        #: Latency mode: the cached sessions are open when setup returns (not opening in the
        #: background while the first frames wait for them).
        self.ready_first = ready_first
        #: Latency mode, and the crop step may ask for :meth:`exact_maps`: its torch model
        #: loads in setup, not in the middle of the stream.
        self.exact_early = exact_early
        self.device_name = device
        self.channels_last = channels_last and device.split(":", 1)[0] == "cpu"
        self.head_filter = head_filter
        self.torch_threads = torch_threads
        #: Which runtime runs the network (torch, onnx, tensorrt); torch when not given.
        self.runtime = runtime or RuntimeChoice("torch", "torch", "default")
        self.max_batch = max_batch
        #: The peak finding the graph's next stage would run, offered to the runtime; used
        #: when the runtime exports (onnx, tensorrt): see :attr:`fused`.
        self.fuse = fuse
        #: What the runner really fuses (set in :meth:`setup`): None means maps come out.
        self.fused: FusedPeaks | None = None
        self._overflowed = False
        #: The model's files by role: batches are numpy arrays run by ONNX Runtime from the
        #: export cache, and the model (and torch) load only on a cache miss.
        self.files = files
        self.model: Any = None
        self.runner: Any = None
        self._exact: Any = None
        self._exact_lock = threading.Lock()

    @property
    def device(self) -> Any:
        return torch.device(self.device_name)

    @property
    def host_arrays(self) -> bool:
        """Whether batches are numpy arrays (ONNX Runtime on the CPU; see ``files``)."""
        return self.files is not None

    @property
    def approximates_torch(self) -> bool:
        """Whether the runner is an fp32 runtime other than torch (its maps differ by ~1e-5)."""
        return self.runtime.name in ("onnx", "tensorrt") and self.runtime.precision == "fp32"

    def loaded(self) -> Any:
        """The loaded model (loaded now, with torch's thread count set, if not yet)."""
        if self.model is None:
            if self.torch_threads is not None:
                torch.set_num_threads(self.torch_threads)
            self.model = self._load()
        return self.model

    def setup(self) -> None:
        if self.host_arrays:
            from sleapflow.backends.numpy_onnx import NumpyOnnxRunner

            assert self.files is not None
            self.runner = NumpyOnnxRunner(self.files, self.loaded, threads=self.torch_threads)
            cached = self.runner.cached_shapes()
            if not cached:
                # Nothing cached for these bytes: the first batch exports through torch anyway,
                # so load now and a bad checkpoint fails the run before any frame is decoded.
                self.loaded()
            opening = self.runner.prefetch(cached)  # sessions open while the decoder starts
            if self.ready_first:
                opening.join()
            if self.exact_early and self.approximates_torch:
                self._exact_runner()
            return
        if self.torch_threads is not None:
            torch.set_num_threads(self.torch_threads)
        self.model = self._load()
        offer = self.fuse if self.runtime.name in ("onnx", "tensorrt") else None
        self.runner = make_runner(self.runtime, self.model.module, self.device,
                                  threads=self.torch_threads, channels_last=self.channels_last,
                                  max_batch=self.max_batch, fuse=offer)
        # An export folder's network runs as it is (a torch-side runner): it returns maps.
        self.fused = offer if getattr(self.runner, "fuse", None) is not None else None
        if self.approximates_torch:
            from sleapflow.backends.runners import TorchRunner

            # Built here, before any batch, because preparing the module changes it in place.
            self._exact = TorchRunner(self.model.module, self.device)

    def calibrated(self, shape: tuple[int, ...]) -> bool:
        """Whether inputs of (C, H, W) ``shape`` are ready to run: always, except for an int8
        runner that has not been calibrated on inputs of that shape yet."""
        check = getattr(self.runner, "calibrated", None)
        return True if check is None else bool(check(shape))

    def calibrate(self, tensors: list[Any]) -> None:
        """Calibrate an int8 runner on uint8 network inputs (batches, as the stage gets them)."""
        with torch.inference_mode():
            self.runner.calibrate([normalize(t) for t in tensors if t.shape[0]])

    def exact_maps(self, tensor: Any) -> dict[str, Any]:
        """torch fp32 maps of a uint8 batch, whichever runtime runs the stage: for the rare
        decision (a crop on a rounding boundary) that must not depend on the runtime. On host
        arrays the torch model loads the first time one is needed."""
        if self.host_arrays:
            maps = self._exact_runner()(torch.from_numpy(tensor))
            return self._kept({k: v.numpy() for k, v in maps.items()})
        return self._kept((self._exact or self.runner)(tensor))

    def _exact_runner(self) -> Any:
        """The torch fp32 runner of :meth:`exact_maps` on host arrays, built on first use."""
        with self._exact_lock:
            if self._exact is None:
                from sleapflow.backends.runners import TorchRunner

                self._exact = TorchRunner(self.loaded().module, self.device)
            return self._exact

    def _kept(self, heads: dict[str, Any]) -> dict[str, Any]:
        if self.head_filter is None:
            return heads
        return {k: v for k, v in heads.items() if k in self.head_filter}

    def __call__(self, item: Any) -> ModelOutput:
        """``item`` is any message with a uint8 ``tensor`` (a frame batch or a crop batch)."""
        if item.tensor is None or item.tensor.shape[0] == 0:
            # A top-down batch whose frames found no animals: nothing to run.
            return ModelOutput(seq=item.seq, heads={}, input=item)
        heads = self.runner(item.tensor)
        if self.fused is None:
            return ModelOutput(seq=item.seq, heads=self._kept(heads), input=item)
        maps, peaks = split_outputs(self.fused, heads)
        if overflows(self.fused, peaks):
            # More peaks than the graph's top-k holds: this batch's maps, so no peak is lost.
            if not self._overflowed:
                self._overflowed = True
                log.info("fused peaks: a batch had more local peaks than the graph keeps; such "
                         "batches use their maps (slower, same result)",
                         k=[h.k for h in self.fused.heads if h.local])
            return ModelOutput(seq=item.seq, heads=self._kept(self.runner.maps(item.tensor)),
                               input=item)
        if self.head_filter is not None:
            peaks = {k: v for k, v in peaks.items() if k in self.head_filter}
        return ModelOutput(seq=item.seq, heads=self._kept(maps), input=item, peaks=peaks)


def forward_stage(load: Callable[[], Any], *, device: str, name: str = "forward",
                  limiter: anyio.CapacityLimiter | None = None, workers: int = 1,
                  torch_threads: int | None = None, channels_last: bool = False,
                  head_filter: tuple[str, ...] | None = None,
                  runtime: RuntimeChoice | None = None, max_batch: int = 4,
                  fuse: FusedPeaks | None = None,
                  files: Mapping[str, Path] | None = None, ready_first: bool = False,
                  exact_early: bool = False) -> MapStage:
    """The forward map node: the model loads in its setup step, before the stage starts, so a
    bad checkpoint fails the run before any frame is decoded; ``workers`` batches (CPU: each on
    its own core) are in flight at once, under ``limiter``. ``runtime`` (resolved by
    :func:`sleapflow.graphs.build.prepare`) chooses the network runner, built in the same setup
    step (an ONNX export or TensorRT build happens there, cached); ``max_batch`` bounds its
    batch axis; ``fuse`` offers the runtime the next stage's peak finding (see
    :class:`ModelForward`). With ``files`` (ONNX Runtime on the CPU) batches are numpy arrays
    and the model loads only when the export cache misses. ``ready_first`` / ``exact_early``:
    latency mode's set-up before the first frame (see :class:`ModelForward`)."""
    fn = ModelForward(load, device=device, head_filter=head_filter, torch_threads=torch_threads,
                      channels_last=channels_last, runtime=runtime, max_batch=max_batch, fuse=fuse,
                      files=files, ready_first=ready_first, exact_early=exact_early)
    return MapStage(name, fn, setup=fn.setup, limiter=limiter or anyio.CapacityLimiter(1),
                    workers=max(1, workers))


def is_forward(stage: Any) -> bool:
    """Whether ``stage`` is a forward map node."""
    return isinstance(stage, MapStage) and isinstance(stage.fn, ModelForward)
