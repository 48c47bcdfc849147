"""Rebuild benchmarks/README.md from the results the scripts wrote (nothing copied by hand).

    python benchmarks/make_readme.py
"""
from __future__ import annotations

import os

from common import HERE, RESULTS

ORDER = ["export_errors.md", "cam_overhead.md", "peers.md", "variants.md", "class_query.md", "bench.md", "streams.md",
         "preview.md", "tradeoff.md", "real_tradeoff.md", "motion_gate.md", "camera_question.md", "crop_resize.md",
         "localization.md", "soak.md"]
INTRO = """# Benchmarks

Each section below was written by the script named in it, on the machine, at the load, the time and
the commit it states. `make bench` runs them all (`benchmarks/run_all.py`) and rebuilds this page from
`results/` (`python benchmarks/make_readme.py` alone does the latter); `make bench QUICK=1` runs each
small into a scratch folder, to prove the scripts run and the pages build (part of `make test`).
One at a time:

| script | measures |
|---|---|
| `python benchmarks/cam_overhead.py` | the CAM graph against a plain classifier of the same weights |
| `python benchmarks/preview_watchers.py` | what MJPEG watchers of the live preview cost the capture loop |
| `python benchmarks/export_errors.py` | export verification error per torchvision family (export extra) |
| `python benchmarks/peers.py` | edge-cam vs torchcam and pytorch-grad-cam, CAM-folded vs plain graph (export + bench extras) |
| `python benchmarks/variants.py` | fp32 / int8 / fp16 ONNX and TFLite: drift, CorLoc, latency, size |
| `edge-cam bench --out benchmarks/results/bench` | per-stage latency, FPS, memory, energy of the cascade |
| `python benchmarks/streams.py` | FPS for 1 and 4 streams, teacher runs with static-scene reuse |
| `python benchmarks/class_query.py` | latency of the class-query (and dynamic-size) teacher against the plain top-K graph |
| `python benchmarks/cam_overhead.py` | the CAM teacher against a plain classifier of its weights, and where the time goes |
| `python benchmarks/tradeoff.py` | accuracy against cost of the cascade on the demo clip |
| `python benchmarks/real_tradeoff.py` | the cascade with distilled students on the shared real videos (train 60%, test 40%) |
| `python benchmarks/motion_gate.py` | the motion gate against the fixed cadence on the shared videos |
| `python benchmarks/camera_question.py` | distill, then eval with defaults and `--every 30`, on each shared video |
| `python benchmarks/crop_resize.py` | the crop's resize to the student's size: INTER_AREA against the two-step shrink |
| `python benchmarks/localization.py` | localisation defaults and each addition: CorLoc, MaxBoxAccV2, objects R / P, ms |
| `python benchmarks/soak.py` | RSS over 100,000 frames with events, video and MQTT on |
"""


def main() -> None:
    parts = [INTRO]
    for name in ORDER:
        path = os.path.join(RESULTS, name)
        if name == "bench.md":
            path = os.path.join(RESULTS, "bench", "bench.md")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                text = f.read().strip()
            parts.append(text if text.startswith("## ") else "## Cascade latency (edge-cam bench)\n\n" + text)
    # the committed results make the committed page; a scratch folder (a quick run) gets its own
    default = os.path.samefile(RESULTS, HERE / "results") if os.path.isdir(RESULTS) else False
    readme = str(HERE / "README.md") if default else os.path.join(RESULTS, "README.md")
    with open(readme, "w", encoding="utf-8") as f:
        f.write("\n\n".join(parts) + "\n")
    print(f"wrote {readme}")


if __name__ == "__main__":
    main()
