"""Input validation shared by the metrics: every message says what was wrong and what to do."""

from __future__ import annotations

import torch

from mlclipsim.backbones.preprocessing import MIN_IMAGE_SIDE


def check_images(images: object, name: str = "images", range_tolerance: float = 1e-3,
                 min_side: int = MIN_IMAGE_SIDE) -> torch.Tensor:
    """Validate one image batch: a float tensor (N,3,H,W), finite, values in [0,1], H,W >= min_side.

    ``range_tolerance`` allows values slightly outside [0,1] (e.g. an untrained codec's output).
    Returns the tensor unchanged.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N,3,H,W) with values in [0,1], "
                        f"got {type(images).__name__}. Convert with torchvision.transforms.functional.to_tensor "
                        "or torch.as_tensor(array).permute(2, 0, 1)[None].float() / 255.")
    if not torch.is_floating_point(images):
        raise TypeError(f"{name} has integer dtype {images.dtype}; pass floats in [0,1], "
                        f"e.g. {name}.float() / 255 for 8-bit images.")
    if images.ndim != 4:
        hint = f" Add a batch dimension with {name}.unsqueeze(0)." if images.ndim == 3 else ""
        raise ValueError(f"{name} must have shape (N,3,H,W), got {tuple(images.shape)}.{hint}")
    channels = images.shape[1]
    if channels != 3:
        if channels == 1:
            hint = f"For grayscale, repeat the channel: {name}.expand(-1, 3, -1, -1)."
        elif channels == 4:
            hint = f"For RGBA, drop (or composite) the alpha channel: {name}[:, :3]."
        elif images.shape[-1] in (1, 3, 4):
            hint = f"It looks channels-last (N,H,W,C): use {name}.permute(0, 3, 1, 2)."
        else:
            hint = "Pass RGB images."
        raise ValueError(f"{name} must have 3 channels (RGB) in dimension 1, got shape {tuple(images.shape)}. {hint}")
    height, width = images.shape[-2:]
    if height < min_side or width < min_side:
        raise ValueError(f"{name} is {height}x{width} px; the minimum is {min_side}x{min_side} "
                         f"(the coarsest encoder stride). Upsample small images first, e.g. with "
                         f"torch.nn.functional.interpolate(x, size=({max(height, min_side)}, {max(width, min_side)})).")
    if images.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(images.shape)}).")
    images_data = images.detach()
    finite = torch.isfinite(images_data)
    if not bool(finite.all()):
        count = int((~finite).sum())
        raise ValueError(f"{name} contains {count} NaN or infinite value(s); check the producer of the images "
                         "(e.g. a diverged codec) before scoring.")
    low, high = float(images_data.min()), float(images_data.max())
    if low < -range_tolerance or high > 1 + range_tolerance:
        if high > 1.5 and high <= 255 + range_tolerance and low >= -range_tolerance:
            hint = f"It looks like 0..255 values were passed: divide by 255 ({name} / 255)."
        elif low < 0 and low >= -1 - range_tolerance and high <= 1 + range_tolerance:
            hint = f"It looks like [-1,1] values were passed: map them with ({name} + 1) / 2."
        else:
            hint = f"Rescale to [0,1] or clamp with {name}.clamp(0, 1)."
        raise ValueError(f"{name} must have values in [0,1], got min {low:.4g}, max {high:.4g}. {hint}")
    return images


def check_same_shape(preds: torch.Tensor, target: torch.Tensor) -> None:
    """Full-reference metrics compare images of the same batch size and size."""
    if preds.shape != target.shape:
        raise ValueError(f"preds (distorted) and target (reference) must have the same shape, got "
                         f"{tuple(preds.shape)} and {tuple(target.shape)}. Resize or crop the distorted images "
                         "to the reference size, and pair them one to one.")


def check_device(images: torch.Tensor, device: torch.device, name: str = "images") -> None:
    """The metric (its frozen encoder) and its inputs must live on one device."""
    if images.device != device:
        raise ValueError(f"{name} is on {images.device} but the metric is on {device}; move one of them, "
                         f"e.g. metric.to({str(images.device)!r}) or {name}.to({str(device)!r}).")
