"""``sleapflow demo``: the real ``track`` job on a generated clip with the embedded model, then a
rendered overlay, a PNG and the score against the clip's exact ground truth."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from sleapflow.demo import synth

__all__ = (
    "CLIP_FRAMES", "CLIP_SEED", "MODEL_DIR", "PICTURE_FRAME", "DemoResult", "run_demo", "write_demo_clip",
)


#: The embedded model: a sleap-nn checkpoint folder trained by ``tools/train_demo_model.py``.
MODEL_DIR = Path(__file__).resolve().parent / "model"
#: The demo clip: the generator's walk with this seed (never seen in training) and length.
CLIP_SEED = 0
CLIP_FRAMES = 60
#: The frame drawn as the PNG picture.
PICTURE_FRAME = 20


@dataclass(frozen=True)
class DemoResult:
    """Where the demo put things, and how well it did."""

    clip: Path
    ground_truth: Path
    predictions: Path
    video: Path
    picture: Path
    map_oks: float
    mean_oks: float


def write_demo_clip(out_dir: str | Path, *, n_frames: int = CLIP_FRAMES) -> tuple[Path, Path]:
    """Generate the demo clip and its ground truth into ``out_dir``: (video, labels)."""
    out = Path(out_dir)
    clip = out / "demo_clip.mp4"
    truth = out / "demo_clip.ground_truth.slp"
    synth.write_clip(synth.walk(n_frames, seed=CLIP_SEED), clip, truth)
    return clip, truth


def run_demo(out_dir: str | Path = "sleapflow-demo", *, device: str = "auto",
             n_frames: int = CLIP_FRAMES, quiet: bool = False) -> DemoResult:
    """Generate the clip, predict on it with the embedded model through ``track``, render the
    overlay (mp4 + PNG), score the predictions and say what to open."""
    from sleapflow.evaluation import run_evaluation
    from sleapflow.jobs.job import plan_job, run_job_with_progress
    from sleapflow.options.boundary import build_config
    from sleapflow.outputs.render import render

    out = Path(out_dir).resolve()
    clip, truth = write_demo_clip(out, n_frames=n_frames)
    predictions = out / "demo_clip.predictions.slp"
    cfg = build_config(data_path=str(clip), model_paths=(str(MODEL_DIR),), device=device)
    run_job_with_progress(plan_job(cfg, output=str(predictions), render=True, journal=True,
                                   announce=not quiet))
    video = predictions.with_suffix(".mp4")
    picture = render(predictions, predictions.with_suffix(".png"),
                     frames=[min(PICTURE_FRAME, n_frames - 1)], scale=2.0, marker_size=3.0)
    metrics = run_evaluation(str(truth), str(predictions))
    map_oks = float(metrics["voc_metrics"]["oks_voc.mAP"]) if metrics else 0.0
    mean_oks = float(metrics["mOKS"]["mOKS"]) if metrics else 0.0
    result = DemoResult(clip=clip, ground_truth=truth, predictions=predictions, video=video,
                        picture=picture, map_oks=map_oks, mean_oks=mean_oks)
    if not quiet:
        print(_report(result), file=sys.stdout)
    return result


def _report(r: DemoResult) -> str:
    return "\n".join([
        "",
        "sleapflow demo: predicted a generated clip with the embedded single-instance model.",
        f"  clip          {r.clip}",
        f"  ground truth  {r.ground_truth}",
        f"  predictions   {r.predictions}   (SLEAP opens it: sleap-label <this file>)",
        f"  overlay video {r.video}   <- watch this",
        f"  picture       {r.picture}",
        f"  score         OKS mAP {r.map_oks:.3f}, mean OKS {r.mean_oks:.3f} against the clip's "
        "exact keypoints",
        "",
        "Next: your own video with your own model (trained in SLEAP or with sleap-nn):",
        "  sleapflow track -i my_video.mp4 -m path/to/model_folder --render",
    ])
