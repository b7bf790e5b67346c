"""The examples run as written."""

import os
import subprocess
import sys

import pytest

from harness import REPO_ROOT

EXAMPLES = ["backbone_features.py", "classifier.py", "swin_t_summary.py", "segmentation.py", "detection_retinanet.py"]


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs(name):
    result = subprocess.run(
        [sys.executable, os.path.join("examples", name)], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip()


def test_grpc_client_builds_the_request():
    sys.path.insert(0, os.path.join(REPO_ROOT, "examples"))
    try:
        from grpc_client import build_request
    finally:
        sys.path.pop(0)
    request = build_request("swin", [b"\x89PNG...", b"\xff\xd8..."])
    assert request.model_spec.signature_name == "serving_bytes"
    assert list(request.inputs["image_bytes"].string_val) == [b"\x89PNG...", b"\xff\xd8..."]
