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
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edge_cam.errors import EdgeCamError, first_line
from edge_cam.metadata import PREFIX, ModelInfo
from edge_cam.model import Model

from .graph import CamGraph
from .verify import CAM_TOLERANCE, LOGIT_TOLERANCE, Report, compare, logits_error, maps_error, sample_images

INSTALL = "exporting to TFLite needs litert-torch: pip install 'edge-cam[tflite-export]'"
SIGNATURE = "serving_default"


def litert_torch():
    try:
        import litert_torch as lt
    except ImportError:
        raise EdgeCamError(INSTALL + ".") from None
    return lt


def output_names(graph: CamGraph) -> list[str]:
    return ["logits", "class_ids", "scores"] + (["cams"] if graph.with_cam else [])


class NamedOutputs(nn.Module):
    """litert-torch names a signature's outputs after the keys of a returned dict (and its input
    after the keyword it was traced with): this gives the .tflite the ONNX file's names."""

    def __init__(self, graph: CamGraph):
        super().__init__()
        self.cam = graph  # not `graph`: torch.export's GraphModule has an attribute of that name
        self.names = output_names(graph)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.cam(image)))


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


def convert(graph: CamGraph, input_size: tuple[int, int], path: str) -> float:
    """Convert `graph` to a .tflite at `path` (batch 1); returns the seconds it took."""
    sample = torch.from_numpy(sample_images(1, input_size))
    t0 = time.perf_counter()
    with _quiet_converter() as lt:
        try:
            edge = lt.convert(NamedOutputs(graph).eval(), sample_kwargs={"image": sample})
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


@dataclass
class Agreement:
    """The .tflite against the ONNX export on the same images."""
    cam_error: float | None  # max |TFLite - ORT| / range of the ORT map, over all maps
    logit_error: float  # max |TFLite - ORT| / range of the ORT logits
    same_classes: bool  # the same top-K class_ids (up to exact ties)
    batch: int

    @property
    def ok(self) -> bool:
        return (self.same_classes and self.logit_error <= LOGIT_TOLERANCE
                and (self.cam_error is None or self.cam_error <= CAM_TOLERANCE))

    def __str__(self) -> str:
        cam = "n/a" if self.cam_error is None else f"{self.cam_error:.2e}"
        return (f"against ONNX Runtime, batch {self.batch}: CAM error {cam} of range (limit {CAM_TOLERANCE:g}), "
                f"logits error {self.logit_error:.2e} of range, class_ids "
                f"{'the same' if self.same_classes else 'DIFFER'}")


def agreement(tfl: dict[str, np.ndarray], ort: dict[str, np.ndarray]) -> Agreement:
    span = float(np.ptp(ort["logits"])) or 1.0
    logit_error = logits_error(tfl["logits"], ort["logits"])
    # The same top-K, where a swap is allowed only between classes whose logits tie (random
    # weights make exact ties that either runtime may order either way).
    picked = np.take_along_axis(ort["logits"], tfl["class_ids"], axis=1)
    expected = np.take_along_axis(ort["logits"], ort["class_ids"], axis=1)
    same = bool(np.all(np.abs(picked - expected) <= LOGIT_TOLERANCE * span))
    cam_error = maps_error(tfl["cams"], ort["cams"]) if "cams" in ort else None
    return Agreement(cam_error, logit_error, same, len(ort["logits"]))


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
    eager: list[Report]  # the .tflite against the eager model (the paper's CAM)
    onnx: list[Agreement]  # the .tflite against the ONNX export
    seconds: float  # conversion time

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.eager) and all(a.ok for a in self.onnx)


def export_tflite(graph: CamGraph, info: ModelInfo, out: str, *, model: nn.Module, layers, onnx_model,
                  verify_batches: tuple[int, ...] = (2,), quiet: bool = False, log=None) -> TfliteCheck:
    """Convert `graph` to `out` and verify it; above tolerance the file is kept as OUT.failed.tflite."""
    from edge_cam.backends.litert import write_metadata
    lt = litert_torch()
    tmp = out + ".tmp.tflite"
    try:
        seconds = convert(graph, info.input.size, tmp)
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
        tfl, ort = run_items(runtime, images, out), onnx_model.run(images)
        wrong = [n for n in ort if tfl[n].shape != ort[n].shape]
        if wrong:
            os.replace(out, out + ".failed.tflite")
            raise EdgeCamError(f"the TFLite model's {wrong[0]} has shape {list(tfl[wrong[0]].shape)} where ONNX "
                               f"Runtime's has {list(ort[wrong[0]].shape)}; kept it as {out}.failed.tflite.")
        check.eager.append(compare(model, layers, tfl, images, mean, std))
        check.onnx.append(agreement(tfl, ort))
    if not quiet:
        for r in (*check.eager, *check.onnx):
            print(f"      {r}", file=sys.stderr, flush=True)
    if not check.ok:
        os.replace(out, out + ".failed.tflite")
        worst = next(r for r in (*check.eager, *check.onnx) if not r.ok)
        raise EdgeCamError(f"the TFLite model disagrees ({worst}); kept it as {out}.failed.tflite for inspection.")
    return check


