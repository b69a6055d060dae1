"""A restricted unpickler for sleap-nn/Lightning checkpoints: tensors in, code execution out.

``best.ckpt`` is a ``torch.save`` pickle that also embeds OmegaConf, sleap-nn and Lightning objects.
sleap-nn opens it with ``weights_only=False`` (any pickle can run code); ``weights_only=True``
refuses it because of those objects. This module is passed to ``torch.load`` as its
``pickle_module``: only tensor-rebuild functions and plain containers resolve to real callables;
classes from config/trainer namespaces become inert stand-ins (nothing of theirs is imported or
run); every other global is refused with ``RefusedGlobalError``.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import collections
import io
import pickle
from typing import IO, Any

import torch

__all__ = ("Inert", "RefusedGlobalError", "Unpickler", "find_safe_global", "load", "loads")


# Namespaces whose classes only ever carry configuration or trainer bookkeeping: they are
# replaced by inert stand-ins so their state is kept as plain data and none of their code runs.
_INERT_PREFIXES: tuple[str, ...] = (
    "omegaconf",
    "sleap_nn",
    "sleap_io",
    "lightning",
    "pytorch_lightning",
    "lightning_fabric",
    "lightning_utilities",
    "typing",
    "numpy",
    "pathlib",
    "argparse",
    "attr",
    "attrs",
    "enum",
    "datetime",
)

_ALLOWED_BUILTINS: frozenset[str] = frozenset(
    {"dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool", "str",
     "bytes", "bytearray", "slice", "range", "NoneType"}
)

_ALLOWED_TORCH: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
}
for _dt in ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8",
            "uint8", "bool"):
    _ALLOWED_TORCH[("torch", _dt)] = getattr(torch, _dt)


class RefusedGlobalError(pickle.UnpicklingError):
    """The pickle referenced a global outside the allow-list; nothing of it was executed."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"refused global {module}.{name}")
        self.global_name = f"{module}.{name}"


class Inert:
    """Stand-in for a config/trainer object: records its pickled state, runs nothing."""

    _sf_global: str = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._sf_args = args
        self._sf_kwargs = kwargs
        self._sf_state: Any = None
        self._sf_items: dict[Any, Any] = {}
        self._sf_list: list[Any] = []

    def __new__(cls, *args: Any, **kwargs: Any) -> Inert:
        # NEWOBJ passes the pickled constructor args here; they are not used.
        return super().__new__(cls)

    def __setstate__(self, state: Any) -> None:
        # Keep the state as data; never call anything on it.
        self.__dict__.setdefault("_sf_items", {})
        self.__dict__.setdefault("_sf_list", [])
        self._sf_state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__.setdefault("_sf_items", {})[key] = value

    def append(self, value: Any) -> None:
        self.__dict__.setdefault("_sf_list", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("_sf_list", []).extend(values)

    def __class_getitem__(cls, item: Any) -> type[Inert]:
        return cls

    def __repr__(self) -> str:
        return f"<inert {self._sf_global}>"


_INERT_CACHE: dict[str, type[Inert]] = {}


def _inert_class(module: str, name: str) -> type[Inert]:
    key = f"{module}.{name}"
    cls = _INERT_CACHE.get(key)
    if cls is None:
        cls = type(f"Inert_{name}", (Inert,), {"_sf_global": key})
        _INERT_CACHE[key] = cls
    return cls


def _safe_getitem(obj: Any, key: Any) -> Any:
    """``operator.getitem`` only for subscripted typing stand-ins (``Dict[str, Any]``)."""
    if isinstance(obj, type) and issubclass(obj, Inert):
        return obj
    raise RefusedGlobalError("_operator", "getitem")


def _safe_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` restricted to stand-ins (protocol-0/1 object pickles)."""
    if isinstance(cls, type) and issubclass(cls, Inert):
        obj = cls()
        obj._sf_state = state
        return obj
    raise RefusedGlobalError("copyreg", "_reconstructor")


def _safe_defaultdict(factory: Any = None, *args: Any) -> collections.defaultdict[Any, Any]:
    """``defaultdict`` whose factory is dropped: the loaded dict is read, never auto-filled."""
    return collections.defaultdict(None, *args)


def _is_inert(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in _INERT_PREFIXES)


def find_safe_global(module: str, name: str) -> Any:
    """Map a pickled global reference to an allowed object or raise ``RefusedGlobalError``."""
    # Protocol-2 pickles written by Python-2-compatible code name py2 modules (__builtin__ ...).
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    if module == "builtins" and name in _ALLOWED_BUILTINS:
        return type(None) if name == "NoneType" else getattr(builtins, name)
    if module == "collections" and name == "OrderedDict":
        return collections.OrderedDict
    if module == "collections" and name == "defaultdict":
        return _safe_defaultdict
    if (module, name) in _ALLOWED_TORCH:
        return _ALLOWED_TORCH[(module, name)]
    if module in ("_operator", "operator") and name == "getitem":
        return _safe_getitem
    if module in ("copyreg", "copy_reg") and name == "_reconstructor":
        return _safe_reconstructor
    if _is_inert(module):
        return _inert_class(module, name)
    raise RefusedGlobalError(module, name)


class Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose global lookups go through ``find_safe_global``."""

    def find_class(self, module: str, name: str) -> Any:
        return find_safe_global(module, name)


def load(file: IO[bytes], **kwargs: Any) -> Any:
    """``pickle.load`` counterpart used by ``torch.load`` for the legacy (non-zip) format."""
    return Unpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs: Any) -> Any:
    """Unpickle bytes with the restricted unpickler."""
    return Unpickler(io.BytesIO(data), **kwargs).load()
