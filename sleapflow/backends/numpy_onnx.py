"""ONNX Runtime on the CPU with numpy arrays in and out: a warm export cache runs without torch."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sleapflow.backends.cache import (
    CorruptEntry,
    ExportCache,
    checkpoint_digest,
    entry_key,
    export_key_parts,
)
from sleapflow.backends.ort import session_options
from sleapflow.errors import BackendError
from sleapflow.logs import get_logger

__all__ = ("NumpyOnnxRunner", "model_files")


log = get_logger(__name__)


def _override_path(path: str | Path) -> Path:
    p = Path(path).expanduser()
    return p / "best.ckpt" if p.is_dir() else p


def model_files(model_dir: Path, *, backbone_ckpt_path: str | Path | None = None,
                head_ckpt_path: str | Path | None = None) -> dict[str, Path]:
    """The files whose bytes define a checkpoint folder's network, by role (for
    :func:`~sleapflow.backends.cache.checkpoint_digest`): sleap-nn's ``best.ckpt`` and
    ``training_config.yaml``, or SLEAP's ``best_model.h5`` and ``training_config.json``, and
    the override checkpoints."""
    if (model_dir / "best.ckpt").is_file():
        files = {"weights": model_dir / "best.ckpt", "config": model_dir / "training_config.yaml"}
    else:
        files = {"weights": model_dir / "best_model.h5", "config": model_dir / "training_config.json"}
    if backbone_ckpt_path is not None:
        files["backbone_override"] = _override_path(backbone_ckpt_path)
    if head_ckpt_path is not None:
        files["head_override"] = _override_path(head_ckpt_path)
    return files


def _runtime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__ + "-cpu"


class _Session:
    """One input shape's ONNX Runtime session and the head names its outputs carry."""

    def __init__(self, session: Any, names: list[str]) -> None:
        self.session = session
        self.names = names

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        try:
            outs = self.session.run(self.names, {"x": x})
        except Exception as exc:  # onnxruntime's own exception types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(" .")
            raise BackendError(f"ONNX Runtime failed on a batch of shape {x.shape}: {first}; "
                               "use --runtime torch") from exc
        return dict(zip(self.names, outs))


