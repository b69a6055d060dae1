"""Helpers for the many-input, shard and Ray tests: clips cut from a reference video, and a
comparison of two prediction files frame by frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sleap_io as sio

TOPDOWN = ("model_ckpts/minimal_instance_centroid", "model_ckpts/minimal_instance_centered_instance")


def cut_clip(source: Path, dest: Path, start: int, n_frames: int) -> Path:
    """Re-encode ``n_frames`` frames of ``source`` from ``start`` into a new video file."""
    import av

    frames = []
    with av.open(str(source)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= start:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == n_frames:
                break
    height, width, _ = frames[0].shape
    with av.open(str(dest), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qscale": "2"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return dest


def frame_table(labels: sio.Labels) -> dict[int, list[tuple[np.ndarray, float, str | None]]]:
    """frame index → its instances as (points, score, track name), sorted by position."""
    out: dict[int, list[tuple[np.ndarray, float, str | None]]] = {}
    for lf in labels.labeled_frames:
        rows = [(inst.numpy(), float(getattr(inst, "score", 1.0)),
                 inst.track.name if inst.track is not None else None) for inst in lf.instances]
        rows.sort(key=lambda r: tuple(np.nan_to_num(r[0], nan=-1.0).ravel().tolist()))
        out[lf.frame_idx] = rows
    return out


def assert_same_predictions(a: sio.Labels, b: sio.Labels, *, atol: float = 1e-4) -> int:
    """Same frames, same instances (points, scores within ``atol``), same track names.
    Returns the number of instances compared."""
    ta, tb = frame_table(a), frame_table(b)
    assert sorted(ta) == sorted(tb)
    n = 0
    for f in ta:
        assert len(ta[f]) == len(tb[f]), f"frame {f}"
        for (pa, sa, na), (pb, sb, nb) in zip(ta[f], tb[f]):
            np.testing.assert_allclose(pa, pb, atol=atol, equal_nan=True)
            assert abs(sa - sb) <= atol and na == nb, f"frame {f}"
            n += 1
    assert len(a.tracks) == len(b.tracks)
    assert [Path(v.filename).name for v in a.videos] == [Path(v.filename).name for v in b.videos]
    return n
