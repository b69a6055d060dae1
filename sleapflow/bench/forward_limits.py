"""Forward-pass-only limits per runtime, for ``sleapflow bench --runtime``: the same kept
batches through each runtime's runner, with the graph's workers and threads."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sleapflow.backends.select import RuntimeChoice, parse_label, resolve_runtime

__all__ = ("forward_limits",)



def _runner_for(stage: Any, name: str) -> Any:
    """A fresh runner of runtime ``name`` for a set-up forward map node's model."""
    from sleapflow.backends.runners import make_runner

    stage = stage.fn  # the map node's ModelForward: model, device, threads, batch bound
    runtime, precision = parse_label(name)
    if precision == "int8" and stage.runtime.label == name:
        # The graph's own runner: a fresh one would be calibrated on its warm-up batch alone.
        return stage.runner
    choice = RuntimeChoice("noop", "noop", "bench") if name == "noop" else resolve_runtime(
        runtime, str(stage.device), precision=precision)
    runner = make_runner(choice, stage.loaded().module, stage.device, threads=stage.torch_threads,
                         max_batch=stage.max_batch)
    if not stage.host_arrays:
        return runner
    import torch

    # The graph's batches are numpy arrays (ONNX Runtime on the CPU); these runners take torch's.
    return lambda x: runner(torch.from_numpy(x))


def forward_limits(stages: list[Any], kept: dict[str, list[Any]], calls: dict[str, int],
                   frames: int, runtimes: list[str]) -> dict[str, float]:
    """Frames/s of the forward passes alone under each runtime.

    ``stages`` are the graph's forward map nodes, already set up. Each one's kept inputs run
    through a fresh runner of that runtime on the stage's
    own worker count (one batch per worker at a time, as in the graph), after one warm-up call
    per input shape (exports and sessions are built there, not timed). The mean seconds per
    call, times the calls the measured frames needed, summed over the graph's models, gives the
    limit: no graph with that runtime can beat it.
    """
    out: dict[str, float] = {}
    for name in runtimes:
        total = 0.0
        for stage in stages:
            items = [i for i in kept.get(stage.name) or [] if i.tensor is not None
                     and i.tensor.shape[0] > 0]
            if not items:
                continue
            runner = _runner_for(stage, name)
            seen: set[tuple[int, ...]] = set()
            for item in items:
                if tuple(item.tensor.shape[1:]) not in seen:
                    seen.add(tuple(item.tensor.shape[1:]))
                    runner(item.tensor)
            with ThreadPoolExecutor(max_workers=max(1, stage.workers)) as pool:
                start = time.perf_counter()
                list(pool.map(lambda item, r=runner: r(item.tensor), items))
                elapsed = time.perf_counter() - start
            total += elapsed / len(items) * calls.get(stage.name, 0)
        if total > 0:
            out[name] = frames / total
    return out
