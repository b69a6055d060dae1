"""Ray runs that survive the real world: bounded retries of a video that kills its worker, chunk
merges in Ray tasks, longest-first scheduling, fractional GPUs, and the JSON run summary."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sleap_io as sio
from many_helpers import TOPDOWN, assert_same_predictions, cut_clip
from ray_cluster import REPO, ray_env

from sleapflow.cli.app import main
from sleapflow.errors import ConfigError
from sleapflow.inputs.expand import VideoTask
from sleapflow.jobs.ray_runner import CHUNKS_PER_WORKER, WorkerShape, _Planned, schedule, worker_shape
from sleapflow.options.config import InferenceConfig

# A sitecustomize module for the Ray workers of one job only: it wraps PyAV's ``av.open`` so
# that opening the file named in SFTEST_CRASH_ON notes the process id and ends the process at
# once (``os._exit``, as a segfaulting decoder would: no exception, no cleanup). It is test code
# on the workers' PYTHONPATH; sleapflow's own modules are not touched.
CRASH_HOOK = textwrap.dedent('''
    """Test-only: makes a Ray worker die when it opens one named video."""
    import os

    if os.environ.get("SFTEST_CRASH_ON"):
        import av

        _open = av.open

        def _open_or_die(file, *args, **kwargs):
            if os.path.basename(str(file)) == os.environ["SFTEST_CRASH_ON"]:
                with open(os.environ["SFTEST_CRASH_LOG"], "a") as log:
                    log.write(f"{os.getpid()}\\n")
                os._exit(139)
            return _open(file, *args, **kwargs)

        av.open = _open_or_die
''')


def _planned(lengths: list[int]) -> list[_Planned]:
    cfg = InferenceConfig(model_paths=("m",))
    return [_Planned(VideoTask(index=k, path=f"v{k}.mp4", output=f"out/v{k}.slp"),
                     cfg, list(range(n))) for k, n in enumerate(lengths)]


def test_longest_first_and_long_videos_cut_into_chunks() -> None:
    lengths = [20] * 9 + [200]  # the long one arrives last
    arrival = schedule(_planned(lengths), n_workers=2, chunk_frames=10**9, order="arrival")
    assert [t.n_frames for t in arrival] == lengths
    longest = schedule(_planned(lengths), n_workers=2, chunk_frames=10**9)
    assert [(t.video, t.n_frames) for t in longest] == [(9, 200), *((k, 20) for k in range(9))]
    # Default: the long video (more than one worker's share, 380 / 2) is cut into chunks of
    # about 380 / (CHUNKS_PER_WORKER x 2) frames, handed out first; the short ones stay whole.
    chunked = schedule(_planned(lengths), n_workers=2)
    size = -(-380 // (CHUNKS_PER_WORKER * 2))
    long_chunks = [t for t in chunked if t.video == 9]
    assert len(long_chunks) == -(-200 // size) and max(t.n_frames for t in long_chunks) <= size
    assert chunked[:len(long_chunks)] == long_chunks
    assert sum(t.n_frames for t in long_chunks) == 200
    assert all(not t.cfg.tracking and t.output.endswith(".slp") and "/.v9.slp.parts/" in t.output
               for t in long_chunks)
    assert [t.n_frames for t in chunked[len(long_chunks):]] == [20] * 9
    # Videos of equal length on as many workers: no chunks (each is one worker's share).
    assert [t.n_frames for t in schedule(_planned([30, 30]), n_workers=2)] == [30, 30]


def test_fractional_gpus_ask_ray_for_a_share_of_a_card() -> None:
    cluster = {"CPU": 16.0, "GPU": 2.0}
    assert worker_shape(cluster) == WorkerShape(2, 1.0, 1.0)
    assert worker_shape(cluster, gpus_per_worker=0.5) == WorkerShape(4, 1.0, 0.5)
    assert worker_shape(cluster, gpus_per_worker=0.1) == WorkerShape(20, 1.0, 0.1)
    assert worker_shape(cluster, gpus_per_worker=0.25, workers=3) == WorkerShape(3, 1.0, 0.25)
    # CPUs only: the cores shared out, two a worker by default.
    assert worker_shape({"CPU": 8.0}) == WorkerShape(4, 2.0, 0.0)
    assert worker_shape(cluster, device="cpu", workers=2) == WorkerShape(2, 8.0, 0.0)
    for resources, device in (({"CPU": 8.0}, "auto"), (cluster, "cpu")):
        with pytest.raises(ConfigError, match="no GPU"):
            worker_shape(resources, device=device, gpus_per_worker=0.5)


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--max_retries", "-1", "--max_retries must be a whole number between 0"),
    ("--ray_gpus_per_worker", "0", "--ray_gpus_per_worker must be more than 0 and at most 1"),
    ("--ray_gpus_per_worker", "1.5", "--ray_gpus_per_worker must be more than 0 and at most 1"),
])
def test_ray_options_out_of_range_are_one_error_line(
        flag: str, value: str, says: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["track", "-i", str(tmp_path / "a.mp4"), "-m", str(tmp_path), "--ray", "local",
            f"{flag}={value}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("Error:") == 1 and says in err and "Traceback" not in err


def test_ray_options_without_ray_are_refused(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["track", "-i", str(tmp_path / "a.mp4"), "-m", str(tmp_path),
            "--max_retries", "3", "--ray_gpus_per_worker", "0.5"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == ("Error: --ray_gpus_per_worker, --max_retries only apply to --ray runs; add "
                   "--ray (or --ray ADDRESS), or leave them out\n")


def test_summary_json_must_be_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video, out = tmp_path / "a.mp4", tmp_path / "a.slp"
    for existing in (video, out):
        existing.write_bytes(b"not to be replaced")
    argv = ["track", "-i", str(video), "-m", str(tmp_path / "model"), "-o", str(out),
            "--summary_json"]
    for path, says in ((tmp_path, "is a folder, not a file"), (f"{tmp_path}/sub/", "names a folder"),
                       (out, "is one of the run's outputs"), (video, "is the input file")):
        assert main([*argv, str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("Error: --summary_json") and says in err and err.count("\n") == 1
    assert video.read_bytes() == out.read_bytes() == b"not to be replaced"


@pytest.mark.timeout(600)
def test_a_video_that_kills_its_worker_is_retried_n_times_and_fails_alone(
        cluster: tuple[str, int], assets: Path, tmp_path: Path) -> None:
    """Three videos on two workers with ``--max_retries 1``: opening ``boom.mp4`` ends the
    worker process (``os._exit`` from a ``sitecustomize`` module that only this job's Ray
    workers load, through the job's runtime environment, which ``ray job submit`` hands a
    driver the same way). It must run exactly twice, each time in a new process, and then be
    recorded as failed (summary table, JSON summary, exit 1), while the two other videos, cut
    into chunks and tracked after their merge, equal a local run. Each merge ran in a Ray task,
    not in the driver: the driver logs the process it ran in."""
    address, _ = cluster
    source = assets / "datasets/centered_pair_small.mp4"
    lengths = {"r0.mp4": 5, "r1.mp4": 4}
    clips = [cut_clip(source, tmp_path / name, 200 * k, n)
             for k, (name, n) in enumerate(lengths.items())]
    boom = cut_clip(source, tmp_path / "boom.mp4", 500, 3)
    models = [a for m in TOPDOWN for a in ("-m", str(assets / m))]
    common = [*models, "--tracking", "--device", "cpu", "--batch_size", "2"]
    local, remote = tmp_path / "local", tmp_path / "ray"
    local_json, ray_json = tmp_path / "local.json", tmp_path / "ray.json"
    assert main(["track", *[a for c in clips for a in ("-i", str(c))], *common,
                 "-o", f"{local}/", "--summary_json", str(local_json)]) == 0

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CRASH_HOOK)
    crashes = tmp_path / "crashes.txt"
    worker_env = {"PYTHONPATH": f"{hook}:{REPO}", "SFTEST_CRASH_ON": boom.name,
                  "SFTEST_CRASH_LOG": str(crashes)}
    env = {**ray_env(), "RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps(
        {"runtime_env": {"env_vars": worker_env}})}
    driver = subprocess.Popen(
        [sys.executable, "-m", "sleapflow", "track", "-i", str(clips[0]), "-i", str(boom),
         "-i", str(clips[1]), *common, "-o", f"{remote}/", "--ray", address,
         "--ray_workers", "2", "--ray_chunk_frames", "3", "--max_retries", "1",
         "--summary_json", str(ray_json)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = driver.communicate(timeout=500)
    finally:
        driver.kill()
    assert driver.returncode == 1, err[-3000:]

    # Exactly 1 + max_retries tries, each in a process of its own.
    pids = crashes.read_text().split()
    assert len(pids) == 2 and len(set(pids)) == 2, (pids, err[-3000:])
    assert "2 written, 0 skipped, 1 failed, of 3 input(s)" in out
    summary = json.loads(ray_json.read_text())
    assert (summary["inputs"], summary["written"], summary["failed"]) == (3, 2, 1)
    rows = {Path(v["input"]).name: v for v in summary["videos"]}
    assert rows["boom.mp4"]["status"] == "failed" and rows["boom.mp4"]["summary"] is None
    assert "died on each of 2 tries (--max_retries 1)" in rows["boom.mp4"]["error"]

    # The others: complete, equal to the local run, and so are their summaries.
    local_rows = {Path(v["input"]).name: v for v in json.loads(local_json.read_text())["videos"]}
    for clip in clips:
        name = f"{clip.stem}.predictions.slp"
        n = assert_same_predictions(sio.load_slp(str(remote / name)),
                                    sio.load_slp(str(local / name)))
        assert n > 0
        row, want = rows[clip.name], local_rows[clip.name]
        assert row["status"] == want["status"] == "done"
        assert row["output"] == str(remote / name)
        assert row["frames"] == want["frames"] == lengths[clip.name]
        assert {k: v for k, v in row["summary"].items() if k != "seconds"} == \
            {k: v for k, v in want["summary"].items() if k != "seconds"}
    assert sorted(p.name for p in remote.iterdir()) == sorted(f"{c.stem}.predictions.slp"
                                                              for c in clips)

    # Both chunked videos were merged (and tracked) in a Ray task: another process than the
    # driver, on the cluster's node.
    merged = re.findall(r"chunks merged in a ray task .*", err)
    assert len(merged) == 2, err[-3000:]
    for line in merged:
        fields = dict(re.findall(r"(\w+)=(\S+)", line))
        assert int(fields["pid"]) != driver.pid and fields["chunks"] == "2"
        assert re.fullmatch(r"[0-9a-f]{56}", fields["node"]) and fields["worker"]


def test_summary_json_of_a_one_video_run(assets: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    clip = cut_clip(assets / "datasets/centered_pair_small.mp4", tmp_path / "one.mp4", 0, 3)
    path = tmp_path / "summary.json"
    path.write_text("an older summary")
    out = tmp_path / "one.slp"
    assert main(["track", "-i", str(clip), *[a for m in TOPDOWN for a in ("-m", str(assets / m))],
                 "--device", "cpu", "-o", str(out), "--summary_json", str(path)]) == 0
    record = json.loads(path.read_text())
    assert (record["inputs"], record["written"], record["failed"]) == (1, 1, 0)
    [row] = record["videos"]
    labels = sio.load_slp(str(out))
    assert row["input"] == str(clip) and row["output"] == str(out) and row["status"] == "done"
    assert row["frames"] == row["summary"]["frames"] == len(labels.labeled_frames) == 3
    assert row["summary"]["instances"] == sum(len(lf.instances) for lf in labels.labeled_frames)
    line = capsys.readouterr().out
    assert f"{row['summary']['instances']} instances" in line
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_ray_plans_inputs_as_a_local_many_input_run(assets: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The local planner's checks, before any cluster is reached (the address is a closed
    port): two inputs that would write one output are refused; a labels file and a missing
    video are recorded as failed, with the local run's reasons."""
    models = [a for m in TOPDOWN for a in ("-m", str(assets / m))]
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.mp4").write_bytes(b"")
    argv = ["track", *models, "--device", "cpu", "-o", f"{tmp_path / 'out'}/", "--ray",
            "127.0.0.1:9"]
    assert main([*argv, "-i", str(tmp_path / "a/same.mp4"), "-i", str(tmp_path / "b/same.mp4")]) == 2
    assert "would both write" in capsys.readouterr().err
    labels = assets / "datasets/minimal_instance.pkg.slp"
    assert main([*argv, "-i", str(labels), "-i", str(tmp_path / "missing.mp4")]) == 1
    out = capsys.readouterr().out
    assert "0 written, 0 skipped, 2 failed, of 2 input(s)" in out
    assert "is not a video file; many-input and --ray runs take video files" in out
    assert not (tmp_path / "out").exists()
