"""Multiply-adds of a torch network, counted the way edge_cam.measure.macs counts an ONNX graph
(convolutions and linear layers), for the students a script trains."""
from __future__ import annotations

import torch
from torch import nn


def count_macs(model: nn.Module, size: tuple[int, int]) -> int:
    """Multiply-adds of one forward pass (convolutions and linear layers)."""
    total = 0

    def hook(module, _inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * module.in_channels // module.groups * k
        else:
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, *size))
    finally:
        for handle in handles:
            handle.remove()
    return total
