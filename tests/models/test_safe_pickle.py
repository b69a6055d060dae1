"""The restricted checkpoint unpickler: malicious pickles are refused before anything runs."""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess
import sys
import types
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from sleapflow.errors import ModelLoadError
from sleapflow.models import safe_pickle
from sleapflow.models.checkpoint import read_checkpoint


class _ExecPayload:
    """Creates ``marker`` when unpickled by an unrestricted unpickler."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",))


class _SystemPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


class _PopenPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[list[str]]]:
        return (subprocess.Popen, (["touch", str(self.marker)],))


def _ckpt(path: Path, payload: object) -> Path:
    """A Lightning-shaped checkpoint whose embedded ``config`` carries the payload."""
    state = OrderedDict({"model.w": torch.ones(2)})
    torch.save({"epoch": 1, "state_dict": state, "config": payload}, path)
    return path


def test_exec_payload_is_live_but_refused(tmp_path: Path) -> None:
    ckpt = _ckpt(tmp_path / "evil.ckpt", _ExecPayload(tmp_path / "pwned"))
    # Control: the way sleap-nn opens checkpoints really runs the payload.
    control = tmp_path / "control"
    torch.load(_ckpt(tmp_path / "ctl.ckpt", _ExecPayload(control)), weights_only=False)
    assert control.exists()
    with pytest.raises(ModelLoadError, match=r"builtins\.exec") as exc:
        read_checkpoint(ckpt)
    assert str(ckpt) in str(exc.value)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("payload", "name"),
    [(_SystemPayload, os.system.__module__ + ".system"), (_PopenPayload, "subprocess.Popen")],
)
def test_os_and_subprocess_refused(tmp_path: Path, payload: type, name: str) -> None:
    marker = tmp_path / "pwned"
    ckpt = _ckpt(tmp_path / "evil.ckpt", payload(marker))
    with pytest.raises(ModelLoadError, match=name.replace(".", r"\.")):
        read_checkpoint(ckpt)
    assert not marker.exists()


def test_legacy_non_zip_format_is_restricted_too(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": {}, "x": _ExecPayload(marker)}, path,
               _use_new_zipfile_serialization=False)
    with pytest.raises(ModelLoadError, match=r"builtins\.exec"):
        read_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [("builtins", "eval"), ("builtins", "getattr"), ("builtins", "__import__"), ("posix", "system"),
     ("torch.serialization", "load"), ("torch.storage", "_load_from_bytes"),
     ("functools", "partial"), ("importlib", "import_module"), ("__builtin__", "eval")],
)
def test_dangerous_globals_refused(module: str, name: str) -> None:
    with pytest.raises(safe_pickle.RefusedGlobalError):
        safe_pickle.find_safe_global(module, name)


def test_getitem_and_reconstructor_only_on_stand_ins() -> None:
    getitem = safe_pickle.find_safe_global("_operator", "getitem")
    with pytest.raises(safe_pickle.RefusedGlobalError):
        getitem({"a": 1}, "a")
    recon = safe_pickle.find_safe_global("copyreg", "_reconstructor")
    with pytest.raises(safe_pickle.RefusedGlobalError):
        recon(dict, dict, None)


def test_config_objects_become_inert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An OmegaConf-like object pickles by reference; loading yields a stand-in, runs nothing."""
    fake = types.ModuleType("omegaconf.dictconfig")

    class DictConfig:
        def __init__(self, content: dict) -> None:
            self.content = content

        def __setstate__(self, state: dict) -> None:  # pragma: no cover - must never run
            raise AssertionError("real class code ran during load")

    DictConfig.__module__ = "omegaconf.dictconfig"
    DictConfig.__qualname__ = "DictConfig"
    fake.DictConfig = DictConfig
    parent = types.ModuleType("omegaconf")
    parent.dictconfig = fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "omegaconf", parent)
    monkeypatch.setitem(sys.modules, "omegaconf.dictconfig", fake)
    path = tmp_path / "cfg.ckpt"
    torch.save({"state_dict": {"model.w": torch.arange(3.0)}, "config": DictConfig({"a": 1})}, path)
    raw = pickle.dumps(DictConfig({"b": 2}), protocol=2)
    monkeypatch.delitem(sys.modules, "omegaconf.dictconfig")
    monkeypatch.delitem(sys.modules, "omegaconf")
    state = read_checkpoint(path)
    assert torch.equal(state["model.w"], torch.arange(3.0))
    obj = safe_pickle.loads(raw)
    assert isinstance(obj, safe_pickle.Inert) and "omegaconf.dictconfig.DictConfig" in repr(obj)
    assert obj._sf_state == {"content": {"b": 2}}


def test_shipped_checkpoints_read(tmp_path: Path) -> None:
    """Real sleap-nn checkpoints embed OmegaConf + sleap_nn objects; only tensors come out."""
    shared = Path(__file__).resolve().parents[3] / "shared" / "assets" / "model_ckpts"
    state = read_checkpoint(shared / "minimal_instance_centroid" / "best.ckpt")
    assert len(state) == 24 and all(k.startswith("model.") for k in state)
    assert all(v.dtype == torch.float32 for v in state.values())


def test_not_a_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "best.ckpt"
    bad.write_bytes(b"definitely not a pickle")
    with pytest.raises(ModelLoadError, match="cannot read checkpoint"):
        read_checkpoint(bad)
    nodict = tmp_path / "list.ckpt"
    torch.save([1, 2], nodict)
    with pytest.raises(ModelLoadError, match="state_dict"):
        read_checkpoint(nodict)
