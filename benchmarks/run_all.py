"""Every benchmark, then the pages: the one command behind `make bench` (and `make bench QUICK=1`).

    python benchmarks/run_all.py [--quick] [--only NAME ...] [--keep-going] [--jobs N]

It exports the real MobileNetV2 once for every script that needs it, runs each script (a line per
step with its time), rebuilds benchmarks/README.md from the results and checks that every page it
expects holds a table with figures. Each page says when, on what machine, at what load and at which
commit it was made.

--quick runs each script small, into a scratch results folder (EDGE_CAM_BENCH_RESULTS), so that the
committed figures are never replaced by meaningless ones: it proves the scripts run and the pages
build (make test runs it), never how fast anything is, so its steps run side by side on every core
(--jobs; a full run takes one step at a time, or its timings would share the cores).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from common import HERE, parser, teacher


@dataclass(frozen=True)
class Step:
    name: str
    argv: list[str]  # after the python executable
    pages: tuple[str, ...]  # what it writes into the results folder
    needs: tuple[str, ...] = ()  # modules it cannot run without


def steps(results: str) -> list[Step]:
    py = lambda name: str(HERE / name)  # noqa: E731
    return [
        Step("export errors", [py("export_errors.py")], ("export_errors.md",)),
        Step("CAM overhead", [py("cam_overhead.py")], ("cam_overhead.md",)),
        Step("class queries", [py("class_query.py")], ("class_query.md",)),
        Step("peers", [py("peers.py")], ("peers.md",), needs=("torchcam", "pytorch_grad_cam")),
        Step("formats and precisions", [py("variants.py")], ("variants.md",)),
        Step("cascade latency", ["-m", "edge_cam", "bench", "--out", os.path.join(results, "bench")], ("bench/bench.md",)),
        Step("streams", [py("streams.py")], ("streams.md",)),
        Step("preview watchers", [py("preview_watchers.py")], ("preview.md",)),
        Step("demo trade-off", [py("tradeoff.py")], ("tradeoff.md",)),
        Step("the camera's question", [py("question.py")], ("question.md",)),
        Step("real footage", [py("real_tradeoff.py")], ("real_tradeoff.md",)),
        Step("motion gate", [py("motion_gate.py")], ("motion_gate.md",)),
        Step("the camera's question with defaults", [py("camera_question.py")], ("camera_question.md",)),
        Step("crop resize", [py("crop_resize.py")], ("crop_resize.md",)),
        Step("localisation", [py("localization.py")], ("localization.md",)),
        Step("soak", [py("soak.py")], ("soak.md",)),
    ]


TAKES_TEACHER = {"question.py", "class_query.py", "peers.py", "variants.py", "real_tradeoff.py", "motion_gate.py",
                 "camera_question.py",
                 "localization.py", "cam_overhead.py"}
BENCH_QUICK = ["--frames", "60", "--warmup", "10"]
# The quick steps that take longest, longest first (seconds in the latest make test: 67, 46, 24, 20, 20).
LONGEST_QUICK = ("CAM overhead", "localisation", "motion gate", "real footage", "the camera's question with defaults")


def has_figures(path: str) -> bool:
    """A markdown table row holding at least one number."""
    if not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8") as f:
        return any(line.startswith("|") and re.search(r"\d", line) and not set(line) <= set("|-: \n")
                   for line in f)


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only the steps whose names start with these")
    ap.add_argument("--keep-going", action="store_true", help="run the other steps when one fails")
    ap.add_argument("--jobs", type=int, help="steps run side by side (default: 1, so that no step's timings share "
                                             "the cores; with --quick, every core: its figures mean nothing)")
    args = ap.parse_args()
    results = os.environ.get("EDGE_CAM_BENCH_RESULTS") or (tempfile.mkdtemp(prefix="edge-cam-bench-quick-")
                                                            if args.quick else str(HERE / "results"))
    env = {**os.environ, "EDGE_CAM_BENCH_RESULTS": results}
    work = tempfile.mkdtemp(prefix="edge-cam-bench-")
    todo = [s for s in steps(results) if not args.only or any(s.name.startswith(o) for o in args.only)]
    jobs = max(1, args.jobs or ((os.cpu_count() or 1) if args.quick else 1))
    print(f"{len(todo)} benchmarks{' (quick)' if args.quick else ''}, {jobs} at a time; results in {results}",
          flush=True)
    shared = args.teacher
    if any(os.path.basename(s.argv[0]) in TAKES_TEACHER for s in todo):
        shared = shared or teacher(args, work)  # once, before any step that takes it starts
    failed: list[str] = []
    stop = threading.Event()
    t_all = time.perf_counter()

    def run(i: int, step: Step) -> None:
        if stop.is_set():
            return
        missing = [m for m in step.needs if not _importable(m)]
        if missing:
            print(f"[{i}/{len(todo)}] {step.name}: FAILED, {', '.join(missing)} not installed (make bench installs them)",
                  flush=True)
            failed.append(step.name)
            return
        argv = list(step.argv)
        if os.path.basename(argv[0]) in TAKES_TEACHER:
            argv += ["--teacher", str(shared)]
        if args.quick:
            argv += BENCH_QUICK if step.name == "cascade latency" else ["--quick"]
        t0 = time.perf_counter()
        log = os.path.join(work, f"{i:02d}.log")
        with open(log, "w", encoding="utf-8") as out:
            code = subprocess.run([sys.executable, *argv], env=env, stdout=out, stderr=subprocess.STDOUT).returncode
        seconds = time.perf_counter() - t0
        empty = [p for p in step.pages if not has_figures(os.path.join(results, p))]
        if code or empty:
            failed.append(step.name)
            why = f"exit {code}" if code else f"no figures in {', '.join(empty)}"
            with open(log, encoding="utf-8") as f:
                tail = "".join(f.readlines()[-30:])
            print(f"[{i}/{len(todo)}] {step.name}: FAILED ({why}, {seconds:.0f} s); its output:\n{tail}", flush=True)
            if not args.keep_going:
                stop.set()
        else:
            print(f"[{i}/{len(todo)}] {step.name}: {seconds:.0f} s", flush=True)

    numbered = list(enumerate(todo, 1))
    if jobs > 1:  # the longest first, so that no core waits on one at the end
        numbered.sort(key=lambda n: LONGEST_QUICK.index(n[1].name) if n[1].name in LONGEST_QUICK else len(LONGEST_QUICK))
    with ThreadPoolExecutor(jobs) as pool:  # threads only wait: each step is its own process
        for future in [pool.submit(run, i, step) for i, step in numbered]:
            future.result()
    subprocess.run([sys.executable, str(HERE / "make_readme.py")], env=env, check=True)
    print(f"{len(todo) - len(failed)} of {len(todo)} benchmarks in {time.perf_counter() - t_all:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


def _importable(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    sys.exit(main())
