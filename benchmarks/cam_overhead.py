"""What the CAM costs against a plain classifier of the same weights, and where the rest goes.

For each network (MobileNetV2 with the real ImageNet weights, ResNet-18 with random ones: speed does
not depend on them) the same weights are exported several ways and timed in one process, ONNX
Runtime CPU, batch 1, the runs interleaved round-robin (the first graph of a round rotates) after a
warm-up, so the machine's load falls on every graph alike; medians:

  plain             torchvision's network alone, float NCHW input already normalised, logits only,
                    fixed size: `torch.onnx.export(model, x, dynamo=True)`, what a user exports
  plain+uint8       the same graph behind edge-cam's input: uint8 NHWC RGB, Transpose, Cast and the
                    normalisation in the graph (its divide folded into the first convolution)
  plain+numpy       `plain` with that normalisation done in numpy before each run: what a caller of
                    `plain` pays per frame
  edge-cam no-cam   `edge-cam export --no-cam`: plain+uint8, plus top-K and softmax scores, dynamic
                    height and width
  CAM fixed size    the teacher at one input size
  CAM teacher       the teacher as exported by default (dynamic size, class queries), run as the
                    runtime runs it (an empty class query)
  CAM, image alone  the same file fed `image` only (class_query's default: one class)

With --tflite the teacher, the no-cam classifier and the plain network are converted by
litert-torch and timed in LiteRT (fp32, XNNPACK) the same way.

    python benchmarks/cam_overhead.py [--runs 200] [--threads 1 2] [--tflite] [--extra NAME=FILE.onnx ...]

--quick: MobileNetV2 only, 50 runs, 1 thread. --teacher is accepted and not used: the point is the
same weights exported every way, so the script exports them itself.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from common import DATA, header, parser, write
from onnx import TensorProto, helper, numpy_helper

from edge_cam.metadata import IMAGENET_MEAN, IMAGENET_STD
from edge_cam.model import Model
from edge_cam.source import read_image
from edge_cam_export import export_module
from edge_cam_export.graph.models import build_model, load_weights
from edge_cam_export.graph.onnx_passes import fold_scale

SIZE = (224, 224)
NETWORKS = {"mobilenet_v2": str(DATA / "models" / "mobilenet_v2_imagenet.pt"), "resnet18": None}
MEAN = np.asarray(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1) * 255
STD = np.asarray(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1) * 255


def network(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(f"torchvision:{name}", None)
    weights = NETWORKS[name]
    if weights:
        load_weights(model, weights, f"torchvision:{name}")
    return model.eval()


def plain_onnx(model: torch.nn.Module, path: str) -> None:
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, *SIZE),), path, input_names=["input"], output_names=["logits"],
                          dynamo=True, external_data=False, opset_version=18)


def with_uint8_input(src: str, dst: str) -> None:
    """`src` (float NCHW `input`) behind edge-cam's front: uint8 NHWC `image` → Transpose → Cast →
    (x - mean) / std, the divide then folded as the exporter folds it."""
    m = onnx.load(src)
    g = m.graph
    consts = [numpy_helper.from_array(MEAN, "front/mean"), numpy_helper.from_array(STD, "front/std")]
    front = [helper.make_node("Transpose", ["image"], ["front/nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Cast", ["front/nchw"], ["front/float"], to=TensorProto.FLOAT),
             helper.make_node("Sub", ["front/float", "front/mean"], ["front/centred"]),
             helper.make_node("Div", ["front/centred", "front/std"], ["input"])]
    old = list(g.node)
    del g.node[:]
    g.node.extend(front + old)
    g.initializer.extend(consts)
    del g.input[:]
    g.input.append(helper.make_tensor_value_info("image", TensorProto.UINT8, [1, *SIZE, 3]))
    if not fold_scale(m):
        print("note: the plain graph's divide did not fold", file=sys.stderr)
    onnx.save(m, dst)


def normalised(image: np.ndarray) -> np.ndarray:
    """What a caller of a float-input classifier does to each frame first."""
    return (image.transpose(0, 3, 1, 2).astype(np.float32) - MEAN) / STD


class Case:
    """One graph, fed one way: "float" (normalised once, outside the timing), "numpy" (normalised
    in numpy on every run), "image" (the uint8 image alone) or "query" (with an empty class_query,
    as edge-cam's runtime runs a teacher)."""

    def __init__(self, path: str, threads: int, kind: str, image: np.ndarray):
        self.kind, self.image = kind, image
        self.x = normalised(image) if kind in ("float", "numpy") else image
        if path.endswith(".tflite"):
            from ai_edge_litert import interpreter

            from edge_cam.backends.litert import native_noise_filtered
            with native_noise_filtered():  # XNNPACK greets stderr at the first invoke
                runner = interpreter.Interpreter(model_path=path, num_threads=threads).get_signature_runner()
                name = next(iter(runner.get_input_details()))
                runner(**{name: self.x})
            self.run = lambda x, query: runner(**{name: x})
        else:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            opts.log_severity_level = 3  # the teacher's class_query default is meant (see edge_cam.backends)
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            self.run = lambda x, query: session.run(None, {name: x, **query})
        self.query = {"class_query": np.zeros(0, np.int64)} if kind == "query" else {}

    def __call__(self) -> None:
        self.run(normalised(self.image) if self.kind == "numpy" else self.x, self.query)


def interleaved(cases: dict[str, Case], runs: int) -> dict[str, np.ndarray]:
    """Milliseconds per run, [runs] per graph: round r runs every graph once, the first one rotating."""
    names = list(cases)
    for _ in range(20):  # warm-up
        for n in names:
            cases[n]()
    times = {n: np.zeros(runs) for n in names}
    for r in range(runs):
        for n in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            cases[n]()
            times[n][r] = (time.perf_counter() - t0) * 1e3
    return times


def timed(graphs: dict[str, tuple[str, str]], threads: int, image: np.ndarray, runs: int, title: str) -> str:
    cases = {n: Case(p, threads, kind, image) for n, (p, kind) in graphs.items()}
    return f"### {title}, {threads} thread(s)\n\n" + "\n".join(table(interleaved(cases, runs)))


def table(times: dict[str, np.ndarray], plain: str = "plain", nocam: str = "edge-cam no-cam") -> list[str]:
    """Three views of one set of runs, since other jobs share this machine: the ratio of medians;
    the median of each round's own ratio (the runs of a round are a fraction of a second apart, so a
    burst of load hits both sides); the ratio of the fastest runs (the least disturbed)."""
    med = {n: float(np.median(t)) for n, t in times.items()}
    rows = ["| graph | median ms | × plain | × no-cam | per round: × plain | × no-cam | fastest ms | × plain | × no-cam |",
            "|---|---|---|---|---|---|---|---|---|"]
    for n, t in times.items():
        paired = [float(np.median(t / times[b])) for b in (plain, nocam)]
        fast = [float(t.min() / times[b].min()) for b in (plain, nocam)]
        rows.append(f"| {n} | {med[n]:.2f} | {med[n] / med[plain]:.3f} | {med[n] / med[nocam]:.3f} | "
                    f"{paired[0]:.3f} | {paired[1]:.3f} | {t.min():.2f} | {fast[0]:.3f} | {fast[1]:.3f} |")
    return rows


def profiled(graphs: dict[str, tuple[str, str]], image: np.ndarray, runs: int, tmp: str) -> str:
    """Where the time goes, from ONNX Runtime's own profiler (1 thread): per graph, the median
    kernel time of each node over the runs, summed by operator. Kernel times leave out ORT's
    per-node overhead between kernels, and they too stretch under load; the split is what they show."""
    heavy = ("Conv", "FusedConv", "Gemm")
    rows = ["| graph | nodes run | convolutions and classifier µs | everything else µs | everything else, by operator (µs) |",
            "|---|---|---|---|---|"]
    for name, (path, kind) in graphs.items():
        if kind == "numpy" or path.endswith(".tflite"):
            continue
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = 1, 1, 3
        opts.enable_profiling, opts.profile_file_prefix = True, os.path.join(tmp, "profile")
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        case = Case(path, 1, kind, image)  # for its feed; the profiled session is this one
        session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: case.x, **case.query}
        for _ in range(runs):
            session.run(None, feed)
        trace = session.end_profiling()
        with open(trace, encoding="utf-8") as f:
            events = json.load(f)
        os.remove(trace)
        per_node: dict[tuple[str, str], list[float]] = {}
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                per_node.setdefault((e["args"]["op_name"], e["name"]), []).append(e["dur"])
        by_op: dict[str, float] = {}
        for (op, _), durations in per_node.items():
            by_op[op] = by_op.get(op, 0.0) + float(np.median(durations[len(durations) // 5:]))  # past warm-up
        main_us = sum(v for k, v in by_op.items() if k in heavy)
        rest = sorted(((v, k) for k, v in by_op.items() if k not in heavy), reverse=True)
        rows.append(f"| {name} | {len(per_node)} | {main_us:.0f} | {sum(v for v, _ in rest):.0f} | "
                    + ", ".join(f"{k} {v:.0f}" for v, k in rest) + " |")
    return "\n".join(rows)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--runs", type=int, default=200, help="interleaved runs of each graph (after 20 of warm-up)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    ap.add_argument("--tflite", action="store_true", help="also convert with litert-torch and time LiteRT fp32")
    ap.add_argument("--extra", nargs="*", default=[], metavar="NAME=FILE.onnx",
                    help="more edge-cam ONNX graphs of the first network to time beside them (e.g. an older export)")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.threads, args.networks = 50, [1], ["mobilenet_v2"]
    if args.runs < 50:
        ap.error("--runs: at least 50")
    tmp = tempfile.mkdtemp()
    sections, load = [], [os.getloadavg()[0]]
    for net in args.networks:
        model = network(net)
        paths = {k: os.path.join(tmp, f"{net}_{k}.onnx") for k in ("plain", "uint8", "nocam", "fixed", "cam")}
        print(f"{net}: exporting", file=sys.stderr, flush=True)
        plain_onnx(model, paths["plain"])
        with_uint8_input(paths["plain"], paths["uint8"])
        export_module(model, paths["nocam"], input_size=SIZE, quiet=True, cam=False)
        export_module(model, paths["fixed"], input_size=SIZE, quiet=True, dynamic_size=False)
        export_module(model, paths["cam"], input_size=SIZE, quiet=True)
        image = Model(paths["cam"], providers=["cpu"]).prepare(read_image(str(DATA / "images" / "cat.bmp")))[0][None]
        graphs = {"plain": (paths["plain"], "float"), "plain+uint8": (paths["uint8"], "image"),
                  "plain+numpy": (paths["plain"], "numpy"), "edge-cam no-cam": (paths["nocam"], "image"),
                  "CAM fixed size": (paths["fixed"], "query"), "CAM teacher": (paths["cam"], "query"),
                  "CAM, image alone": (paths["cam"], "image")}
        if net == args.networks[0]:
            for item in args.extra:
                name, path = item.split("=", 1)
                required = [i.name for i in onnx.load(path).graph.input]
                graphs[name] = (path, "query" if "class_query" in required else "image")
        for threads in args.threads:
            print(f"{net}: timing ONNX Runtime, {threads} thread(s)", file=sys.stderr, flush=True)
            sections.append(timed(graphs, threads, image, args.runs, f"{net}, ONNX Runtime {ort.__version__} CPU"))
        print(f"{net}: profiling ONNX Runtime, 1 thread", file=sys.stderr, flush=True)
        sections.append(f"### {net}: where the time goes (ONNX Runtime's profiler, 1 thread, {args.runs} runs)\n\n"
                        + profiled(graphs, image, args.runs, tmp))
        sections[-1] += "\n\nFile sizes (MB): " + ", ".join(
            f"{n} {os.path.getsize(p) / 1e6:.1f}" for n, (p, kind) in graphs.items() if kind != "numpy" and "alone" not in n)
        if args.tflite:
            tflite = _tflite(net, model, tmp)
            for threads in args.threads:
                print(f"{net}: timing LiteRT, {threads} thread(s)", file=sys.stderr, flush=True)
                sections.append(timed(tflite, threads, image, args.runs, f"{net}, LiteRT fp32 (XNNPACK)"))
        load.append(os.getloadavg()[0])
    text = (header("CAM overhead against a plain classifier of the same weights") +
            f"\nBatch 1, {SIZE[0]}x{SIZE[1]}, {args.runs} interleaved runs of each graph after 20 of warm-up, wall clock; "
            "ratios to `plain` and to `edge-cam no-cam` (see `table` in the script). Load average (1 min) at the start "
            f"and after each network: {', '.join(f'{x:.1f}' for x in load)} on {os.cpu_count()} cores. The graphs "
            "are defined in the script's docstring.\n\n" + "\n\n".join(sections))
    write("cam_overhead.md", text)


def _tflite(net: str, model: torch.nn.Module, tmp: str) -> dict[str, tuple[str, str]]:
    """The plain network, the no-cam classifier and the teacher as .tflite files (litert-torch)."""
    from edge_cam.backends.litert import native_noise_filtered
    from edge_cam_export.tflite.convert import litert_torch
    lt = litert_torch()
    files = {k: os.path.join(tmp, f"{net}_{k}.tflite") for k in ("plain", "nocam", "cam")}
    print(f"{net}: converting to TFLite", file=sys.stderr, flush=True)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), native_noise_filtered(), torch.no_grad():
        warnings.simplefilter("ignore")
        lt.convert(model, (torch.zeros(1, 3, *SIZE),)).export(files["plain"])
    export_module(model, files["nocam"], input_size=SIZE, quiet=True, cam=False, format="tflite")
    export_module(model, files["cam"], input_size=SIZE, quiet=True, format="tflite")
    return {"plain": (files["plain"], "float"), "plain+numpy": (files["plain"], "numpy"),
            "edge-cam no-cam": (files["nocam"], "image"), "CAM teacher": (files["cam"], "image")}


if __name__ == "__main__":
    main()
