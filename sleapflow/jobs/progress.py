"""What a run shows while it runs: the start line, and its progress (a rich bar on a terminal,
a log line per 10% elsewhere, or sleap-nn's ``--gui`` JSON lines on stdout for SLEAP's GUI)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Protocol

from sleapflow.logs import get_logger

__all__ = ("INTERVAL_S", "GuiProgress", "NoProgress", "Progress", "ProgressBar", "announce", "start_line")


log = get_logger("sleapflow")


class Progress(Protocol):
    """A progress display: a context manager told how many frames are done as they pass."""

    done: int

    def __enter__(self) -> Progress: ...

    def __exit__(self, *exc: object) -> None: ...

    def advance(self, n: int) -> None: ...


class ProgressBar:
    """A rich progress bar with frames/s on a terminal; a log line per 10% elsewhere."""

    def __init__(self, total: int, label: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.total = total
        self.done = 0
        self._interactive = sys.stderr.isatty()
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
            MofNCompleteColumn(), TextColumn("ETA:"), TimeRemainingColumn(),
            TextColumn("Elapsed:"), TimeElapsedColumn(),
            TextColumn("{task.fields[fps]:.1f} FPS"), disable=not self._interactive,
            refresh_per_second=4,
        )
        # No total (a live source): the bar counts frames without an end.
        self._task = self._progress.add_task(label, total=total or None, fps=0.0)
        self._next_log = 0.1

    def __enter__(self) -> ProgressBar:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def advance(self, n: int) -> None:
        self.done += n
        task = self._progress.tasks[0]
        elapsed = task.elapsed or 0.0
        fps = self.done / elapsed if elapsed > 0 else 0.0
        self._progress.update(self._task, advance=n, fps=fps)
        if not self._interactive and self.total and self.done / self.total >= self._next_log:
            self._next_log += 0.1
            log.info("progress", frames=self.done, total=self.total,
                                                   fps=round(fps, 1))

class NoProgress:
    """No display: for runs whose stdout carries data (``--publish -``)."""

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


#: Seconds between progress lines (sleap-nn throttles to about 4 per second, last one always).
INTERVAL_S = 0.25


class GuiProgress:
    """Prints ``{"n_processed", "n_total", "rate", "eta"}`` lines to stdout, as ``sleap-nn track
    --gui`` does, so SLEAP's GUI can follow a sleapflow run; the same interface as :class:`ProgressBar`."""

    def __init__(self, total: int, label: str = "", *, stream: Any = None) -> None:
        self.total = total
        self.done = 0
        self._stream = stream
        self._start = time.perf_counter()
        self._last = 0.0

    def __enter__(self) -> GuiProgress:
        self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self._emit(final=True)

    def _emit(self, *, final: bool = False) -> None:
        elapsed = time.perf_counter() - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        remaining = max(self.total - self.done, 0)
        line = {"n_processed": self.done, "n_total": self.total if self.total > 0 else None,
                "rate": round(rate, 1), "eta": 0.0 if final else round(remaining / rate, 1)
                if rate > 0 else 0.0}
        stream = self._stream or sys.stdout
        stream.write(json.dumps(line) + "\n")
        stream.flush()

    def advance(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self._last >= INTERVAL_S or (self.total and self.done >= self.total):
            self._last = now
            self._emit()


def announce(*, graph: str, device: str, runtime: str | None) -> str:
    """Log the start line of a run (every front end starts its runs with it); returns it."""
    line = start_line(graph=graph, device=device, runtime=runtime or "none")
    log.info(line)
    return line


def start_line(*, graph: str, device: str, runtime: str = "torch") -> str:
    """One line naming what runs: versions, device, forward runtime and graph."""
    import sleap_io as sio

    from sleapflow.backends.device import torch_build
    from sleapflow.outputs.provenance import sleapflow_version

    # torch's version from its build file: a run on ONNX Runtime need not import torch.
    return (f"sleapflow {sleapflow_version()} | sleap-io {sio.__version__} | torch "
            f"{torch_build()['version']} | device {device} | runtime {runtime} | graph {graph}")
