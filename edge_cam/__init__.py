"""edge-cam runtime: numpy + onnxruntime + OpenCV, never torch.

The data's path: source → preprocess → model → localize → crop → student (a model) → sink.

>>> from edge_cam import Cascade, Model, open_sink, open_source, stream
>>> cascade = Cascade(Model("teacher.onnx"), Model("student.onnx"), every=5)
>>> with open_source("0") as camera:
...     for result in stream(cascade, [camera]):
...         print([(roi.box.label, roi.student.label) for roi in result.rois])
"""
from .cascade import Cascade, FrameResult, Roi, Verdict, require_cam
from .crop import Crop, CropSpec
from .errors import EdgeCamError
from .localize import Box, BoxRule, HeatMap, boxes_from_heat
from .model import Model, Prediction
from .sink import Sink
from .sinks import open_sink
from .source import Frame, Source, open_source, read_image
from .stream import StreamStats, run, stream

__version__ = "0.1.0"
__all__ = ["Box", "BoxRule", "Cascade", "Crop", "CropSpec", "EdgeCamError", "Frame", "FrameResult", "HeatMap",
           "Model", "Prediction", "Roi", "Sink", "Source", "StreamStats", "Verdict", "__version__", "boxes_from_heat",
           "open_sink", "open_source", "read_image", "require_cam", "run", "stream"]
