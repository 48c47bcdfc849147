"""edge-cam's exporters (workstation): a torch classifier traced with its CAM folded in
(`torch_export`, needs the export extra), and an ONNX classifier CAM-ified by graph surgery
(`surgery`, needs only the onnx extra).

torch is imported only when a torch exporter is used, so `edge_cam_export.surgery` works on a
machine without torch.
"""
from __future__ import annotations

import importlib
from typing import Any

# Public name → the module that defines it; resolved on first use (PEP 562).
_LAZY = {
    "export": "torch_export", "export_module": "torch_export", "list_layers": "torch_export",
    "ExportResult": "torch_export", "find_cam_layers": "heads", "cam_from_onnx": "surgery",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
