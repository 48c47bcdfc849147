"""Which parts of a network int8 can take without changing its answers.

Measured on the shared MobileNetV2 (real ImageNet weights) and the raccoon photos: quantising the
whole backbone gives top-1 agreement with fp32 of 0.81-0.83, and quantising any single one of its 19
blocks alone already costs 0-9 points. The photos are near ties between ImageNet classes (raccoon is
not one), where any perturbation flips the answer, so no calibration method fixes it (percentile,
min-max, entropy and per-tensor MSE-optimal ranges all measured 0.74-0.83). What does work is to
quantise only the blocks whose noise the answers survive.

The network is cut into units (its torch blocks, from the exporter's scope records: the depth with
the most units up to MAX_UNITS); each unit's noise is measured alone (how much it moves the lead of
fp32's top-1 class, every unit with the same activation ranges, calibrated once), the units are ordered by
noise per multiply-add saved, and the longest prefix of that order whose top-1 agreement on the
calibration photos stays at the target is kept (a binary search: agreement falls as units are added).

Agreement is counted twice, and both must reach the target: as observed, and as expected from the
int8 noise on fp32's lead (expected_agreement): on a few hundred near-tie photos the observed count
moves by a photo or two with luck, and the held-out photos would pay for it.
"""
from __future__ import annotations

import ast
import builtins
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from edge_cam.model import Model

from .drift import logits

MAX_UNITS = 32  # more units measure more finely and take longer: one quantisation each
SENSITIVITY_IMAGES = 48  # calibration photos each unit's noise is measured on
SCOPES = "pkg.torch.onnx.name_scopes"
QUANTISED = ("Conv", "Gemm", "MatMul")  # the ops whose int8 kernels save the time


@dataclass
class Plan:
    """What the search kept in int8: unit names (torch layer paths), in order of noise per saved
    multiply-add, the share of the backbone's multiply-adds they hold, and what it measured."""
    quantised: list[str]
    float: list[str]
    # builtins.float: in the class body `float` is the field above
    mac_share: builtins.float
    noise: dict[str, builtins.float]  # unit → mean square of lead_change when quantised alone


def _scope(node) -> str | None:
    """The torch module path a node came from ("features.14.conv.1.1"), or None (a residual Add)."""
    record = [p.value for p in node.metadata_props if p.key == SCOPES]
    if not record:
        return None
    try:
        names = ast.literal_eval(record[0])
    except (ValueError, SyntaxError):
        return None
    path = next((s for s in names if s.startswith("body.")), None)
    return path[len("body."):] if path else None


def units(source: onnx.ModelProto, candidates: set[str]) -> dict[str, list[str]]:
    """Unit name → node names, for the nodes in `candidates` (those int8 may take). A node without a
    module of its own (a residual Add) goes with the unit of the node that feeds it."""
    scopes = {n.name: _scope(n) for n in source.graph.node if n.name in candidates}
    compute = {n.name: s for n in source.graph.node  # name → scope, of the nodes int8 saves time on
               if n.name in candidates and n.op_type in QUANTISED and (s := scopes[n.name])}
    best_depth, best_count = 1, 0
    for depth in range(1, 8):
        count = len({".".join(s.split(".")[:depth]) for s in compute.values()})
        if best_count < count <= MAX_UNITS:
            best_depth, best_count = depth, count
    unit_of = {n: ".".join(s.split(".")[:best_depth]) for n, s in scopes.items() if s}
    producer = {o: n.name for n in source.graph.node for o in n.output}
    for n in source.graph.node:
        if n.name in candidates and n.name not in unit_of:
            feeders = [unit_of[producer[i]] for i in n.input if producer.get(i) in unit_of]
            if feeders:
                unit_of[n.name] = feeders[0]
    out: dict[str, list[str]] = {}
    for n in source.graph.node:  # graph order, so units come out in network order
        if n.name in unit_of:
            out.setdefault(unit_of[n.name], []).append(n.name)
    return {u: names for u, names in out.items() if any(x in compute for x in names)}


def macs(model: onnx.ModelProto, groups: dict[str, list[str]]) -> dict[str, int]:
    """Multiply-adds per unit, from the graph's static shapes (the int8 graph has a fixed size)."""
    inferred = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.output]}
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    per_node = {}
    for n in model.graph.node:
        w = weights.get(n.input[1]) if len(n.input) > 1 else None
        if w is None:
            continue
        if n.op_type == "Conv":
            out = shapes.get(n.output[0], [])
            spatial = int(np.prod(out[2:])) if len(out) > 2 and all(out[2:]) else 1
            per_node[n.name] = int(np.prod(w)) * spatial
        elif n.op_type in ("Gemm", "MatMul"):
            per_node[n.name] = int(np.prod(w))
    return {u: max(1, sum(per_node.get(n, 0) for n in names)) for u, names in groups.items()}


