"""Expected vectors of the test embedding model, computed once with the reference (sleap-nn).

Run from the repository root (the vectors are computed by the reference's own Python,
``--peer-python``, in a child process: sleap-nn is no dependency of sleapflow)::

    python benchmarks/embedding_asset.py \\
        --model tests/assets/embedding_model \\
        --video ../shared/assets/datasets/centered_pair_small.mp4 \\
        --labels /tmp/embed_train/tracked.slp \\
        --out tests/assets/embedding_model/expected_vectors.npz

It cuts fixed ``crop_size`` crops (integer windows of the grey frame, centred on each tracked
instance's mean visible node) from a few frames, adds two synthetic crops (noise, a flat crop),
and runs them through sleap-nn's own embedding layer (``Predictor.from_model_paths(...).layer``,
which standardises each crop and applies the network exactly as sleap-nn's inference does). The
``.npz`` keeps the uint8 crops, the vectors and the frame/instance each crop came from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def _crops(video: str, labels_path: str, size: int, frames: list[int]) -> tuple[np.ndarray, np.ndarray]:
    import sleap_io as sio

    labels = sio.load_slp(labels_path)
    reader = sio.load_video(video)
    crops, where = [], []
    for lf in labels.labeled_frames:
        if lf.frame_idx not in frames:
            continue
        img = np.asarray(reader[lf.frame_idx])
        grey = img[..., 0] if img.shape[-1] == 1 else img.mean(axis=-1).astype(np.uint8)
        padded = np.pad(grey, size)
        for k, inst in enumerate(lf.instances):
            pts = inst.numpy()
            center = np.nanmean(pts, axis=0)
            x0 = int(np.trunc(center[0] - size / 2 + 0.5 + size // 2)) - size // 2
            y0 = int(np.trunc(center[1] - size / 2 + 0.5 + size // 2)) - size // 2
            crops.append(padded[y0 + size:y0 + 2 * size, x0 + size:x0 + 2 * size])
            where.append((lf.frame_idx, k))
    rng = np.random.default_rng(27)
    crops.append(rng.integers(0, 256, (size, size), dtype=np.uint8))
    crops.append(np.full((size, size), 90, dtype=np.uint8))
    where += [(-1, 0), (-1, 1)]
    return np.stack(crops)[:, None], np.asarray(where, dtype=np.int64)


# Runs in the reference's interpreter: sleap-nn's own embedding layer on the saved crops.
_REFERENCE_STEP = """
import sys, numpy as np, torch, sleap_nn
from sleap_nn.inference.predictor import Predictor
crops = np.load(sys.argv[2])
layer = Predictor.from_model_paths([sys.argv[1]], device="cpu").layer
with torch.inference_mode():
    out = layer.predict(torch.from_numpy(crops).float())
np.save(sys.argv[3], out.pred_embeddings.squeeze(1).cpu().numpy().astype(np.float32))
print(sleap_nn.__version__)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--video", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--frames", default="0,37,74,111")
    parser.add_argument("--peer-python", default=str(Path.home() / "sleapnn-peer/bin/python"))
    args = parser.parse_args()

    import subprocess
    import tempfile

    import yaml

    cfg = yaml.safe_load(Path(args.model, "training_config.yaml").read_text())
    size = int(cfg["data_config"]["preprocessing"]["crop_size"])
    crops, where = _crops(args.video, args.labels, size, [int(f) for f in args.frames.split(",")])
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp, "crops.npy"), crops)
        done = subprocess.run([args.peer_python, "-c", _REFERENCE_STEP, args.model,
                               str(Path(tmp, "crops.npy")), str(Path(tmp, "vectors.npy"))],
                              check=True, capture_output=True, text=True)
        vectors = np.load(Path(tmp, "vectors.npy"))
    version = done.stdout.strip().splitlines()[-1]
    np.savez_compressed(args.out, crops=crops, vectors=vectors, where=where,
                        sleap_nn_version=np.asarray(version))
    print(f"{len(crops)} crops, vectors {vectors.shape} (sleap-nn {version}) -> {args.out}")


if __name__ == "__main__":
    main()
