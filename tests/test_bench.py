"""The benchmark runs end to end at a tiny size (a smoke test: no timing is asserted)."""

import json
import os
import subprocess
import sys

import pytest

from harness import REPO_ROOT


@pytest.mark.slow
def test_benchmark_smoke_run():
    result = subprocess.run(
        [sys.executable, os.path.join("benchmarks", "bench.py"), "--smoke"], cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout[result.stdout.index("{"):])
    assert results["keras predict"]["images_per_second"] > 0
    int8 = results["keras tflite int8"]
    assert int8["size_mb"] > 0 and 0.0 <= int8["top1_agreement"] <= 1.0
    assert int8["peak_rss_mb"] > 0
