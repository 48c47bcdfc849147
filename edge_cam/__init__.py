"""edge-cam runtime: numpy + onnxruntime + OpenCV, never torch.

The data's path: source → preprocess → model → localize → crop → student (a model) → sink.
"""
from .cascade import Cascade, FrameResult, Roi
from .crop import CropSpec
from .errors import EdgeCamError
from .localize import Box, HeatMap, boxes_from_heat
from .model import Model, Prediction
from .source import Source, open_source, read_image

__version__ = "0.1.0"
__all__ = ["Box", "Cascade", "CropSpec", "EdgeCamError", "FrameResult", "HeatMap", "Model", "Prediction",
           "Roi", "Source", "boxes_from_heat", "open_source", "read_image"]
