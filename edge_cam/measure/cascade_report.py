"""What cascade_eval measures, as data, a markdown table and a trade-off plot (torch-free)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Score:
    every: int
    change: float | None
    frames: int
    agreement: float
    confident_frames: int
    agreement_confident: float | None  # None when no frame is confident
    teacher_runs: int
    student_runs: int
    macs_per_frame: float | None
    speedup: float | None  # teacher-on-every-frame MACs / the cascade's
    fps: float
    ms_per_frame: float
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)  # reference → cascade answer → frames
    # The teacher on every frame against the cascade, wall clock per frame, decoding excluded from
    # both (reported apart), colour conversion, resizing and cropping included.
    wall_speedup: float | None = None
    motion: dict | None = None  # the motion gate (MotionGate.to_json), None: off
    held: int = 0  # frames the gate held: the previous answer repeated, nothing run

    def setting(self) -> str:
        return describe(self.every, self.change, self.motion)


def describe(every: int, change: float | None, motion: dict | None) -> str:
    """A schedule in words: "every 30, motion 0.005 (≤ 1 in 5)" (the teacher at most once in 5
    frames while the scene moves)."""
    gate = f", motion {motion['level']:g} (≤ 1 in {motion['every']})" if motion else ""
    return f"every {every}" + (f", change {change:g}" if change else "") + gate


@dataclass
class Report:
    video: str
    start: int
    frames: int
    confident: float  # without a watch list: the teacher's top-1 probability from which a frame is confident
    teacher_macs: int | None  # at the size the teacher ran at
    student_macs: int | None
    teacher_fps: float
    reference_counts: dict[str, int]
    # What a student that always gives the commonest reference answer would score: the floor that
    # agreement has to be read against on footage where one answer dominates.
    majority: float = 0.0
    majority_confident: float | None = None
    scores: list[Score] = field(default_factory=list)
    watch: list[str] | None = None  # the watched targets' names (None: the teacher's top-1 is the answer)
    min_score: float | None = None  # the watch threshold
    teacher_input: list[int] | None = None  # (H, W) the teacher ran at (the last frame's)
    teacher_resize: str = ""
    decode_ms: float = 0.0  # reading and decoding one frame, the same for the teacher and the cascade

    def to_dict(self) -> dict:
        return asdict(self)

    def confident_rule(self) -> str:
        if self.watch is None or self.min_score is None:
            return f"the teacher's answer at p ≥ {self.confident:g}"
        return (f"P(best of {', '.join(self.watch)}) ≥ {2 * self.min_score:g} or < {self.min_score / 2:g} "
                f"(min score {self.min_score:g})")


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def to_markdown(report: Report) -> str:
    """A table: one row per cascade setting, after a line about the reference."""
    macs = lambda v: "unknown" if v is None else f"{v / 1e6:.1f} M"  # noqa: E731
    size = f" at {report.teacher_input[0]}×{report.teacher_input[1]}" if report.teacher_input else ""
    size += f" ({report.teacher_resize})" if report.teacher_resize else ""
    head = (f"{report.video}, frames {report.start}–{report.start + report.frames - 1} ({report.frames}); "
            f"teacher {macs(report.teacher_macs)} MACs{size}, student {macs(report.student_macs)} MACs; teacher on "
            f"every frame {report.teacher_fps:.0f} FPS; confident: {report.confident_rule()} on "
            f"{report.scores[0].confident_frames if report.scores else 0} frames; reference answers "
            + ", ".join(f"{k} {v}" for k, v in sorted(report.reference_counts.items(), key=lambda kv: -kv[1]))
            + f"; always answering the commonest: {_pct(report.majority)} ({_pct(report.majority_confident)} confident)"
            + f"; decoding {report.decode_ms:.2f} ms a frame (in no speed-up)")
    times = lambda v: "n/a" if v is None else f"{v:.1f}×"  # noqa: E731
    rows = ["| every | change | motion | agreement | agreement (confident) | teacher runs | student runs | held | "
            "MACs/frame | speed-up (MACs) | speed-up (wall clock) | FPS |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in report.scores:
        gate = f"{s.motion['level']:g}, ≤ 1 in {s.motion['every']}" if s.motion else "-"
        rows.append(f"| {s.every} | {'-' if s.change is None else f'{s.change:g}'} | {gate} | {_pct(s.agreement)} | "
                    f"{_pct(s.agreement_confident)} | {s.teacher_runs} | {s.student_runs} | {s.held} | "
                    f"{macs(s.macs_per_frame)} | {times(s.speedup)} | {times(s.wall_speedup)} | {s.fps:.0f} |")
    return head + "\n\n" + "\n".join(rows)


def plot(reports: dict[str, Report], path: str) -> None:
    """Agreement against speed-up, two lines per report (e.g. per video): on all frames, and on
    confident frames when there are any; points in speed-up order."""
    from ..tools.plot import line_chart
    series = {}
    for name, rep in reports.items():
        for suffix, pick in (("all", lambda s: s.agreement), ("confident", lambda s: s.agreement_confident)):
            pts = sorted((s.speedup, pick(s)) for s in rep.scores if s.speedup and pick(s) is not None)
            if pts:
                series[f"{name} ({suffix})"] = ([p[0] for p in pts], [100 * p[1] for p in pts])
    if series:
        line_chart(path, series, "cascade against the teacher on every frame", "speed-up in multiply-adds",
                   "agreement %", markers=True)
