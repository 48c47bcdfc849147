"""FPS of the cascade for 1 and 4 streams in one process (teacher frames batched across streams),
on the bundled models and clip, and teacher runs per 100 frames with static-scene reuse.

    python benchmarks/streams.py [--frames 300]
"""
from __future__ import annotations

from common import header, parser, write

from edge_cam.cascade import Cascade
from edge_cam.model import Model
from edge_cam.source import Source
from edge_cam.stream import run
from edge_cam.tools.demo import data_path


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--frames", type=int, default=300, help="frames per stream")
    args = ap.parse_args()
    frames = 30 if args.quick else args.frames
    teacher, student = Model(data_path("teacher.onnx")), Model(data_path("student.onnx"), threads=1)
    clip = data_path("demo_clip.mp4")
    rows = ["| streams | teacher cadence | frames | teacher runs per 100 frames | FPS (all streams) | FPS per stream |",
            "|---|---|---|---|---|---|"]
    for streams in (1, 4):
        for every, change in ((1, None), (10, 8.0)):
            cascade = Cascade(teacher, student, every=every, change=change)
            sources = [Source(clip, loop=True) for _ in range(streams)]
            stats = run(cascade, sources, [], max_frames=frames * streams, status=None)
            cadence = "every frame" if every == 1 else f"every {every} or scene change ≥ {change:g}"
            rows.append(f"| {streams} | {cadence} | {stats.frames} | {100 * stats.teacher_runs / stats.frames:.1f} | "
                        f"{stats.fps:.1f} | {stats.fps / streams:.1f} |")
            print(rows[-1], flush=True)
    write("streams.md", header("Streams: FPS for 1 and 4 streams") + "\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
