"""One model behind one object: frames in, typed predictions out.

The graph runs in ONNX Runtime (.onnx) or LiteRT (.tflite, see litert.py). An edge-cam export
describes itself through its metadata; a foreign classifier is described by a StudentSpec, and
its input and output are adapted here so the rest of the runtime sees the same Prediction.
"""
from __future__ import annotations

import os
import sys
import time
import weakref
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import onnxruntime as ort

from .errors import EdgeCamError, first_line
from .backends.litert import Tensor
from .metadata import PREFIX, RESIZE_MODES, ModelInfo, StudentSpec
from .preprocess import Resize, as_rgb, in_order, pad_colour, resize, to_8bit

# Short names users type, and what "auto" tries, best first; CPU is always the last resort.
PROVIDER_NAMES = {"cpu": "CPUExecutionProvider", "xnnpack": "XnnpackExecutionProvider",
                  "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
AUTO_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
ORT_TYPES = {"tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(float)": np.float32,
             "tensor(float16)": np.float16, "tensor(double)": np.float64, "tensor(int64)": np.int64,
             "tensor(int32)": np.int32}


# Sessions whose spinning policy is "auto": when a second one appears, spinning goes off in all
# of them, because idle spinning threads of one session steal the cores the other runs on.
_AUTO_SPIN: "weakref.WeakSet[Model]" = weakref.WeakSet()


@dataclass
class Prediction:
    """A model's answer for one frame; `cams` is None for a plain classifier."""
    class_ids: np.ndarray  # (K,) int64, best first
    scores: np.ndarray  # (K,) softmax probabilities
    labels: list[str]
    logits: np.ndarray  # (num_classes,)
    cams: np.ndarray | None  # (K, h, w) raw CAMs at the feature map's resolution
    resize: Resize  # how the frame was mapped onto the model's input
    timing_ms: dict[str, float] = field(default_factory=dict)  # of the call this frame was in

    @property
    def class_id(self) -> int:
        return int(self.class_ids[0])

    @property
    def score(self) -> float:
        return float(self.scores[0])

    @property
    def label(self) -> str:
        return self.labels[0]

    def rank_of(self, class_id: int) -> int | None:
        """Where `class_id` is in the top-K (its CAM is cams[rank]), or None: the graph computes
        CAMs for its top-K classes only."""
        ranks = np.flatnonzero(self.class_ids == class_id)
        return int(ranks[0]) if ranks.size else None

    def topk(self) -> list[dict]:
        return [{"class_id": int(c), "label": lab, "score": round(float(s), 6)}
                for c, lab, s in zip(self.class_ids, self.labels, self.scores)]


def resolve_providers(providers: str | Sequence[str] = "auto", tensorrt: dict | None = None) -> list:
    """"auto", a short name (cpu, xnnpack, cuda, tensorrt) or ORT provider names → what ORT takes.

    A provider this onnxruntime lacks is left out with one line on stderr saying so (a board
    without its GPU package still runs, on the CPU). TensorRT falls back to CUDA, then the CPU;
    `tensorrt` holds its options (trt_fp16_enable, trt_int8_enable, trt_engine_cache_path, ...).
    """
    available = ort.get_available_providers()
    if providers == "auto":
        return [p for p in AUTO_PROVIDERS if p in available]
    wanted = [providers] if isinstance(providers, str) else list(providers)
    names = []
    for p in wanted:
        name = PROVIDER_NAMES.get(p.lower(), p)
        if name not in PROVIDER_NAMES.values() and not name.endswith("ExecutionProvider"):
            raise EdgeCamError(f"unknown execution provider {p!r}; use auto, {', '.join(PROVIDER_NAMES)} "
                               "or an ONNX Runtime provider name.")
        names += [name, "CUDAExecutionProvider"] if name == "TensorrtExecutionProvider" else [name]
    chosen = []
    for name in dict.fromkeys(names + ["CPUExecutionProvider"]):
        if name not in available:
            print(f"edge-cam: {name} is not in this onnxruntime (it has {', '.join(available)}); "
                  "falling back.", file=sys.stderr)
        elif name == "TensorrtExecutionProvider" and tensorrt:
            chosen.append((name, {k: str(v) for k, v in tensorrt.items()}))
        else:
            chosen.append(name)
    return chosen


def open_session(path: str, providers: list[str], threads: int = 0,
                 spinning: bool = False) -> ort.InferenceSession:
    """One ORT session with explicit options; an unreadable file is a one-sentence EdgeCamError."""
    if not os.path.isfile(path):
        raise EdgeCamError(f"model file {path} does not exist; check the path.")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(path, sess_options=opts, providers=providers)
    except Exception as e:  # ORT raises several unrelated types for unreadable files
        raise EdgeCamError(f"{path} is not a readable ONNX model ({first_line(e)}); "
                           "re-export it or check the file.") from None


class Model:
    """An exported edge-cam model (a CAM teacher, or a plain classifier used as a student).

    providers: "auto", a short name (cpu, xnnpack, cuda, tensorrt) or ORT provider names, with
    `tensorrt` options for TensorRT; missing ones fall back to the CPU. threads: intra-op threads (0 = ORT's
    default, one per core). spinning: True/False, or None to switch it off as soon as a second
    session lives in the process. resize: override the metadata's resize mode. describe: a
    StudentSpec (or its dict, JSON file or inline JSON) for a foreign classifier without
    edge_cam metadata. A .tflite file runs in LiteRT (CPU; threads 0 = one per core).
    """

    def __init__(self, path: str | os.PathLike, providers: str | Sequence[str] = "auto",
                 threads: int = 0, spinning: bool | None = None, resize: str | None = None,
                 tensorrt: dict | None = None, describe: StudentSpec | dict | str | None = None):
        self.path = os.fspath(path)
        self.backend = "litert" if self.path.lower().endswith(".tflite") else "onnxruntime"
        if self.backend == "litert":
            if providers not in ("auto", "cpu", ["cpu"], ("cpu",)):
                print(f"edge-cam: LiteRT runs {os.path.basename(self.path)} on the CPU; --providers "
                      "applies to .onnx models only.", file=sys.stderr)
            self.providers = ["LiteRT CPU"]
        else:
            self.providers = resolve_providers(providers, tensorrt)
        self.threads = threads
        self.spec = None if describe is None else StudentSpec.load(describe)
        self._auto_spin = spinning is None
        if self._auto_spin:
            spinning = not _AUTO_SPIN
        self._open(spinning)
        self._read_metadata()
        if self._auto_spin:  # only a model that opened joins: a failed one is never reopened
            for other in list(_AUTO_SPIN):
                other._open(spinning=False)
            _AUTO_SPIN.add(self)
        if resize is not None:
            if resize not in RESIZE_MODES:
                raise EdgeCamError(f"unknown resize mode {resize!r}; use one of {', '.join(RESIZE_MODES)}.")
            self.info = replace(self.info, input=replace(self.info.input, resize=resize))

    def _open(self, spinning: bool) -> None:
        # LiteRT has no spinning switch; it stays in _AUTO_SPIN so that ORT sessions beside it
        # stop spinning, and is opened once.
        if self.backend == "litert":
            if not hasattr(self, "session"):
                from .backends.litert import LiteRTSession
                self.session = LiteRTSession(self.path, self.threads)
        else:
            self.session = open_session(self.path, self.providers, self.threads, spinning)
        self.spinning = spinning

    def _tensors(self) -> tuple[list[Tensor], list[Tensor], dict[str, str]]:
        if self.backend == "litert":
            return self.session.inputs, self.session.outputs, self.session.props
        ins, outs = (tuple(Tensor(v.name, tuple(d if isinstance(d, int) else -1 for d in v.shape),
                                  np.dtype(ORT_TYPES.get(v.type, object))) for v in vs)
                     for vs in (self.session.get_inputs(), self.session.get_outputs()))
        return list(ins), list(outs), self.session.get_modelmeta().custom_metadata_map

    def _read_metadata(self) -> None:
        inputs, outputs, props = self._tensors()
        # A graph with its batch fixed at 1 (a fixed-shape ONNX source, a Coral model) takes a batch
        # one image at a time. LiteRT's session does that itself (see litert.py).
        self._one_by_one = self.backend == "onnxruntime" and bool(inputs) and inputs[0].shape[:1] == (1,)
        if self.spec is not None:
            self._describe(inputs, outputs)
            return
        if PREFIX + "input" not in props:
            raise EdgeCamError(f"{self.path} has no edge_cam metadata: describe it as a foreign classifier "
                               "with --student-spec SPEC.json (Python: Model(path, describe=...)) or export "
                               "it with `edge-cam export`.")
        self.info = ModelInfo.from_props(props, self.path)
        if len(inputs) != 1 or inputs[0].dtype != np.uint8:
            raise EdgeCamError(f"{self.path} should take one uint8 image input; re-export it "
                               "with `edge-cam export`.")
        self.input_name = inputs[0].name
        names = {o.name for o in outputs}
        needed = {"logits", "class_ids", "scores"} | ({"cams"} if self.info.cam else set())
        if not needed <= names:
            raise EdgeCamError(f"{self.path} lacks the outputs {sorted(needed - names)}; "
                               "re-export it with `edge-cam export`.")
        self.output_names = sorted(needed)
        self._pad = pad_colour(self.info.input.mean)

    def _describe(self, inputs: list[Tensor], outputs: list[Tensor]) -> None:
        """Check a foreign classifier against its description and fill in what its shapes say."""
        spec, where = self.spec, self.path
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise EdgeCamError(f"{where} should take one 4-D image input to be a student.")
        x = inputs[0]
        layout = spec.layout or ("NCHW" if x.shape[1] == 3 and x.shape[3] != 3 else "NHWC")
        hw = x.shape[2:4] if layout == "NCHW" else x.shape[1:3]
        channels = x.shape[1] if layout == "NCHW" else x.shape[3]
        if channels not in (3, -1):
            raise EdgeCamError(f"{where} takes {list(x.shape)}, not a 3-channel {layout} image; fix "
                               "layout in its description.")
        size = spec.size or (tuple(hw) if min(hw) > 0 else None)
        if size is None:
            raise EdgeCamError(f"{where} has a dynamic input size; give \"size\" in its description.")
        if any(0 < a != b for a, b in zip(hw, size)):
            raise EdgeCamError(f"{where} takes {list(x.shape)} ({layout}), not {size[0]}x{size[1]} images; "
                               "fix size in its description.")
        if x.dtype.kind not in "fiu":
            raise EdgeCamError(f"{where} takes {x.dtype} input; students take float or (quantised) integers.")
        out = [o for o in outputs if o.name == spec.output] if spec.output else outputs
        if len(out) != 1:
            raise EdgeCamError(f"{where} has outputs {[o.name for o in outputs]}; name the class scores "
                               "with \"output\" in its description.")
        self.input_name, self._input, self.output_names = x.name, x, [out[0].name]
        n = int(np.prod(out[0].shape[1:]))
        if min(out[0].shape[1:], default=1) <= 0:  # a dynamic class axis: count on a blank image
            blank = np.zeros((1, *size, 3), np.uint8)
            n = self._graph(foreign_input(blank, replace(spec, layout=layout), x))[0].size
        classes = n - spec.label_offset
        if classes < 1:
            raise EdgeCamError(f"{where} has {n} outputs, too few for label_offset {spec.label_offset}.")
        labels = list(spec.labels)
        if len(labels) == n and spec.label_offset:
            labels = labels[spec.label_offset:]  # the file names the skipped outputs too (e.g. "background")
        if labels and len(labels) != classes:
            raise EdgeCamError(f"the labels of {where} have {len(spec.labels)} names for {n} outputs "
                               f"with label_offset {spec.label_offset}; give {classes} or {n} names.")
        self.spec = replace(spec, size=size, layout=layout, labels=tuple(labels))
        self.info = self.spec.model_info(size, where)
        self._pad = pad_colour(self.info.input.mean)

    @property
    def has_cam(self) -> bool:
        return self.info.cam is not None

    @property
    def input_size(self) -> tuple[int, int]:
        return self.info.input.size

    def prepare(self, frame: np.ndarray, color: str = "BGR") -> tuple[np.ndarray, Resize]:
        """One frame → the model's uint8 input (H, W, 3) and the mapping back to the frame."""
        image, order = to_8bit(frame, color)
        small, where = resize(image, self.input_size, self.info.input.resize, in_order(self._pad, order))
        return as_rgb(small, order), where

    def _graph(self, x: np.ndarray) -> list[np.ndarray]:
        if self.backend == "litert":
            return self.session.run(self.output_names, x)
        if self._one_by_one and len(x) > 1:
            parts = [self.session.run(self.output_names, {self.input_name: x[i:i + 1]}) for i in range(len(x))]
            return [np.concatenate(p) for p in zip(*parts)]
        return self.session.run(self.output_names, {self.input_name: x})

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The graph on an already prepared (B, H, W, 3) uint8 RGB batch → logits, class_ids,
        scores (and cams); a foreign classifier's input and output are adapted to that."""
        if self.spec is None:
            out = dict(zip(self.output_names, self._graph(batch)))
            out["class_ids"] = out["class_ids"].astype(np.int64, copy=False)  # TFLite gives int32
            return out
        raw = self._graph(foreign_input(batch, self.spec, self._input))[0]
        return foreign_output(raw.reshape(len(batch), -1), self.spec)

    def predict(self, frame: np.ndarray, color: str = "BGR") -> Prediction:
        return self.predict_batch([frame], color)[0]

    def predict_batch(self, frames: Sequence[np.ndarray], color: str = "BGR",
                      prepared: Sequence[tuple[np.ndarray, Resize]] | None = None) -> list[Prediction]:
        """Frames of any size → one inference → one Prediction each, in order."""
        t0 = time.perf_counter()
        if prepared is None:
            prepared = [self.prepare(f, color) for f in frames]
        if not prepared:
            return []
        batch = np.stack([p[0] for p in prepared])
        t1 = time.perf_counter()
        out = self.run(batch)
        t2 = time.perf_counter()
        timing = {"preprocess": (t1 - t0) * 1e3, "model": (t2 - t1) * 1e3}
        cams = out.get("cams")
        return [Prediction(class_ids=out["class_ids"][i], scores=out["scores"][i],
                           labels=[self.info.label(int(c)) for c in out["class_ids"][i]],
                           logits=out["logits"][i], cams=None if cams is None else cams[i],
                           resize=prepared[i][1], timing_ms=timing)
                for i in range(len(prepared))]


def foreign_input(batch: np.ndarray, spec: StudentSpec, x: Tensor) -> np.ndarray:
    """uint8 RGB NHWC pixels → what a foreign classifier's input tensor holds."""
    if spec.color == "BGR":
        batch = batch[..., ::-1]
    if x.dtype.kind in "iu" and x.quant is None:
        out = batch.astype(x.dtype)  # an unquantised integer input takes the pixels themselves
    else:
        v = (batch.astype(np.float32) * np.float32(spec.scale) - np.asarray(spec.mean, np.float32)) \
            / np.asarray(spec.std, np.float32)
        if x.quant is not None and x.dtype.kind in "iu":
            scale, zero = x.quant  # real = (q - zero) * scale, so q = v / scale + zero
            info = np.iinfo(x.dtype)
            v = np.clip(np.rint(v / np.float32(scale) + zero), info.min, info.max)
        out = v.astype(x.dtype)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2) if spec.layout == "NCHW" else out)


def _probabilities(rows: np.ndarray) -> np.ndarray:
    """Which rows already are probabilities: non-negative with a sum of at most 1 (quantised
    softmax outputs round small values down to 0, so the sum may fall well below 1; logits of
    1000 classes are essentially never all non-negative and that small)."""
    return (rows.min(axis=1) >= 0) & (rows.sum(axis=1) <= 1.05)


def foreign_output(raw: np.ndarray, spec: StudentSpec) -> dict[str, np.ndarray]:
    """(B, N) float scores → logits (offset outputs dropped), top-K class_ids and scores.
    Rows are decided one by one, so an answer never depends on the rest of its batch."""
    logits = raw[:, spec.label_offset:].astype(np.float32)
    softmax = ~_probabilities(raw) if spec.softmax is None else np.full(len(raw), spec.softmax)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = np.where(softmax[:, None], e / e.sum(axis=1, keepdims=True), logits)
    k = min(spec.top_k, logits.shape[1])
    ids = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return {"logits": logits, "class_ids": ids.astype(np.int64),
            "scores": np.take_along_axis(probs, ids, axis=1).astype(np.float32)}
