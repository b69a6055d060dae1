"""The serial interpreter of a graph's stages: the plain loop a running graph must equal.

It serves the runner's property test (a graph's output is this loop's output) and the
benchmark's serial baseline (the same stage callables, called one after another).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from sleapflow.runtime.adapters import BatchStage, KeyedStage, MapStage, ReorderStage

__all__ = ("OnCall", "iter_serial", "run_serial", "setup_serial")


#: ``on_call(stage, item, seconds)``: called after each call of a stage's own work.
OnCall = Callable[[Any, Any, float], None]


def setup_serial(stages: Sequence[Any]) -> None:
    """Run each map node's setup step (a model load), outside any event loop."""
    for stage in stages:
        if isinstance(stage, MapStage) and stage.setup is not None:
            stage.setup()


def _step(stage: Any, upstream: Iterable[Any], on_call: OnCall | None) -> Iterator[Any]:
    clock = time.perf_counter
    if isinstance(stage, MapStage):
        for item in upstream:
            start = clock()
            result = stage.fn(item)
            if on_call is not None:
                on_call(stage, item, clock() - start)
            yield from stage.results(result)
    elif isinstance(stage, BatchStage):
        batcher = stage.batcher()
        for item in upstream:
            yield from batcher.add(item)
        if batcher.pending:
            yield batcher.flush()
    elif isinstance(stage, KeyedStage):
        for item in upstream:
            start = clock()
            out = stage.push(item)
            if on_call is not None:
                on_call(stage, item, clock() - start)
            yield from out
        yield from stage.finish()
    elif isinstance(stage, ReorderStage):
        reorder = stage.reorderer()
        for item in upstream:
            yield from reorder.add(item)
        yield from reorder.rest()
    else:
        raise TypeError(f"the serial loop cannot run stage {stage.name!r} "
                        f"({type(stage).__name__})")


def iter_serial(items: Iterable[Any], stages: Sequence[Any], *,
                on_call: OnCall | None = None) -> Iterator[Any]:
    """Items through ``stages`` (map, keyed, batch and reorder nodes) lazily, one call at a time."""
    stream: Iterable[Any] = items
    for stage in stages:
        stream = _step(stage, stream, on_call)
    yield from stream


def run_serial(items: Sequence[Any], stages: Sequence[Any]) -> list[Any]:
    """The whole serial loop's output, as a list."""
    return list(iter_serial(items, stages))
