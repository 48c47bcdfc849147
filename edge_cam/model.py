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
from .adapt import StudentSpec
from .backends import Backend, open_backend
from .errors import EdgeCamError
from .metadata import PREFIX, RESIZE_MODES, ModelInfo, check_graph
from .preprocess import Resize, as_rgb, in_order, pad_colour, resize, to_8bit
from .sizing import InputSize, is_dynamic

if TYPE_CHECKING:
    import onnxruntime as ort

# How a teacher without class queries gets the maps of any class (see Model.require_maps).
REEXPORT = ("re-export it with `edge-cam export` to map any class (a TFLite teacher: with --classes naming "
            "the classes to watch).")


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
    # The classes asked for by predict_batch(classes=...), in that order, whatever their rank; None when not asked.
    query_ids: np.ndarray | None = None  # (Q,) int64
    query_cams: np.ndarray | None = None  # (Q, h, w) raw CAMs, as cams
    query_scores: np.ndarray | None = None  # (Q,) softmax probabilities

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

    def cam_of(self, class_id: int) -> np.ndarray | None:
        """The raw CAM of `class_id`, from the top-K or the queried classes; None when it is in neither
        (ask for it with predict_batch's classes)."""
        rank = self.rank_of(class_id)
        if rank is not None and self.cams is not None:
            return self.cams[rank]
        if self.query_ids is not None and self.query_cams is not None:
            where = np.flatnonzero(self.query_ids == class_id)
            return self.query_cams[int(where[0])] if where.size else None
        return None

    def all_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """Class ids and raw CAMs of the top-K and the queried classes together (a class may be in both)."""
        if self.cams is None:
            raise ValueError("cams: a plain classifier's prediction has no maps")
        if self.query_ids is None or self.query_cams is None:
            return self.class_ids, self.cams
        return np.concatenate([self.class_ids, self.query_ids]), np.concatenate([self.cams, self.query_cams])

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
    input_size: (H, W), or one int, the long side, each frame keeping its aspect (rounded to the
    CAM's stride); only a graph exported with a dynamic size takes another size than its own
    (see edge_cam.sizing). `input_size` is then the size chosen for the last frame.
    """

    def __init__(self, path: str | os.PathLike, providers: str | Sequence[str] = "auto",
                 threads: int = 0, spinning: bool = False, resize: str | None = None,
                 tensorrt: dict | None = None, describe: StudentSpec | dict | str | None = None,
                 session_options: ort.SessionOptions | None = None,
                 input_size: int | tuple[int, int] | None = None):
        self.path = os.fspath(path)
        self.threads, self.spinning = threads, spinning
        self.spec = None if describe is None else StudentSpec.load(describe)
        self.session: Backend = open_backend(self.path, providers=providers, threads=threads, spinning=spinning,
                                             session_options=session_options, tensorrt=tensorrt)
        self.providers = self.session.providers
        self.class_query = False  # whether the graph takes classes to map (see run)
        self.baked = np.zeros(0, np.int64)  # the classes a fixed graph maps on every run (see run)
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
        stride = self.info.cam.stride if self.info.cam else None
        image = next(t for t in self.session.inputs if t.name == self.input_name)
        self._size = InputSize(input_size, self.info.input.size, stride,
                               self.spec is None and is_dynamic(image.shape), self.path)

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
        # A teacher exported with class queries has a second input, the int64 class ids to map.
        self.class_query = [t.name for t in inputs] == [inputs[0].name, "class_query"] and self.info.cam is not None
        if len(inputs) != 1 + self.class_query or inputs[0].dtype != np.uint8:
            raise EdgeCamError(f"{self.path} should take one uint8 image input; re-export it "
                               "with `edge-cam export`.")
        self.input_name = inputs[0].name
        names = {o.name for o in outputs}
        needed = {"logits", "class_ids", "scores"} | ({"cams"} if self.info.cam else set())
        self.baked = np.array(self.info.cam.baked_classes if self.info.cam and not self.class_query else (), np.int64)
        needed |= {"query_cams", "query_scores"} if self.class_query or self.baked.size else set()
        if not needed <= names:
            raise EdgeCamError(f"{self.path} lacks the outputs {sorted(needed - names)}; "
                               "re-export it with `edge-cam export`.")
        self.output_names = sorted(needed)
        check_graph(self.info, inputs[0].shape, self.num_classes, self.path)

    @property
    def num_classes(self) -> int:
        """Classes the model tells apart (its logits' width; its labels' count where that is dynamic)."""
        logits = next((t for t in self.session.outputs if t.name == "logits"), None)
        return logits.shape[-1] if logits is not None and logits.shape[-1] > 0 else len(self.info.labels)

    @property
    def top_k(self) -> int | None:
        """How many classes the graph ranks and maps per image (None: not fixed in the graph)."""
        k = next((t.shape[-1] for t in self.session.outputs if t.name == "class_ids"), None)
        return k if isinstance(k, int) and k > 0 else None

    @property
    def has_cam(self) -> bool:
        return self.info.cam is not None

    @property
    def input_size(self) -> tuple[int, int]:
        h, w = self._size.size
        return h, w

    @property
    def dynamic_size(self) -> bool:
        """Whether the graph takes any input size (see input_size)."""
        return self._size.dynamic

    def prepare(self, frame: np.ndarray, color: str = "BGR") -> tuple[np.ndarray, Resize]:
        """One frame → the model's uint8 input (H, W, 3) and the mapping back to the frame."""
        image, order = to_8bit(frame, color)
        size = self._size.for_frame(*image.shape[:2])
        small, where = resize(image, size, self.info.input.resize, in_order(self._pad, order))
        return as_rgb(small, order), where

    def run(self, batch: np.ndarray, classes: Sequence[int] | np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The graph on an already prepared (B, H, W, 3) uint8 RGB batch → logits, class_ids,
        scores (and cams); a foreign classifier's input and output are adapted to that. With
        `classes` (a teacher) also query_cams (B, Q, h, w) and query_scores (B, Q) of those classes."""
        if self.spec is not None:
            if classes is not None:
                raise EdgeCamError(f"classes: {self.path} is a foreign classifier without CAMs; map classes with a teacher.")
            raw = self.session.run(self.output_names, adapt.foreign_input(batch, self.spec, self._input))[0]
            return adapt.foreign_output(raw.reshape(len(batch), -1), self.spec)
        ids = None if classes is None else self._class_ids(classes)
        if self.class_query:  # an empty query costs nothing: the graph maps the top-K only
            query = np.zeros(0, np.int64) if ids is None else ids
            out = dict(zip(self.output_names, self.session.run(self.output_names, batch, {"class_query": query})))
        else:
            out = dict(zip(self.output_names, self.session.run(self.output_names, batch)))
        out["class_ids"] = out["class_ids"].astype(np.int64, copy=False)  # TFLite gives int32
        if ids is not None and not self.class_query:
            out.update(self._from_fixed(out, ids))
        return out

    def _class_ids(self, classes: Sequence[int] | np.ndarray) -> np.ndarray:
        if self.info.cam is None:
            raise EdgeCamError(f"classes: {self.path} is a plain classifier without CAMs; map classes with a teacher.")
        try:
            ids = np.array([int(c) for c in classes], np.int64)
        except (TypeError, ValueError):
            raise EdgeCamError(f"classes {classes!r} should be class ids (integers).") from None
        n = self.num_classes
        bad = [int(c) for c in ids if c < 0 or (n and c >= n)]
        if bad:
            raise EdgeCamError(f"classes: {bad[0]} is not a class of {self.path}; give ids from 0 to {n - 1}.")
        return ids

    def require_maps(self, classes: Sequence[int] | np.ndarray) -> None:
        """Refuse, before any frame, classes whose maps this teacher cannot give on every frame (a
        watch list): a graph without the query input maps its baked classes and, frame by frame,
        its top-K only, so any other class would fail on the first frame where it ranks lower."""
        top_k = self.top_k
        if self.class_query or self.info.cam is None or (top_k is not None and top_k >= self.num_classes > 0):
            return
        baked_ids = set(self.baked.tolist())
        missing = [int(c) for c in classes if int(c) not in baked_ids]
        if missing:
            names = ", ".join(self.info.label(c) for c in missing[:3]) + (", ..." if len(missing) > 3 else "")
            baked = f" (baked in: {', '.join(self.info.label(int(c)) for c in self.baked)})" if self.baked.size else ""
            raise EdgeCamError(f"{self.path} takes no class queries and maps {names} only while in its "
                               f"top-{top_k}{baked}; {REEXPORT}")

    def _from_fixed(self, out: dict[str, np.ndarray], ids: np.ndarray) -> dict[str, np.ndarray]:
        """A graph without class queries (exported before them, or a TFLite teacher) maps a class
        baked into it at export, or one that ranks in its top-K on this frame; any other needs the
        query input (ONNX) or a re-export with it baked (TFLite)."""
        n, _, h, w = out["cams"].shape
        cams, scores = np.empty((n, len(ids), h, w), np.float32), np.empty((n, len(ids)), np.float32)
        baked = {int(c): i for i, c in reversed(list(enumerate(self.baked)))}
        for q, c in enumerate(ids):
            if int(c) in baked:
                cams[:, q], scores[:, q] = out["query_cams"][:, baked[int(c)]], out["query_scores"][:, baked[int(c)]]
                continue
            for b, row in enumerate(out["class_ids"]):
                rank = np.flatnonzero(row == c)
                if not rank.size:
                    raise EdgeCamError(f"{self.path} takes no class queries and class {c} is not among its "
                                       f"top-{len(row)} here; {REEXPORT}")
                cams[b, q], scores[b, q] = out["cams"][b, rank[0]], out["scores"][b, rank[0]]
        return {"query_cams": cams, "query_scores": scores}

    def predict(self, frame: np.ndarray, color: str = "BGR", classes: Sequence[int] | np.ndarray | None = None) -> Prediction:
        return self.predict_batch([frame], color, classes=classes)[0]

    def predict_batch(self, frames: Sequence[np.ndarray], color: str = "BGR",
                      prepared: Sequence[tuple[np.ndarray, Resize]] | None = None,
                      classes: Sequence[int] | np.ndarray | None = None) -> list[Prediction]:
        """Frames of any size → one inference → one Prediction each, in order. `classes`: class ids
        whose CAMs and scores to return too (query_ids, query_cams, query_scores), whatever their rank."""
        t0 = time.perf_counter()
        if prepared is None:
            prepared = [self.prepare(f, color) for f in frames]
        if not prepared:
            return []
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(prepared):  # with a long side each aspect has its own size: one run per size
            groups.setdefault(p[0].shape, []).append(i)
        t1 = time.perf_counter()
        where = {}
        for idx in groups.values():
            out = self.run(np.stack([prepared[i][0] for i in idx]), classes)
            where.update({i: (out, j) for j, i in enumerate(idx)})
        t2 = time.perf_counter()
        timing = {"preprocess": (t1 - t0) * 1e3, "model": (t2 - t1) * 1e3}
        preds = []
        for i in range(len(prepared)):
            out, j = where[i]
            cams, asked = out.get("cams"), classes is not None
            preds.append(Prediction(class_ids=out["class_ids"][j], scores=out["scores"][j],
                                    labels=[self.info.label(int(c)) for c in out["class_ids"][j]],
                                    logits=out["logits"][j], cams=None if cams is None else cams[j],
                                    resize=prepared[i][1], timing_ms=timing,
                                    query_ids=np.array(classes, np.int64) if asked else None,
                                    query_cams=out["query_cams"][j] if asked else None,
                                    query_scores=out["query_scores"][j] if asked else None))
        return preds
