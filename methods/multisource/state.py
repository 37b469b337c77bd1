"""Training state as flat tensor dicts (safetensors-ready): what actors send and checkpoints hold."""

from __future__ import annotations

import torch
from torch import nn


def module_tensors(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}{k}": v.detach().cpu().clone() for k, v in module.state_dict().items()}


def load_module_tensors(module: nn.Module, prefix: str, tensors: dict[str, torch.Tensor]) -> None:
    module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)


def optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """An optimizer's per-parameter state as ``<prefix><param index>.<name>`` tensors."""
    out = {}
    for idx, state in opt.state_dict()["state"].items():
        for name, value in state.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            out[f"{prefix}{idx}.{name}"] = t.detach().cpu().clone()
    return out


def load_optimizer_tensors(opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            idx, name = key[len(prefix):].split(".", 1)
            state.setdefault(int(idx), {})[name] = value.clone()
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
