"""Preemption: a scheduler's signal (SIGTERM, SLURM's SIGUSR1 warning) stops a job as Ctrl-C
does, its journals kept for ``--resume``, and ends it with a documented exit status."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TypeVar

import anyio

from sleapflow.errors import ConfigError, Preempted
from sleapflow.jobs.guard import interrupted_message
from sleapflow.logs import get_logger

__all__ = ("DEFAULT_PREEMPT_SIGNALS", "parse_preempt_signals", "run_preemptible", "running_task")


log = get_logger(__name__)

_T = TypeVar("_T")

#: ``track --preempt_signals``' default: what a scheduler sends before it kills a job (SLURM:
#: SIGTERM at the time limit or on preemption; SIGUSR1 where ``--signal`` asks for a warning).
DEFAULT_PREEMPT_SIGNALS = "TERM,USR1"
_CHOICES = ("TERM", "USR1", "USR2", "HUP")


def parse_preempt_signals(text: str) -> tuple[signal.Signals, ...]:
    """``"TERM,USR1"`` (names with or without ``SIG``, any case) → the signals; ``"none"`` → ()."""
    names = [t.strip().upper().removeprefix("SIG") for t in text.split(",") if t.strip()]
    if names == ["NONE"]:
        return ()
    bad = [n for n in names if n not in _CHOICES]
    if bad or not names:
        raise ConfigError(f"--preempt_signals {text!r}: give signal names separated by commas, "
                          f"from {', '.join(_CHOICES)} (e.g. TERM,USR1), or none")
    return tuple(dict.fromkeys(getattr(signal, f"SIG{n}") for n in names))


#: The asyncio task each running :func:`run_preemptible` call is in, innermost last: the task a
#: first Ctrl-C cancels (the CLI's SIGINT handler reads it; see :func:`running_task`).
_RUNNING: list[asyncio.Task[object]] = []


def running_task() -> asyncio.Task[object] | None:
    """The task of the job running in this process now (None when none is, or off asyncio)."""
    return _RUNNING[-1] if _RUNNING and not _RUNNING[-1].done() else None


@contextlib.contextmanager
def _registered() -> Iterator[None]:
    try:
        task = asyncio.current_task()
    except RuntimeError:  # not on asyncio (trio): Ctrl-C is trio's own KeyboardInterrupt
        task = None
    if task is not None:
        _RUNNING.append(task)
    try:
        yield
    finally:
        if task is not None:
            _RUNNING.remove(task)


async def run_preemptible(run: Callable[[], Awaitable[_T]],
                          signals: Sequence[signal.Signals]) -> _T:
    """:func:`_run_preemptible`, its task registered as the one a Ctrl-C cancels."""
    with _registered():
        return await _run_preemptible(run, signals)


async def _run_preemptible(run: Callable[[], Awaitable[_T]],
                           signals: Sequence[signal.Signals]) -> _T:
    """Await ``run()``; on one of ``signals`` cancel it, as Ctrl-C would (every stage stops, the
    journals are synced and kept, the locks let go), and raise :class:`Preempted`.

    The signals stay caught until the cancelled run has cleaned up, so a scheduler that sends
    its signal again (or SIGTERM after SIGUSR1) does not cut that short; only SIGKILL does, and
    the journals, flushed at every frame, survive even that."""
    if not signals or threading.current_thread() is not threading.main_thread():
        return await run()  # only the main thread can catch signals (an embedding's thread)
    received: list[int] = []
    result: list[_T] = []
    failed: list[Exception] = []
    with anyio.open_signal_receiver(*signals) as stream:
        async with anyio.create_task_group() as tg:
            job = anyio.CancelScope()

            async def watch() -> None:
                async for signum in stream:
                    if not received:
                        log.warning("preemption signal: stopping; the journals are kept for "
                                    "--resume", signal=signal.Signals(signum).name)
                    received.append(signum)
                    job.cancel()

            tg.start_soon(watch)
            with job:
                try:
                    result.append(await run())
                except Exception as exc:  # raised as itself below, not in an exception group
                    failed.append(exc)
            tg.cancel_scope.cancel()
    if failed:
        raise failed[0]
    if result:  # finished before the signal could stop it: its outputs are written
        return result[0]
    name = signal.Signals(received[0]).name
    raise Preempted(interrupted_message(f"Preempted ({name})"), signum=received[0])
