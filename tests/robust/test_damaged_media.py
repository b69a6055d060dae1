"""Damaged media, non-regular inputs and a second Ctrl-C: one ``Error:`` line or a run that predicts
around the damage (counted in ``frames_failed``), never a traceback, an existing output kept
byte-identical, no temp file, lock or journal left, and memory bounded before frames are allocated."""

from __future__ import annotations

import io
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio
from media import (
    corrupt_packets,
    error_lines,
    leftovers,
    sha,
    wait_for_journaled_frame,
    write_intra_clip,
)

from sleapflow.cli.app import main

ROOT = Path(__file__).resolve().parents[2]
SINGLE = "model_ckpts/minimal_instance_single_instance"
#: Peak RSS a damaged input may cost a whole CLI run (torch and the model included).
RSS_BOUND = 1536 * 2**20




def track(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(["track", "--device", "cpu", *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def encode(path: Path, n: int, codec: str, pix_fmt: str, *, width: int = 96, height: int = 64,
           options: dict[str, str] | None = None) -> Path:
    import av

    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for i in range(n):
            img = np.full((height, width, 3), 20, np.uint8)
            img[10:40, i % (width - 20):i % (width - 20) + 20] = 200
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def absurd_avi_header(src: Path, out: Path, width: int, height: int) -> Path:
    """The AVI main header and the stream's BITMAPINFOHEADER both declare ``width x height``."""
    data = bytearray(src.read_bytes())
    struct.pack_into("<ii", data, data.find(b"avih") + 8 + 32, width, height)
    struct.pack_into("<ii", data, data.find(b"strf") + 8 + 4, width, height)
    out.write_bytes(bytes(data))
    return out


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A valid grayscale PNG of zeros: ~100 KB on disk, ``width * height`` bytes decoded."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    packer = zlib.compressobj(9)
    rows = b"".join(packer.compress(b"\0" * (width + 1) * 500) for _ in range(height // 500))
    rows += packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import cv2
    import h5py

    folder = tmp_path_factory.mktemp("media")
    out: dict[str, Path] = {}
    out["good"] = write_intra_clip(folder / "good.mp4", 12)
    mjpeg = encode(folder / "mjpeg.avi", 8, "mjpeg", "yuvj420p")
    out["mjpeg_first_frame"] = folder / "bad_start.avi"
    shutil.copy(mjpeg, out["mjpeg_first_frame"])
    corrupt_packets(out["mjpeg_first_frame"], [0])
    raw = encode(folder / "raw.avi", 4, "rawvideo", "bgr24")
    out["raw_absurd"] = absurd_avi_header(raw, folder / "raw_absurd.avi", 2**31 - 1, 2**31 - 1)
    mpeg4 = encode(folder / "mpeg4.avi", 5, "mpeg4", "yuv420p")
    out["mpeg4_absurd"] = absurd_avi_header(mpeg4, folder / "mpeg4_absurd.avi", 60000, 60000)
    fast = encode(folder / "fast.mp4", 166, "libx264", "yuv420p", options={"movflags": "faststart"})
    data = fast.read_bytes()
    out["fast_start_truncated"] = folder / "fast_truncated.mp4"
    out["fast_start_truncated"].write_bytes(data[: len(data) // 2])
    out["fifo"] = folder / "live.mp4"
    os.mkfifo(out["fifo"])
    images = folder / "images"
    images.mkdir()
    for i in range(3):
        cv2.imwrite(str(images / f"f{i}.png"), np.full((64, 96), 30 + i, np.uint8))
    out["images_bomb_inside"] = images
    png_bomb(images / "f1.png", 12000, 12000)  # 144 Mpx: under Pillow's own bomb limit
    first = folder / "images_first"
    shutil.copytree(images, first)
    png_bomb(first / "f0.png", 12000, 12000)
    out["images_bomb_first"] = first
    out["hdf5_huge"] = folder / "huge.h5"
    with h5py.File(out["hdf5_huge"], "w") as f:  # never written: a few KB on disk
        f.create_dataset("box", shape=(3, 40000, 40000, 1), dtype="uint8", chunks=(1, 256, 256, 1),
                         compression="gzip")
    return out


@pytest.fixture
def existing(tmp_path: Path, reference: Path) -> tuple[Path, str]:
    out = tmp_path / "out.slp"
    shutil.copy(reference / "single_instance__small_robot_minimal.slp", out)
    return out, sha(out)


REFUSED = [
    # (input key or special, text in the Error line)
    ("mjpeg_first_frame", "cannot decode the first frame"),
    ("raw_absurd", "raw_absurd.avi"),
    ("fifo", "is a FIFO (named pipe), not a file"),
    ("long_input", "-i path is too long for the file system"),
    ("long_output", "-o path is too long for the file system"),
    ("long_model", "File name too long"),
    ("hdf5_huge", "declares frames of shape (40000, 40000, 1)"),
    ("images_bomb_first", "declares frames of 12000 x 12000 pixels"),
]


@pytest.mark.timeout(120)  # a FIFO that is opened blocks forever: the timeout is the failure
@pytest.mark.parametrize(("case", "words"), REFUSED, ids=[r[0] for r in REFUSED])
def test_damaged_or_special_input_is_one_error_line(
        case: str, words: str, media: dict[str, Path], assets: Path, existing: tuple[Path, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    out, before = existing
    source, target, model = str(media["good"]), str(out), str(assets / SINGLE)
    long = str(out.parent / ("a" * 5000))
    if case == "long_input":
        source = long + ".mp4"
    elif case == "long_output":
        target = long + ".slp"
    elif case == "long_model":
        model = long
    else:
        source = str(media[case])
    start = time.perf_counter()
    code, err = track(["-i", source, "-m", model, "-o", target], capsys)
    assert code == 2
    (line,) = error_lines(err)
    assert words in line and len(line) < 600  # a 5,000-character path is not echoed whole
    assert time.perf_counter() - start < 60
    assert sha(out) == before
    assert leftovers(out.parent) == []
    if case == "fifo":
        assert os.path.exists(source) and not os.path.isfile(source)  # still the FIFO


def test_absurd_header_over_a_sound_bitstream_is_predicted(
        media: dict[str, Path], assets: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # MPEG-4 frames carry their own size; the decoder uses it, not the AVI header's 60000 x 60000.
    out = tmp_path / "out.slp"
    code, err = track(["-i", str(media["mpeg4_absurd"]), "-m", str(assets / SINGLE), "-o", str(out)],
                      capsys)
    assert code == 0 and error_lines(err) == []
    labels = sio.load_slp(str(out))
    assert sorted(lf.frame_idx for lf in labels) == [0, 1, 2, 3, 4]
    assert labels.provenance["frames_failed"] == 0
    assert leftovers(tmp_path) == []


def test_truncated_fast_start_video_counts_every_missing_frame(
        media: dict[str, Path], assets: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The index (moov, up front) promises 166 frames; half the data is gone. Every promised
    frame is either predicted or counted as failed: none silently vanish (was 79 written, 0
    failed)."""
    out = tmp_path / "out.slp"
    code, err = track(["-i", str(media["fast_start_truncated"]), "-m", str(assets / SINGLE), "-o",
                       str(out), "--peak_threshold", "0"], capsys)
    assert code == 0 and error_lines(err) == []
    labels = sio.load_slp(str(out))
    done = {lf.frame_idx for lf in labels}
    failed = labels.provenance["frames_failed_indices"]
    assert 0 < len(done) < 166
    assert labels.provenance["frames_failed"] == len(failed) == 166 - len(done)
    assert sorted(done | set(failed)) == list(range(166))
    assert any("failed to decode" in ln and f"count={166 - len(done)}" in ln
               for ln in err.splitlines())
    assert leftovers(tmp_path) == []


def _package(tmp_path: Path, clip: Path) -> Path:
    import cv2
    import h5py

    video = sio.load_video(str(clip))
    skeleton = sio.Skeleton(["a", "b"])
    frames = [sio.LabeledFrame(video=video, frame_idx=i, instances=[sio.Instance.from_numpy(
        np.array([[10.0, 10.0], [20.0, 20.0]]), skeleton=skeleton)]) for i in range(6)]
    pkg = tmp_path / "labels.pkg.slp"
    sio.save_slp(sio.Labels(labeled_frames=frames, videos=[video], skeletons=[skeleton]), str(pkg),
                 embed="all")
    with h5py.File(pkg, "r+") as f:
        ds = f["video0/video"]
        rng = np.random.default_rng(0)
        ds[2] = rng.integers(0, 256, ds.shape[1], dtype=np.uint8)  # bytes that are no image
        _, small = cv2.imencode(".png", np.zeros((8, 8), np.uint8))  # decodes, wrong size
        row = np.zeros(ds.shape[1], np.uint8)
        row[:small.size] = small.reshape(-1)
        ds[4] = row
    return pkg


def test_garbage_embedded_frames_are_failed_frames(
        media: dict[str, Path], assets: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    pkg = _package(tmp_path, media["good"])
    capsys.readouterr()  # sleap-io's embedding progress bars
    out = tmp_path / "out.slp"
    code, err = track(["-i", str(pkg), "-m", str(assets / SINGLE), "-o", str(out)], capsys)
    assert code == 0 and error_lines(err) == []
    labels = sio.load_slp(str(out))
    assert sorted(lf.frame_idx for lf in labels) == [0, 1, 3, 5]
    assert labels.provenance["frames_failed"] == 2
    assert labels.provenance["frames_failed_indices"] == [2, 4]
    (warning,) = [ln for ln in err.splitlines() if "failed to decode" in ln]
    assert "embedded frame 2" in warning and "frames=2,4" in warning


def _limit_memory() -> None:
    # Without the size checks the bomb took 17 GB: a regression must fail here, not take the machine.
    resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, 8 * 2**30))


def _run_measured(args: list[str], cwd: Path) -> tuple[int, str, int]:
    """The CLI in a child process: exit code, stderr and that child's own peak RSS (bytes)."""
    err_path = cwd / "stderr.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(err_path, "w") as err_file:
        proc = subprocess.Popen([sys.executable, "-m", "sleapflow", "track", "--device", "cpu",
                                 *args], stdout=subprocess.DEVNULL, stderr=err_file, env=env,
                                cwd=cwd, preexec_fn=_limit_memory)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    err = err_path.read_text()
    err_path.unlink()
    return proc.returncode, err, usage.ru_maxrss * 1024


def test_image_bomb_and_huge_hdf5_shape_are_checked_before_allocation(
        media: dict[str, Path], assets: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.slp"
    # A bomb inside an image sequence is a failed frame; the others are predicted.
    code, err, rss = _run_measured(["-i", str(media["images_bomb_inside"]), "-m",
                                    str(assets / SINGLE), "-o", str(out)], tmp_path)
    assert code == 0 and "Traceback" not in err and error_lines(err) == []
    assert rss < RSS_BOUND, f"peak RSS {rss / 2**20:.0f} MiB"
    labels = sio.load_slp(str(out))
    assert labels.provenance["frames_failed_indices"] == [1] and len(labels) == 2
    # A dataset declaring 40000 x 40000 frames: refused from its shape, nothing read.
    out.unlink()
    code, err, rss = _run_measured(["-i", str(media["hdf5_huge"]), "-m", str(assets / SINGLE),
                                    "-o", str(out)], tmp_path)
    assert code == 2 and "Traceback" not in err
    (line,) = error_lines(err)
    assert "huge.h5" in line and "GiB each" in line
    assert rss < RSS_BOUND, f"peak RSS {rss / 2**20:.0f} MiB"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_unreadable_model_file_is_one_error_line(assets: Path, media: dict[str, Path],
                                                 tmp_path: Path, reference: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(assets / SINGLE, model)
    (model / "best.ckpt").chmod(0)
    out = tmp_path / "out.slp"
    shutil.copy(reference / "single_instance__small_robot_minimal.slp", out)
    before = sha(out)
    command = [sys.executable, "-m", "sleapflow", "track", "--device", "cpu", "-i",
               str(media["good"]), "-m", str(model), "-o", str(out)]
    if os.geteuid() == 0:
        # Root reads any file: drop the capabilities that let it ignore permission bits.
        if shutil.which("setpriv") is None:
            pytest.skip("root needs setpriv to be refused a chmod 000 file")
        command = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search",
                   *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = error_lines(done.stderr)
    assert "best.ckpt" in line and "Permission denied" in line
    assert sha(out) == before and leftovers(tmp_path) == []


def test_second_ctrl_c_exits_130_promptly_and_keeps_the_journal(
        assets: Path, tmp_path: Path, reference: Path) -> None:
    from sleapflow.outputs.journal import read_records

    clip = write_intra_clip(tmp_path / "long.mp4", 400)
    out = tmp_path / "out.slp"
    shutil.copy(reference / "single_instance__small_robot_minimal.slp", out)
    before = sha(out)
    journal = tmp_path / f".{out.name}.journal"
    for gap in (0.0, 0.3):  # the second inside the first one's cleanup, and after it
        proc = subprocess.Popen([sys.executable, "-m", "sleapflow", "track", "-i", str(clip), "-m",
                                 str(assets / SINGLE), "-o", str(out), "--device", "cpu",
                                 "--batch_size", "1"], stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        wait_for_journaled_frame(journal)
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        time.sleep(gap)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, (gap, proc.returncode, err[-2000:])  # not -2: by signal
        assert time.monotonic() - start < 5
        lines = [ln for ln in err.splitlines() if ln.startswith("Interrupted")]
        assert len(lines) == 1 and "--resume" in lines[0], err[-2000:]
        assert "Traceback" not in err and "Exception ignored" not in err
        assert sha(out) == before
        # What one Ctrl-C leaves: the journal, whole and readable, for --resume; no lock.
        kinds = [rec["k"] for rec, _ in read_records(journal)]
        assert kinds[0] == "h" and kinds.count("f") >= 1
        assert not (tmp_path / f".{out.name}.lock").exists()
        assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []
        journal.unlink()


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff"])
def test_image_size_is_read_from_the_header(ext: str, tmp_path: Path) -> None:
    import cv2

    from sleapflow.inputs.media_limits import image_size

    path = tmp_path / f"frame{ext}"
    cv2.imwrite(str(path), np.zeros((23, 37, 3), np.uint8))
    with open(path, "rb") as f:
        assert image_size(f) == (37, 23)
    with open(path, "rb") as f:
        f.read(1)  # a file that is no image (or not one of these formats): the decoder decides
        assert image_size(io.BytesIO(f.read())) is None


def test_video_frames_over_the_pixel_limit_are_refused_before_conversion(
        media: dict[str, Path], assets: Path, existing: tuple[Path, str],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The limit as the PyAV reader applies it (the container's declared size, then the first
    decoded frame's): a 96 x 64 clip under a limit one pixel smaller is one Error line."""
    from sleapflow.inputs import media_limits

    monkeypatch.setattr(media_limits, "MAX_FRAME_PIXELS", 96 * 64 - 1)
    out, before = existing
    code, err = track(["-i", str(media["good"]), "-m", str(assets / SINGLE), "-o", str(out)], capsys)
    assert code == 2
    (line,) = error_lines(err)
    assert "good.mp4" in line and "96 x 64 pixels" in line
    assert sha(out) == before and leftovers(out.parent) == []
