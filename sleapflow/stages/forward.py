"""The batched forward pass: owns the model on its device, one batch at a time per device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import torch
from anyio.abc import TaskStatus

from sleapflow.messages import ModelOutput
from sleapflow.runtime.graph import Role
from sleapflow.runtimes import RuntimeChoice, make_runner


class ForwardStage:
    """Runs the model's network runner (torch, onnx, tensorrt) in a worker thread under the
    device's limiter.

    The model is loaded before ``started()`` so a bad checkpoint fails the run before any frame
    is decoded. On CUDA the stage synchronises before handing the batch on, so its busy time is
    the real forward time. Cancellation waits for a forward in flight to finish.
    """

    role: Role = "stage"
    requires_order = False
    restores_order = False

    def __init__(self, load: Callable[[], Any], *, device: str, name: str = "forward",
                 head_filter: tuple[str, ...] | None = None,
                 limiter: anyio.CapacityLimiter | None = None,
                 torch_threads: int | None = None, channels_last: bool = False,
                 workers: int = 1, runtime: RuntimeChoice | None = None,
                 max_batch: int = 4) -> None:
        self.name = name
        #: Batches in flight at once (CPU: each on its own core); >1 needs a reorder after it.
        self.workers = max(1, workers)
        self.preserves_order = self.workers == 1
        self.channels_last = channels_last and self.device_type(device) == "cpu"
        self._load = load
        self.device = torch.device(device)
        self.head_filter = head_filter
        self.limiter = limiter or anyio.CapacityLimiter(1)
        self.torch_threads = torch_threads
        #: Which runtime runs the network (torch, onnx, tensorrt); torch when not given.
        self.runtime = runtime or RuntimeChoice("torch", "torch", "default")
        self.max_batch = max_batch
        self.model: Any = None
        self.runner: Any = None

    @staticmethod
    def device_type(device: str) -> str:
        return torch.device(device).type

    def _setup(self) -> None:
        if self.torch_threads is not None:
            torch.set_num_threads(self.torch_threads)
        self.model = self._load()
        self.runner = make_runner(self.runtime, self.model.module, self.device,
                                  threads=self.torch_threads, channels_last=self.channels_last,
                                  max_batch=self.max_batch)

    def forward(self, item: Any) -> ModelOutput:
        """``item`` is any message with a uint8 ``tensor`` (a frame batch or a crop batch)."""
        if item.tensor is None or item.tensor.shape[0] == 0:
            # A top-down batch whose frames found no animals: nothing to run.
            return ModelOutput(seq=item.seq, heads={}, input=item)
        heads = self.runner(item.tensor)
        if self.head_filter is not None:
            heads = {k: v for k, v in heads.items() if k in self.head_filter}
        return ModelOutput(seq=item.seq, heads=heads, input=item)

    async def run(self, inbox: Any, outbox: Any, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with inbox, outbox:
            await anyio.to_thread.run_sync(self._setup, limiter=self.limiter)
            task_status.started()
            async with anyio.create_task_group() as tg:
                for _ in range(self.workers):
                    tg.start_soon(self._work, inbox.clone(), outbox.clone())

    async def _work(self, inbox: Any, outbox: Any) -> None:
        async with inbox, outbox:
            async for item in inbox:
                try:
                    result = await anyio.to_thread.run_sync(self.forward, item,
                                                            limiter=self.limiter)
                except Exception as exc:
                    exc.sleapflow_item = item  # type: ignore[attr-defined]
                    raise
                await outbox.send(result)
