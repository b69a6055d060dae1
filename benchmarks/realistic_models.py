"""Build the realistic benchmark models: 1024x1024 synthetic data, ~2 M-parameter UNets trained by sleap-nn.

Run from the repository root with sleapflow's venv, pointing ``--sleap-nn`` at a sleap-nn 0.3.5
executable in its own venv (see /work/shared/docs/PEER.md; sleap-nn is never a sleapflow
dependency)::

    python benchmarks/realistic_models.py --sleap-nn $HOME/sleapnn-peer/bin/sleap-nn \
        --out /work/models-realistic

It writes, under ``--out``:

- ``data/train.slp`` (+ ``.h5``), ``data/val.slp`` (+ ``.h5``): random poses of two animals per
  1024x1024 frame over several backgrounds, training and validation sets;
- ``data/heldout.mp4`` + ``data/heldout_gt.slp``: independent random poses (another seed), for
  accuracy (OKS mAP against the exact ground truth);
- ``data/walk.mp4`` + ``data/walk_gt.slp``: two animals walking for 500 frames, for speed
  (H.264 at a lab camera's bitrate, see ``WALK_CRF``);
- ``models/{centroid,centered_instance,bottomup}/``: sleap-nn's checkpoint folders;
- ``configs/*.yaml``: the training configs that made them.

The animals are sleapflow's demo animal (``sleapflow.demo.synth``) at its native size (about
130 px across), so the top-down crop is 160x160 at full resolution, the centroid model sees the
frame at scale 0.25 (256x256) and the bottom-up model at scale 0.5 (512x512).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import sleap_io as sio
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sleapflow.demo import synth

SIZE = 1024
N_ANIMALS = 2
TRAIN_SEED, VAL_SEED, HELDOUT_SEED, WALK_SEED = 11, 12, 13, 14
N_TRAIN, N_VAL, N_HELDOUT, N_WALK = 320, 32, 100, 500
#: The animal reaches about 65 px from its centre; this keeps tips and tail inside the frame.
MARGIN = 70.0
#: Closest two animals' centres may be in a generated frame: touching, rarely overlapping.
MIN_GAP = 150.0
MODELS = ("centroid", "centered_instance", "bottomup")
#: The held-out clip is near-lossless (accuracy is scored on it); the speed clip has a lab
#: camera's bitrate (about 11 Mbit/s at 30 frames/s): near-lossless H.264 of the sensor noise
#: runs at ~100 Mbit/s and its decoding alone would cost half the network's time.
HELDOUT_CRF, WALK_CRF = 12, 23


def background(seed: int) -> np.ndarray:
    """A smooth ground texture at 1024x1024 (coarse and fine noise plus pebbles), uint8 RGB."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(rng.random((24, 24, 3)).astype(np.float32), (SIZE, SIZE),
                        interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.random((SIZE, SIZE, 3)).astype(np.float32), (0, 0), 2.0)
    img = (70 + 50 * coarse + 40 * fine) * np.array([0.8, 1.0, 0.7], dtype=np.float32)
    for _ in range(700):
        x, y = rng.integers(0, SIZE, 2)
        shade = tuple(float(v) for v in rng.integers(40, 140, 3))
        cv2.circle(img, (int(x), int(y)), int(rng.integers(2, 8)), shade, -1, lineType=cv2.LINE_AA)
    return np.clip(img, 0, 255).astype(np.uint8)