# int8 below quality this low is garbage, not drift: the export fails instead of shipping it.
MIN_TOP1_AGREEMENT = 0.5
MIN_CAM_CORRELATION = 0.9


def head_scopes(path: str) -> list[str]:
    """ai-edge-quantizer's scope names of the ops that stay float: everything downstream of the
    feature map F (pooling, classifier, top-K, softmax, the CAM gather and matmul), as in the
    ONNX int8 path. int8 logits tie in the top-K and an int8 CAM loses the cold regions' order."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils
    from ai_edge_quantizer.qtyping import TFLOperationName
    from ai_edge_quantizer.utils.tfl_flatbuffer_utils import get_op_scope, get_subgraph_input_output_operators

    model = flatbuffer_utils.read_model(path)
    sig = next(s for s in model.signatureDefs if s.signatureKey in (SIGNATURE, SIGNATURE.encode()))
    sg = model.subgraphs[sig.subgraphIndex]
    cams = next((o.tensorIndex for o in sig.outputs if o.name in ("cams", b"cams")), None)
    if cams is None:
        raise EdgeCamError(f"{path} has no `cams` output to keep in float; int8 needs a CAM teacher.")
    producer = {t: op for op in sg.operators for t in op.outputs}
    consumers: dict[int, list] = {}
    for op in sg.operators:
        for t in op.inputs:
            consumers.setdefault(t, []).append(op)
    ops = schema.BuiltinOperator

    def kind(op) -> int:
        code = model.operatorCodes[op.opcodeIndex]
        return max(code.builtinCode, code.deprecatedBuiltinCode)

    def root(t: int) -> int:  # back through the reshapes and transposes around the matmul
        while t in producer and kind(producer[t]) in (ops.RESHAPE, ops.TRANSPOSE):
            t = producer[t].inputs[0]
        return t

    matmul = producer.get(cams)
    while matmul is not None and kind(matmul) != ops.BATCH_MATMUL:
        matmul = producer.get(matmul.inputs[0])
    # CAM = α · F: of the matmul's operands, F is the one that comes from a 4-D map
    maps = [] if matmul is None else [t for t in map(root, matmul.inputs) if len(sg.tensors[t].shape) == 4]
    if len(maps) != 1:
        raise EdgeCamError(f"{path} has an unexpected CAM head; quantise the ONNX export instead.")
    feature = maps[0]
    keep, stack = [], [feature]
    while stack:
        for c in consumers.get(stack.pop(), []):
            if not any(c is k for k in keep):
                keep.append(c)
                stack.extend(c.outputs)
    # and the graph's outputs, which the static recipe would otherwise requantise to int8
    keep += [op for op in get_subgraph_input_output_operators(sg) if op.op_key == TFLOperationName.OUTPUT]
    return sorted({get_op_scope(o, sg.tensors) for o in keep})


def quantize_int8(src: str, dst: str, calibration: str, limit: int = 200) -> dict:
    """Static int8 (weights per channel, activations per tensor) of the verified fp32 .tflite with
    ai-edge-quantizer, calibrated on real images; returns the drift against fp32."""
    import re

    from edge_cam.backends.litert import read_metadata, write_metadata

    from .quantize import calibration_batches, drift
    try:
        from ai_edge_quantizer import quantizer, recipe
        from ai_edge_quantizer.algorithm_manager import AlgorithmName
        from ai_edge_quantizer.qtyping import TFLOperationName
    except ImportError:
        raise EdgeCamError("int8 TFLite needs ai-edge-quantizer: pip install 'edge-cam[tflite-export]'.") from None
    fp32 = Model(src, threads=0, spinning=False)
    batches = calibration_batches(fp32, calibration, limit)
    keep = head_scopes(src)
    tmp = dst + ".tmp.tflite"
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):  # progress bars and debug warnings
            warnings.simplefilter("ignore")
            qt = quantizer.Quantizer(src)
            qt.load_quantization_recipe(recipe.static_wi8_ai8())
            qt.update_quantization_recipe("^(" + "|".join(re.escape(s) for s in keep) + ")$",
                                          TFLOperationName.ALL_SUPPORTED,
                                          algorithm_key=AlgorithmName.NO_QUANTIZE)
            result = qt.calibrate({SIGNATURE: [{fp32.input_name: x} for x in batches]}, num_threads=1)
            qt.quantize(result).export_model(tmp, overwrite=True)
        write_metadata(tmp, dst, read_metadata(src))
    except EdgeCamError:
        raise
    except Exception as e:
        raise EdgeCamError(f"ai-edge-quantizer could not quantise {src} ({first_line(e)}); "
                           "export fp32 TFLite or int8 ONNX instead.") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    d = drift(fp32, Model(dst, threads=0, spinning=False), batches)
    if d["top1_agreement"] < MIN_TOP1_AGREEMENT or d["cam_correlation_median"] < MIN_CAM_CORRELATION:
        os.replace(dst, dst + ".failed.tflite")
        raise EdgeCamError(f"int8 TFLite drifts too far from fp32 (top-1 agreement {d['top1_agreement']:.0%}, "
                           f"CAM correlation {d['cam_correlation_median']:.3f}); kept it as "
                           f"{dst}.failed.tflite; use fp32 TFLite or int8 ONNX.")
    return d
