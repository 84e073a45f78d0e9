"""Frozen networks inside metrics and losses: no gradients, eval mode, and out of the parent's ``state_dict``.

A metric's frozen encoder (and RA-MIQA's trained model) comes from its weight source, not from a
checkpoint: a ``state_dict()`` that carried it would add tens of MB to every checkpoint of every module
holding the metric, and a strict load could overwrite it with another configuration's weights. As in
torchmetrics, where a metric's ``state_dict()`` is empty by default, :func:`exclude_from_state_dict`
leaves named submodules or buffers out of ``state_dict()``; on load they count neither as missing (a
strict load of the new, smaller checkpoints passes) nor as unexpected (checkpoints written before,
which carried them, still load strictly), and the frozen weights are never overwritten from a file.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

from torch import nn


def freeze(module: nn.Module) -> nn.Module:
    """Switch every parameter of ``module`` off for training and put it in eval mode; returns it."""
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module.eval()


def _owned(key: str, prefix: str, names: Iterable[str]) -> bool:
    return any(key == prefix + name or key.startswith(prefix + name + ".") for name in names)


def _drop_from_state_dict(names: tuple[str, ...], module: nn.Module, state_dict: dict, prefix: str,
                          local_metadata: Any) -> None:
    for key in [k for k in state_dict if _owned(k, prefix, names)]:
        del state_dict[key]


def _keep_on_load(names: tuple[str, ...], module: nn.Module, state_dict: dict, prefix: str, local_metadata: Any,
                  strict: bool, missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
    """Replace whatever a checkpoint holds for ``names`` by the module's own tensors (nothing missing, nothing
    unexpected, nothing overwritten)."""
    for key in [k for k in state_dict if _owned(k, prefix, names)]:
        del state_dict[key]
    for name in names:
        item = getattr(module, name)
        own = item.state_dict(keep_vars=True) if isinstance(item, nn.Module) else {"": item}
        for key, value in own.items():
            state_dict[prefix + name + ("." + key if key else "")] = value


def exclude_from_state_dict(module: nn.Module, *names: str) -> None:
    """Leave the submodules / buffers ``names`` of ``module`` out of its ``state_dict()`` (see the module doc)."""
    names = tuple(names)
    module.register_state_dict_post_hook(partial(_drop_from_state_dict, names))
    module.register_load_state_dict_pre_hook(partial(_keep_on_load, names))