def render(bg: np.ndarray, animals: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every animal in ``animals`` (``(n, 6, 2)``) drawn over ``bg``."""
    img = bg
    for pts in animals:
        img = synth.draw(img, pts, rng)
    return img


def random_poses(n_frames: int, seed: int) -> synth.Clip:
    """Independent frames of ``N_ANIMALS`` animals in random places, headings and poses."""
    rng = np.random.default_rng(seed)
    bgs = [background(seed * 100 + k) for k in range(6)]
    frames, points = [], []
    for i in range(n_frames):
        centres: list[np.ndarray] = []
        while len(centres) < N_ANIMALS:
            c = rng.uniform(MARGIN, SIZE - MARGIN, 2)
            if all(np.linalg.norm(c - o) >= MIN_GAP for o in centres):
                centres.append(c)
        animals = np.stack([
            synth.pose(c, float(rng.uniform(-np.pi, np.pi)),
                       np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.8, 0.8)]),
                       rng.uniform(0.05, 0.85, 2))
            for c in centres])
        frames.append(render(bgs[i % len(bgs)], animals, rng))
        points.append(animals)
    return synth.Clip(np.stack(frames), np.stack(points))


def walk(n_frames: int, seed: int) -> synth.Clip:
    """Each animal walks a Lissajous loop in its own half of the frame, facing where it goes, so
    the two never meet (identity is not what this video measures)."""
    rng = np.random.default_rng(seed)
    bg = background(seed)
    t = np.arange(n_frames, dtype=np.float64)
    tracks = []
    for k in range(N_ANIMALS):
        w1, w2 = 2 * np.pi / (90.0 + 17 * k), 2 * np.pi / (140.0 - 11 * k)
        p1, p2 = rng.uniform(0, 2 * np.pi, 2)
        half = SIZE / N_ANIMALS
        ax, ay = half / 2 - MARGIN, SIZE / 2 - MARGIN
        cx = half * (k + 0.5) + ax * np.sin(w1 * t + p1)
        cy = SIZE / 2 + ay * np.sin(w2 * t + p2)
        heading = np.arctan2(ay * w2 * np.cos(w2 * t + p2), ax * w1 * np.cos(w1 * t + p1))
        tracks.append((cx, cy, heading))
    frames, points = [], []
    for i in range(n_frames):
        animals = []
        for k, (cx, cy, heading) in enumerate(tracks):
            bends = np.array([0.35 * np.sin(0.21 * i + k), 0.6 * np.sin(0.33 * i + 1.0 + k)])
            sweeps = np.array([0.45 + 0.3 * np.sin(0.27 * i + k), 0.45 + 0.3 * np.sin(0.27 * i + 2.0 + k)])
            animals.append(synth.pose(np.array([cx[i], cy[i]]), float(heading[i]), bends, sweeps))
        animals_arr = np.stack(animals)
        frames.append(render(bg, animals_arr, rng))
        points.append(animals_arr)
    return synth.Clip(np.stack(frames), np.stack(points))


def _labels(clip: synth.Clip, video: sio.Video) -> sio.Labels:
    skel = synth.skeleton()
    frames = [sio.LabeledFrame(video=video, frame_idx=i,
                               instances=[sio.Instance.from_numpy(p, skeleton=skel) for p in clip.points[i]])
              for i in range(len(clip.points))]
    return sio.Labels(labeled_frames=frames, videos=[video], skeletons=[skel])


def write_h5_set(clip: synth.Clip, path: Path) -> None:
    """Frames in an HDF5 video (cheap random access for training) and their labels in ``path``."""
    h5 = path.with_suffix(".h5")
    with h5py.File(h5, "w") as f:
        f.create_dataset("video", data=clip.frames, chunks=(1, SIZE, SIZE, 3), compression="gzip",
                         compression_opts=1)
    video = sio.Video.from_filename(h5.as_posix(), dataset="video", input_format="channels_last")
    sio.save_slp(_labels(clip, video), path.as_posix(), verbose=False)


def write_video_set(clip: synth.Clip, video_path: Path, labels_path: Path, *, crf: int) -> None:
    """The clip as H.264 at ``crf`` and its ground truth as user instances."""
    sio.save_video(clip.frames, video_path.as_posix(), fps=30.0, crf=crf, pixelformat="yuv420p")
    video = sio.load_video(video_path.as_posix())
    sio.save_slp(_labels(clip, video), labels_path.as_posix(), verbose=False)


def make_data(data: Path, only: tuple[str, ...] = ("train", "val", "heldout", "walk")) -> None:
    data.mkdir(parents=True, exist_ok=True)
    jobs = [("train", lambda: write_h5_set(random_poses(N_TRAIN, TRAIN_SEED), data / "train.slp")),
            ("val", lambda: write_h5_set(random_poses(N_VAL, VAL_SEED), data / "val.slp")),
            ("heldout", lambda: write_video_set(random_poses(N_HELDOUT, HELDOUT_SEED),
                                                data / "heldout.mp4", data / "heldout_gt.slp",
                                                crf=HELDOUT_CRF)),
            ("walk", lambda: write_video_set(walk(N_WALK, WALK_SEED), data / "walk.mp4",
                                             data / "walk_gt.slp", crf=WALK_CRF))]
    for name, job in (j for j in jobs if j[0] in only):
        t0 = time.perf_counter()
        job()
        print(f"data/{name}: {time.perf_counter() - t0:.1f} s", flush=True)


#: ~2 M parameters: 16 filters doubling over four down blocks (max stride 16), then a
#: 256-filter middle block; decoder up to output stride 2.
UNET = {"in_channels": 3, "kernel_size": 3, "filters": 16, "filters_rate": 2.0, "max_stride": 16,
        "middle_block": True, "up_interpolate": True, "stacks": 1, "convs_per_block": 2,
        "output_stride": 2}

#: Per model: input scale, crop size, batch size, epochs and the head config. Epochs and steps
#: keep training to tens of minutes on a shared 2-core CPU; the accuracy only needs to be
#: sensible (held-out OKS mAP well above 0), the size is what the benchmarks are about.
PLANS: dict[str, dict] = {
    "centroid": {"scale": 0.25, "crop": None, "batch": 4, "epochs": 12, "steps": 40,
                 "head": {"centroid": {"confmaps": {"anchor_part": "thorax", "sigma": 2.5,
                                                    "output_stride": 2}}}},
    "centered_instance": {"scale": 1.0, "crop": 160, "batch": 16, "epochs": 12, "steps": 40,
                          "head": {"centered_instance": {"confmaps": {
                              "part_names": list(synth.NODES), "anchor_part": "thorax", "sigma": 2.5,
                              "output_stride": 2}}}},
    "bottomup": {"scale": 0.5, "crop": None, "batch": 2, "epochs": 12, "steps": 40,
                 "head": {"bottomup": {
                     "confmaps": {"part_names": list(synth.NODES), "sigma": 2.5, "output_stride": 2},
                     "pafs": {"edges": [list(e) for e in synth.EDGES], "sigma": 15.0,
                              "output_stride": 4}}}},
}


def config(name: str, data: Path, ckpt_dir: Path) -> dict:
    """A sleap-nn 0.3.5 training config for one of ``MODELS`` (no augmentation: the generator
    already varies position, heading, pose and background)."""
    plan = PLANS[name]
    return {
        "data_config": {
            "train_labels_path": [(data / "train.slp").as_posix()],
            "val_labels_path": [(data / "val.slp").as_posix()],
            "provider": "LabelsReader", "user_instances_only": True,
            "data_pipeline_fw": "torch_dataset_cache_img_memory",
            "preprocessing": {"ensure_rgb": True, "ensure_grayscale": False, "max_height": None,
                              "max_width": None, "scale": plan["scale"], "crop_size": plan["crop"]},
            "use_augmentations_train": False,
            "skeletons": None,
        },
        "model_config": {"init_weights": "default", "backbone_config": {"unet": dict(UNET)},
                         "head_configs": plan["head"]},
        "trainer_config": {
            "train_data_loader": {"batch_size": plan["batch"], "shuffle": True, "num_workers": 0},
            "val_data_loader": {"batch_size": plan["batch"], "shuffle": False, "num_workers": 0},
            "model_ckpt": {"save_top_k": 1, "save_last": False},
            "trainer_accelerator": "cpu", "trainer_devices": 1,
            "enable_progress_bar": False, "min_train_steps_per_epoch": plan["steps"],
            "train_steps_per_epoch": plan["steps"], "visualize_preds_during_training": False,
            "max_epochs": plan["epochs"], "seed": 0, "use_wandb": False, "save_ckpt": True,
            "ckpt_dir": ckpt_dir.as_posix(), "run_name": name,
            "optimizer_name": "Adam", "optimizer": {"lr": 0.001, "amsgrad": False},
            "lr_scheduler": {"reduce_lr_on_plateau": {
                "threshold": 1e-6, "threshold_mode": "abs", "cooldown": 1, "patience": 2,
                "factor": 0.5, "min_lr": 1e-6}},
            "early_stopping": {"min_delta": 1e-7, "patience": 5, "stop_training_on_plateau": True},
        },
    }


def train(names: list[str], out: Path, sleap_nn: str, threads: int,
          max_minutes: float | None = None) -> None:
    """Train the models at once, one process each with ``threads`` threads (parallel processes
    use a small shared CPU better than one wide process at a time).

    With ``max_minutes``, training still running then is killed: the folder keeps the best
    checkpoint of the epochs it finished (written at each epoch's end) and its training config.
    Killing, not interrupting, because an interrupted ``sleap-nn train`` goes on to predict the
    whole training set for its own evaluation, which takes longer than the training here.
    """
    configs = out / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    procs = []
    for name in names:
        cfg = configs / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump(config(name, out / "data", out / "models")))
        log = open(out / "configs" / f"{name}.log", "w")  # noqa: SIM115 - kept open for the child
        procs.append((name, log, subprocess.Popen([sleap_nn, "train", "--config", cfg.as_posix()],
                                                  cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT)))
    deadline = None if max_minutes is None else time.monotonic() + 60 * max_minutes
    failed = []
    for name, log, proc in procs:
        try:
            proc.wait(None if deadline is None else max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{name}: past --max-minutes, stopping (keeps its best checkpoint)", flush=True)
            proc.kill()
            proc.wait()
        if not (out / "models" / name / "best.ckpt").is_file():
            failed.append(name)
        log.close()
    if failed:
        raise SystemExit(f"no checkpoint for {', '.join(failed)} (see {configs}/<model>.log)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sleap-nn", default="sleap-nn", help="the sleap-nn 0.3.5 executable")
    parser.add_argument("--out", default="/work/models-realistic", type=Path)
    parser.add_argument("--step", choices=("all", "data", "walk", "train"), default="all",
                        help="walk: only the speed clip")
    parser.add_argument("--models", default=",".join(MODELS),
                        help="comma-separated subset of " + ", ".join(MODELS))
    parser.add_argument("--threads", type=int, default=1, help="threads per training process")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop training still running after this many minutes (wall clock)")
    args = parser.parse_args()
    out = args.out.resolve()
    if args.step in ("all", "data"):
        make_data(out / "data")
    if args.step == "walk":
        make_data(out / "data", only=("walk",))
    if args.step in ("all", "train"):
        names = [n for n in args.models.split(",") if n]
        unknown = set(names) - set(MODELS)
        if unknown:
            parser.error(f"unknown model(s): {', '.join(sorted(unknown))}")
        train(names, out, args.sleap_nn, args.threads, args.max_minutes)


if __name__ == "__main__":
    main()
