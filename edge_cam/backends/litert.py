"""TFLite models through LiteRT (`ai-edge-litert`, the `tflite` extra), and their edge_cam metadata.

edge-cam's own .tflite teachers carry the same `edge_cam.*` key → JSON-string props as its ONNX
files, stored as one TFLite Metadata entry named "edge_cam" whose buffer is the UTF-8 JSON object
of those props. They have a signature ("serving_default", or the only one) with a uint8
[B, H, W, 3] input and outputs named logits, class_ids, scores (and cams).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Sequence

import numpy as np

from ..errors import EdgeCamError, first_line
from . import Tensor
from .stderr import filtered

log = logging.getLogger("edge_cam")
METADATA_NAME = "edge_cam"
INSTALL = "running .tflite models needs ai-edge-litert: pip install 'edge-cam[tflite]'"


def _litert(module: str):
    try:
        if module == "interpreter":
            from ai_edge_litert import interpreter
            return interpreter
        from ai_edge_litert import schema_py_generated
        return schema_py_generated
    except ImportError:
        raise EdgeCamError(INSTALL + ".") from None


def _read(path: str) -> bytes:
    if not os.path.isfile(path):
        raise EdgeCamError(f"model file {path} does not exist; check the path.")
    with open(path, "rb") as f:
        data = f.read()
    if data[4:8] != b"TFL3":  # the flatbuffer file identifier of every TFLite model
        raise EdgeCamError(f"{path} is not a TFLite model (no TFL3 identifier); check the file.")
    return data


def _metadata_from_bytes(data: bytes, where: str) -> dict[str, str]:
    schema = _litert("schema")
    try:
        model = schema.Model.GetRootAs(data, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() != METADATA_NAME.encode():
                continue
            buf = model.Buffers(entry.Buffer())
            if buf.Offset() > 1:  # large models keep buffers after the flatbuffer
                raw = data[buf.Offset():buf.Offset() + buf.Size()]
            else:
                raw = buf.DataAsNumpy().tobytes()
            props = json.loads(raw.decode("utf-8"))
            if not isinstance(props, dict) or not all(isinstance(v, str) for v in props.values()):
                raise ValueError("not an object of strings")
            return props
    except Exception as e:  # a damaged flatbuffer fails in many ways
        raise EdgeCamError(f"{where} has an unreadable edge_cam metadata entry ({e}); re-export it.") from None
    return {}


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The edge_cam.* props of a .tflite file ({} when it has none)."""
    path = os.fspath(path)
    return _metadata_from_bytes(_read(path), path)


def write_metadata(src: str | os.PathLike, dst: str | os.PathLike, props: dict[str, str]) -> None:
    """Copy the TFLite model `src` to `dst` with `props` as its edge_cam metadata (replacing any)."""
    src, dst = os.fspath(src), os.fspath(dst)
    _read(src)  # the one-sentence errors for a missing or foreign file
    schema = _litert("schema")
    from ai_edge_litert.tools import flatbuffer_utils
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in props.items()):
        raise EdgeCamError("TFLite metadata props must map strings to (JSON) strings.")
    try:
        model = flatbuffer_utils.read_model(src)
    except Exception as e:
        raise EdgeCamError(f"{src} is not a readable TFLite model ({e}).") from None
    payload = np.frombuffer(json.dumps(props).encode("utf-8"), np.uint8)
    entries = [m for m in (model.metadata or []) if m.name in (METADATA_NAME, METADATA_NAME.encode())]
    if entries:
        model.buffers[entries[0].buffer].data = payload
        model.metadata = [m for m in model.metadata if m not in entries[1:]]
    else:
        buf, entry = schema.BufferT(), schema.MetadataT()
        buf.data = payload
        model.buffers.append(buf)
        entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
        model.metadata = (model.metadata or []) + [entry]
    part = dst + ".part"
    flatbuffer_utils.write_model(model, part)
    os.replace(part, dst)  # never leave a half-written model under the final name


def _tensor(d: dict, name: str | None = None) -> Tensor:
    q = d.get("quantization_parameters") or {}
    scales, zeros = q.get("scales", ()), q.get("zero_points", ())
    quant = (float(scales[0]), int(zeros[0])) if len(scales) == 1 and scales[0] != 0 else None
    shape = d.get("shape_signature", d["shape"])
    return Tensor(name or d["name"], tuple(int(s) for s in shape), np.dtype(d["dtype"]), quant)


# What LiteRT, TensorFlow's converter and absl write to the process's stderr on their own (file
# descriptor 2, below any Python logging): the XNNPACK line of every interpreter, absl's preamble,
# glog-style INFO/WARNING lines (`I0000 00:00:...`, `W1203 10:31:55...`) of the converter's imports.
NATIVE_NOISE = re.compile(r"(INFO: Created TensorFlow Lite XNNPACK delegate|WARNING: All log messages before "
                          r"absl::InitializeLog|[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] )")


def native_noise_filtered() -> contextlib.AbstractContextManager[None]:
    """Catch file descriptor 2 while native code runs, then pass on every line but NATIVE_NOISE."""
    return filtered(NATIVE_NOISE)


