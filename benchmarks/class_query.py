"""The cost of class queries: the real MobileNetV2 exported three ways (plain top-K at a fixed size,
class queries at a fixed size, class queries with a dynamic size: the default), timed in one
process with the runs interleaved round-robin so that the machine's load hits every graph alike.
Reports medians and ratios against the plain graph, for Q = 0 and Q = 5 queried classes.

    python benchmarks/class_query.py [--runs 600]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import header, write

from edge_cam.model import Model
from edge_cam_export import export

WEIGHTS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "models", "mobilenet_v2_imagenet.pt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=600)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    variants = {"plain top-K (fixed size)": dict(class_query=False, dynamic_size=False),
                "class query (fixed size)": dict(class_query=True, dynamic_size=False),
                "class query + dynamic size (default)": dict(class_query=True, dynamic_size=True)}
    models = {}
    for i, (name, kw) in enumerate(variants.items()):
        path = os.path.join(tmp, f"m{i}.onnx")
        print(f"exporting {name}", file=sys.stderr)
        export("torchvision:mobilenet_v2", path, weights=WEIGHTS, quiet=True, **kw)
        models[name] = Model(path, providers=["CPUExecutionProvider"], threads=1)
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    cases = [(name, q) for name in models for q in ((None, [1, 2, 3, 4, 5]) if models[name].class_query else (None,))]
    times: dict[tuple[str, object], list[float]] = {(n, str(q)): [] for n, q in cases}
    for _ in range(20):  # warm-up
        for name, q in cases:
            models[name].run(batch, q)
    for r in range(args.runs):
        for name, q in cases[r % len(cases):] + cases[:r % len(cases)]:  # rotate who goes first
            t0 = time.perf_counter()
            models[name].run(batch, q)
            times[(name, str(q))].append((time.perf_counter() - t0) * 1e3)
    base = float(np.median(times[(next(iter(models)), "None")]))
    rows = ["| graph | Q | median ms | × plain |", "|---|---|---|---|"]
    for (name, q), t in times.items():
        m = float(np.median(t))
        rows.append(f"| {name} | {0 if q == 'None' else 5} | {m:.2f} | {m / base:.3f} |")
    text = (header("Class queries: latency against the plain top-K graph") +
            f"\nReal MobileNetV2, 224x224, batch 1, 1 intra-op thread, ONNX Runtime CPU, {args.runs} runs of each "
            "case interleaved round-robin in one process (medians).\n\n" + "\n".join(rows))
    write("class_query.md", text)


if __name__ == "__main__":
    main()
