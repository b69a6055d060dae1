"""Read the ``state_dict`` of a sleap-nn ``best.ckpt`` through the restricted unpickler."""

from __future__ import annotations

from pathlib import Path

import torch

from sleapflow.errors import ModelLoadError
from sleapflow.models import safe_pickle

__all__ = ("read_checkpoint", "strip_prefix")



def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Return the checkpoint's tensors keyed as saved (``model.backbone...``), on the CPU.

    Never executes code from the file: globals outside the allow-list are refused.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"checkpoint {str(p)!r} does not exist")
    try:
        # weights_only=False only because a custom pickle_module is passed; the module itself is
        # the restriction (torch's own weights_only unpickler cannot admit OmegaConf stand-ins).
        obj = torch.load(p, map_location="cpu", pickle_module=safe_pickle, weights_only=False)
    except safe_pickle.RefusedGlobalError as exc:
        raise ModelLoadError(
            f"refused to load {str(p)!r}: it references {exc.global_name}, which is not allowed "
            "in a model checkpoint (nothing from the file was executed)"
        ) from None
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot read checkpoint {str(p)!r}: {exc}") from exc
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    if state is None and isinstance(obj, dict) and obj and all(
        isinstance(v, torch.Tensor) for v in obj.values()
    ):
        state = obj  # a bare state_dict saved with torch.save(module.state_dict())
    if not isinstance(state, dict):
        raise ModelLoadError(f"checkpoint {str(p)!r} has no `state_dict` of tensors")
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise ModelLoadError(f"checkpoint {str(p)!r}: `state_dict` entry {k!r} is not a tensor")
        out[k] = v
    return out


def strip_prefix(state: dict[str, torch.Tensor], prefix: str = "model.") -> dict[str, torch.Tensor]:
    """Drop the LightningModule's ``model.`` prefix (keys without it are kept as they are)."""
    n = len(prefix)
    return {(k[n:] if k.startswith(prefix) else k): v for k, v in state.items()}