class LiteRTBackend:
    """One LiteRT interpreter (CPU, XNNPACK) as a Backend; threads 0 = one per core.

    A batch runs in one invoke when the input can be resized to it; TFLite graphs converted
    with a fixed batch (a Reshape to [1, N], as in the Coral models) cannot, and then the items
    run one by one: measured, it is the only way those models take a batch at all.
    """
    name = "litert"

    def __init__(self, path: str, threads: int = 0, providers: str | Sequence[str] = "auto"):
        wanted = [providers] if isinstance(providers, str) else list(providers)
        if any(p.lower() not in ("auto", "cpu", "cpuexecutionprovider") for p in wanted):
            # One caller's providers often serve an .onnx teacher and a .tflite student alike.
            log.warning("LiteRT runs %s on the CPU; providers apply to .onnx models only.",
                        os.path.basename(path))
        self.path, self.providers = path, ["LiteRT CPU"]
        data = _read(path)
        self.props = _metadata_from_bytes(data, path)
        self._data, self.threads = data, threads or os.cpu_count() or 1
        self._open()
        # A batch dimension fixed at 1 in the signature means one image an invoke: resizing such a
        # graph may "work" and still return one image's outputs (measured with litert-torch's).
        # Otherwise it is unknown until a batch of more than one is tried.
        self._batchable: bool | None = False if self.inputs[0].shape[:1] == (1,) else None

    def _open(self) -> None:
        module = _litert("interpreter")
        # A graph without signatures is allocated here, and LiteRT greets its XNNPACK delegate then,
        # once a process: without the filter that line reached the log whenever this came first.
        with native_noise_filtered():
            self._make(module)

    def _make(self, module) -> None:
        try:
            it = module.Interpreter(model_content=self._data, num_threads=self.threads)
            signatures = it.get_signature_list()
            if signatures:
                key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
                if len(signatures) > 1 and key != "serving_default":
                    raise EdgeCamError(f"{self.path} has several signatures ({', '.join(signatures)}) and "
                                       "none is serving_default; keep one.")
                self._runner = it.get_signature_runner(key)
                ins, outs = self._runner.get_input_details(), self._runner.get_output_details()
                self.inputs = [_tensor(d, n) for n, d in ins.items()]
                self.outputs = [_tensor(d, n) for n, d in outs.items()]
            else:
                self._runner = None
                it.allocate_tensors()
                self.inputs = [_tensor(d) for d in it.get_input_details()]
                self.outputs = [_tensor(d) for d in it.get_output_details()]
                self._in_index = it.get_input_details()[0]["index"]
                self._out_index = {d["name"]: d["index"] for d in it.get_output_details()}
        except EdgeCamError:
            raise
        except Exception as e:  # LiteRT raises ValueError/RuntimeError with multi-line native logs
            raise EdgeCamError(f"{self.path} is not a readable TFLite model ({first_line(e)}); "
                               "check the file.") from None
        if len(self.inputs) != 1:
            raise EdgeCamError(f"{self.path} has {len(self.inputs)} inputs; edge-cam runs image "
                               "models with exactly one.")
        self.interpreter = it
        self._announced = False  # or at the first invoke (a graph with signatures)

    def _invoke(self, names: Sequence[str], x: np.ndarray) -> list[np.ndarray]:
        if not self._announced:
            self._announced = True
            with native_noise_filtered():
                return self._invoke(names, x)
        if self._runner is not None:
            out = self._runner(**{self.inputs[0].name: x})  # resizes and reallocates when needed
            return [out[n] for n in names]
        it = self.interpreter
        if tuple(it.get_input_details()[0]["shape"]) != x.shape:
            it.resize_tensor_input(self._in_index, list(x.shape))
            it.allocate_tensors()
        it.set_tensor(self._in_index, x)
        it.invoke()
        return [it.get_tensor(self._out_index[n]) for n in names]

    def run(self, names: Sequence[str], x: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
        """The graph on a batch; quantised outputs come back dequantised to float32. `extra` inputs
        (a class query) are an ONNX feature: a TFLite teacher has its fixed signature only."""
        if extra:
            raise EdgeCamError(f"{self.path}: a TFLite graph takes no {', '.join(extra)} input; "
                               "map classes with an ONNX teacher.")
        if len(x) > 1 and self._batchable is not False:
            try:
                out = self._invoke(names, x)
                if any(len(a) != len(x) for a in out):
                    raise ValueError("the outputs do not follow the batch")
                self._batchable = True
            except (ValueError, RuntimeError):
                if self._batchable:  # a batch worked before: this is a real failure
                    raise
                self._batchable = False
                self._open()  # a failed allocation leaves the interpreter unusable
        if len(x) == 1 or self._batchable is False:
            parts = [self._invoke(names, x[i:i + 1]) for i in range(len(x))]
            out = [np.concatenate([p[j] for p in parts]) for j in range(len(names))]
        quant = {t.name: t.quant for t in self.outputs}
        return [_dequantise(a, quant.get(n)) for n, a in zip(names, out)]


def _dequantise(a: np.ndarray, quant: tuple[float, int] | None) -> np.ndarray:
    if quant is None or a.dtype.kind not in "iu":
        return a
    scale, zero = quant
    return (a.astype(np.float32) - zero) * np.float32(scale)
