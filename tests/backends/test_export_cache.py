"""The export cache: reuse, invalidation by content, corrupt entries, two processes at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sleapflow.backends import resolve_runtime
from sleapflow.backends.cache import ExportCache, cache_root
from sleapflow.backends.runners import OnnxRunner, TorchRunner
from sleapflow.errors import BackendError
from sleapflow.models import load_model
from sleapflow.testing import write_synthetic_model

ROOT = Path(__file__).resolve().parents[2]
ONNX = resolve_runtime("onnx", "cpu")


def _tiny(folder: Path, seed: int) -> Path:
    return write_synthetic_model(folder, "single_instance", n_nodes=2, filters=4, filters_rate=1.5,
                                 max_stride=8, seed=seed)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {"a": _tiny(root / "a", 0), "b": _tiny(root / "b", 1)}


def _batch(seed: int = 0, n: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 64, 64), dtype=torch.uint8, generator=g)


def _onnx(model: Path, cache: Path) -> OnnxRunner:
    return OnnxRunner(load_model(model).module, torch.device("cpu"), threads=1, precision="fp32",
                      cache=ExportCache("onnx", cache))


def _assert_matches_torch(runner: OnnxRunner, model: Path, x: torch.Tensor) -> None:
    ref = TorchRunner(load_model(model).module, torch.device("cpu"))(x)
    got = runner(x)
    assert set(got) == set(ref)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], atol=1e-5, rtol=0)


def test_cache_dir_honours_the_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLEAPFLOW_CACHE_DIR", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("SLEAPFLOW_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "sleapflow"


def test_second_use_reuses_the_entry_and_batch_axis_is_dynamic(models: dict[str, Path],
                                                                tmp_path: Path) -> None:
    first = _onnx(models["a"], tmp_path)
    _assert_matches_torch(first, models["a"], _batch(0, 2))
    (key, built), = first.exports.values()
    assert built
    second = _onnx(models["a"], tmp_path)
    # Another batch size through the same export: the batch axis is dynamic.
    _assert_matches_torch(second, models["a"], _batch(1, 3))
    assert second.exports[(1, 64, 64)] == (key, False)
    assert [p.name for p in (tmp_path / "onnx").iterdir()] == [key]


def test_other_checkpoint_shape_or_weights_never_reuse_an_entry(models: dict[str, Path],
                                                                tmp_path: Path) -> None:
    a = _onnx(models["a"], tmp_path)
    a(_batch())
    b = _onnx(models["b"], tmp_path)
    _assert_matches_torch(b, models["b"], _batch())
    (key_a, _), = a.exports.values()
    (key_b, built_b), = b.exports.values()
    assert key_a != key_b and built_b
    # Another input shape class is another entry too.
    b(torch.zeros((1, 1, 96, 64), dtype=torch.uint8))
    assert b.exports[(1, 96, 64)][0] not in (key_a, key_b)
    # The same folder with one weight changed (as an override would) misses as well.
    module = load_model(models["a"]).module
    with torch.no_grad():
        next(iter(module.parameters())).add_(1e-3)
    c = OnnxRunner(module, torch.device("cpu"), threads=1, precision="fp32",
                   cache=ExportCache("onnx", tmp_path))
    c(_batch())
    assert c.exports[(1, 64, 64)][0] != key_a and c.exports[(1, 64, 64)][1]


@pytest.mark.parametrize("damage", ["flip_byte", "bad_json"])
def test_a_corrupt_entry_is_rebuilt_not_trusted(models: dict[str, Path], tmp_path: Path,
                                                damage: str) -> None:
    first = _onnx(models["a"], tmp_path)
    first(_batch())
    (key, _), = first.exports.values()
    entry = tmp_path / "onnx" / key
    artifact = entry / "model.onnx"
    if damage == "flip_byte":
        data = bytearray(artifact.read_bytes())
        data[len(data) // 2] ^= 0xFF
        artifact.write_bytes(bytes(data))
    else:
        (entry / "entry.json").write_text("{not json")
    again = _onnx(models["a"], tmp_path)
    _assert_matches_torch(again, models["a"], _batch())
    assert again.exports[(1, 64, 64)] == (key, True)
    meta = json.loads((entry / "entry.json").read_text())
    assert meta["size"] == artifact.stat().st_size
    assert not [p for p in (tmp_path / "onnx").iterdir() if p.name.startswith(".")]


_WORKER = """
import sys, time, torch
from pathlib import Path
from sleapflow.models import load_model
from sleapflow.backends.cache import ExportCache
from sleapflow.backends.runners import OnnxRunner
model, cache, go, out = sys.argv[1:5]
runner = OnnxRunner(load_model(model).module, torch.device("cpu"), threads=1, precision="fp32",
                    cache=ExportCache("onnx", Path(cache)))
