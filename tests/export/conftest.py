import pytest

torch = pytest.importorskip("torch", reason="export tests need the export extra (torch)")
