"""The shipped ImageNet groups are what scripts/imagenet_groups.py makes from WordNet 3.0 (Debian's
wordnet-base, which .ci/run installs) and timm's list of the 1000 ImageNet synsets."""
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_the_shipped_groups_are_reproducible():
    if not pathlib.Path("/usr/share/wordnet/data.noun").is_file():
        message = "WordNet 3.0 is not installed (apt-get install wordnet-base)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; .ci/run installs it")
        pytest.skip(message)
    pytest.importorskip("timm", reason="the ImageNet synset list comes from timm (dev extra)")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "imagenet_groups.py"), "--check"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "up to date" in proc.stdout + proc.stderr