class NumpyOnnxRunner:
    """uint8 (B, C, H, W) numpy batches in, float32 head maps (numpy) out, on ONNX Runtime.

    Entries are keyed by the model's file bytes (:func:`model_files`), so a warm cache opens
    its session straight from the entry: no checkpoint load, no torch. On a miss (a new model
    or input shape) ``load`` loads the model (importing torch), the torch-backed
    :class:`~sleapflow.backends.runners.OnnxRunner` exports it under the same key and checks
    it against torch on that batch, and the session then opens from the new entry. Models
    whose heads end in an activation (class maps, class vectors) are not run here: exports
    leave those activations to torch.
    """

    name = "onnx"

    def __init__(self, files: Mapping[str, Path], load: Callable[[], Any], *,
                 threads: int | None, cache: ExportCache | None = None) -> None:
        self.files = dict(files)
        self.load = load
        self.threads = threads
        self.cache = cache or ExportCache("onnx")
        self.digest = checkpoint_digest(self.files)
        self._sessions: dict[tuple[int, ...], _Session] = {}
        self._lock = threading.Lock()
        #: Per shape class: the key and whether this process built the entry (tests, logs).
        self.exports: dict[tuple[int, ...], tuple[str, bool]] = {}

    def key(self, shape: tuple[int, ...]) -> str:
        """The export cache key of this model at input shape (C, H, W)."""
        return entry_key(export_key_parts(self.digest, shape, runtime=self.name,
                                          runtime_version=_runtime_version(), precision="fp32"))

    def _open_entry(self, key: str) -> _Session | None:
        hit = self.cache.lookup(key, "model.onnx")
        if hit is None:
            return None
        path, record = hit
        names = record.get("heads")
        try:
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise CorruptEntry("its record names no heads")
            import onnxruntime as ort

            session = ort.InferenceSession(str(path), session_options(self.threads),
                                           providers=["CPUExecutionProvider"])
        except Exception as exc:
            log.warning("export cache entry does not load; rebuilding", key=key, reason=str(exc))
            self.cache.discard(key)
            return None
        return _Session(session, names)

    def prefetch(self, entries: list[tuple[tuple[int, ...], str]] | None = None) -> threading.Thread:
        """Open this model's cached sessions in a background thread, so that ONNX Runtime's
        graph optimisation overlaps with the decoder's start instead of following the first
        frame. Entries are found by their record (model digest and runtime version), whatever
        their input shape; a batch of another shape still opens or builds its own. A first
        batch that arrives meanwhile waits for the thread instead of opening its shape twice.
        ``entries``: :meth:`cached_shapes` when the caller has already listed them."""
        def run() -> None:
            with self._lock:
                try:
                    for shape, key in (self.cached_shapes() if entries is None else entries):
                        if shape not in self._sessions:
                            session = self._open_entry(key)
                            if session is not None:
                                self._sessions[shape] = session
                                self.exports[shape] = (key, False)
                                log.info("onnx export", shape=shape, key=key, cached=True)
                except Exception as exc:
                    # Only a head start: the first batch opens (or builds) its entry itself
                    # and reports what fails there, on the stage that owns the error.
                    log.debug("onnx prefetch stopped", reason=str(exc))

        # Not a daemon (it would inherit that from the worker thread that starts it): a process
        # that ends while a session is still opening must wait for it; a daemon thread inside
        # ONNX Runtime at interpreter exit aborts the process (a Predictor closed before its
        # first frame exited with SIGABRT).
        thread = threading.Thread(target=run, name="onnx-prefetch", daemon=False)
        thread.start()
        return thread

    def cached_shapes(self) -> list[tuple[tuple[int, ...], str]]:
        """(input shape, key) of the cache's entries for this model on this runtime."""
        found = []
        try:
            folders = sorted(p for p in self.cache.dir.iterdir() if not p.name.startswith("."))
        except OSError:
            return []
        version = _runtime_version()
        for folder in folders:
            try:
                parts = json.loads((folder / "entry.json").read_text()).get("parts") or {}
            except (OSError, ValueError, AttributeError):
                continue  # a half-written or foreign folder: lookups deal with it
            if parts.get("model") != self.digest or parts.get("runtime") != self.name \
                    or parts.get("runtime_version") != version:
                continue
            shape = tuple(parts.get("shape") or ())
            # Only a key that this runner would compute for that shape is trusted.
            if shape and self.key(shape) == folder.name:
                found.append((shape, folder.name))
        return found

    def _build(self, x: np.ndarray) -> None:
        """Export through torch (a cold cache): the entry lands under this runner's key."""
        import torch

        from sleapflow.backends.runners import OnnxRunner

        module = self.load().module
        exporter = OnnxRunner(module, torch.device("cpu"), threads=self.threads, precision="fp32",
                              cache=self.cache, model_key=self.digest)
        exporter(torch.from_numpy(x))

    def _session_for(self, x: np.ndarray) -> _Session:
        shape = tuple(x.shape[1:])
        session = self._sessions.get(shape)
        if session is not None:
            return session
        with self._lock:
            session = self._sessions.get(shape)
            if session is None:
                key = self.key(shape)
                session = self._open_entry(key)
                built = session is None
                if built:
                    self._build(x)
                    session = self._open_entry(key)
                    if session is None:
                        raise BackendError(f"the ONNX export of this model (key {key}) did not land "
                                           "in the export cache; use --runtime torch")
                self.exports[shape] = (key, built)
                log.info("onnx export", shape=shape, key=key, cached=not built)
                self._sessions[shape] = session
        return session

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if x.shape[0] == 0:
            return {}
        xf = np.ascontiguousarray(x, dtype=np.float32) / np.float32(255.0)
        return self._session_for(x)(xf)
