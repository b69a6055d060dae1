"""The fault catalogue of issue #18: every row gives its exit code, exactly one ``Error:`` line
when it is an error, an existing output byte-identical, and no temporary files left."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sleap_io as sio
from media import (
    corrupt_packets,
    error_lines,
    leftovers,
    sha,
    truncate,
    wait_for_journaled_frame,
    write_intra_clip,
)

from sleapflow.cli.app import main

ROOT = Path(__file__).resolve().parents[2]
SINGLE = "model_ckpts/minimal_instance_single_instance"




@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    good = write_intra_clip(folder / "good.mp4", 300)
    bad = folder / "corrupt.mp4"
    shutil.copy(good, bad)
    corrupt_packets(bad, [100, 101, 150, 200, 250])
    avi = write_intra_clip(folder / "good.avi", 40)
    return {"good": good, "corrupt": bad, "no_moov": truncate(good, folder / "no_moov.mp4", 0.6),
            "truncated": truncate(avi, folder / "truncated.avi", 0.5)}


@pytest.fixture
def existing(tmp_path: Path, reference: Path) -> tuple[Path, str]:
    out = tmp_path / "out.slp"
    shutil.copy(reference / "single_instance__small_robot_minimal.slp", out)
    return out, sha(out)


def _mount_tmpfs(point: Path, options: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                          capture_output=True)
    return done.returncode == 0


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs filled up but for a few KiB (root only: the honest way to get ENOSPC)."""
    point = tmp_path / "full"
    if not _mount_tmpfs(point, "size=512k"):
        pytest.skip("needs root and tmpfs to make a full file system")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def _fill(point: Path, leave_kib: int = 8) -> None:
    free = shutil.disk_usage(point).free
    with open(point / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave_kib * 1024))


