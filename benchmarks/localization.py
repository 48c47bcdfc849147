"""Localisation on the 200 raccoon photos with the real MobileNetV2: the CAM paper's rule, the
MaxBoxAccV2 protocol, input resolution, and calibration (box rule and top-k map fusion chosen on
one half, reported on the other).

    python benchmarks/localization.py
"""
from __future__ import annotations

import os
import pathlib
import tempfile

from common import header, write

from edge_cam.localize import BoxRule
from edge_cam.model import Model
from edge_cam.tools.evaluate import calibrate, evaluate, read_labelled
from edge_cam_export import export

DATA = pathlib.Path(os.environ.get("EDGE_CAM_SHARED_DATA", pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))


def main() -> None:
    weights = str(DATA / "models" / "mobilenet_v2_imagenet.pt")
    anns = read_labelled(str(DATA / "raccoon"))
    tmp = tempfile.mkdtemp()
    rows = ["| teacher input | box rule | CorLoc@0.5 | MaxBoxAcc 0.3 / 0.5 / 0.7 | MaxBoxAccV2 |", "|---|---|---|---|---|"]
    models = {}
    for size in (224, 320, 448):
        path = f"{tmp}/mnv2_{size}.onnx"
        export("torchvision:mobilenet_v2", path, weights=weights, input_size=(size, size), quiet=True)
        models[size] = Model(path)
        e = evaluate(models[size], anns)
        acc = " / ".join(f"{v:.3f}" for v in e.max_box_acc.values())
        rows.append(f"| {size} | paper: top-1 map, 0.2, largest | {e.corloc:.3f} | {acc} | {e.max_box_acc_v2:.3f} |")
        print(rows[-1], flush=True)
    for k in (3, 5):
        e = evaluate(models[224], anns, rule=BoxRule(0.3, "largest", 0.01, k))
        rows.append(f"| 224 | top-{k} maps fused, 0.3, largest | {e.corloc:.3f} | | |")
    c = calibrate(models[224], anns)
    r = c.rule
    cal = (f"Calibration (`edge-cam calibrate`), chosen on the even-numbered photos, reported on the odd ones: "
           f"threshold {r.threshold:g}, {r.mode} box, top-{r.fuse_top} maps fused. CorLoc@0.5 on the tuning half "
           f"{c.tuned['baseline']:.3f} → {c.tuned['calibrated']:.3f}; on the held-out half "
           f"{c.held_out['baseline']:.3f} → {c.held_out['calibrated']:.3f}.")
    write("localization.md", header("Localisation: raccoon photos, MobileNetV2 (real ImageNet weights), top-1 class "
                                    "(GT-unknown), whole photo stretched") + "\n" + "\n".join(rows) + "\n\n" + cal)


if __name__ == "__main__":
    main()
