"""The export cache: exported networks keyed by content, written atomically, verified on every read."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from sleapflow.errors import BackendError, ModelLoadError
from sleapflow.logs import get_logger

__all__ = ("EXPORT_FORMAT", "OPSET", "CorruptEntry", "ExportCache", "cache_root", "checkpoint_digest",
           "entry_key", "export_key_parts", "file_sha256", "module_digest", "torch_version")


log = get_logger(__name__)

#: Bumped whenever the export itself changes (wrapper, opset, options): old entries then miss.
EXPORT_FORMAT = 1
#: ONNX opset of the export (part of every key).
OPSET = 17
_ENTRY = "entry.json"
_ATTEMPTS = 4


def cache_root() -> Path:
    """``$SLEAPFLOW_CACHE_DIR``, else the platform's user cache dir (``$XDG_CACHE_HOME`` on Linux)."""
    override = os.environ.get("SLEAPFLOW_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("sleapflow", appauthor=False))


def module_digest(module: Any) -> str:
    """SHA-256 over a network's architecture and every weight's bytes.

    Hashing the loaded module rather than the files covers the checkpoint, the backbone/head
    overrides applied on top of it and the inference rewrites in one go: two runs share an entry
    exactly when they would run the same arithmetic.
    """
    import torch

    h = hashlib.sha256()
    h.update(repr(module).encode())
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@functools.cache
def torch_version() -> str:
    """torch's version from its package metadata: a key is computed without importing torch."""
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return "none"


@functools.cache
def _code_digest() -> str:
    """SHA-256 over the sources that turn a checkpoint into the exported graph (architectures,
    inference rewrites, the export wrapper): a change there must miss old entries, which a key
    from the checkpoint's bytes alone would not notice."""
    package = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in [*sorted((package / "models").glob("*.py")), package / "backends" / "runners.py"]:
        h.update(f"{path.relative_to(package)}:".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def checkpoint_digest(files: Mapping[str, Path]) -> str:
    """SHA-256 over the files that define a network (weights, training config, override
    checkpoints: role -> path) and the code that builds and exports it.

    Needs no torch: a warm start on ONNX Runtime finds its entry without loading the
    checkpoint. Any byte of any of these files changing gives another digest; so does the
    same file in another role (a backbone override is not a head override).
    """
    h = hashlib.sha256()
    h.update(f"code:{_code_digest()};".encode())
    for role, path in sorted(files.items()):
        try:
            h.update(f"{role}:{path.stat().st_size}:{file_sha256(path)};".encode())
        except OSError as exc:  # the model file itself: the user's to fix, as when loading it
            raise ModelLoadError(f"cannot read the model file {path}: {exc}") from exc
    return h.hexdigest()


def export_key_parts(model: str, shape: tuple[int, ...], *, runtime: str, runtime_version: str,
                     precision: str) -> dict[str, Any]:
    """What keys one exported network: the model's digest, the input (C, H, W), the runtime
    and its version, the exporter (torch's version, opset) and the precision. Exports leave
    the heads' final activations to the caller (see runners.head_activations)."""
    return {"model": model, "shape": list(shape), "runtime": runtime,
            "runtime_version": runtime_version, "torch": torch_version(), "opset": OPSET,
            "precision": precision, "activations": "torch"}


def entry_key(parts: Mapping[str, Any]) -> str:
    """A stable key from a JSON-able description (model digest, shape, runtime, precision...)."""
    text = json.dumps({"export_format": EXPORT_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class CorruptEntry(Exception):
    """An entry that exists but cannot be trusted: it is removed and rebuilt."""


class ExportCache:
    """Entries are folders ``<root>/<kind>/<key>/`` holding one artifact and ``entry.json``.

    An entry is built in a private temporary folder and renamed into place in one step, so a
    reader sees a whole entry or none. When two processes build the same key at once both
    succeed; the second rename fails because the folder exists, and that process uses the first
    one's entry (after verifying it). ``entry.json`` stores the artifact's SHA-256 and size: an
    entry whose artifact does not match (truncated, edited, half-deleted) is moved aside and
    rebuilt, never loaded.
    """

    def __init__(self, kind: str, root: Path | None = None) -> None:
        self.dir = (root or cache_root()) / kind

    def entry_dir(self, key: str) -> Path:
        return self.dir / key

    @contextlib.contextmanager
    def _os_errors(self, doing: str) -> Iterator[None]:
        """The cache's own file-system failures (permission, a full disk) as BackendError."""
        try:
            yield
        except OSError as exc:
            raise BackendError(
                f"export cache {str(self.dir)!r}: cannot {doing}: {exc.strerror or exc}; set "
                "SLEAPFLOW_CACHE_DIR to a writable folder with room, or use --runtime torch"
            ) from exc

    def _verify_record(self, key: str, artifact: str) -> tuple[Path, dict[str, Any]]:
        folder = self.entry_dir(key)
        try:
            meta = json.loads((folder / _ENTRY).read_text())
        except FileNotFoundError:
            if folder.exists():
                raise CorruptEntry(f"{folder} has no {_ENTRY}") from None
            raise
        except (OSError, ValueError) as exc:
            raise CorruptEntry(f"{folder / _ENTRY} unreadable: {exc}") from exc
        path = folder / artifact
        if not isinstance(meta, dict) or meta.get("key") != key:
            raise CorruptEntry(f"{folder / _ENTRY} is not the entry for {key}")
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise CorruptEntry(f"{path} missing: {exc}") from exc
        if size != meta.get("size") or file_sha256(path) != meta.get("sha256"):
            raise CorruptEntry(f"{path} does not match its recorded checksum")
        return path, meta

    def _verified(self, key: str, artifact: str,
                  check: Callable[[Path], None] | None) -> tuple[Path, dict[str, Any]]:
        """The entry's artifact and record; FileNotFoundError on a miss, CorruptEntry if bad."""
        path, record = self._verify_record(key, artifact)
        if check is not None:
            try:
                check(path)
            except Exception as exc:
                raise CorruptEntry(f"{path} failed to load: {exc}") from exc
        return path, record

    def lookup(self, key: str, artifact: str, *,
               check: Callable[[Path], None] | None = None) -> tuple[Path, dict[str, Any]] | None:
        """The verified artifact for ``key`` and its entry record, or None on a miss.

        A corrupt entry (bad checksum, unreadable record, failed ``check``) is discarded and
        reported as a miss, so the caller rebuilds it.
        """
        with self._os_errors("read an entry"):
            try:
                return self._verified(key, artifact, check)
            except FileNotFoundError:
                return None
            except CorruptEntry as exc:
                log.warning("export cache entry is corrupt; rebuilding", key=key, reason=str(exc))
                self.discard(key)
                return None

    def discard(self, key: str) -> None:
        """Move a bad entry out of the way atomically, then delete it (racing removers are fine)."""
        folder = self.entry_dir(key)
        trash = self.dir / f".trash-{key}-{uuid.uuid4().hex}"
        with self._os_errors("remove a bad entry"):
            try:
                os.rename(folder, trash)
            except FileNotFoundError:
                return
        shutil.rmtree(trash, ignore_errors=True)

    def get_or_build(self, key: str, artifact: str, build: Callable[[Path], None], *,
                     meta: Mapping[str, Any] | None = None,
                     check: Callable[[Path], None] | None = None) -> tuple[Path, bool]:
        """The verified artifact for ``key``, building it with ``build(path)`` on a miss.

        ``check(path)`` is an extra test of a cached artifact (e.g. that the runtime can parse
        it); raising there marks the entry corrupt. Returns (path, built_here). The cache's own
        file-system failures (and ``build``'s OSErrors) raise :class:`BackendError`; ``build``'s
        other errors pass through.
        """
        last: Exception | None = None
        for _ in range(_ATTEMPTS):
            with self._os_errors("read an entry"):
                try:
                    return self._verified(key, artifact, check)[0], False
                except FileNotFoundError:
                    pass
                except CorruptEntry as exc:
                    log.warning("export cache entry is corrupt; rebuilding", key=key, reason=str(exc))
                    last = exc
                    self.discard(key)
            with self._os_errors("write an entry"):
                if self._build(key, artifact, build, meta or {}):
                    return self.entry_dir(key) / artifact, True
            # Another process renamed its entry in first: loop to verify and use that one.
        raise BackendError(f"export cache {str(self.dir)!r}: no valid entry for {key} after "
                           f"{_ATTEMPTS} builds ({last}); delete {str(self.entry_dir(key))!r} and "
                           "run again, or use --runtime torch")

    def _build(self, key: str, artifact: str, build: Callable[[Path], None],
               meta: Mapping[str, Any]) -> bool:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            path = tmp / artifact
            build(path)
            with path.open("rb") as f:
                os.fsync(f.fileno())
            record = {"key": key, "artifact": artifact, "size": path.stat().st_size,
                      "sha256": file_sha256(path), **meta}
            entry = tmp / _ENTRY
            entry.write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
            with entry.open("rb") as f:
                os.fsync(f.fileno())
            _fsync_dir(tmp)
            try:
                os.rename(tmp, self.entry_dir(key))
            except OSError:
                # The folder exists: a concurrent builder won (or a corrupt one reappeared).
                return False
            _fsync_dir(self.dir)
            log.info("export cached", key=key, path=str(self.entry_dir(key)))
            return True
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
