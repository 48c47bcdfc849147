"""What runs a graph: one small protocol, met by ONNX Runtime (.onnx) and LiteRT (.tflite).

`Model` sees only a `Backend`: its tensors, its metadata props, the providers that run it, and
`run`, which takes a batch of any size. A graph whose batch is fixed at 1 runs it image by image
inside the backend, so nothing above has to know which graphs can batch.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    import onnxruntime as ort


@dataclass(frozen=True)
class Tensor:
    """One input or output as the runtime sees it, whatever the backend."""
    name: str
    shape: tuple[int, ...]  # -1 where the size is dynamic
    dtype: np.dtype
    quant: tuple[float, int] | None = None  # (scale, zero_point) of a quantised tensor
    optional: bool = False  # an input with a default in the graph (a teacher's class_query)


class Backend(Protocol):
    name: str  # "onnxruntime" or "litert"
    inputs: list[Tensor]
    outputs: list[Tensor]
    props: dict[str, str]  # the model's metadata: edge_cam.* keys → JSON strings, and any others
    providers: list[str]  # what runs the graph, best first

    def run(self, names: Sequence[str], x: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
        """The outputs `names` for the batch `x` (any batch size), in that order; `extra` feeds the
        graph's other inputs (a teacher's class_query), the same for every image. LiteRT's graphs
        have none, and its backend takes no `extra`."""
        ...


def open_backend(path: str | os.PathLike, *, providers: str | Sequence[str] = "auto", threads: int = 0,
                 spinning: bool = False, session_options: ort.SessionOptions | None = None,
                 tensorrt: dict | None = None) -> Backend:
    """A .tflite file in LiteRT (CPU), anything else in ONNX Runtime.

    providers and tensorrt: see `onnxruntime.resolve_providers`; spinning and session_options:
    see `onnxruntime.open_session` (LiteRT has neither). threads: intra-op threads, 0 = one per core.
    """
    path = os.fspath(path)
    # Imported here, not at the top: both modules import Tensor from this package.
    if path.lower().endswith(".tflite"):
        from .litert import LiteRTBackend
        return LiteRTBackend(path, threads, providers)
    from .onnxruntime import OnnxRuntimeBackend, open_session, resolve_providers
    return OnnxRuntimeBackend(open_session(path, resolve_providers(providers, tensorrt), threads,
                                           spinning, session_options))
