import pkgutil
import subprocess
import sys

import edge_cam


def test_no_runtime_module_imports_torch():
    names = [m.name for m in pkgutil.walk_packages(edge_cam.__path__, "edge_cam.") if not m.name.endswith("__main__")]
    assert {"edge_cam.model", "edge_cam.cascade", "edge_cam.cli", "edge_cam.tools.demo",
            "edge_cam.measure.bench"} <= set(names)
    code = (f"import sys, importlib\nfor n in {names!r}: importlib.import_module(n)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'edge_cam_export'))\n"
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_export_without_torch_says_how_to_get_it(tmp_path):
    # In the board environment torch is really absent; elsewhere hide it from the import system.
    code = ("import sys; sys.modules['torch'] = None\nfrom edge_cam.cli import main\n"
            f"sys.exit(main(['export', 'torchvision:resnet18', '-o', r'{tmp_path / 'x.onnx'}']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "pip install 'edge-cam[export]'" in proc.stderr


def test_onnx_surgery_imports_without_torch():
    # CAM-ifying an ONNX model sits with the exporters but must work on a machine without torch.
    code = ("import sys; sys.modules['torch'] = None\nimport edge_cam_export\n"
            "from edge_cam_export import cam_from_onnx\nfrom edge_cam_export.graph.surgery import cam_from_onnx\n"
            "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
