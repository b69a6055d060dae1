"""Reading a model folder's ``training_config.yaml`` once per process, with libyaml where present."""

from __future__ import annotations

import copy
import os
import threading
from pathlib import Path
from typing import Any

import yaml

from sleapflow.errors import ConfigError, ModelLoadError

__all__ = ("read_yaml_mapping",)

# libyaml parses a training config about ten times faster than the pure-Python loader; both
# build the same plain types for the safe subset.
_SAFE_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# One parse per file version: a run asks for each config several times (is it an embedding
# model? which head? then the full decode), and a many-video job once per video.
_CACHE: dict[tuple[str, int, int], dict[str, Any]] = {}
_LOCK = threading.Lock()


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The YAML mapping at ``path`` (a fresh copy), or a clear error naming the file.

    Cached on the file's path, size and modification time, so an edited config is read again.
    """
    path = Path(path)
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    with _LOCK:
        cached = _CACHE.get(key)
    if cached is None:
        try:
            raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"cannot read {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        cached = raw
        with _LOCK:
            _CACHE[key] = cached
    # Callers may change what they get; the cached parse stays as the file says.
    return copy.deepcopy(cached)
