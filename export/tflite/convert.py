"""TFLite export through litert-torch: the same CamGraph as the ONNX export, converted, with the
edge_cam metadata attached (edge_cam.backends.litert's format), and verified against the eager model and
against the ONNX export.

litert-torch lowers the graph with a fixed batch of 1 (its JAX lowering rejects a symbolic batch
axis in 0.10.0, both converters), so the .tflite takes uint8 [1, H, W, 3] and says so in its
`edge_cam.input` metadata (`"batch": 1`); the runtime runs a batch item by item. Its `class_ids`
are int32: the converter narrows 64-bit tensors, as most on-device runtimes want.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edge_cam.backends.litert import native_noise_filtered
from edge_cam.errors import EdgeCamError, first_line
from edge_cam.metadata import PREFIX, ModelInfo
from edge_cam.model import Model

from ..common.progress import progress
from ..graph.cam_graph import CamGraph, out_of_place, output_names
from ..graph.checks import queried
from ..graph.eager import compare
from ..graph.verify import Report, agreement, sample_images

INSTALL = "exporting to TFLite needs litert-torch: pip install 'edge-cam[tflite-export]'"
SIGNATURE = "serving_default"


def litert_torch():
    try:
        with native_noise_filtered():  # importing it starts TensorFlow, which greets stderr
            import litert_torch as lt
    except ImportError:
        raise EdgeCamError(INSTALL + ".") from None
    return lt


class NamedOutputs(nn.Module):
    """litert-torch names a signature's outputs after the keys of a returned dict (and its input
    after the keyword it was traced with): this gives the .tflite the ONNX file's names.

    `baked`: class ids whose maps and scores every run returns (query_cams, query_scores): a
    TFLite graph has one fixed signature, so a watch list is a constant of the graph, not an input."""
    baked: torch.Tensor  # a buffer, declared for the type checker

    def __init__(self, graph: CamGraph, baked: Sequence[int] = ()):
        super().__init__()
        self.cam = graph  # not `graph`: torch.export's GraphModule has an attribute of that name
        self.names = output_names(graph, class_query=len(baked) > 0)
        self.register_buffer("baked", torch.tensor(list(baked), dtype=torch.int64))

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.cam(image, self.baked) if len(self.baked) else self.cam(image)))


@contextlib.contextmanager
def _quiet_converter():
    """litert-torch prints a progress tree and warns about the int64 → int32 narrowing we want."""
    lt = litert_torch()
    shown = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    lt.config.show_progress = False
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")
            yield lt
    finally:
        root.setLevel(level)
        if shown is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = shown


def convert(graph: CamGraph, input_size: tuple[int, int], path: str, baked: Sequence[int] = ()) -> float:
    """Convert `graph` (with `baked` classes' maps) to a .tflite at `path` (batch 1); returns the seconds it took."""
    sample = torch.from_numpy(sample_images(1, input_size))
    t0 = time.perf_counter()
    with _quiet_converter() as lt, native_noise_filtered(), out_of_place(graph):
        try:
            edge = lt.convert(NamedOutputs(graph, baked).eval(), sample_kwargs={"image": sample})
            edge.export(path)
        except Exception as e:  # torch.export, the JAX lowering and the MLIR passes all raise their own
            raise EdgeCamError(f"litert-torch could not convert this model to TFLite ({first_line(e)}); "
                               "export it to ONNX instead.") from None
    return time.perf_counter() - t0


def tflite_props(info: ModelInfo, converter: str) -> dict[str, str]:
    """The ONNX file's edge_cam props, plus the fixed batch and what made the file."""
    props = info.to_props()
    spec = json.loads(props[PREFIX + "input"])
    spec["batch"] = 1
    source = json.loads(props[PREFIX + "source"])
    source["format"] = "tflite"
    source["converter"] = converter
    props[PREFIX + "input"] = json.dumps(spec)
    props[PREFIX + "source"] = json.dumps(source)
    return props


def run_items(runtime: Model, images: np.ndarray, path: str) -> dict[str, np.ndarray]:
    """The file's contract is batch 1 (see the module's docstring): LiteRT's session runs the
    images one at a time; a kernel that fails there is the user's sentence, not a traceback."""
    try:
        return runtime.run(images)
    except (ValueError, RuntimeError) as e:  # a kernel that converts but cannot be prepared
        os.replace(path, path + ".failed.tflite")
        raise EdgeCamError(f"the converted model does not run in LiteRT ({first_line(e)}); kept it as "
                           f"{path}.failed.tflite; export it to ONNX instead.") from None


@dataclass
class TfliteCheck:
    """The reports of one conversion."""
    eager: list[Report]  # the .tflite against the eager model (the paper's CAM)
    onnx: list[Report]  # the .tflite against the ONNX export
    seconds: float  # conversion time

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.eager) and all(a.ok for a in self.onnx)


def export_tflite(graph: CamGraph, info: ModelInfo, out: str, *, model: nn.Module, layers, onnx_model,
                  verify_batches: tuple[int, ...] = (2,), quiet: bool = False, log=None) -> TfliteCheck:
    """Convert `graph` to `out` and verify it; above tolerance the file is kept as OUT.failed.tflite.
    The classes in info.cam.baked_classes are mapped on every run (checked against the eager model
    and against `onnx_model`, which then takes class queries)."""
    from edge_cam.backends.litert import write_metadata
    lt = litert_torch()
    baked = np.array(info.cam.baked_classes if info.cam else (), np.int64)
    tmp = out + ".tmp.tflite"
    try:
        seconds = convert(graph, info.input.size, tmp, baked.tolist())
        write_metadata(tmp, out, tflite_props(info, f"litert-torch {lt.__version__}"))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    if log:
        log(f"verifying LiteRT against the eager model and ONNX Runtime ({seconds:.1f} s to convert)")
    runtime = Model(out, threads=0, spinning=False)  # the board's own LiteRT path
    mean, std = info.input.mean, info.input.std
    check = TfliteCheck([], [], seconds)
    for i, b in enumerate(verify_batches):
        images = sample_images(b, info.input.size, seed=100 + i)
        tfl, ort = run_items(runtime, images, out), onnx_model.run(images, classes=baked if baked.size else None)
        wrong = [n for n in ort if tfl[n].shape != ort[n].shape]
        if wrong:
            os.replace(out, out + ".failed.tflite")
            raise EdgeCamError(f"the TFLite model's {wrong[0]} has shape {list(tfl[wrong[0]].shape)} where ONNX "
                               f"Runtime's has {list(ort[wrong[0]].shape)}; kept it as {out}.failed.tflite.")
        check.eager.append(compare(model, layers, tfl, images, mean, std))
        if baked.size:
            check.eager.append(queried(model, layers, tfl, images, baked, mean, std))
        check.onnx.append(agreement(tfl, ort))
    for r in (*check.eager, *check.onnx):
        progress(f"      {r}", quiet)
    if not check.ok:
        os.replace(out, out + ".failed.tflite")
        worst = next(r for r in (*check.eager, *check.onnx) if not r.ok)
        raise EdgeCamError(f"the TFLite model disagrees ({worst}); kept it as {out}.failed.tflite for inspection.")
    return check
