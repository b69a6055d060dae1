"""Image preprocessing exactly as sleap-nn does it: channels, size matching, scaling, padding."""

from __future__ import annotations

import numpy as np

__all__ = (
    "apply_input_scale", "ensure_channels", "frames_to_tensor", "normalize", "pad_to_stride", "resize_uint8",
    "rgb_to_grayscale_uint8", "size_match",
)

from sleapflow.lazy import lazy_module

# torch loads on first use: a run on ONNX Runtime with a warm export cache never needs it.
torch = lazy_module("torch")
_F = lazy_module("torch.nn.functional")



def frames_to_tensor(images: np.ndarray | list[np.ndarray]) -> torch.Tensor:
    """Stack (H, W, C) uint8 frames into a (B, C, H, W) uint8 tensor without copying twice."""
    arr = np.stack(images) if isinstance(images, list) else images
    if arr.ndim == 3:
        arr = arr[..., None]
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)


def rgb_to_grayscale_uint8(x: torch.Tensor) -> torch.Tensor:
    """Luma in float, truncated back to the input dtype (torchvision's uint8 behaviour)."""
    r, g, b = x.unbind(dim=-3)
    luma = r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114)
    return luma.to(x.dtype).unsqueeze(-3)


def ensure_channels(x: torch.Tensor, *, ensure_rgb: bool, ensure_grayscale: bool) -> torch.Tensor:
    """The explicit channel coercion flags; without them the model adapts channels in float."""
    channels = x.shape[-3]
    if ensure_rgb and channels != 3:
        return x.repeat(1, 3, 1, 1)
    if ensure_grayscale and channels != 1:
        return rgb_to_grayscale_uint8(x)
    return x


def resize_uint8(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of a uint8 batch, as torchvision's ``resize`` does it.

    On CPU torch has a native uint8 kernel (what the reference uses); elsewhere the image goes
    through float32 and is rounded half-to-even back to uint8, which is torchvision's other path.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.device.type == "cpu":
        return _F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    out = _F.interpolate(x.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def size_match(x: torch.Tensor, max_height: int | None, max_width: int | None
               ) -> tuple[torch.Tensor, float]:
    """Resize keeping aspect ratio to fit (max_height, max_width), then zero-pad bottom/right."""
    height, width = x.shape[-2:]
    if max_height is None and max_width is None:
        return x, 1.0
    target_h = max_height or height
    target_w = max_width or width
    if (height, width) == (target_h, target_w):
        return x, 1.0
    h_ratio = target_h / height
    w_ratio = target_w / width
    ratio = w_ratio if h_ratio > w_ratio else h_ratio
    new_h = round(height * ratio)
    new_w = round(width * ratio)
    x = resize_uint8(x, (new_h, new_w))
    x = _F.pad(x, (0, max(0, target_w - new_w), 0, max(0, target_h - new_h)))
    return x, ratio


def apply_input_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    if scale == 1.0:
        return x
    height, width = x.shape[-2:]
    return resize_uint8(x, (int(height * scale), int(width * scale)))


def pad_to_stride(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Zero-pad bottom and right to a multiple of ``stride`` (coordinates do not move)."""
    height, width = x.shape[-2:]
    pad_h = (stride - height % stride) % stride
    pad_w = (stride - width % stride) % stride
    if pad_h == 0 and pad_w == 0:
        return x
    return _F.pad(x, (0, pad_w, 0, pad_h))


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 → float32 in [0, 1]; float input is divided by 255 only when it looks like 0..255."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    x = x.float()
    if x.max() > 1.0:
        x = x / 255.0
    return x
