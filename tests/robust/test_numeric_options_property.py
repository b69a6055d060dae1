"""Any value for any numeric option, through the real CLI in a child process: one ``Error:`` line
and exit 2 before any model loads, or a completed run; never a traceback, a crash (a signal, a
non-zero other than 2) or a peak RSS above a bound."""

from __future__ import annotations

import math
import os
import resource
import subprocess
import sys
import tempfile
import typing
from pathlib import Path
from typing import Any

import pytest
import sleap_io as sio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sleapflow.options.declared import Option, declared

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT.parent / "shared" / "assets"
MODEL = "model_ckpts/minimal_instance_single_instance"
CLIP = "datasets/small_robot.mp4"
RSS_BOUND = 3 * 2**30
#: Address-space cap of each child: a run that tries to take the machine fails inside it instead.
AS_LIMIT = 8 * 2**30

#: Options that size the network's input (the frame is resized or padded to the value): a run's
#: memory grows with that input, a few hundred bytes per pixel, up to the refused bound
#: (sleapflow.graphs.build.MAX_NETWORK_PIXELS, tested at the top of each range below). In-range
#: draws stay where a 2-frame run fits the RSS bound.
MEMORY_SIZED = {"max_width": 4096, "max_height": 4096, "input_scale": 4.0}

EXTREMES = (-1, 0, 1, 2**31 - 1, 1e308, math.nan, math.inf)


def _numeric(o: Option) -> bool:
    args = typing.get_args(o.type) or (o.type,)
    return any(a in (int, float) for a in args)


NUMERIC = [o for o in declared() if _numeric(o) and "track" in o.role.fronts]


def _is_int(o: Option) -> bool:
    args = typing.get_args(o.cli_type) or (o.cli_type,)
    return int in args and float not in args


@st.composite
def _drawn(draw: st.DrawFn) -> tuple[Option, Any]:
    option = draw(st.sampled_from(NUMERIC))
    low, high = option.role.bounds or (None, None)
    low = 0 if low is None else low
    high = MEMORY_SIZED.get(option.keyword, low + 1000 if high is None else high)
    in_range = (st.integers(math.ceil(low), math.floor(high)) if _is_int(option)
                else st.floats(low, high, allow_nan=False))
    return option, draw(st.one_of(st.sampled_from(EXTREMES), in_range))


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def _run(args: list[str], folder: Path) -> tuple[int, str, int]:
    err_path = folder / "stderr.txt"
    with open(err_path, "w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sleapflow", "track", "-i", str(ASSETS / CLIP), "-m",
             str(ASSETS / MODEL), "--frames", "0-1", "-d", "cpu", "-o", str(folder / "out.slp"),
             *args], stdout=subprocess.DEVNULL, stderr=err_file, cwd=folder,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=_limit_memory)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, err_path.read_text(), usage.ru_maxrss * 1024


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _check(option: Option, value: Any) -> None:
    with tempfile.TemporaryDirectory(prefix="sleapflow-prop-") as tmp:
        folder = Path(tmp)
        rc, err, rss = _run([option.flag, _text(value)], folder)
        context = f"{option.flag} {_text(value)}: rc {rc}\n{err[-1500:]}"
        assert "Traceback" not in err, context
        assert rc in (0, 2), context
        assert rss < RSS_BOUND, f"{context}\npeak RSS {rss / 2**20:.0f} MiB"
        if rc == 2:
            lines = [ln for ln in err.splitlines() if ln.startswith("Error:")]
            assert len(lines) == 1, context
            assert "starting" not in err, context  # refused before the graph (the models) started
            assert not (folder / "out.slp").exists()
        else:
            assert len(sio.load_slp(str(folder / "out.slp"))) <= 2
        assert sorted(p.name for p in folder.iterdir()) in (["stderr.txt"],
                                                             ["out.slp", "stderr.txt"])


def test_every_numeric_track_option_is_drawn() -> None:
    assert len(NUMERIC) > 40
    assert {"batch_size", "peak_threshold", "max_failed_frames", "queue_maxsize"} <= {
        o.keyword for o in NUMERIC}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=_drawn())
def test_a_drawn_value_is_one_error_line_or_a_completed_run(drawn: tuple[Option, Any]) -> None:
    _check(*drawn)


@pytest.mark.parametrize("args", [["--input_scale", "100"],
                                  ["--max_height", "32768", "--max_width", "32768"],
                                  # A 1-pixel-wide fit of a wide frame, halved by the model's
                                  # input scale: no pixel left.
                                  ["--max_width", "1"]])
def test_the_ends_of_the_input_size_ranges_are_refused_before_the_models(args: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="sleapflow-prop-") as tmp:
        rc, err, rss = _run(args, Path(tmp))
    lines = [ln for ln in err.splitlines() if ln.startswith("Error:")]
    assert rc == 2 and len(lines) == 1 and "network input" in lines[0], err[-1500:]
    assert "Traceback" not in err and "starting" not in err
    assert rss < RSS_BOUND
