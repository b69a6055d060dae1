"""Builders for the input tests: videos with known frames, HDF5 videos, image folders, labels."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import sleap_io as sio

SINGLE_INSTANCE = "model_ckpts/minimal_instance_single_instance"


def frame_pattern(i: int, height: int = 48, width: int = 64, *, color: bool = True) -> np.ndarray:
    """A frame that differs from every other index: a moving column, a row and a tint."""
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 0] = (i * 7) % 256
    img[..., 2] = 50 + (i * 13) % 200  # blue differs from red: sleap-io tests R == B for gray
    img[:, i % width] = 255
    img[(i // width) % height, :, 1] = 255
    if not color:
        img[..., 1] = img[..., 0]
        img[..., 2] = img[..., 0]
    return img


def write_video(path: Path, n: int, *, codec: str = "libx264", fps: int | Fraction = 25,
                gop: int = 12, b_frames: int = 2, pts_offset: int = 0, color: bool = True,
                pix_fmt: str = "yuv420p") -> Path:
    """Encode ``frame_pattern`` frames with PyAV (B-frames and a short GOP make seeks matter)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, pix_fmt
        stream.codec_context.gop_size = gop
        if b_frames:
            stream.codec_context.max_b_frames = b_frames
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "bf": str(b_frames), "keyint": str(gop)}
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frame_pattern(i, color=color), format="rgb24")
            if pts_offset:
                # A stream that does not start at timestamp zero (edited or cut recordings).
                frame.pts = i + pts_offset
                frame.time_base = Fraction(1, int(fps))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode_all(path: Path) -> list[np.ndarray]:
    """Every frame in decode order, the ground truth for random access."""
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


def skeleton() -> sio.Skeleton:
    return sio.Skeleton(nodes=["A", "B"], edges=[("A", "B")], name="sk")


def user_instance(sk: sio.Skeleton, x: float) -> sio.Instance:
    return sio.Instance.from_numpy(np.array([[x, 10.0], [x + 5, 20.0]]), skeleton=sk)


def predicted_instance(sk: sio.Skeleton, x: float) -> sio.PredictedInstance:
    return sio.PredictedInstance.from_numpy(np.array([[x, 12.0], [x + 5, 22.0]]), skeleton=sk,
                                            point_scores=np.array([0.9, 0.8]), score=0.85)


def two_video_labels(tmp: Path) -> tuple[Path, dict[str, list[tuple[int, int]]]]:
    """A .slp over two synthetic videos with user, predicted, mixed, empty and suggested frames.

    Returns the path and, per kind, the (video, frame) pairs in file order.
    """
    from sleapflow.testing import write_synthetic_video

    v0 = sio.load_video(str(write_synthetic_video(tmp / "cam0.mp4", n_frames=20, seed=1)))
    v1 = sio.load_video(str(write_synthetic_video(tmp / "cam1.mp4", n_frames=15, seed=2)))
    sk = skeleton()
    frames = [
        sio.LabeledFrame(video=v0, frame_idx=2, instances=[user_instance(sk, 10)]),            # user
        sio.LabeledFrame(video=v0, frame_idx=5, instances=[predicted_instance(sk, 20)]),       # pred
        sio.LabeledFrame(video=v1, frame_idx=1, instances=[user_instance(sk, 30),
                                                           predicted_instance(sk, 40)]),       # both
        sio.LabeledFrame(video=v0, frame_idx=9, instances=[predicted_instance(sk, 25)]),       # pred
        sio.LabeledFrame(video=v1, frame_idx=7, instances=[user_instance(sk, 35)]),            # user
        sio.LabeledFrame(video=v1, frame_idx=12, instances=[]),                                # empty
    ]
    suggestions = [sio.SuggestionFrame(video=v0, frame_idx=2),   # already user-labeled: dropped
                   sio.SuggestionFrame(video=v0, frame_idx=14),
                   sio.SuggestionFrame(video=v1, frame_idx=3),
                   sio.SuggestionFrame(video=v0, frame_idx=5)]   # only predicted: kept
    labels = sio.Labels(labeled_frames=frames, videos=[v0, v1], skeletons=[sk],
                        suggestions=suggestions)
    path = tmp / "two_videos.slp"
    sio.save_slp(labels, str(path), verbose=False)
    expected = {
        "all": [(0, 2), (0, 5), (1, 1), (0, 9), (1, 7), (1, 12)],
        "labeled": [(0, 2), (1, 1), (1, 7)],
        "suggested": [(0, 14), (1, 3), (0, 5)],
        "exclude_user_labeled": [(0, 5), (0, 9), (1, 12)],
        "predicted": [(0, 5), (1, 1), (0, 9)],
    }
    return path, expected
