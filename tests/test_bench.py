"""The benchmark runs end to end at a tiny size (a smoke test: no timing is asserted)."""

import json
import os
import subprocess
import sys

import pytest

from harness import REPO_ROOT


def smoke_run(script):
    """Runs `benchmarks/<script> --smoke` and returns the JSON object it prints after its log."""
    result = subprocess.run(
        [sys.executable, os.path.join("benchmarks", script), "--smoke"], cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout[result.stdout.index("{"):])


@pytest.mark.slow
def test_benchmark_smoke_run():
    results = smoke_run("bench.py")
    assert results["keras predict"]["images_per_second"] > 0
    int8 = results["keras tflite int8"]
    assert int8["size_mb"] > 0 and 0.0 <= int8["top1_agreement"] <= 1.0
    assert int8["peak_rss_mb"] > 0
    for name in ("keras upernet_swin_t", "torch upernet_swin_t", "keras swinv2_t", "torch swinv2_t"):
        assert results[name]["images_per_second"] > 0, name


@pytest.mark.slow
def test_training_epoch_smoke_run():
    row = smoke_run("train_epoch.py")["fp32"]
    assert row["device"] == "CPU" and row["images"] == 70 and row["steps"] == 9
    assert row["images_per_second"] > 0 and row["first_epoch_s"] > row["epoch_s"]
    assert 0 < row["final_loss"] < 10


def test_training_epoch_section_replaces_itself(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(REPO_ROOT, "benchmarks"))
    from train_epoch import replace_section

    from bench import TRAIN_EPOCH_END, TRAIN_EPOCH_START

    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\nother tables\n")
    for figure in ("first", "second"):
        replace_section(str(path), f"{TRAIN_EPOCH_START}\n{figure}\n{TRAIN_EPOCH_END}")
    text = path.read_text()
    assert text.startswith("# Benchmark results\n\nother tables\n")
    assert text.count(TRAIN_EPOCH_START) == 1 and "second" in text and "first" not in text


@pytest.mark.slow
def test_gpu_script_runs_tiny_on_the_cpu(tmp_path):
    """benchmarks/gpu.py, prepared for a GPU machine (JAX, no TensorFlow), at tiny sizes
    here: every row measured, and the parity row under 1e-4."""
    result = subprocess.run(
        [sys.executable, os.path.join("benchmarks", "gpu.py"), "--tiny", "--no-compile", "--output", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "gpu.json").read_text())
    assert not [name for name, row in results.items() if "error" in row], results
    assert results["parity"]["max_abs_diff"] <= 1e-4 and results["parity"]["backend"] == "jax"
    for name in ("keras infer fp32", "keras infer bf16", "timm infer fp32", "timm infer bf16",
                 "keras train bf16", "timm train bf16"):
        assert results[name]["images_per_second"] > 0, name
    table = (tmp_path / "gpu.md").read_text()
    assert "| training bf16, AdamW" in table and "(<= 1e-4)" in table
