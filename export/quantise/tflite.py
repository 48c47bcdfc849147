"""int8 TFLite: static quantisation of the verified fp32 .tflite with ai-edge-quantizer, its CAM
head kept in float as in the ONNX int8 path (see precision.py, which calls this for a .tflite)."""
from __future__ import annotations

import contextlib
import io
import os
import re
import warnings

from edge_cam.backends.litert import read_metadata, write_metadata
from edge_cam.errors import EdgeCamError, first_line
from edge_cam.model import Model

from ..tflite.convert import SIGNATURE
from .drift import MIN_AGREEMENT, drift, gate, split

# An int8 map this unlike fp32's boxes other things, whatever the classes say.
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
    keep: list = []
    stack = [feature]
    while stack:
        for c in consumers.get(stack.pop(), []):
            if not any(c is k for k in keep):
                keep.append(c)
                stack.extend(c.outputs)
    # and the graph's outputs, which the static recipe would otherwise requantise to int8
    keep += [op for op in get_subgraph_input_output_operators(sg) if op.op_key == TFLOperationName.OUTPUT]
    return sorted({get_op_scope(o, sg.tensors) for o in keep})


def quantize_tflite(src: str, dst: str, calibration: str, limit: int = 200, min_agreement: float = MIN_AGREEMENT,
                    force: bool = False, holdout: str | None = None) -> dict:
    """Static int8 (weights per channel, activations per tensor) of the verified fp32 .tflite with
    ai-edge-quantizer, calibrated on real images; returns the drift against fp32 on the calibration
    and on the held-out photos (drift.split). Below `min_agreement` on the held-out photos nothing
    is written, unless `force`."""
    try:
        from ai_edge_quantizer import quantizer, recipe
        from ai_edge_quantizer.algorithm_manager import AlgorithmName
        from ai_edge_quantizer.qtyping import TFLOperationName
    except ImportError:
        raise EdgeCamError("int8 TFLite needs ai-edge-quantizer: pip install 'edge-cam[tflite-export]'.") from None
    fp32 = Model(src, threads=0, spinning=False)
    photos = split(fp32, calibration, limit, holdout)
    batches = photos.calibration
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
    int8 = Model(dst, threads=0, spinning=False)
    result = {"calibration": drift(fp32, int8, batches), "held_out": drift(fp32, int8, photos.held_out),
              "kept_float": [], "int8_units": None, "int8_mac_share": 1.0}
    d = result["held_out"]
    refusal = gate(d, min_agreement, "int8 TFLite")
    if d["cam_correlation_median"] is not None and d["cam_correlation_median"] < MIN_CAM_CORRELATION:
        refusal = f"the int8 TFLite model's CAM correlation with fp32 is {d['cam_correlation_median']:.3f}"
    if refusal and not force:
        os.remove(dst)
        raise EdgeCamError(f"{refusal}; nothing written (use fp32 TFLite, int8 ONNX, or --force to write it anyway).")
    return result
