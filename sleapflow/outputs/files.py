"""Output paths that are files: target checks, room checks, safe atomic saves, temp clean-up, locks."""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sleapflow.errors import ConfigError, OutputWriteError

__all__ = (
    "HDF5_POISONED", "ROOM_BASE", "ROOM_PER_FRAME", "SCRATCH_FOLDERS", "OutputLock",
    "check_output_folder", "check_output_path", "check_output_target", "clean_stale_temps",
    "describe_os_error", "estimate_slp_bytes", "estimate_slp_rows_bytes", "model_folder_holding",
    "pid_alive", "resolve_target", "save_h5_safely", "save_slp_safely", "special_kind",
    "temp_path_for", "write_atomically",
)


#: Set once an HDF5 save failed mid-write. The HDF5 library is then left with handles it can
#: neither flush nor close, and tearing them down at interpreter exit segfaults; the CLI ends
#: the process with ``os._exit`` instead (after printing its error) when this is set.
HDF5_POISONED = False

#: Room asked for before inference starts, per planned frame, and in all: a first estimate,
#: generous next to what a .slp needs (tens of bytes per point).
ROOM_PER_FRAME = 2048
ROOM_BASE = 256 * 1024

_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp\.slp$")


def _quiet_h5py_hook(previous: Any) -> Any:
    """An unraisable hook that drops h5py's "Exception ignored in ObjectID.__dealloc__" dumps,
    one per handle of a file HDF5 failed to write: the user gets one error line instead."""

    def hook(info: Any) -> None:
        if "h5py" in repr(getattr(info, "object", "")) or "h5py" in str(info.exc_value):
            return
        previous(info)

    return hook


def _quiet_h5py_excepthook(previous: Any) -> Any:
    def hook(kind: Any, value: BaseException, tb: Any) -> None:
        frames = []
        walk = tb
        while walk is not None:
            frames.append(walk.tb_frame.f_code.co_filename)
            walk = walk.tb_next
        if frames and all("h5py" in f for f in frames):
            return
        previous(kind, value, tb)

    return hook


