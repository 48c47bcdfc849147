"""What the student's crop costs to resize: INTER_AREA straight to the student's size against
crop.shrink (bilinear to twice the size, then INTER_AREA's exact 2:1 average), on real frames of
the three shared videos, for square crops of several sides, and how far the two results differ.

    python benchmarks/crop_resize.py [--quick] [--size 64]

Needs ../shared/data only (no teacher, no torch). Writes results/crop_resize.md.
"""
from __future__ import annotations

import time

import cv2
import numpy as np
from common import DATA, header, parser, write

from edge_cam.crop import shrink
from edge_cam.source import open_source

VIDEOS = ("bottle-detection.mp4", "car-detection.mp4", "one-by-one-person-detection.mp4")
SIDES = (96, 128, 129, 160, 256, 360, 432)


def frames(video: str, count: int, step: int = 15) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    with open_source(str(DATA / "videos" / video)) as source:
        for f in source:
            if f.image is not None and f.index is not None and f.index % step == 0:
                out.append(f.image)
            if len(out) >= count:
                break
    return out


def median_ms(fn, patches: list[np.ndarray], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for p in patches:
            fn(p)
        times.append((time.perf_counter() - t0) * 1e3 / len(patches))
    return float(np.median(times))


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--size", type=int, default=64, help="the student's input side (the default student's: 64)")
    args = ap.parse_args()
    count, rounds = (4, 3) if args.quick else (20, 15)
    size = (args.size, args.size)
    rows = ["| crop side (pixels) | patches | INTER_AREA ms | shrink ms | ratio | mean abs difference (grey levels) | max |",
            "|---|---|---|---|---|---|---|"]
    pool = [f for v in VIDEOS for f in frames(v, count)]
    for side in SIDES:
        patches = [f[y:y + side, x:x + side] for f in pool if min(f.shape[:2]) >= side
                   for y, x in [((f.shape[0] - side) // 2, (f.shape[1] - side) // 2)]]
        if not patches:
            continue
        area = lambda p: cv2.resize(p, size[::-1], interpolation=cv2.INTER_AREA)  # noqa: E731
        a_ms, s_ms = median_ms(area, patches, rounds), median_ms(lambda p: shrink(p, size), patches, rounds)
        diff = np.concatenate([np.abs(area(p).astype(np.int16) - shrink(p, size).astype(np.int16)).ravel()
                               for p in patches])
        rows.append(f"| {side} | {len(patches)} | {a_ms:.3f} | {s_ms:.3f} | {a_ms / s_ms:.1f}x | {diff.mean():.2f} | "
                    f"{diff.max()} |")
    write("crop_resize.md", header(f"The crop's resize to {size[0]}x{size[1]}") + "\n" + "\n".join(rows) + """

Patches: square crops from the middle of real frames of the three shared videos (640x360 and 768x432),
timed one after another, median of rounds. Up to twice the student's side shrink is INTER_AREA
itself (the same figures).""")


if __name__ == "__main__":
    main()
