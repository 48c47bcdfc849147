"""ONNX Runtime behind the Backend protocol: providers, session options, and fixed-batch graphs."""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import platform
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from ..errors import EdgeCamError, first_line
from . import Tensor
from .stderr import filtered

log = logging.getLogger("edge_cam")

# Short names users type, and what "auto" tries, best first; CPU is always the last resort.
PROVIDER_NAMES = {"cpu": "CPUExecutionProvider", "xnnpack": "XnnpackExecutionProvider",
                  "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
AUTO_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
ORT_TYPES = {"tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(float)": np.float32,
             "tensor(float16)": np.float16, "tensor(double)": np.float64, "tensor(int64)": np.int64,
             "tensor(int32)": np.int32}
SPINNING = "session.intra_op.allow_spinning"
# int8 on an x86 CPU without VNNI: ORT's u8 x s8 kernels add products pairwise in 16 bits, which
# saturate; this entry makes them widen first. Measured on the int8 MobileNetV2 (20 raccoon photos):
# without it a Haswell-class CPU (AVX2, emulated) differs from this machine's VNNI by up to 5.0 in
# the logits and agrees on 60% of top-1s; with it both are bit-identical. A VNNI CPU never
# saturates (its logits with and without the entry are bit-identical) but the entry halves its int8
# speed (whole-backbone int8 MobileNetV2, 1 thread: 6.2 ms without, 12.3 ms with; fp32 10.1 ms), so
# it is set only where it is needed (needs_exact_int8). ARM CPUs ignore it.
EXACT_INT8 = "session.x64quantprecision"
# Inputs with a default in the graph (an initializer of the same name) that the runtime feeds:
# ORT lists them apart from the required inputs, beside any weight an old exporter left overridable.
OPTIONAL_INPUTS = ("class_query",)
# ORT's warning, at each load, that such a default is not a constant: meant, so not shown.
OPTIONAL_NOISE = re.compile(r"(\x1b\[[\d;]*m)?[\d-]+ [\d:.]+ \[W:onnxruntime:[^\]]*\] Initializer "
                            r"(" + "|".join(OPTIONAL_INPUTS) + r") appears in graph inputs")


def needs_exact_int8() -> bool:
    """An x86 CPU without VNNI, read from CPUID (numpy's feature table: also right under an
    emulator, where /proc/cpuinfo is the host's); where that table is missing, to be safe, True."""
    if platform.machine().lower() not in ("x86_64", "amd64", "x86", "i386", "i686"):
        return False
    features: dict = {}
    for name in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):  # numpy 2, numpy 1
        with contextlib.suppress(ImportError):
            features = importlib.import_module(name).__cpu_features__
            break
    if not features:
        return True
    return not (features.get("AVX512VNNI") or features.get("AVXVNNI"))


def resolve_providers(providers: str | Sequence[str] = "auto", tensorrt: dict | None = None) -> list:
    """"auto", a short name (cpu, xnnpack, cuda, tensorrt) or ORT provider names → what ORT takes.

    A provider this onnxruntime lacks is left out with one logged warning (a board without its
    GPU package still runs, on the CPU). TensorRT falls back to CUDA, then the CPU; `tensorrt`
    holds its options (trt_fp16_enable, trt_int8_enable, trt_engine_cache_path, ...).
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
    chosen: list[Any] = []
    for name in dict.fromkeys(names + ["CPUExecutionProvider"]):
        if name not in available:
            log.warning("%s is not in this onnxruntime (it has %s); falling back.", name, ", ".join(available))
        elif name == "TensorrtExecutionProvider" and tensorrt:
            chosen.append((name, {k: str(v) for k, v in tensorrt.items()}))
        else:
            chosen.append(name)
    return chosen


def _is_set(opts: ort.SessionOptions, key: str) -> bool:
    try:
        opts.get_session_config_entry(key)
        return True
    except RuntimeError:  # ORT's answer for a key nobody added
        return False


def open_session(path: str, providers: Sequence, threads: int = 0, spinning: bool = False,
                 session_options: ort.SessionOptions | None = None) -> ort.InferenceSession:
    """One ORT session; an unreadable file is a one-sentence EdgeCamError.

    session_options is used as given, except that what the caller left at ORT's defaults is
    filled in (and written into that object, which ORT cannot copy): intra-op threads from
    `threads` when its intra_op_num_threads is 0, one inter-op thread when inter_op_num_threads
    is 0, `spinning` when it has no session.intra_op.allow_spinning entry, and exact int8
    arithmetic (EXACT_INT8) unless it says otherwise. So a caller's own settings always win; pass a
    fresh SessionOptions per session.
    """
    if not os.path.isfile(path):
        raise EdgeCamError(f"model file {path} does not exist; check the path.")
    opts = ort.SessionOptions() if session_options is None else session_options
    if opts.intra_op_num_threads == 0:
        opts.intra_op_num_threads = threads
    if opts.inter_op_num_threads == 0:
        opts.inter_op_num_threads = 1  # sequential execution: no pool of one thread per core
    if not _is_set(opts, SPINNING):
        opts.add_session_config_entry(SPINNING, "1" if spinning else "0")
    if not _is_set(opts, EXACT_INT8) and needs_exact_int8():
        opts.add_session_config_entry(EXACT_INT8, "1")
    try:
        with filtered(OPTIONAL_NOISE):
            return ort.InferenceSession(path, sess_options=opts, providers=list(providers))
    except Exception as e:  # ORT raises several unrelated types for unreadable files
        raise EdgeCamError(f"{path} is not a readable ONNX model ({first_line(e)}); "
                           "re-export it or check the file.") from None


def _tensors(args: Sequence[Any], optional: bool = False) -> list[Tensor]:
    return [Tensor(v.name, tuple(d if isinstance(d, int) else -1 for d in v.shape),
                   np.dtype(ORT_TYPES.get(v.type, object)), optional=optional) for v in args]


class OnnxRuntimeBackend:
    """An ORT session as a Backend.

    The rest of the InferenceSession (get_modelmeta, get_providers, ...) stays reachable through
    attribute lookup, because callers written against the session (the int8 exporter reads its
    metadata map) keep working with Model.session.
    """
    name = "onnxruntime"

    def __init__(self, session: ort.InferenceSession):
        self.session = session
        # The required inputs, then the optional ones the runtime feeds (class_query with a default).
        self.inputs = _tensors(session.get_inputs()) + _tensors(
            [v for v in session.get_overridable_initializers() if v.name in OPTIONAL_INPUTS], optional=True)
        self.outputs = _tensors(session.get_outputs())
        self.props: dict[str, str] = dict(session.get_modelmeta().custom_metadata_map)
        self.providers: list[str] = session.get_providers()
        # A graph with its batch fixed at 1 (a fixed-shape ONNX source) takes a batch one image at a time.
        self._one_by_one = bool(self.inputs) and self.inputs[0].shape[:1] == (1,)

    def __getattr__(self, attr: str) -> Any:
        if attr == "session":  # not set yet (a failed __init__, copy): no recursion
            raise AttributeError(attr)
        return getattr(self.session, attr)

    def run(self, names: Sequence[str], x: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
        feed, extra = self.inputs[0].name, extra or {}
        if self._one_by_one and len(x) > 1:
            parts = [self.session.run(list(names), {feed: x[i:i + 1], **extra}) for i in range(len(x))]
            return [np.concatenate(p) for p in zip(*parts)]
        return self.session.run(list(names), {feed: x, **extra})