def _raised_in_h5py(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if f"{os.sep}h5py{os.sep}" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    # h5py's Cython layers leave no Python frame; their messages carry HDF5's own wording.
    return "file write failed" in str(exc) or "H5" in str(exc)


def describe_os_error(exc: BaseException) -> str:
    """A short reason for a failed write, also for HDF5's multi-line error dumps."""
    code = getattr(exc, "errno", None)
    if not isinstance(code, int):
        match = re.search(r"errno = (\d+)", str(exc))
        code = int(match[1]) if match else None
    if code is not None:
        return f"{os.strerror(code).lower()} (errno {code})"
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return first[:200]


def resolve_target(path: str | Path) -> Path:
    """The file a write to ``path`` lands in: a symlink's target (written through, the link
    stays a link), else ``path`` itself."""
    path = Path(path)
    if path.is_symlink():
        return Path(os.path.realpath(path))
    return path


#: Files that make a folder a model (sleap-nn, SLEAP <= 1.4, a ``sleapflow export``): an output
#: never goes into one, whatever command writes it.
_MODEL_MARKERS = (("best.ckpt", "training_config.yaml"), ("best_model.h5", "training_config.json"),
                  ("export_metadata.json",), ("network.onnx", "training_config.yaml"))


def model_folder_holding(path: str | Path) -> Path | None:
    """The model folder ``path`` lies in (at any depth), or None."""
    for folder in Path(os.path.abspath(path)).parents:
        try:
            if any(all((folder / name).is_file() for name in marker) for marker in _MODEL_MARKERS):
                return folder
        except OSError:  # an unreadable parent: not a model this process could have read
            return None
    return None


def special_kind(mode: int) -> str | None:
    """What a file of ``st_mode`` ``mode`` is when it is a device, FIFO or socket (never read
    as an input nor replaced as an output: either blocks or breaks the system), else None."""
    for test, kind in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return None


def check_output_target(path: str | Path, what: str = "--output_path") -> Path:
    """Refuse an output that is not a regular file (a device, FIFO, socket or folder) or that
    lies inside a model folder, and return the real file to write. Replacing ``/dev/null`` by a
    regular file would break the system; writing into a model folder risks the trained model.
    ``what`` names the option the path comes from in the message."""
    path = Path(path)
    target = resolve_target(path)
    model = model_folder_holding(target)
    if model is not None:
        raise ConfigError(f"{what} {str(path)!r} is inside the model folder {str(model)!r}: "
                          "outputs never go into a model folder (they could replace its files); "
                          "choose an output outside it")
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target
    except OSError as exc:
        raise ConfigError(f"{what} {str(path)!r}: cannot inspect it: "
                          f"{describe_os_error(exc)}") from None
    kind = special_kind(mode) or (
        "a folder" if stat.S_ISDIR(mode) and what != "--output_path" else None)
    if kind is not None:
        raise ConfigError(f"{what} {str(path)!r} is {kind}, not a file; give a file name "
                          "(outputs are written to a temporary file and renamed into place)")
    return target


def check_output_folder(path: str | Path, *, n_frames: int = 0) -> None:
    """Before inference: the output's folder exists (or can be made), is writable (tried, not
    guessed from permission bits: root ignores them, a read-only mount does not) and has room
    for a first estimate of the output."""
    target = resolve_target(path)
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(f"cannot create the output folder {str(folder)!r}: "
                               f"{describe_os_error(exc)}") from None
    probe = temp_path_for(target)
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        raise OutputWriteError(f"cannot write to the output folder {str(folder)!r}: "
                               f"{describe_os_error(exc)}; choose another --output_path") from None
    os.close(fd)
    probe.unlink()
    need = ROOM_BASE + ROOM_PER_FRAME * max(0, n_frames)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise OutputWriteError(f"not enough room for the output in {str(folder)!r}: "
                               f"{free // 1024} KiB free, about {need // 1024} KiB needed; "
                               "free some space or choose another --output_path")


def temp_path_for(target: Path, suffix: str = ".slp") -> Path:
    """A temporary name beside ``target`` that says which process made it (``_TEMP_RE`` reads
    it back for ``.slp``)."""
    return target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{suffix}"


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def clean_stale_temps(path: str | Path) -> list[Path]:
    """Remove temporary files of our own naming pattern for ``path`` whose process is gone
    (left by a SIGKILL or a power loss during a save); returns what was removed."""
    target = resolve_target(path)
    removed = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_RE.match(entry.name)
        if match is None or match["name"] != target.name:
            continue
        if pid_alive(int(match["pid"])):
            continue
        try:
            entry.unlink()
            removed.append(entry)
        except OSError:
            pass
    return removed


def estimate_slp_bytes(labels: Any) -> int:
    """A generous upper estimate of a .slp's size (HDF5 overhead plus per-row records)."""
    frames = len(labels.labeled_frames)
    instances = sum(len(lf.instances) for lf in labels.labeled_frames)
    nodes = max((len(s.nodes) for s in labels.skeletons), default=1)
    return estimate_slp_rows_bytes(frames, instances, nodes)


def estimate_slp_rows_bytes(frames: int, instances: int, nodes: int) -> int:
    """:func:`estimate_slp_bytes` from the row counts."""
    return 2 * (256 * 1024 + frames * 32 + instances * (64 + nodes * 40))


def _reserve(folder: Path, size: int) -> None:
    """Prove ``size`` bytes are free by allocating them (then giving them back): an ENOSPC here
    is a clean OSError, while one inside HDF5 leaves the library unable to close its file."""
    ballast = folder / f".sleapflow-reserve.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", -1)):
                raise
            # No fallocate here (some network file systems): write the bytes instead.
            chunk = b"\0" * (1 << 20)
            left = size
            while left > 0:
                left -= os.write(fd, chunk[:min(left, len(chunk))])
            os.fsync(fd)
    finally:
        os.close(fd)
        ballast.unlink(missing_ok=True)


def save_slp_safely(labels: Any, path: str | Path, *, save_embedding_vectors: bool = False) -> Path:
    """Write ``labels`` to a temporary file beside the real target and rename it into place
    only on success, so an existing output is never half-written, lost, or (for a symlink)
    replaced by a file. Failures raise :class:`OutputWriteError` naming the path and reason.

    The temporary name is not pre-created (``mkstemp`` would make it 0600): HDF5 creates it
    with the usual umask permissions, which the renamed output keeps.
    """
    import sleap_io as sio

    def write(tmp: str) -> None:
        if save_embedding_vectors:  # sleap-io writes the instances' re-ID vectors only when asked
            sio.save_slp(labels, tmp, restore_original_videos=False, verbose=False,
                         save_embedding_vectors=True)
        else:
            sio.save_slp(labels, tmp, restore_original_videos=False, verbose=False)

    return save_h5_safely(path, write, estimate_slp_bytes(labels))


def _unchanged(shown: Path, reason: str) -> OutputWriteError:
    return OutputWriteError(f"cannot write {str(shown)!r}: {reason}; the existing file (if any) "
                            "is unchanged")


