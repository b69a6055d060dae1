"""Many inputs in one run: expanding -i/folders/globs/lists, shards, per-video output names, one plan."""

from __future__ import annotations

import errno
import glob
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from sleapflow.errors import ConfigError, SleapflowError, VideoDecodeError
from sleapflow.inputs.live import live_kind
from sleapflow.inputs.media_limits import check_input_path
from sleapflow.inputs.remote import is_url
from sleapflow.inputs.selection import IMAGE_SUFFIXES, VIDEO_SUFFIXES, InputPlan, WorkItem, plan_input
from sleapflow.logs import get_logger
from sleapflow.options.config import InferenceConfig
from sleapflow.outputs.naming import default_output_path
from sleapflow.outputs.remote import remote_join, remote_name
from sleapflow.outputs.slp_read import read_slp
from sleapflow.outputs.summary import RunSummary

__all__ = (
    "ManyPlan", "VideoTask", "expand_inputs", "output_for", "output_is_complete", "output_is_folder",
    "parse_shard", "plan_many", "read_input_list", "shard_frames_plan", "shard_output_path", "shard_slice",
    "single_config",
)


log = get_logger(__name__)


# --------------------------------------------------------------------------------------------
# Expanding what the user typed into a list of videos
# --------------------------------------------------------------------------------------------


def _videos_in(folder: Path) -> list[str]:
    return sorted(p.as_posix() for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir() if p.is_file())


def read_input_list(path: str) -> list[str]:
    """One path per line; blank lines and ``#`` comments skipped; paths as written (cwd-relative)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"--input_list {path!r} cannot be read: {exc.strerror or exc}") from exc
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def expand_inputs(paths: Sequence[str], input_list: str | None = None) -> tuple[list[str], bool]:
    """The inputs in order, and whether they make a many-input run.

    A folder of videos and a glob matching videos expand to their videos, sorted by name; a
    folder of images or an image glob stays one input (an image sequence, as before), as does
    a single file. Missing files are kept: the run reports them as failed and goes on.
    """
    raw = list(paths) + (read_input_list(input_list) if input_list else [])
    if not raw:
        raise ConfigError("--data_path/-i is required (or --input_list FILE)")
    many = len(raw) > 1 or input_list is not None
    out: list[str] = []
    for item in raw:
        if is_url(item) or live_kind(item):
            out.append(item)  # no local checks: planning asks its server, or opens the source
            continue
        p = Path(item)
        st = check_input_path(item)  # too long a path, a FIFO or a device: refused here
        if glob.has_magic(item) and st is None:
            matches = sorted(m for m in glob.glob(item) if Path(m).suffix.lower() in VIDEO_SUFFIXES
                             and Path(m).is_file())
            if matches:
                out.extend(matches)
                many = True
            elif many or not any(Path(m).suffix.lower() in IMAGE_SUFFIXES for m in glob.glob(item)):
                raise ConfigError(f"-i {item!r} matches no video files "
                                  f"({', '.join(sorted(VIDEO_SUFFIXES))})")
            else:
                out.append(item)  # an image glob: one image-sequence input
        elif st is not None and stat.S_ISDIR(st.st_mode) and not item.lower().endswith(".slp"):
            videos = _videos_in(p)
            if videos:
                out.extend(videos)
                many = True
            elif _has_images(p) and not many:
                out.append(item)
            else:
                raise ConfigError(f"-i {item!r} is a folder with no video files "
                                  f"({', '.join(sorted(VIDEO_SUFFIXES))})")
        else:
            out.append(item)
    unique: list[str] = []
    seen: set[str] = set()
    for item in out:
        key = item if is_url(item) or live_kind(item) else Path(item).resolve().as_posix()
        if key in seen:
            log.warning("input given twice; processed once", input=item)
            continue
        seen.add(key)
        unique.append(item)
    live = [item for item in unique if live_kind(item)]
    if live and many:
        raise ConfigError(f"-i {live[0]!r} is a live source: it is read on its own, one per run "
                          "(start one sleapflow track per camera or stream)")
    return unique, many


# --------------------------------------------------------------------------------------------
# Shards
# --------------------------------------------------------------------------------------------


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` (1 <= I <= N) → ``(I, N)``."""
    if text is None or not text.strip():
        return None
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise ConfigError(f"--shard {text!r}: use I/N, e.g. --shard 3/10 for the third of ten "
                          "(with sbatch: --array=1-10 and --shard $SLURM_ARRAY_TASK_ID/10)") from None
    if n < 1 or not 1 <= i <= n:
        raise ConfigError(f"--shard {text!r}: need 1 <= I <= N (shards are numbered from 1)")
    return i, n


