"""Benchmark pose evaluation on the flies24 pair (500 frames, 24 parts) against sleap-nn 0.3.5.

Times, in this process: loading both files, ``Evaluator(...).evaluate()`` alone, and
``run_evaluation`` (load + evaluate). If a sleap-nn 0.3.5 virtual environment is given (default
``$HOME/sleapnn-peer``), it also times the same steps inside that environment's Python, and the
whole command line (``sleap-nn eval -g GT -p PRED`` against ``python -c run_evaluation(...)``,
process start and imports included), alternating the two tools so drift hits both alike.

Usage::

    python benchmarks/bench_eval.py [--repeats 7] [--rounds 3] [--peer ~/sleapnn-peer]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import sleap_io as sio
import structlog

from sleapflow.evaluation import Evaluator, run_evaluation

ROOT = Path(__file__).resolve().parent.parent
SHARED = (ROOT.parent / "shared").resolve()
GT = SHARED / "assets" / "eval" / "flies24_gt.slp"
PRED = SHARED / "assets" / "eval" / "flies24_pred.slp"

# Runs inside the peer's interpreter: the same three in-process measurements as ours.
PEER_SCRIPT = """
import json, statistics, sys, time, warnings
warnings.simplefilter("ignore")
from loguru import logger
logger.remove()
import sleap_io as sio
from sleap_nn.evaluation import Evaluator, run_evaluation
gt, pred, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
def med(fn):
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); out.append(time.perf_counter() - t)
    return statistics.median(out)
lg, lp = sio.load_slp(gt), sio.load_slp(pred)
print(json.dumps({
    "load": med(lambda: (sio.load_slp(gt), sio.load_slp(pred))),
    "evaluate": med(lambda: Evaluator(lg, lp).evaluate()),
    "run_evaluation": med(lambda: run_evaluation(gt, pred)),
}))
"""


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def wall(cmd: list[str]) -> float:
    """Wall time of a command, its output discarded; fails loudly if the command fails."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def ours_in_process(repeats: int) -> dict[str, float]:
    labels_gt, labels_pr = sio.load_slp(str(GT)), sio.load_slp(str(PRED))
    return {
        "load": median_time(lambda: (sio.load_slp(str(GT)), sio.load_slp(str(PRED))), repeats),
        "evaluate": median_time(lambda: Evaluator(labels_gt, labels_pr).evaluate(), repeats),
        "run_evaluation": median_time(
            lambda: run_evaluation(GT, PRED, match_method="auto"), repeats
        ),
    }


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:9.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per in-process step")
    parser.add_argument("--rounds", type=int, default=3, help="alternating command-line rounds")
    parser.add_argument(
        "--peer",
        type=Path,
        default=Path(os.environ.get("HOME", "~")) / "sleapnn-peer",
        help="sleap-nn 0.3.5 virtual environment (skipped if absent)",
    )
    args = parser.parse_args()
    # Keep the table readable: evaluation logs every step at info level.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    ours = ours_in_process(args.repeats)
    peer_bin = args.peer / "bin"
    have_peer = (peer_bin / "sleap-nn").exists() and (peer_bin / "python").exists()
    theirs: dict[str, float] = {}
    ours_cli: list[float] = []
    theirs_cli: list[float] = []
    ours_cmd = [
        sys.executable,
        "-c",
        "import logging, structlog, sys;"
        "structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING));"
        "from sleapflow.evaluation import run_evaluation;"
        "run_evaluation(sys.argv[1], sys.argv[2], match_method='auto')",
        str(GT),
        str(PRED),
    ]
    peer_cmd = [str(peer_bin / "sleap-nn"), "eval", "-g", str(GT), "-p", str(PRED)]
    if have_peer:
        out = subprocess.run(
            [str(peer_bin / "python"), "-c", PEER_SCRIPT, str(GT), str(PRED), str(args.repeats)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        theirs = json.loads(out.strip().splitlines()[-1])
        for _ in range(args.rounds):  # alternate so machine drift hits both tools alike
            theirs_cli.append(wall(peer_cmd))
            ours_cli.append(wall(ours_cmd))
    else:
        ours_cli = [wall(ours_cmd) for _ in range(args.rounds)]

    print(f"flies24 evaluation — {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"median of {args.repeats} in-process calls; command line: median of {args.rounds}")
    print(f"{'step':<34}{'sleapflow':>14}{'sleap-nn 0.3.5':>18}{'speed-up':>10}")
    rows = [
        ("load both .slp files", ours["load"], theirs.get("load")),
        ("evaluate (Evaluator + evaluate)", ours["evaluate"], theirs.get("evaluate")),
        ("run_evaluation (load + evaluate)", ours["run_evaluation"], theirs.get("run_evaluation")),
        (
            "command line, process included",
            statistics.median(ours_cli),
            statistics.median(theirs_cli) if theirs_cli else None,
        ),
    ]
    for name, a, b in rows:
        ratio = f"{b / a:9.1f}x" if b is not None else "        -"
        print(f"{name:<34}{fmt_ms(a):>14}{fmt_ms(b):>18}{ratio:>10}")
    if have_peer:
        print("command-line runs (s): sleap-nn " + ", ".join(f"{t:.2f}" for t in theirs_cli)
              + " | sleapflow " + ", ".join(f"{t:.2f}" for t in ours_cli))
        print("peer command: " + " ".join(peer_cmd))
    else:
        print(f"(no sleap-nn peer at {args.peer}; reference columns left empty)")


if __name__ == "__main__":
    main()
