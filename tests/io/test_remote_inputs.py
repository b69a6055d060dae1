"""Inputs at http(s):// and s3:// URLs, and outputs at s3:// URLs, against servers on loopback.

An HTTP server (the standard library's, serving a folder) and moto's S3 server run in this
process on 127.0.0.1; the CLI reads the same short clip through each and must predict exactly
what it predicts from the local file. S3 outputs are uploaded only after a run succeeded.
"""

from __future__ import annotations

import functools
import http.server
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import s3fs
import sleap_io as sio
from moto.server import ThreadedMotoServer

from sleapflow.cli.app import main
from sleapflow.inputs.expand import output_for
from sleapflow.options.boundary import build_config
from sleapflow.outputs.naming import default_output_path
from sleapflow.outputs.remote import stage_remote_output

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "many"))
from many_helpers import assert_same_predictions, cut_clip

MODEL = "model_ckpts/minimal_instance_single_instance"
N_FRAMES = 8


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would bury the test's output


@pytest.fixture(scope="module")
def clip(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("served")
    return cut_clip(assets / "datasets/small_robot.mp4", folder / "clip.mp4", 0, N_FRAMES)


@pytest.fixture(scope="module")
def http_base(clip: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(clip.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def s3(clip: Path) -> Iterator[s3fs.S3FileSystem]:
    """moto's S3 API on loopback, found through the standard AWS variables; a bucket ``bkt``
    holding the clip. Yields an s3fs file system on it."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                            ("AWS_DEFAULT_REGION", "us-east-1"),
                            ("AWS_ENDPOINT_URL", f"http://{host}:{port}")):
            mp.setenv(name, value)
        mp.delenv("AWS_PROFILE", raising=False)
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir("bkt")
        fs.put_file(clip.as_posix(), "bkt/clip.mp4")
        yield fs
    server.stop()


@pytest.fixture(scope="module")
def local(assets: Path, clip: Path, tmp_path_factory: pytest.TempPathFactory) -> sio.Labels:
    out = tmp_path_factory.mktemp("local") / "local.slp"
    assert _track(assets, str(clip), str(out)) == 0
    return sio.load_slp(str(out))


def _track(assets: Path, source: str, out: str, *extra: str) -> int:
    return main(["track", "-i", source, "-m", str(assets / MODEL), "-d", "cpu", "--runtime",
                 "torch", "-o", out, *extra])


def _one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _fresh(fs: s3fs.S3FileSystem) -> s3fs.S3FileSystem:
    fs.invalidate_cache()  # listings cached before the run wrote would hide its objects
    return fs


def test_http_input_predicts_as_the_local_file(assets: Path, http_base: str, local: sio.Labels,
                                              tmp_path: Path) -> None:
    url = f"{http_base}/clip.mp4"
    out = tmp_path / "http.slp"
    assert _track(assets, url, str(out)) == 0
    labels = sio.load_slp(str(out), open_videos=False)
    assert len(labels.labeled_frames) == N_FRAMES
    assert_same_predictions(labels, local)
    assert labels.provenance["source_path"] == url
    assert labels.videos[0].filename == url


def test_http_errors_are_one_line(assets: Path, http_base: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.slp"
    out.write_bytes(b"earlier")
    assert _track(assets, f"{http_base}/missing.mp4", str(out)) == 2
    assert "HTTP 404" in _one_error(capsys.readouterr().err)
    assert out.read_bytes() == b"earlier"
    # No -o: the default output would be beside the input, on a server that cannot take it.
    assert main(["track", "-i", f"{http_base}/clip.mp4", "-m", str(assets / MODEL), "-d",
                 "cpu"]) == 2
    assert "http(s) URLs" in _one_error(capsys.readouterr().err)
    # Labels files are read locally only, for now.
    assert _track(assets, f"{http_base}/labels.slp", str(out)) == 2
    assert "only video files" in _one_error(capsys.readouterr().err)


def test_s3_input_and_output(assets: Path, s3: s3fs.S3FileSystem, local: sio.Labels, tmp_path: Path) -> None:
    fs = s3
    fs.pipe_file("bkt/out/clip.slp", b"an earlier run's output")
    rc = _track(assets, "s3://bkt/clip.mp4", "s3://bkt/out/clip.slp",
                "--output_format", "slp", "--output_format", "csv")
    assert rc == 0
    got = tmp_path / "got.slp"
    _fresh(fs).get_file("bkt/out/clip.slp", got.as_posix())
    labels = sio.load_slp(str(got), open_videos=False)
    assert len(labels.labeled_frames) == N_FRAMES
    assert_same_predictions(labels, local)
    assert labels.provenance["source_path"] == "s3://bkt/clip.mp4"
    assert fs.exists("bkt/out/clip.csv")
    header = fs.cat_file("bkt/out/clip.csv").decode().splitlines()[0]
    assert "frame_idx" in header
    assert not stage_remote_output("s3://bkt/out/clip.slp").local.exists()  # uploaded, not kept
    # No -o: beside the input, as for a local file.
    assert main(["track", "-i", "s3://bkt/clip.mp4", "-m", str(assets / MODEL), "-d", "cpu",
                 "--runtime", "torch", "--frames", "0-1"]) == 0
    assert _fresh(fs).exists("bkt/clip.predictions.slp")


def test_s3_object_replaced_only_by_a_finished_run(assets: Path, s3: s3fs.S3FileSystem, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fs = s3
    old = b"an earlier run's output"
    fs.pipe_file("bkt/keep/clip.slp", old)
    target = "s3://bkt/keep/clip.slp"
    for source, expected in (("s3://bkt/missing.mp4", "no such object"),
                             ("s3://nobucket/clip.mp4", "bucket")):
        assert _track(assets, source, target) == 2
        assert expected in _one_error(capsys.readouterr().err)
    assert _track(assets, "s3://bkt/clip.mp4", "s3://nobucket/out.slp") == 2
    assert "does not exist" in _one_error(capsys.readouterr().err)
    # A run that fails after its .slp was written (here: the export of another format) uploads
    # nothing: the staged file never replaces the object.
    import sleapflow.jobs.job as job_module
    from sleapflow.errors import OutputWriteError

    def broken_export(*args: object) -> list[Path]:
        raise OutputWriteError("cannot write the csv: disk full")

    monkeypatch.setattr(job_module, "_export", broken_export)
    assert _track(assets, "s3://bkt/clip.mp4", target, "--output_format", "slp",
                  "--output_format", "csv") == 2
    assert "disk full" in _one_error(capsys.readouterr().err)
    assert _fresh(fs).cat_file("bkt/keep/clip.slp") == old
    assert not fs.exists("bkt/keep/clip.csv")
    # A remote .slp input is refused in one line.
    assert _track(assets, "s3://bkt/keep/clip.slp", str(tmp_path / "x.slp")) == 2
    assert "only video files" in _one_error(capsys.readouterr().err)


def test_url_output_names() -> None:
    """Defaults and -o folders keep a URL's '//' (a Path would fold it) and sit beside it."""
    cfg = build_config(data_path="s3://bkt/videos/clip.mp4", model_paths=())
    assert default_output_path(cfg) == "s3://bkt/videos/clip.predictions.slp"
    in_folder = build_config(data_path="s3://bkt/videos/clip.mp4", model_paths=(),
                             output_path="s3://bkt/preds/")
    assert output_for(in_folder, "s3://bkt/videos/clip.mp4", many=True) == \
        "s3://bkt/preds/clip.predictions.slp"
    https = build_config(data_path="https://host/a/b.mp4?sig=1", model_paths=())
    assert default_output_path(https) == "https://host/a/b.predictions.slp"