def track(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(["track", "--device", "cpu", *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


Case = Callable[[dict[str, Path], Path, Path], tuple[list[str], Path]]


def _prepare_device(tmp: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    node = tmp / "null"
    os.mknod(node, 0o666 | 0o020000, os.makedev(1, 3))
    return node


def _prepare_fifo(tmp: Path) -> Path:
    fifo = tmp / "pipe"
    os.mkfifo(fifo)
    return fifo


# (case id, extra args, expected rc, text in the Error line or None)
USAGE_ROWS = [
    ("frames_overflow", ["--frames", "0-99999999999999999999"], 2, "too large"),
    ("peak_threshold_nan", ["--peak_threshold", "nan"], 2, "finite"),
    ("peak_threshold_inf", ["--peak_threshold", "inf"], 2, "finite"),
    ("batch_size_abc", ["--batch_size", "abc"], 2, "--batch_size"),
    ("frames_past_end", ["--frames", "5000-5010"], 2, "no frames selected"),
]


@pytest.mark.parametrize(("args", "rc", "text"), [r[1:] for r in USAGE_ROWS],
                         ids=[r[0] for r in USAGE_ROWS])
def test_usage_errors_keep_existing_output(args: list[str], rc: int, text: str, assets: Path,
                                           clips: dict[str, Path], existing: tuple[Path, str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out, before = existing
    start = time.perf_counter()
    code, err = track(["-i", str(clips["good"]), "-m", str(assets / SINGLE), "-o", str(out),
                       *args], capsys)
    assert code == rc
    (line,) = error_lines(err)
    assert text in line
    assert time.perf_counter() - start < 20  # refused before inference, not after it
    assert sha(out) == before
    assert leftovers(out.parent) == []


def test_frames_huge_range_is_held_as_ranges(assets: Path, clips: dict[str, Path],
                                             tmp_path: Path) -> None:
    import tracemalloc

    from sleapflow.inputs import plan_input
    from sleapflow.options.config import InferenceConfig, parse_frames

    tracemalloc.start()
    cfg = InferenceConfig(data_path=str(clips["good"]), model_paths=(str(assets / SINGLE),),
                          device="cpu", frames=parse_frames("0-99999999"))
    plan = plan_input(cfg)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(plan.items) == 300 and plan.items[299].frame_idx == 299
    assert peak < 20 * 2**20  # was 6.2 GB: a list of every index


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_special_file_outputs_are_refused(kind: str, assets: Path, clips: dict[str, Path],
                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _prepare_device(tmp_path) if kind == "device" else _prepare_fifo(tmp_path)
    mode = os.stat(path).st_mode
    code, err = track(["-i", str(clips["good"]), "-m", str(assets / SINGLE), "-o", str(path),
                       "--frames", "0-3"], capsys)
    assert code == 2
    (line,) = error_lines(err)
    assert "not a file" in line
    assert os.stat(path).st_mode == mode  # still the device / FIFO, not a regular file
    assert leftovers(tmp_path) == []


def test_symlink_output_is_written_through(assets: Path, clips: dict[str, Path],
                                           existing: tuple[Path, str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    target, before = existing
    link = target.parent / "link.slp"
    link.symlink_to(target)
    code, _ = track(["-i", str(clips["good"]), "-m", str(assets / SINGLE), "-o", str(link),
                     "--frames", "0-3"], capsys)
    assert code == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert sha(target) != before and len(sio.load_slp(str(target))) == 4
    assert leftovers(target.parent) == []


def test_read_only_folder_fails_before_inference(assets: Path, clips: dict[str, Path],
                                                 tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "ro"
    if os.geteuid() == 0:
        if not _mount_tmpfs(folder, "ro,size=64k"):
            pytest.skip("root ignores permission bits; needs a read-only tmpfs mount")
    else:
        folder.mkdir()
        folder.chmod(0o555)
    try:
        code, err = track(["-i", str(clips["good"]), "-m", str(assets / SINGLE), "-o",
                           str(folder / "out.slp")], capsys)
        assert code == 2
        (line,) = error_lines(err)
        assert "cannot write to the output folder" in line
        assert "starting" not in err  # refused before the models load
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.parametrize("existing_output", [True, False], ids=["over_existing", "new_file"])
def test_full_disk(existing_output: bool, full_disk: Path, assets: Path, clips: dict[str, Path],
                   reference: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = full_disk / "out.slp"
    if existing_output:
        shutil.copy(reference / "single_instance__small_robot_minimal.slp", out)
        before = sha(out)
    _fill(full_disk)
    code, err = track(["-i", str(clips["good"]), "-m", str(assets / SINGLE), "-o", str(out),
                       "--frames", "0-9"], capsys)
    assert code == 2
    (line,) = error_lines(err)
    assert "room" in line or "no space" in line
    assert "HDF5" not in line and "\n" not in line
    if existing_output:
        assert sha(out) == before
    else:
        assert not out.exists()
    assert leftovers(full_disk) == []


def test_hdf5_failing_mid_save_does_not_segfault(full_disk: Path, assets: Path,
                                                 clips: dict[str, Path], reference: Path) -> None:
    """The save itself hits ENOSPC inside HDF5 (room checks disabled): it used to segfault at
    exit (139); now one Error line, exit 2, the old output intact."""
    out = full_disk / "out.slp"
    shutil.copy(reference / "single_instance__small_robot_minimal.slp", out)
    before = sha(out)
    _fill(full_disk, leave_kib=20)
    script = (
        "import sys\n"
        "from sleapflow.outputs import files as io_safety\n"
        "io_safety._reserve = lambda folder, size: None\n"
        "io_safety.ROOM_BASE = io_safety.ROOM_PER_FRAME = 0\n"
        "from sleapflow.cli.app import main\n"
        f"sys.argv = ['sleapflow', 'track', '-i', {str(clips['good'])!r}, '-m', "
        f"{str(assets / SINGLE)!r}, '-o', {str(out)!r}, '--device', 'cpu', '--frames', "
        "'0-49']\n"
        "sys.exit(main())\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = error_lines(done.stderr)
    assert "no space left on device" in line
    assert "Traceback" not in done.stderr
    assert sha(out) == before
    # The journal stays (a full disk is resumable); no temporary file does.
    assert [n for n in leftovers(full_disk) if not n.endswith(".journal")] == []


def test_stale_temp_files_are_cleaned(assets: Path, clips: dict[str, Path],
                                      existing: tuple[Path, str],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = existing
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = out.parent / f".{out.name}.{dead}.0123abcd.tmp.slp"  # left by a SIGKILL mid-save
    live = out.parent / f".{out.name}.{os.getpid()}.4567cdef.tmp.slp"
    stale.write_bytes(b"partial")
    live.write_bytes(b"another live run's")
    code, _ = track(["-i", str(clips["good"]), "-m", str(assets / SINGLE), "-o", str(out),
                     "--frames", "0-3"], capsys)
    assert code == 0
    assert not stale.exists() and live.exists()
    live.unlink()
    assert leftovers(out.parent) == []


def test_second_live_run_on_one_output_is_refused(assets: Path, clips: dict[str, Path],
                                                  existing: tuple[Path, str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out, before = existing
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    lock = out.parent / f".{out.name}.lock"
    journal = out.parent / f".{out.name}.journal"  # the live run's, as it writes
    try:
        lock.write_text(f"{holder.pid}\n")
        journal.write_bytes(b"frames of the live run")
        code, err = track(["-i", str(clips["good"]), "-m", str(assets / SINGLE), "-o", str(out),
                           "--frames", "0-3"], capsys)
        assert code == 2
        (line,) = error_lines(err)
        # The run that is writing is named, not taken for an interrupted one (--resume).
        assert f"pid {holder.pid}" in line and "--resume" not in line
        assert sha(out) == before and journal.read_bytes() == b"frames of the live run"
    finally:
        holder.kill()
        holder.wait()
        journal.unlink(missing_ok=True)
    # The holder is gone: its lock is stale and taken over.
    code, _ = track(["-i", str(clips["good"]), "-m", str(assets / SINGLE), "-o", str(out),
                     "--frames", "0-3"], capsys)
    assert code == 0
    assert leftovers(out.parent) == []


def test_five_corrupt_frames_of_300_are_skipped_and_reported(
        assets: Path, clips: dict[str, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.slp"
    code, err = track(["-i", str(clips["corrupt"]), "-m", str(assets / SINGLE), "-o", str(out),
                       "--peak_threshold", "0"], capsys)
    assert code == 0
    assert error_lines(err) == []
    warnings = [ln for ln in err.splitlines() if "failed to decode" in ln]
    assert len(warnings) == 1 and "100-101,150,200,250" in warnings[0]
    labels = sio.load_slp(str(out))
    indices = {lf.frame_idx for lf in labels}
    assert len(labels) == 295 and indices == set(range(300)) - {100, 101, 150, 200, 250}
    assert labels.provenance["frames_failed"] == 5
    assert labels.provenance["frames_failed_indices"] == [100, 101, 150, 200, 250]
    # --max_failed_frames turns a broken file into an error, and keeps the output.
    before = sha(out)
    code, err = track(["-i", str(clips["corrupt"]), "-m", str(assets / SINGLE), "-o", str(out),
                       "--max_failed_frames", "2", "--frames", "95-160"], capsys)
    assert code == 2 and "--max_failed_frames 2" in error_lines(err)[0]
    assert sha(out) == before
    assert leftovers(tmp_path) == []


def test_frames_after_a_corrupt_region(assets: Path, clips: dict[str, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.slp"
    code, _ = track(["-i", str(clips["corrupt"]), "-m", str(assets / SINGLE), "-o", str(out),
                     "--frames", "249-255", "--peak_threshold", "0"], capsys)
    assert code == 0
    assert sorted(lf.frame_idx for lf in sio.load_slp(str(out))) == [249, 251, 252, 253, 254, 255]


def test_truncated_tail_predicts_what_is_there(assets: Path, clips: dict[str, Path],
                                               tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.slp"
    code, err = track(["-i", str(clips["truncated"]), "-m", str(assets / SINGLE), "-o", str(out),
                       "--peak_threshold", "0"], capsys)
    assert code == 0 and error_lines(err) == []
    labels = sio.load_slp(str(out))
    n = len(labels)
    assert 5 < n < 40
    # The frames the file promised but no longer holds are failed frames, as corrupt ones are:
    # counted in the provenance, named in the warning, and held to --max_failed_frames.
    missing = sorted(set(range(40)) - {lf.frame_idx for lf in labels})
    assert labels.provenance["frames_failed"] == len(missing) == 40 - n
    assert labels.provenance["frames_failed_indices"] == missing
    assert any("failed to decode" in ln and f"count={40 - n}" in ln for ln in err.splitlines())
    before = sha(out)
    code, err = track(["-i", str(clips["truncated"]), "-m", str(assets / SINGLE), "-o", str(out),
                       "--max_failed_frames", "2"], capsys)
    assert code == 2 and "--max_failed_frames 2" in error_lines(err)[0]
    assert sha(out) == before and leftovers(tmp_path) == []


def test_missing_moov_cannot_open_with_advice(assets: Path, clips: dict[str, Path],
                                              existing: tuple[Path, str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out, before = existing
    code, err = track(["-i", str(clips["no_moov"]), "-m", str(assets / SINGLE), "-o", str(out)],
                      capsys)
    assert code == 2
    (line,) = error_lines(err)
    assert "cannot open video" in line and "moov" in line
    assert sha(out) == before


def test_corrupt_first_frame_is_one_error_line(assets: Path, clips: dict[str, Path], tmp_path: Path,
                                               existing: tuple[Path, str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # PyAV's error on the first packet used to escape untranslated (a traceback).
    head = tmp_path / "bad_start.mp4"
    shutil.copy(clips["good"], head)
    corrupt_packets(head, [0])
    out, before = existing
    code, err = track(["-i", str(head), "-m", str(assets / SINGLE), "-o", str(out)], capsys)
    assert code == 2
    (line,) = error_lines(err)
    assert "cannot decode the first frame" in line and "bad_start.mp4" in line
    assert "Traceback" not in err
    assert sha(out) == before


def test_sigint_prints_one_line_and_keeps_output(assets: Path, clips: dict[str, Path],
                                                 existing: tuple[Path, str]) -> None:
    out, before = existing
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "sleapflow.cli.app", "track", "-i",
                             str(clips["good"]), "-m", str(assets / SINGLE), "-o", str(out),
                             "--device", "cpu", "--batch_size", "1"],
                            stderr=subprocess.PIPE, text=True, env=env)
    journal = out.parent / f".{out.name}.journal"
    wait_for_journaled_frame(journal)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    lines = [ln for ln in err.splitlines() if ln.startswith("Interrupted")]
    assert len(lines) == 1 and "--resume" in lines[0], err[-2000:]
    assert "Traceback" not in err
    assert sha(out) == before
    assert journal.exists()  # kept for --resume


@pytest.mark.parametrize(("extra", "special", "kind", "words"), [
    (["--output_format", "csv"], "out.csv", "fifo", "--output_format csv"),
    (["--output_format", "analysis_h5"], "out.analysis.h5", "device", "--output_format analysis_h5"),
    (["--output_format", "csv"], "out.csv", "folder", "is a folder"),
    (["--render"], "out.mp4", "fifo", "--render"),
])
def test_every_output_path_is_checked_before_any_is_written(
        extra: list[str], special: str, kind: str, words: str, assets: Path,
        clips: dict[str, Path], tmp_path: Path, reference: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Not only -o: each format's file and the render are checked together, first, so a bad one
    leaves the .slp beside it (an earlier run's) as it was."""
    out = tmp_path / "out.slp"
    shutil.copy(reference / "single_instance__small_robot_minimal.slp", out)
    before = sha(out)
    path = tmp_path / special
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        if os.geteuid() != 0:
            pytest.skip("mknod needs root")
        os.mknod(path, 0o666 | 0o020000, os.makedev(1, 3))
    else:
        path.mkdir()
    mode = os.stat(path).st_mode
    code, err = track(["-i", str(clips["good"]), "-m", str(assets / SINGLE), "-o", str(out),
                       "--frames", "0-3", *extra], capsys)
    assert code == 2
    (line,) = error_lines(err)
    assert words in line and special in line
    assert os.stat(path).st_mode == mode and sha(out) == before
    assert not (tmp_path / f".{out.name}.journal").exists() and leftovers(tmp_path) == []


def test_outputs_never_replace_a_model_or_an_input(assets: Path, clips: dict[str, Path],
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model"
    shutil.copytree(assets / SINGLE, model)
    ckpt = next(p for p in model.iterdir() if p.suffix == ".ckpt")
    before = sha(ckpt)
    clip = tmp_path / "clip.mp4"
    shutil.copy(clips["good"], clip)
    clip_before = sha(clip)
    for out, extra, words in ((ckpt, [], "inside the model"),
                              (model / "predictions.slp", [], "inside the model"),
                              (tmp_path / "clip.slp", ["--render"], "is the input file")):
        # "clip.slp" with --render draws to clip.mp4: the input video itself.
        code, err = track(["-i", str(clip), "-m", str(model), "-o", str(out), "--frames", "0-3",
                           *extra], capsys)
        assert code == 2 and words in error_lines(err)[0], err
    assert sha(ckpt) == before and sha(clip) == clip_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "model"]


def test_commands_without_models_never_write_into_a_model_folder(
        assets: Path, tmp_path: Path, reference: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """merge, render and eval -s take no model, so the folder is known by what it holds."""
    models = tmp_path / "models"
    sleap_nn, legacy = models / "sleap_nn", models / "legacy"
    shutil.copytree(assets / SINGLE, sleap_nn)
    shutil.copytree(assets / "legacy_models/minimal_robot.UNet.single_instance", legacy)
    before = {p: sha(p) for p in models.rglob("*") if p.is_file()}
    preds = tmp_path / "preds.slp"
    shutil.copy(reference / "single_instance__small_robot_minimal.slp", preds)
    for folder in (sleap_nn, legacy / "nested"):
        for argv in (["merge", str(preds), "-o", str(folder / "merged.slp")],
                     ["render", str(preds), "-o", str(folder / "frame.png"), "--frames", "0"],
                     ["eval", "-g", str(preds), "-p", str(preds), "-s",
                      str(folder / "metrics.npz")]):
            capsys.readouterr()
            assert main(argv) == 2, argv
            err = capsys.readouterr().err
            assert "Traceback" not in err
            (line,) = error_lines(err)
            assert "inside the model folder" in line, (argv, line)
    assert {p: sha(p) for p in models.rglob("*") if p.is_file()} == before
