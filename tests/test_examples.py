"""The examples run as written (the detector on fewer scenes)."""

import os
import re
import subprocess
import sys

import pytest

from harness import REPO_ROOT

EXAMPLES = ["backbone_features.py", "classifier.py", "swin_t_summary.py", "segmentation.py", "detection_retinanet.py",
            "swin_unetr.py"]
# Run before an example, in its process: the detector trains its two epochs on 64 of the 600
# digit scenes it asks for (its code runs the same).
PRELUDE = {
    "detection_retinanet.py": """
from keras_swin.data import segmentation
full = segmentation.digit_scenes
segmentation.digit_scenes = lambda seed=0, counts=None, with_boxes=False: full(
    seed, {**(counts or {}), "train": min(64, (counts or {}).get("train", 64))}, with_boxes)
""",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs(name):
    path = os.path.join("examples", name)
    code = PRELUDE.get(name, "") + f"\nimport runpy\nrunpy.run_path({path!r}, run_name='__main__')\n"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip()
    if name == "detection_retinanet.py":
        assert len(re.findall(r"^epoch \d: loss \d", result.stdout, re.M)) == 2, result.stdout
        assert re.search(r"^test COCO AP \d\.\d{3}, AP50 \d\.\d{3}", result.stdout, re.M), result.stdout
    if name == "swin_unetr.py":
        for line in ("MONAI checkpoint loaded", "TFLite: max abs difference"):
            difference = float(re.search(line + r".* ([0-9.e+-]+)$", result.stdout, re.M).group(1))
            assert difference <= 1e-4, result.stdout


def test_grpc_client_builds_the_request():
    sys.path.insert(0, os.path.join(REPO_ROOT, "examples"))
    try:
        from grpc_client import build_request
    finally:
        sys.path.pop(0)
    request = build_request("swin", [b"\x89PNG...", b"\xff\xd8..."])
    assert request.model_spec.signature_name == "serving_bytes"
    assert list(request.inputs["image_bytes"].string_val) == [b"\x89PNG...", b"\xff\xd8..."]