def save_h5_safely(path: str | Path, write: Callable[[str], None], size: int) -> Path:
    """:func:`save_slp_safely` for any HDF5 writer: ``write(tmp)`` creates the file at ``tmp``
    (``size`` bytes at most, a generous estimate); the same room check, scratch staging,
    temp-then-rename and one-line errors apply."""
    global HDF5_POISONED

    shown = Path(path)
    target = check_output_target(shown)
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _reserve(folder, size)
    except OSError as exc:
        raise _unchanged(shown, describe_os_error(exc)) from None
    tmp = temp_path_for(target)
    scratch = _scratch_folder(size)
    if scratch is not None:
        return _save_via_scratch(write, scratch, tmp, target, shown)
    previous_hook, previous_except = sys.unraisablehook, sys.excepthook
    sys.unraisablehook = _quiet_h5py_hook(previous_hook)
    # Cython prints a dealloc's traceback through sys.excepthook before the unraisable line.
    sys.excepthook = _quiet_h5py_excepthook(previous_except)
    try:
        write(tmp.as_posix())
        os.replace(tmp, target)
    except (OSError, RuntimeError, ValueError) as exc:
        reason = describe_os_error(exc)
        # HDF5 errors (RuntimeError/OSError from h5py) after the file was created leave it open
        # in the library; see HDF5_POISONED. Its handles' dumps stay silenced.
        if _raised_in_h5py(exc):
            HDF5_POISONED = True
        else:
            sys.unraisablehook, sys.excepthook = previous_hook, previous_except
        tmp.unlink(missing_ok=True)
        raise _unchanged(shown, reason) from None
    except BaseException:
        sys.unraisablehook, sys.excepthook = previous_hook, previous_except
        tmp.unlink(missing_ok=True)
        raise
    sys.unraisablehook, sys.excepthook = previous_hook, previous_except
    return target


#: Where HDF5 writes the file first when there is room: a RAM file system. HDF5 can crash the
#: process when the disk fills in the middle of its writes (a race with other writers that no
#: room check can rule out); plain copies from here fail with a clean OSError instead.
SCRATCH_FOLDERS = ("/dev/shm",)


def _scratch_folder(size: int) -> Path | None:
    for name in SCRATCH_FOLDERS:
        folder = Path(name)
        try:
            if folder.is_dir() and os.access(folder, os.W_OK) \
                    and shutil.disk_usage(folder).free >= 4 * size:
                return folder
        except OSError:
            continue
    return None


def _save_via_scratch(write: Callable[[str], None], scratch: Path, tmp: Path, target: Path,
                      shown: Path) -> Path:
    global HDF5_POISONED
    staged = scratch / f"sleapflow.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.slp"
    previous_hook, previous_except = sys.unraisablehook, sys.excepthook
    try:
        sys.unraisablehook = _quiet_h5py_hook(previous_hook)
        sys.excepthook = _quiet_h5py_excepthook(previous_except)
        try:
            write(staged.as_posix())
        except (OSError, RuntimeError, ValueError) as exc:
            if not _raised_in_h5py(exc):
                raise
            HDF5_POISONED = True  # see its comment; the hooks stay to silence the teardown
            raise OSError(describe_os_error(exc)) from None
        with open(staged, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _unchanged(shown, describe_os_error(exc)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        staged.unlink(missing_ok=True)
        if not HDF5_POISONED:
            sys.unraisablehook, sys.excepthook = previous_hook, previous_except
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class OutputLock:
    """``.<name>.lock`` beside the output, holding the writer's pid: a second live run on the
    same output is refused; a lock whose process is gone (kill -9, power loss) is taken over."""

    def __init__(self, path: str | Path) -> None:
        target = resolve_target(path)
        self.shown = str(path)
        self.path = target.parent / f".{target.name}.lock"
        self.held = False

    def acquire(self) -> OutputLock:
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self.check_free()
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            except OSError as exc:
                raise OutputWriteError(f"cannot create the lock {str(self.path)!r}: "
                                       f"{describe_os_error(exc)}") from None
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            self.held = True
            return self
        raise ConfigError(f"cannot take the output lock {str(self.path)!r}; remove it and retry")

    def check_free(self) -> None:
        """Refuse now if another live run holds the lock (before anything else is said about
        the output: its journal, say, is that run's, not an interrupted one's)."""
        holder = self._holder()
        if holder is not None and holder != os.getpid() and pid_alive(holder):
            raise ConfigError(
                f"--output_path {self.shown!r} is being written by another sleapflow run "
                f"(pid {holder}); wait for it to finish or choose another output. If no "
                f"such run exists, remove {str(self.path)!r}")

    def _holder(self) -> int | None:
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def release(self) -> None:
        if self.held:
            self.held = False
            if self._holder() == os.getpid():
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` for a temporary file beside ``path`` and rename it into place only on
    success, so an existing output is never left half-written or lost by a failed run.

    The temporary name keeps ``path``'s suffix (writers pick their format from it) and is not
    pre-created (``mkstemp`` would make it 0600): the writer creates it with the usual umask
    permissions, which the renamed output keeps.
    """
    path = resolve_target(path)  # through a symlink to its target; the link stays a link
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path, path.suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_output_path(output_path: str | Path, *, input_path: str | Path | None = None) -> Path:
    """Refuse outputs that cannot work before any frame is decoded.

    The output may not be a folder, nor the input file itself: the output refers to the input's
    videos, and a ``.pkg.slp`` input holds their frames.
    """
    path = Path(output_path)
    check_output_target(path)
    if path.is_dir():
        raise ConfigError(f"--output_path {str(path)!r} is a folder; give a .slp file name")
    if input_path is not None and path.exists() and Path(input_path).exists() \
            and path.resolve() == Path(input_path).resolve():
        raise ConfigError(f"--output_path {str(path)!r} is the input file; the input is never "
                          "overwritten, choose another name")
    return path
