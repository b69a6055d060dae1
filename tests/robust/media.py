"""Generated clips for the fault tests: intra-only video, corrupt packets, truncated files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    """What a run must never leave behind: temporary files, locks, journals."""
    return sorted(p.name for p in folder.iterdir()
                  if ".tmp" in p.name or p.name.endswith((".lock", ".journal")))


def error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("Error:")]


def write_intra_clip(path: Path, n: int, *, height: int = 64, width: int = 96) -> Path:
    """Every frame a keyframe (MPEG-4 part 2, GOP 1), a bright block moving across a dark field."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = 1
        for i in range(n):
            img = np.full((height, width, 3), 20, np.uint8)
            x = i % (width - 20)
            img[10:40, x:x + 20] = 200
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def corrupt_packets(path: Path, which: list[int], seed: int = 0) -> None:
    """Overwrite the payload of the given packets (decode order) with random bytes."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [(p.pos, p.size) for p in container.demux(stream) if p.size]
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    for i in which:
        pos, size = packets[i]
        data[pos:pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def truncate(path: Path, out: Path, fraction: float) -> Path:
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def wait_for_journaled_frame(journal: Path, timeout: float = 120.0) -> None:
    """Until ``journal`` holds a frame record: a signal sent before the first frame finds no
    frame to keep (a fresh run's journal is removed then), which is not what these tests ask."""
    import time

    from sleapflow.outputs.journal import read_records

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if journal.exists() and any(rec.get("k") == "f" for rec, _ in read_records(journal)):
            return
        time.sleep(0.05)
    raise AssertionError(f"no frame was journaled in {journal} within {timeout} s")
