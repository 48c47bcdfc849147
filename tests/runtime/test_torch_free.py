import pkgutil
import subprocess
import sys

import edge_cam


def test_no_runtime_module_imports_torch():
    names = [f"edge_cam.{m.name}" for m in pkgutil.iter_modules(edge_cam.__path__) if m.name != "__main__"]
    assert {"edge_cam.model", "edge_cam.cascade", "edge_cam.cli", "edge_cam.demo"} <= set(names)
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
