"""Train the demo's embedded single-instance model with sleap-nn on the synthetic generator's data.

Run from the repository root with any Python that has sleapflow's dependencies, pointing
``--sleap-nn`` at a sleap-nn 0.3.5 ``sleap-nn`` executable (its own venv; sleap-nn is never a
sleapflow dependency)::

    python tools/train_demo_model.py --sleap-nn $HOME/sleapnn-peer/bin/sleap-nn

(40 epochs by default: about 20 minutes of training on a shared 2-core CPU; sleapflow/demo/README.md
records the run and its scores.)

The training data (random poses over several backgrounds) never includes the demo clip, which is
the generator's ``walk`` with its own seed; the checkpoint folder sleap-nn writes is copied
unchanged (``best.ckpt`` + ``training_config.yaml``) into ``sleapflow/demo/model``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import sleap_io as sio
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sleapflow.demo import synth

TRAIN_SEED, VAL_SEED = 1, 2
N_TRAIN, N_VAL = 640, 48


def write_training_set(clip: synth.Clip, path: Path) -> Path:
    """Frames in an HDF5 video (cheap random access, unlike a seek per sample in an mp4) and
    their keypoints as user instances in ``path``."""
    h5 = path.with_suffix(".h5")
    with h5py.File(h5, "w") as f:
        f.create_dataset("video", data=clip.frames, compression="gzip", compression_opts=1)
    video = sio.Video.from_filename(h5.as_posix(), dataset="video", input_format="channels_last")
    skel = synth.skeleton()
    frames = [sio.LabeledFrame(video=video, frame_idx=i,
                               instances=[sio.Instance.from_numpy(clip.points[i], skeleton=skel)])
              for i in range(len(clip.points))]
    sio.save_slp(sio.Labels(labeled_frames=frames, videos=[video], skeletons=[skel]), path.as_posix(),
                 verbose=False)
    return path


def config(train: Path, val: Path, ckpt_dir: Path, *, epochs: int) -> dict:
    """A sleap-nn 0.3.5 training config: a small UNet, single-instance head, no augmentation
    (the generator already varies position, heading and pose)."""
    return {
        "data_config": {
            "train_labels_path": [train.as_posix()], "val_labels_path": [val.as_posix()],
            "provider": "LabelsReader", "user_instances_only": True,
            "data_pipeline_fw": "torch_dataset_cache_img_memory",
            "preprocessing": {"ensure_rgb": True, "ensure_grayscale": False, "max_height": None,
                              "max_width": None, "scale": 0.5, "crop_size": None},
            "use_augmentations_train": False,
            "skeletons": None,
        },
        "model_config": {
            "init_weights": "default",
            "backbone_config": {"unet": {
                "in_channels": 3, "kernel_size": 3, "filters": 8, "filters_rate": 1.5,
                "max_stride": 8, "middle_block": True, "up_interpolate": True, "stacks": 1,
                "convs_per_block": 2, "output_stride": 2}},
            "head_configs": {"single_instance": {"confmaps": {
                "part_names": list(synth.NODES), "sigma": 2.5, "output_stride": 2}}},
        },
        "trainer_config": {
            "train_data_loader": {"batch_size": 8, "shuffle": True, "num_workers": 0},
            "val_data_loader": {"batch_size": 8, "shuffle": False, "num_workers": 0},
            "model_ckpt": {"save_top_k": 1, "save_last": False},
            "trainer_accelerator": "cpu", "trainer_devices": 1,
            "enable_progress_bar": False, "min_train_steps_per_epoch": 40,
            "train_steps_per_epoch": 40, "visualize_preds_during_training": False,
            "max_epochs": epochs, "seed": 0, "use_wandb": False, "save_ckpt": True,
            "ckpt_dir": ckpt_dir.as_posix(), "run_name": "demo_single_instance",
            "optimizer_name": "Adam", "optimizer": {"lr": 0.002, "amsgrad": False},
            "lr_scheduler": {"reduce_lr_on_plateau": {
                "threshold": 1e-6, "threshold_mode": "abs", "cooldown": 2, "patience": 2,
                "factor": 0.5, "min_lr": 1e-6}},
            "early_stopping": {"min_delta": 1e-7, "patience": 6, "stop_training_on_plateau": True},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sleap-nn", default="sleap-nn", help="the sleap-nn executable")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", default="sleapflow/demo/model", help="where the model folder goes")
    parser.add_argument("--work", default=None, help="keep the training folder here")
    args = parser.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="sleapflow-demo-train-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    train = work / "train.slp"
    val = work / "val.slp"
    write_training_set(synth.random_poses(N_TRAIN, TRAIN_SEED), train)
    write_training_set(synth.random_poses(N_VAL, VAL_SEED), val)
    cfg_path = work / "demo_config.yaml"
    cfg_path.write_text(yaml.safe_dump(config(train, val, work / "runs", epochs=args.epochs)))
    subprocess.run([args.sleap_nn, "train", "--config", cfg_path.as_posix()], check=True, cwd=work)

    run_dir = work / "runs" / "demo_single_instance"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("best.ckpt", "training_config.yaml"):
        shutil.copy2(run_dir / name, out / name)
    print(f"model copied to {out} (training folder: {work})")


if __name__ == "__main__":
    main()
