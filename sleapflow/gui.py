"""``--gui`` progress (sleap-nn's JSON lines on stdout, for SLEAP's GUI) and the start banner."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

#: Seconds between progress lines (sleap-nn throttles to about 4 per second, last one always).
INTERVAL_S = 0.25


class GuiProgress:
    """Prints ``{"n_processed", "n_total", "rate", "eta"}`` lines to stdout, as ``sleap-nn track
    --gui`` does, so SLEAP's GUI can follow a sleapflow run; the same interface as the CLI's bar."""

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


def banner(*, graph: str, device: str, runtime: str = "torch") -> str:
    """One line naming what runs: versions, device, forward runtime and graph."""
    import sleap_io as sio
    import torch

    from sleapflow.provenance import sleapflow_version

    return (f"sleapflow {sleapflow_version()} | sleap-io {sio.__version__} | torch "
            f"{torch.__version__} | device {device} | runtime {runtime} | graph {graph}")
