"""edge-cam's exporters (workstation): a torch classifier traced with its CAM folded in
(`torch_export`, needs the export extra), and an ONNX classifier CAM-ified by graph surgery
(`graph.surgery`, needs only the onnx extra).

Grouped by job, each layer importing only those below it (pyproject's import contracts):

    demo/, distill/   the bundled demo's models; a student distilled from the user's footage
    torch_export      `edge-cam export MODEL`: trace, verify, then TFLite and int8 or fp16 on request
    quantise/         int8 and fp16 copies, and the gate on their drift from fp32
    tflite/           the CAM graph converted to TFLite
    graph/            the CAM graph: traced from torch, or grafted onto an ONNX classifier
    common/           what they share: progress lines, multiply-adds

torch is imported only when a torch exporter is used, so `edge_cam_export.graph.surgery` works on a
machine without torch.
"""
from __future__ import annotations

import importlib
from typing import Any

# Public name → the module that defines it; resolved on first use (PEP 562).
_LAZY = {
    "export": "torch_export", "export_module": "torch_export", "list_layers": "torch_export",
    "ExportResult": "torch_export", "find_cam_layers": "graph.heads", "cam_from_onnx": "graph.surgery",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
