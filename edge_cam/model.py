"""One model behind one object: frames in, typed predictions out.

The graph runs in a Backend (ONNX Runtime or LiteRT, see backends/). An edge-cam export
describes itself through its metadata; a foreign classifier is described by a StudentSpec, and
adapt.py fits its input and output so the rest of the runtime sees the same Prediction.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from . import adapt
from .backends import Backend, open_backend
from .errors import EdgeCamError
from .metadata import PREFIX, RESIZE_MODES, ModelInfo, StudentSpec
from .preprocess import Resize, as_rgb, in_order, pad_colour, resize, to_8bit

if TYPE_CHECKING:
    import onnxruntime as ort


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


class Model:
    """An exported edge-cam model (a CAM teacher, or a plain classifier used as a student).

    A .onnx file runs in ONNX Runtime, a .tflite file in LiteRT (CPU; see edge_cam.backends).
    providers: "auto", a short name (cpu, xnnpack, cuda, tensorrt) or ORT provider names, with
    `tensorrt` options for TensorRT; missing ones fall back to the CPU. threads: intra-op threads
    (0 = one per core). spinning: let ORT's intra-op threads spin while idle, which shaves latency
    off each run, but only when this model is the only one running in the process: spinning
    threads steal the cores a second session runs on (we measured 3-7x slow-downs on 2 cores).
    session_options: an ort.SessionOptions to start from (see onnxruntime.open_session for which
    of its settings win). resize: override the metadata's resize mode. describe: a StudentSpec
    (or its dict, JSON file or inline JSON) for a foreign classifier without edge_cam metadata.
    """

    def __init__(self, path: str | os.PathLike, providers: str | Sequence[str] = "auto",
                 threads: int = 0, spinning: bool = False, resize: str | None = None,
                 tensorrt: dict | None = None, describe: StudentSpec | dict | str | None = None,
                 session_options: ort.SessionOptions | None = None):
        self.path = os.fspath(path)
        self.threads, self.spinning = threads, spinning
        self.spec = None if describe is None else StudentSpec.load(describe)
        self.session: Backend = open_backend(self.path, providers=providers, threads=threads, spinning=spinning,
                                             session_options=session_options, tensorrt=tensorrt)
        self.providers = self.session.providers
        if self.spec is None:
            self._read_metadata()
        else:
            self.spec, self.info, self._input, output = adapt.describe(self.spec, self.session, self.path)
            self.input_name, self.output_names = self._input.name, [output]
        self._pad = pad_colour(self.info.input.mean)
        if resize is not None:
            if resize not in RESIZE_MODES:
                raise EdgeCamError(f"unknown resize mode {resize!r}; use one of {', '.join(RESIZE_MODES)}.")
            self.info = replace(self.info, input=replace(self.info.input, resize=resize))

    @property
    def backend(self) -> str:
        """"onnxruntime" or "litert": which runtime runs the graph (for reports; the code asks
        the Backend, never this name)."""
        return self.session.name

    def _read_metadata(self) -> None:
        inputs, outputs, props = self.session.inputs, self.session.outputs, self.session.props
        if PREFIX + "input" not in props:
            raise EdgeCamError(f"{self.path} has no edge_cam metadata: describe it as a foreign classifier "
                               "(Model's describe, edge-cam's --student-spec SPEC.json) or export it "
                               "with `edge-cam export`.")
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

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The graph on an already prepared (B, H, W, 3) uint8 RGB batch → logits, class_ids,
        scores (and cams); a foreign classifier's input and output are adapted to that."""
        if self.spec is None:
            out = dict(zip(self.output_names, self.session.run(self.output_names, batch)))
            out["class_ids"] = out["class_ids"].astype(np.int64, copy=False)  # TFLite gives int32
            return out
        raw = self.session.run(self.output_names, adapt.foreign_input(batch, self.spec, self._input))[0]
        return adapt.foreign_output(raw.reshape(len(batch), -1), self.spec)

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