while not Path(go).exists():  # start exporting together
    time.sleep(0.005)
x = torch.arange(2 * 64 * 64, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(2, 1, 64, 64)
heads = runner(x)
(key, built), = runner.exports.values()
torch.save({"key": key, "built": built, "heads": heads}, out)
"""


def test_two_processes_exporting_at_once(models: dict[str, Path], tmp_path: Path) -> None:
    cache, go = tmp_path / "cache", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(models["a"]), str(cache), str(go),
                               str(tmp_path / f"out{i}.pt")], env=env) for i in range(2)]
    time.sleep(0.5)
    go.touch()
    for p in procs:
        assert p.wait(timeout=120) == 0
    outs = [torch.load(tmp_path / f"out{i}.pt") for i in range(2)]
    assert outs[0]["key"] == outs[1]["key"]
    entries = list((cache / "onnx").iterdir())
    # One entry, no temporary folders left behind, and it verifies.
    assert [p.name for p in entries] == [outs[0]["key"]]
    for k in outs[0]["heads"]:
        torch.testing.assert_close(outs[0]["heads"][k], outs[1]["heads"][k], atol=1e-6, rtol=0)
    reuse = _onnx(models["a"], cache.parent / "cache")
    reuse(_batch())
    assert reuse.exports[(1, 64, 64)] == (outs[0]["key"], False)


class _NoForward(torch.nn.Module):
    """Wraps a module and fails if it is ever run: a cache hit must not need torch's maps."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.inner = module

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise AssertionError("the torch module ran on a cache hit")


def test_a_cache_hit_skips_the_torch_reference_forward(models: dict[str, Path],
                                                       tmp_path: Path) -> None:
    first = _onnx(models["a"], tmp_path)
    expected = first(_batch())
    (key, _), = first.exports.values()
    module = load_model(models["a"]).module
    # The runner digests the real module (same key); only its forward is replaced afterwards.
    hit = OnnxRunner(module, torch.device("cpu"), threads=1, precision="fp32",
                     cache=ExportCache("onnx", tmp_path))
    hit.module = _NoForward(module)
    got = hit(_batch())
    assert hit.exports[(1, 64, 64)] == (key, False)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], atol=0, rtol=0)


def test_an_export_that_fails_its_first_check_is_not_kept(models: dict[str, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import sleapflow.backends.runners as runners

    monkeypatch.setattr(runners, "EXPORT_TOLERANCE", -1.0)  # every export "differs" from torch
    bad = _onnx(models["a"], tmp_path)
    with pytest.raises(BackendError, match="differs from torch"):
        bad(_batch())
    # The failed entry is gone, so no later run can take it from the cache unchecked.
    assert not [p for p in (tmp_path / "onnx").iterdir() if not p.name.startswith(".")]


def test_an_entry_with_a_valid_checksum_that_does_not_load_is_rebuilt(models: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    import hashlib

    first = _onnx(models["a"], tmp_path)
    first(_batch())
    (key, _), = first.exports.values()
    entry = tmp_path / "onnx" / key
    garbage = b"not an onnx graph" * 100
    (entry / "model.onnx").write_bytes(garbage)
    record = json.loads((entry / "entry.json").read_text())
    record.update(size=len(garbage), sha256=hashlib.sha256(garbage).hexdigest())
    (entry / "entry.json").write_text(json.dumps(record))
    again = _onnx(models["a"], tmp_path)
    _assert_matches_torch(again, models["a"], _batch())
    assert again.exports[(1, 64, 64)] == (key, True)
