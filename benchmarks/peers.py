"""edge-cam against what a user would otherwise pick, on the same real MobileNetV2 and photos:
image → top-1 CAM → box, end to end, one image at a time.

  edge-cam fp32      the CAM-folded ONNX graph in ONNX Runtime, box at input resolution
  plain ONNX         the same network exported without the CAM (what the CAM head costs)
  torchcam CAM       torchcam.methods.CAM in eager torch
  pytorch-grad-cam   pytorch_grad_cam.GradCAM in eager torch (a backward pass per image)

Needs the export extra plus `pip install torchcam grad-cam` (the `bench` extra).

    python benchmarks/peers.py [--images 100] [--threads 2]
"""
from __future__ import annotations

import tempfile
import time
from typing import Any

import numpy as np
import torch
from common import DATA, WEIGHTS, header, parser, teacher, write

from edge_cam.localize import BoxRule, HeatMap
from edge_cam.measure.evaluate import hit, read_labelled
from edge_cam.metadata import IMAGENET_MEAN, IMAGENET_STD
from edge_cam.model import Model
from edge_cam.preprocess import resize, to_rgb8
from edge_cam.source import read_image
from edge_cam_export.graph.models import build_model

MEAN, STD = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def box_from_map(cam: np.ndarray, image: np.ndarray):
    """The same rule for every method: the map at 224x224, 20% of its range, largest component."""
    _, r = resize(np.zeros((*image.shape[:2], 3), np.uint8), (224, 224))
    return BoxRule().boxes(HeatMap.from_cam(cam, r))


def torch_input(image: np.ndarray) -> torch.Tensor:
    x, _ = resize(to_rgb8(image), (224, 224))
    return (torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255 - MEAN) / STD


def timed(fn, images, repeat: int):
    """Median ms per image over `repeat` passes (after one warm-up pass), and the last outputs."""
    for im in images[:5]:
        fn(im)
    times: list[float] = []
    out: list[Any] = []
    for _ in range(repeat):
        out = []
        for im in images:
            t0 = time.perf_counter()
            out.append(fn(im))
            times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times)), out


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    if args.quick:
        args.images, args.repeat = 5, 1
    graph_runs = 20 if args.quick else 200
    torch.set_num_threads(args.threads)
    annotations = read_labelled(str(DATA / "raccoon"))[:args.images]
    images = [read_image(a.image) for a in annotations]
    tmp = tempfile.mkdtemp()
    cam_model = Model(teacher(args, tmp), threads=args.threads)
    # a quick run has no time for a second export: the CAM graph stands in for the plain one
    plain = cam_model if args.quick else Model(teacher(args, tmp, cam=False), threads=args.threads)
    net = build_model("torchvision:mobilenet_v2")
    net.load_state_dict(torch.load(WEIGHTS, weights_only=True))

    def edge_cam(im):
        p = cam_model.predict(im)
        assert p.cams is not None  # the teacher is exported with its CAM
        return BoxRule().boxes(HeatMap.from_cam(p.cams[0], p.resize))

    def plain_onnx(im):
        return plain.predict(im).class_id

    from torchcam.methods import CAM
    extractor = CAM(net, target_layer="features", fc_layer="classifier.1")

    def torchcam_cam(im):
        with torch.no_grad():
            scores = net(torch_input(im))
        cam = extractor(int(scores.argmax()), scores)[0][0].numpy()
        return box_from_map(cam, im)

    from pytorch_grad_cam import GradCAM
    features = net.get_submodule("features")
    assert isinstance(features, torch.nn.Sequential)
    gradcam = GradCAM(model=net, target_layers=[features[-1]])

    def grad_cam(im):
        return box_from_map(gradcam(input_tensor=torch_input(im), targets=None)[0], im)

    rows = ["| method | median ms per image | CorLoc@0.5 | ratio to edge-cam fp32 |", "|---|---|---|---|"]
    results = {}
    measured: list[tuple[str, float, str]] = []
    for name, fn in (("edge-cam fp32 (CAM in the ONNX graph)", edge_cam),
                     ("plain ONNX classifier (no CAM, no box)", plain_onnx),
                     ("torchcam CAM, eager torch", torchcam_cam),
                     ("pytorch-grad-cam GradCAM, eager torch", grad_cam)):
        ms, out = timed(fn, images, args.repeat)
        corloc = "" if name.startswith("plain") else \
            f"{np.mean([hit(b[0] if b else None, a.boxes) for b, a in zip(out, annotations)]):.3f}"
        results[name] = ms
        measured.append((name, ms, corloc))
        print(name, f"{ms:.2f} ms", corloc, flush=True)
    base = results["edge-cam fp32 (CAM in the ONNX graph)"]
    rows += [f"| {n} | {ms:.2f} | {c} | {ms / base:.2f} |" for n, ms, c in measured]
    extractor.remove_hooks()
    # The CAM head's own cost: the graph alone, same prepared batch, many runs.
    x = np.stack([cam_model.prepare(im)[0] for im in images[:1]])
    for m in (cam_model, plain):
        for _ in range(20):
            m.run(x)
    graph = {}
    for name, m in (("cam", cam_model), ("plain", plain)):
        t = []
        for _ in range(graph_runs):
            t0 = time.perf_counter()
            m.run(x)
            t.append((time.perf_counter() - t0) * 1e3)
        graph[name] = float(np.median(t))
    text = (header(f"Peers: image → top-1 CAM → box, MobileNetV2 (real ImageNet weights), {len(images)} raccoon "
                   f"photos, {args.threads} threads for torch and ORT") + "\n" + "\n".join(rows) +
            f"\n\nGraph alone, batch 1, median of {graph_runs} runs: CAM-folded {graph['cam']:.3f} ms, plain "
            f"{graph['plain']:.3f} ms, ratio {graph['cam'] / graph['plain']:.3f} (goal ≤ 1.03).\n"
            f"Peer / edge-cam end to end: torchcam {results['torchcam CAM, eager torch'] / base:.2f}x, "
            f"pytorch-grad-cam {results['pytorch-grad-cam GradCAM, eager torch'] / base:.2f}x (goal ≥ 4).")
    write("peers.md", text)


if __name__ == "__main__":
    main()
