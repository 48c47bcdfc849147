import json
import subprocess
import sys

from timeouts import scaled


def test_bench_reports_every_stage_and_never_invents_energy(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edge_cam", "bench", "--frames", "40", "--warmup", "5",
                           "--every", "4", "--out", tmp_path], capture_output=True, text=True, timeout=scaled(300))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["frames"] == 40 and result["teacher_runs"] == 10
    assert {"read", "preprocess", "teacher", "localize", "crop", "student", "total"} <= set(result["latency_ms"])
    for v in result["latency_ms"].values():
        assert 0 <= v["median"] <= v["p95"] <= v["p99"]
    assert result["peak_rss_mb"] > 10 and result["load_ms"]["teacher"] > 0
    e = result["energy"]
    assert ("average_w" in e and e["average_w"] > 0) if e["available"] else e["reason"].startswith("No power meter")
    assert "| teacher |" in (tmp_path / "bench.md").read_text()
    assert (tmp_path / "latency.png").stat().st_size > 1000