def shard_slice(n_items: int, shard: tuple[int, int]) -> slice:
    """The I-th of N contiguous slices of ``n_items``: disjoint, complete, sizes differing by <= 1."""
    i, n = shard
    return slice((i - 1) * n_items // n, i * n_items // n)


def shard_frames_plan(plan: InputPlan, shard: tuple[int, int]) -> InputPlan:
    """``plan`` with only the I-th of N contiguous frame ranges of its items."""
    plan.items = plan.items[shard_slice(len(plan.items), shard)]
    return plan


def shard_output_path(cfg: InferenceConfig, shard: tuple[int, int]) -> str:
    """``<default output stem>.shard-I-of-N.predictions.slp`` for a frame-range shard."""
    base = Path(output_for(cfg, cfg.data_path or "results", many=False))
    stem = base.name.removesuffix(".predictions.slp").removesuffix(".slp")
    return str(base.parent / f"{stem}.shard-{shard[0]}-of-{shard[1]}.predictions.slp")


# --------------------------------------------------------------------------------------------
# Output names
# --------------------------------------------------------------------------------------------


def output_is_folder(output: str | None) -> bool:
    if output is None or output.endswith(("/", "\\")):
        return output is not None
    if is_url(output):
        return False  # a URL names a folder only by its trailing '/'
    try:
        return stat.S_ISDIR(os.stat(output).st_mode)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise ConfigError(f"-o path is too long for the file system ({len(output)} "
                              "characters)") from None
        return False


def output_for(cfg: InferenceConfig, path: str, *, many: bool) -> str:
    """Where the predictions of input ``path`` go: beside it, under ``-o DIR/``, or ``-o FILE``."""
    single = msgspec.structs.replace(cfg, data_path=path, inputs=())
    default = default_output_path(single)
    out = cfg.output_path
    if out is None:
        return default
    if output_is_folder(out):
        name = remote_name(default) if is_url(default) else Path(default).name
        return remote_join(out, name) if is_url(out) else str(Path(out) / name)
    if many:
        raise ConfigError(f"-o {out!r} names one file, but there are several inputs: give a folder "
                          "(end it with '/', e.g. -o predictions/) or leave -o out to write "
                          "<video>.predictions.slp beside each video")
    return out


def output_is_complete(path: str, n_frames: int) -> bool:
    """An existing output written by a finished run over the same number of frames.

    Outputs are written atomically, so a readable file at the final name is a whole one; its
    provenance says how many frames the run that wrote it processed.
    """
    if not Path(path).is_file():
        return False
    try:
        labels = read_slp(path, "output", open_videos=False)
    except VideoDecodeError:  # unreadable, so not a finished output
        return False
    selection = (labels.provenance or {}).get("frame_selection") or {}
    done = selection.get("frames_processed")
    return done is not None and int(done) == n_frames


# --------------------------------------------------------------------------------------------
# The many-input plan
# --------------------------------------------------------------------------------------------


@dataclass
class VideoTask:
    """One input of a many-input run: its output and what became of it."""

    index: int
    path: str
    output: str
    status: str = "planned"  # planned, skipped, failed, done
    error: str | None = None
    video_id: int | None = None
    plan: InputPlan | None = None
    frames: int = 0
    seconds: float = 0.0
    #: What its output holds (set when it is written).
    summary: RunSummary | None = None


@dataclass
class ManyPlan(InputPlan):
    """One plan over several videos (video ids in input order, each video's frames contiguous),
    and the per-input tasks (including inputs that failed to plan or were skipped)."""

    tasks: list[VideoTask] = field(default_factory=list)

    def join(self, task: VideoTask) -> None:
        """Append ``task``'s planned video and frames; the task takes the next video id."""
        assert task.plan is not None
        task.video_id = len(self.videos)
        self.videos.append(task.plan.videos[0])
        self.items.extend(WorkItem(task.video_id, it.frame_idx, it.gt_points)
                          for it in task.plan.items)


def plan_many(cfg: InferenceConfig, *, need_ground_truth: bool = False,
              many: bool = True) -> ManyPlan:
    """Plan every input of ``cfg.inputs`` (its ``--shard`` slice) as its own single run would,
    and join them into one plan. An input that cannot be planned (missing, unreadable, not a
    video) is recorded as failed; with ``--skip_existing`` a complete output is skipped.
    ``many=False`` (a Ray run of one video) lets ``-o`` name that one output file."""
    paths = list(cfg.inputs)
    if cfg.shard is not None:
        paths = paths[shard_slice(len(paths), cfg.shard)]
    tasks = [VideoTask(index=k, path=p, output=output_for(cfg, p, many=many))
             for k, p in enumerate(paths)]
    by_output: dict[str, str] = {}
    for task in tasks:
        key = Path(task.output).resolve().as_posix()
        if key in by_output:
            raise ConfigError(f"inputs {by_output[key]!r} and {task.path!r} would both write "
                              f"{task.output!r}; rename one, or run them with different -o folders")
        by_output[key] = task.path
    plan = ManyPlan(kind="video", source_path=None, videos=[], items=[], tasks=tasks)
    for task in tasks:
        single = single_config(cfg, task)
        try:
            sub = plan_input(single, need_ground_truth=need_ground_truth)
            if sub.kind != "video":
                raise ConfigError(f"{task.path!r} is not a video file; many-input and --ray runs "
                                  "take video files (run labels files and image folders one at "
                                  "a time)")
        except SleapflowError as exc:
            task.status, task.error = "failed", str(exc)
            log.warning("input skipped", input=task.path, error=str(exc))
            continue
        if cfg.skip_existing and output_is_complete(task.output, len(sub.items)):
            task.status = "skipped"
            log.info("output exists and is complete; skipped", input=task.path, output=task.output)
            continue
        task.plan = sub
        plan.join(task)
    if plan.tasks and all(t.status == "planned" for t in plan.tasks):
        plan.frame_selection_method = plan.tasks[0].plan.frame_selection_method  # type: ignore[union-attr]
    return plan


def single_config(cfg: InferenceConfig, task: VideoTask) -> InferenceConfig:
    """The config of a one-video run of ``task`` (what its output must equal)."""
    return msgspec.structs.replace(cfg, data_path=task.path, inputs=(), shard=None,
                                   output_path=task.output)
