"""The numpy uint8 resize against its previous version and torch's kernel: ms per batch, one thread.

Cases are the single-instance model's input scaling (batch 4, 3 x 320 x 560 → 160 x 280), a
large grayscale halving (batch 4, 1 x 1024 x 1024 → 512 x 512) and a 0.75 scale (the path for
ratios that are not integers), each as a contiguous NCHW batch and as the channels-last view
the preprocessor hands over (``--layout``). The previous kernel is read from git
(``--old-rev``, the commit before the fast kernel) into a temporary module; torch runs on one
thread, as the CPU graphs run it, and is imported only after the numpy kernels are timed (as on
the torch-free path). Every kernel's output is checked equal to torch's. Each figure is the
median of ``--repeats`` timings of ``--number`` calls.

Example::

    OMP_NUM_THREADS=1 python benchmarks/bench_resize.py --repeats 15 --number 20
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (name, batch shape, output size)
CASES: tuple[tuple[str, tuple[int, int, int, int], tuple[int, int]], ...] = (
    ("4x3x320x560 -> 160x280", (4, 3, 320, 560), (160, 280)),
    ("4x1x1024x1024 -> 512x512", (4, 1, 1024, 1024), (512, 512)),
    # A ratio that is not an integer (scale 0.75): the banded matrix-product path.
    ("4x3x320x560 -> 240x420", (4, 3, 320, 560), (240, 420)),
)


def _old_module(rev: str) -> ModuleType:
    """The resize module as it was at ``rev``, imported from a temporary file."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:sleapflow/ops/host_resize.py"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_host_resize.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_host_resize", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ms(call: Callable[[], object], repeats: int, number: int) -> float:
    return 1000 * statistics.median(timeit.repeat(call, repeat=repeats, number=number)) / number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-rev", default="619ee14", help="commit holding the previous kernel")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--number", type=int, default=20)
    parser.add_argument("--layout", choices=("nchw", "nhwc-view", "both"), default="both")
    args = parser.parse_args(argv)

    from sleapflow.ops.host_resize import resize_uint8

    old = _old_module(args.old_rev).resize_uint8
    layouts = ("nchw", "nhwc-view") if args.layout == "both" else (args.layout,)
    rows = []
    for name, shape, size in CASES:
        base = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
        for layout in layouts:
            # The preprocessor's batches are channels-last frames seen as NCHW.
            x = base if layout == "nchw" else \
                np.ascontiguousarray(base.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
            rows.append((name, layout, x, size,
                         _ms(lambda x=x, size=size: resize_uint8(x, size), args.repeats, args.number),
                         _ms(lambda x=x, size=size: old(x, size), args.repeats, args.number)))

    # Only now torch: the numpy path runs without it, and with torch loaded glibc's malloc
    # serves the kernels' large temporaries from fresh pages (measured 2-3x slower here).
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    print(f"{'case':28s} {'layout':10s} {'numpy-new':>10s} {'numpy-old':>10s} {'torch':>8s} "
          f"{'old/new':>8s} {'new/torch':>9s}  (ms per batch)")
    for name, layout, x, size, new_ms, old_ms in rows:
        t = torch.from_numpy(x)

        def ref(t: torch.Tensor = t, size: tuple[int, int] = size) -> torch.Tensor:
            return F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)

        want = ref().numpy()
        for kernel in (resize_uint8, old):
            if not np.array_equal(kernel(x, size), want):
                raise SystemExit(f"{kernel.__module__} differs from torch on {name} ({layout})")
        torch_ms = _ms(ref, args.repeats, args.number)
        print(f"{name:28s} {layout:10s} {new_ms:10.2f} {old_ms:10.2f} {torch_ms:8.2f} "
              f"{old_ms / new_ms:8.2f} {new_ms / torch_ms:9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
