"""Every numeric option has a declared range, checked before any model loads: a value outside it
is one ``Error:`` line naming the option, the range and the value (exit 2), never a traceback, a
crash or a run that eats the machine; options that name nodes are checked against the skeleton."""

from __future__ import annotations

import math
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sleapflow.cli.app import main
from sleapflow.errors import ConfigError
from sleapflow.options.boundary import build_config
from sleapflow.options.declared import Option, declared

MODEL = "model_ckpts/minimal_instance_single_instance"
CLIP = "datasets/small_robot.mp4"

#: The values a careless user or a script most often sends.
EXTREMES = (-1, 0, 1, 2147483647, 2**40, -1e308, 1e308, math.nan, math.inf, -math.inf, 0.5, -0.5)


def _numeric(o: Option) -> bool:
    args = typing.get_args(o.type) or (o.type,)
    return any(a in (int, float) for a in args)


NUMERIC = [o for o in declared() if _numeric(o) and o.role.bounds is not None]


def test_every_numeric_option_declares_its_range() -> None:
    undeclared = [o.keyword for o in declared() if _numeric(o) and o.role.bounds is None]
    # shard and frames are parsed text with their own checks (I/N; frame indices).
    assert set(undeclared) <= {"shard", "frames"}, undeclared
    assert len(NUMERIC) > 40


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(option=st.sampled_from(NUMERIC),
       value=st.one_of(st.sampled_from(EXTREMES), st.integers(-10**12, 10**12),
                       st.floats(allow_nan=True, allow_infinity=True)))
def test_a_drawn_value_is_accepted_in_range_or_refused_by_name(option: Option, value: Any) -> None:
    try:
        cfg = build_config(**{option.keyword: value})
    except ConfigError as exc:
        assert option.flag in str(exc), (option.keyword, value, str(exc))
        return
    got = getattr(cfg.tracker if option.within == "tracker" else cfg, option.field)
    low, high = option.role.bounds  # type: ignore[misc]
    values = got if isinstance(got, tuple) else (got,)
    assert all(math.isfinite(v) for v in values)
    assert all((low is None or v >= low) and (high is None or v <= high) for v in values)


def _error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(("args", "words"), [
    (["--forward_workers", "2147483647"], "--forward_workers must be a whole number between 1 and 64"),
    (["--forward_workers", "-1"], "--forward_workers must be"),
    (["--postprocess_workers", "2147483647"], "--postprocess_workers must be"),
    (["--peak_threshold", "-1"], "--peak_threshold must be between 0.0 and 1.0"),
    (["--min_instance_peaks", "-1"], "--min_instance_peaks must be at least 0.0"),
    (["--filter_min_visible_node_fraction", "nan"], "--filter_min_visible_node_fraction"),
    (["--filter_overlapping_threshold", "1e308"], "--filter_overlapping_threshold"),
    (["--batch_size", "0"], "--batch_size must be a whole number between 1 and 4096"),
    (["--tracking", "--tracking_window_size", "0"], "--tracking_window_size"),
    (["--ray_workers", "0"], "--ray_workers must be"),
    (["--ray_chunk_frames", "-1"], "--ray_chunk_frames must be"),
    (["--anchor_part", "nose_typo"], "--anchor_part 'nose_typo' is not a node"),
    (["--tracking", "--kf_node_indices", "99", "--use_kalman", "--max_tracks", "1"],
     "--kf_node_indices 99: the skeleton has 2 nodes"),
])
def test_out_of_range_options_are_one_error_before_any_model_loads(
        assets: Path, tmp_path: Path, args: list[str], words: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.slp"
    out.write_bytes(b"an earlier run's predictions")
    rc = main(["track", "-i", str(assets / CLIP), "-m", str(assets / MODEL), "--frames", "0-1",
               "-d", "cpu", "-o", str(out), *args])
    err = capsys.readouterr().err
    assert rc == 2 and words in _error_line(err)
    if "anchor_part" not in words and "kf_node" not in words:  # those need the model's config
        assert "runtime selected" not in err  # refused before anything about the run was resolved
    assert out.read_bytes() == b"an earlier run's predictions"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.slp"]  # no lock, temp or journal


def test_the_top_of_each_range_runs(assets: Path, tmp_path: Path) -> None:
    """The upper bounds are safe: a run at them completes (bounded threads and memory)."""
    out = tmp_path / "out.slp"
    assert main(["track", "-i", str(assets / CLIP), "-m", str(assets / MODEL), "--frames", "0-3",
                 "-d", "cpu", "-o", str(out), "--forward_workers", "64", "--postprocess_workers",
                 "64", "--batch_size", "4096", "--queue_maxsize", "1"]) == 0
    assert out.exists()
