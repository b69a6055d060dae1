"""Which torch device a run uses: ``auto`` resolved, and a named device checked to exist here."""

from __future__ import annotations

import re

import torch

from sleapflow.errors import ConfigError

__all__ = ("resolve_device",)



def resolve_device(device: str) -> str:
    """``auto`` → cuda, mps or cpu; otherwise check the device exists here."""
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    match = re.fullmatch(r"(cpu|cuda|mps)(:(\d+))?", device)
    if not match:
        raise ConfigError(f"--device: unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    kind = match[1]
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available on this machine; use cpu")
        if match[3] is not None and int(match[3]) >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"--device {device}: MPS is not available on this machine; use cpu")
    return device
