"""An export folder's network on ONNX Runtime, shaped like a loaded PoseNetwork (see
:mod:`sleapflow.models.export_folder` for the folder's layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from sleapflow.errors import BackendError, ModelLoadError
from sleapflow.models.export_folder import NETWORK_FILE
from sleapflow.models.schema import ModelConfig

__all__ = ("ExportedNetwork",)


class ExportedNetwork(nn.Module):
    """A network of an export folder on ONNX Runtime, shaped like a loaded :class:`PoseNetwork`:
    float (B, C, H, W) in [0, 1] in, head maps out (the heads' final activations applied in
    torch, as sleapflow's ONNX runtime does). The forward stage calls it as it is
    (:attr:`runs_itself`): it is already an export, so it is never exported again."""

    runs_itself = True

    def __init__(self, path: Path, config: ModelConfig, device: torch.device,
                 threads: int | None = None) -> None:
        super().__init__()
        from sleapflow.models.network import PoseNetwork

        self.path = path
        self.config = config
        self.names = list(config.head_names)
        # The activations are parameter-free; an untrained network of the same config has them.
        self.activations = PoseNetwork(config).head_activations()
        self.device = device
        self.threads = threads
        self._session = self._open()

    def _open(self) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.threads:
            opts.intra_op_num_threads = self.threads
        providers: list[Any] = ["CPUExecutionProvider"]
        if self.device.type == "cuda":
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": self.device.index or 0}))
        try:
            return ort.InferenceSession(str(self.path / NETWORK_FILE), opts, providers=providers)
        except Exception as exc:  # onnxruntime's own exception types
            raise ModelLoadError(f"ONNX Runtime cannot load {str(self.path / NETWORK_FILE)!r}: "
                                 f"{' '.join(str(exc).split())[:300]}") from None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.shape[0] == 0:
            return {}
        feed = x.detach().float().contiguous().cpu().numpy()
        try:
            outs = self._session.run(self.names, {"x": feed})
        except Exception as exc:  # onnxruntime's own exception types
            raise BackendError(f"ONNX Runtime failed on a batch of shape {tuple(x.shape)} with "
                               f"{str(self.path)!r}: {' '.join(str(exc).split())[:300]}") from exc
        maps = {k: torch.from_numpy(v).to(x.device) for k, v in zip(self.names, outs)}
        return {k: self.activations[k](v) if k in self.activations else v for k, v in maps.items()}
