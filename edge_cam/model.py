"""One ONNX Runtime session around an exported model: frames in, typed predictions out."""
from __future__ import annotations

import os
import sys
import time
import weakref
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import onnxruntime as ort

from .errors import EdgeCamError
from .metadata import RESIZE_MODES, ModelInfo
from .preprocess import Resize, pad_colour, resize, to_rgb8

# Short names users type, and what "auto" tries, best first; CPU is always the last resort.
PROVIDER_NAMES = {"cpu": "CPUExecutionProvider", "xnnpack": "XnnpackExecutionProvider",
                  "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
AUTO_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


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
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgeCamError(f"{path} is not a readable ONNX model ({first[:200]}); "
                           "re-export it or check the file.") from None


class Model:
    """An exported edge-cam model (a CAM teacher, or a plain classifier used as a student).

    providers: "auto", a short name (cpu, xnnpack, cuda, tensorrt) or ORT provider names, with
    `tensorrt` options for TensorRT; missing ones fall back to the CPU. threads: intra-op threads (0 = ORT's
    default, one per core). spinning: True/False, or None to switch it off as soon as a second
    session lives in the process. resize: override the metadata's resize mode.
    """

    def __init__(self, path: str | os.PathLike, providers: str | Sequence[str] = "auto",
                 threads: int = 0, spinning: bool | None = None, resize: str | None = None,
                 tensorrt: dict | None = None):
        self.path = os.fspath(path)
        self.providers = resolve_providers(providers, tensorrt)
        self.threads = threads
        self._auto_spin = spinning is None
        if self._auto_spin:
            spinning = not _AUTO_SPIN
            for other in list(_AUTO_SPIN):
                other._open(spinning=False)
            _AUTO_SPIN.add(self)
        self._open(spinning)
        self._read_metadata()
        if resize is not None:
            if resize not in RESIZE_MODES:
                raise EdgeCamError(f"unknown resize mode {resize!r}; use one of {', '.join(RESIZE_MODES)}.")
            self.info = replace(self.info, input=replace(self.info.input, resize=resize))

    def _open(self, spinning: bool) -> None:
        self.session = open_session(self.path, self.providers, self.threads, spinning)
        self.spinning = spinning

    def _read_metadata(self) -> None:
        self.info = ModelInfo.from_props(self.session.get_modelmeta().custom_metadata_map, self.path)
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(uint8)":
            raise EdgeCamError(f"{self.path} should take one uint8 image input; re-export it "
                               "with `edge-cam export`.")
        self.input_name = inputs[0].name
        names = {o.name for o in self.session.get_outputs()}
        needed = {"logits", "class_ids", "scores"} | ({"cams"} if self.info.cam else set())
        if not needed <= names:
            raise EdgeCamError(f"{self.path} lacks the outputs {sorted(needed - names)}; "
                               "re-export it with `edge-cam export`.")
        self.output_names = sorted(needed)
        self._pad = pad_colour(self.info.input.mean)

    @property
    def has_cam(self) -> bool:
        return self.info.cam is not None

    @property
    def input_size(self) -> tuple[int, int]:
        return self.info.input.size

    def prepare(self, frame: np.ndarray, color: str = "BGR") -> tuple[np.ndarray, Resize]:
        """One frame → the model's uint8 input (H, W, 3) and the mapping back to the frame."""
        return resize(to_rgb8(frame, color), self.input_size, self.info.input.resize, self._pad)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The raw graph on an already prepared (B, H, W, 3) uint8 batch."""
        return dict(zip(self.output_names, self.session.run(self.output_names, {self.input_name: batch})))

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
