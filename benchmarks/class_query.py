"""The cost of class queries: the real MobileNetV2 exported three ways (plain top-K at a fixed size,
class queries at a fixed size, class queries with a dynamic size: the default), timed in one
process with the runs interleaved round-robin so that the machine's load hits every graph alike.
Reports medians and ratios against the plain graph, for Q = 0 and Q = 5 queried classes.

    python benchmarks/class_query.py [--runs 600]
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import header, parser, teacher, write

from edge_cam.model import Model


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--runs", type=int, default=600)
    args = ap.parse_args()
    runs = 20 if args.quick else args.runs
    tmp = tempfile.mkdtemp()
    variants = {"plain top-K (fixed size)": dict(class_query=False, dynamic_size=False),
                "class query (fixed size)": dict(class_query=True, dynamic_size=False),
                "class query + dynamic size (default)": dict(class_query=True, dynamic_size=True)}
    if args.quick:  # the default graph alone (Q = 0 and 5): the other two are exports of their own
        variants = dict(list(variants.items())[-1:])
    models = {}
    for name, kw in variants.items():
        # the default export is the one run_all.py shares (--teacher); the other two are made here
        path = teacher(args, tmp) if kw["class_query"] and kw["dynamic_size"] else teacher(args, tmp, **kw)
        models[name] = Model(path, providers=["CPUExecutionProvider"], threads=1)
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    cases = [(name, q) for name in models for q in ((None, [1, 2, 3, 4, 5]) if models[name].class_query else (None,))]
    times: dict[tuple[str, str], list[float]] = {(n, str(q)): [] for n, q in cases}
    for _ in range(20):  # warm-up
        for name, q in cases:
            models[name].run(batch, q)
    for r in range(runs):
        for name, q in cases[r % len(cases):] + cases[:r % len(cases)]:  # rotate who goes first
            t0 = time.perf_counter()
            models[name].run(batch, q)
            times[(name, str(q))].append((time.perf_counter() - t0) * 1e3)
    base = float(np.median(times[(next(iter(models)), "None")]))
    rows = ["| graph | Q | median ms | × plain |", "|---|---|---|---|"]
    for (name, query), t in times.items():
        m = float(np.median(t))
        rows.append(f"| {name} | {0 if query == 'None' else 5} | {m:.2f} | {m / base:.3f} |")
    text = (header("Class queries: latency against the plain top-K graph") +
            f"\nReal MobileNetV2, 224x224, batch 1, 1 intra-op thread, ONNX Runtime CPU, {runs} runs of each "
            "case interleaved round-robin in one process (medians).\n\n" + "\n".join(rows))
    write("class_query.md", text)


if __name__ == "__main__":
    main()
