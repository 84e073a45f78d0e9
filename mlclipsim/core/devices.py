"""A torch device named by a user, checked before any work starts."""

from __future__ import annotations

import torch


def check_device(name: str | torch.device) -> torch.device:
    """``name`` as a torch.device that can hold data on this machine; ValueError saying what to use.

    ``meta`` holds no data, and ``cuda``/``mps`` need the hardware and a torch built for it."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"{name!r} is not a torch device ({err}); use cpu, cuda, cuda:1, mps.") from None
    if device.type == "meta":
        raise ValueError("The meta device holds no data, so nothing can be computed on it; use cpu or cuda.")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"Device {str(device)!r} was asked for, but this machine has no usable CUDA GPU "
                             "(or torch was built without CUDA); use --device cpu.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"Device {str(device)!r} does not exist: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s) (cuda:0..).")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError("Device 'mps' was asked for, but this machine has no usable Apple GPU; use --device cpu.")
    elif device.type != "cpu":
        raise ValueError(f"Device {str(device)!r} is not supported by the mlclipsim command; use cpu or cuda.")
    return device