def activation_ranges(quantised: onnx.ModelProto) -> dict[str, list[dict]]:
    """The activation scales and zero points a full calibration chose, as ORT's TensorQuantOverrides,
    so that every trial quantisation uses the same ones and needs no calibration of its own."""
    inits = {i.name: numpy_helper.to_array(i) for i in quantised.graph.initializer}
    out = {}
    for n in quantised.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits:
            out[n.input[0]] = [{"scale": np.asarray(inits[n.input[1]], np.float32),
                                "zero_point": np.asarray(inits[n.input[2]])}]
    return out


def lead(z: np.ndarray, top: np.ndarray) -> np.ndarray:
    """How far class `top` of each row leads the best other class (negative: it is not first)."""
    rows = np.arange(len(z))
    rest = z.copy()
    rest[rows, top] = -np.inf
    return z[rows, top] - rest.max(1)


def lead_change(fp32: np.ndarray, int8: np.ndarray) -> np.ndarray:
    """Per photo, how much int8 changed the lead of fp32's top-1 class: the noise that flips answers
    (noise in the logits of classes far behind changes nothing)."""
    top = fp32.argmax(1)
    return lead(int8, top) - lead(fp32, top)


def expected_agreement(fp32: np.ndarray, int8: np.ndarray) -> float:
    """Top-1 agreement expected from the int8 noise: a photo whose fp32 top-1 leads by m flips when
    int8 changes that lead by less than -m, so with the changes seen on these photos (lead_change)
    it keeps its answer with probability mean_j [change_j >= -m]. Averaged over the photos: the
    observed agreement, smoothed."""
    m = lead(fp32, fp32.argmax(1))
    change = lead_change(fp32, int8)
    return float(np.mean([(change >= -mi).mean() for mi in m]))


Build = Callable[[set[str], str], None]  # (nodes to quantise, output path)
Load = Callable[[str], Model]


def search(groups: dict[str, list[str]], unit_macs: dict[str, int], build: Build, load: Load, fp32,
           calibration: Sequence[np.ndarray], target: float, workdir: str,
           progress: Callable[[str], None] = lambda text: None) -> tuple[Plan, str | None]:
    """The longest prefix of units (by noise per saved multiply-add) whose top-1 agreement with fp32
    on the calibration photos is at least `target`; its model's path (None when no unit can be
    quantised at that agreement)."""
    reference = logits(fp32, calibration)
    sample = calibration[:SENSITIVITY_IMAGES]
    noise = {}
    for i, (unit, nodes) in enumerate(groups.items(), 1):
        path = os.path.join(workdir, "unit.onnx")
        build(set(nodes), path)
        noise[unit] = float((lead_change(reference[:len(sample)], logits(load(path), sample)) ** 2).mean())
        progress(f"noise of each unit quantised alone: {i}/{len(groups)} ({unit}: {noise[unit]:.2g})")
    order = sorted(groups, key=lambda u: noise[u] / unit_macs[u])

    def agrees(k: int) -> bool:
        path = os.path.join(workdir, f"prefix{k}.onnx")
        build({n for u in order[:k] for n in groups[u]}, path)
        int8 = logits(load(path), calibration)
        seen = float((int8.argmax(1) == reference.argmax(1)).mean())
        expected = expected_agreement(reference, int8)
        progress(f"int8 on {k} of {len(order)} units: top-1 agreement {seen:.1%} on the calibration photos "
                 f"({expected:.1%} expected from its noise)")
        return min(seen, expected) >= target

    lo, hi = 0, len(order) - 1  # the whole network already failed: at most len - 1 units
    while lo < hi:  # the largest k with agrees(k), assuming agreement falls as k grows
        mid = (lo + hi + 1) // 2
        if agrees(mid):
            lo = mid
        else:
            hi = mid - 1
    kept = order[:lo]
    total = sum(unit_macs.values())
    plan = Plan(kept, [u for u in groups if u not in kept], sum(unit_macs[u] for u in kept) / total, noise)
    # lo only ever rises through a probe that passed, so its model is on disk
    return plan, os.path.join(workdir, f"prefix{lo}.onnx") if lo else None
