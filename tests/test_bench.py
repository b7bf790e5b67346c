"""The benchmarks: bench.py's mode table and tasks, report.py's RESULTS.md sections (on made-up
figures), and each script end to end at a tiny size (a smoke test: no timing is asserted)."""

import json
import os
import subprocess
import sys

import pytest

from harness import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))

import bench  # noqa: E402
import report  # noqa: E402
import train_epoch  # noqa: E402
import workers  # noqa: E402


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
    for name in ("keras upernet_swin_t", "torch upernet_swin_t", "keras swinv2_t", "torch swinv2_t",
                 "keras swin_unetr_48", "torch swin_unetr_48"):
        assert results[name]["images_per_second"] > 0, name


@pytest.mark.slow
def test_training_epoch_smoke_run():
    row = smoke_run("train_epoch.py")["fp32"]
    assert row["device"] == "CPU" and row["images"] == 70 and row["steps"] == 9
    assert row["images_per_second"] > 0 and row["first_epoch_s"] > row["epoch_s"]
    assert 0 < row["final_loss"] < 10


def test_training_epoch_section_replaces_itself(tmp_path):
    start, end = report.TRAIN_EPOCH_START, report.TRAIN_EPOCH_END
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\nother tables\n")
    for figure in ("first", "second"):
        train_epoch.replace_section(str(path), f"{start}\n{figure}\n{end}")
    text = path.read_text()
    assert text.startswith("# Benchmark results\n\nother tables\n")
    assert text.count(start) == 1 and "second" in text and "first" not in text


# --------------------------------------------------------------------------- bench.py: modes and tasks


def test_each_mode_flag_runs_its_mode_and_the_first_given_wins(monkeypatch, capsys):
    ran = []
    for name, mode in bench.MODES.items():
        monkeypatch.setitem(bench.MODES, name, mode._replace(
            run=lambda args, machine, name=name: ran.append((name, machine))))
    cases = {(): "full", ("--quick",): "quick", ("--jax",): "jax", ("--extra",): "extra", ("--paths",): "paths",
             ("--smoke",): "smoke", ("--quick", "--smoke"): "smoke", ("--jax", "--paths", "--extra"): "extra"}
    for flags, expected in cases.items():
        bench.main(list(flags))
        name, machine = ran[-1]
        assert name == expected, flags
        assert (machine is None) == (name == "smoke"), flags  # smoke prints nothing before its JSON
    assert "machine: " in capsys.readouterr().out


def test_flags_are_unchanged():
    args = bench.parse_args([])
    assert (args.rounds, args.iterations, args.precisions, args.no_write, args.worker) == (3, 3, "fp32,bf16", False, None)
    assert args.output == os.path.join(REPO_ROOT, "benchmarks", "RESULTS.md")
    assert not any(getattr(args, name) for name in ("quick", "jax", "extra", "paths", "smoke"))
    assert [mode.help is None for mode in bench.MODES.values()].count(True) == 1  # "full", without a flag


def all_tasks():
    return {**bench.headline_tasks(1, tuple(workers.PRECISIONS)), **bench.quick_tasks(1), **bench.jax_tasks(1),
            **bench.tflite_tasks(1, "/tmp"), **bench.scaling_tasks(1), **bench.paths_tasks(1, "bf16"),
            **bench.extra_tasks(1), **bench.smoke_tasks("/tmp")}


def test_every_task_names_a_worker_and_precision_that_exist():
    for name, task in all_tasks().items():
        assert task["worker"] in workers.WORKERS, name
        assert task.get("precision", "fp32") in workers.PRECISIONS, name
        json.dumps(task)  # it travels to the worker as JSON


def test_tasks_of_the_modes():
    assert list(bench.quick_tasks(1)) == ["keras predict fp32 b16", "torch eager fp32 b16"]
    jax = bench.jax_tasks(2)
    assert set(jax) == {*report.JAX_ROWS, "torch eager fp32 b16", "torch eager fp32 b1", "torch fit fp32 b16"}
    for name, task in jax.items():
        assert task.get("env") == ({"KERAS_BACKEND": "jax"} if name.startswith("keras") else None), name
    paths = bench.paths_tasks(1, "bf16")
    assert paths["avx2 torch"]["env"] == workers.AVX2_ONLY and paths["native torch"]["env"] == {}
    assert [paths[f"native keras {name}"]["jit_compile"] for name in ("xla", "graph", "auto")] == [True, False, None]
    assert {task["precision"] for task in paths.values()} == {"bf16"}
    assert set(bench.smoke_tasks("/tmp")) == {"keras predict", "keras tflite int8", "keras upernet_swin_t",
                                              "torch upernet_swin_t", "keras swinv2_t", "torch swinv2_t",
                                              "keras swin_unetr_48", "torch swin_unetr_48"}
    assert set(bench.extra_tasks(1, report.UNET_ROWS)) == {"keras swin_unetr_48 b1", "torch swin_unetr_48 b1",
                                                           "keras swin_unetr_48 b4", "torch swin_unetr_48 b4"}
    assert set(bench.extra_tasks(1)) == {f"{worker} {model} b{batch}" for worker in ("keras", "torch")
                                         for _, model, _, batch in report.EXTRA_ROWS}


def test_measure_alternating_takes_medians_and_reports_failures(monkeypatch):
    calls = []

    def measure(task):
        calls.append(task["name"])
        if task["name"] == "bad":
            raise RuntimeError("worker failed\nValueError: boom")
        return {"images_per_second": len(calls), "peak_rss_mb": 10.0 * len(calls)}

    monkeypatch.setattr(bench, "measure", measure)
    tasks = {name: {"name": name} for name in ("a", "bad", "b")}
    results = bench.measure_alternating(tasks, 3, log=lambda line: None, allow_failure=True)
    assert calls == ["a", "bad", "b", "a", "b", "a", "b"]  # alternating; a failed task is not retried
    assert results["a"] == {"images_per_second": 4, "peak_rss_mb": 60.0}  # median rate, highest peak
    assert results["bad"] == {"error": "ValueError: boom"}
    with pytest.raises(RuntimeError):
        bench.measure_alternating(tasks, 1, log=lambda line: None)


# --------------------------------------------------------------------------- report.py, on made-up figures


def row(images_per_second, **extra):
    return {"images_per_second": images_per_second, "seconds": 1 / images_per_second,
            "memory_growth_mb": 100.0, "peak_rss_mb": 1000.0, **extra}


def keras_twice_as_fast(tasks):
    return {name: row(20.0, xla=1, isa=0) if "keras" in name.split() else row(10.0) for name in tasks}


def full_run_results():
    headline = keras_twice_as_fast(bench.headline_tasks(1))
    tflite = {name: row(50.0, size_mb=28.0, max_abs_diff=1e-5, top1_agreement=1.0)
              for name in bench.tflite_tasks(1, "/tmp")}
    scaling = {f"{model} {size}": row(1 / (size / 224) ** 2) for model in ("swin", "vit") for size in report.SCALING_SIZES}
    return headline, tflite, scaling


def test_headline_ratios():
    headline, _, _ = full_run_results()
    assert report.headline_ratios(headline, ("fp32", "bf16")) == [
        "ratio predict fp32 b16: 2.00x", "ratio predict bf16 b16: 2.00x", "ratio predict fp32 b1: 2.00x",
        "ratio call fp32 b16: 2.00x", "ratio fit fp32 b16: 2.00x"]


def test_write_results_replaces_its_tables_and_keeps_the_other_sections(tmp_path, monkeypatch):
    kept = [f"{report.TRAIN_EPOCH_START}\nepoch\n{report.TRAIN_EPOCH_END}", f"{report.EXTRA_START}\nextra\n{report.EXTRA_END}",
            f"{report.JAX_START}\njax\n{report.JAX_END}", "{}\npaths\n{}".format(*report.paths_markers("bf16")),
            f"{report.GPU_START}\ngpu\n{report.GPU_END}"]
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\nold tables\n\n" + "\n\n".join(kept) + "\n")
    monkeypatch.chdir(tmp_path)
    report.write_results(str(path), "a CPU", *full_run_results(), rounds=3, precisions=("fp32", "bf16"))
    assert os.listdir(tmp_path) == ["RESULTS.md"]
    text = path.read_text()
    assert "old tables" not in text and "on a CPU; Python" in text
    assert all(text.count(section) == 1 for section in kept)
    assert "| predict fp32 batch 16 (XLA) | 20.00 | 10.00 | 2.00x | 100 | 100 |" in text
    assert "| fit bf16 batch 16 | 20.00 | 10.00 | 2.00x | 100 | 100 |" in text
    assert "| int8 | 20.0 | 28.0 | 1.00e-05 | 1.00 |" in text
    assert "| 896 | 16000 | 1.00x | 100 | 16000 | 1.00x | 100 |" in text


def test_write_plot(tmp_path):
    report.write_plot(full_run_results()[2], str(tmp_path / "scaling.png"))
    assert (tmp_path / "scaling.png").read_bytes().startswith(b"\x89PNG")


def test_jax_section_replaces_itself(tmp_path):
    path = str(tmp_path / "RESULTS.md")
    for rate in (10.0, 30.0):
        results = keras_twice_as_fast(bench.jax_tasks(1))
        results["keras fit fp32 b16"] = row(rate)
        report.write_section(path, report.jax_section("a CPU", results, 1), report.JAX_START, report.JAX_END)
    text = open(path).read()
    assert text.startswith("# Benchmark results\n\n" + report.JAX_START) and text.endswith(report.JAX_END + "\n")
    assert text.count(report.JAX_START) == 1
    assert "| fit fp32 batch 16 | 30.00 | 10.00 | 3.00x |" in text and "| predict fp32 batch 1 | 20.00 |" in text


def test_paths_section_names_the_failures():
    from keras_swin.cpu import INSTRUCTION_SETS

    results = keras_twice_as_fast(bench.paths_tasks(1))
    results["avx2 keras xla"] = {"error": "boom"}
    results["avx2 keras auto"] = row(20.0, xla=0, isa=1)
    lines = report.paths_section("a CPU", results, 1, "fp32").splitlines()
    assert (lines[0], lines[-1]) == report.paths_markers("fp32")
    assert f"| {INSTRUCTION_SETS[0]} (native) | 20.00 | 20.00 | XLA | 20.00 | 10.00 | 2.00x |" in lines
    assert f"| {INSTRUCTION_SETS[1]} (avx2) | fails | 20.00 | graph | 20.00 | 10.00 | 2.00x |" in lines
    assert "Failed: avx2 keras xla: boom" in lines


def test_extra_section(monkeypatch):
    import keras_swin
    import keras_swin.utils

    monkeypatch.setattr(keras_swin, "UPerNetSwinT", lambda: None)  # the FLOP count is keras_swin's own test
    monkeypatch.setattr(keras_swin.utils, "flops", lambda model, size: 945e9)
    text = report.extra_section("a CPU", keras_twice_as_fast(bench.extra_tasks(1)), 1)
    assert text.startswith(report.EXTRA_START) and text.endswith(report.EXTRA_END)
    assert "| UPerNet-SwinT | 512² | 4 | 20.00 | 10.00 | 2.00x | 100 | 100 |" in text
    assert "945.0G multiply-accumulates" in text and "+0.0%" in text


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


def test_deploy_section_on_made_up_figures():
    """benchmarks/deploy.py's table: a row per route, ratios to PyTorch eager, the two goals
    with their verdicts, and a failed route named (the routes run in `deploy.py`'s own
    processes: run it by hand, it takes minutes)."""
    import deploy

    tasks = deploy.tasks("/tmp", 224, deploy.SWIN_T, 1, (1, 16))
    assert {task["worker"] for task in tasks.values()} <= set(deploy.WORKERS)
    rates = {"keras fp32": 20.0, "keras int8": 15.0, "ours onnx": 20.0, "ours onnx fixed": 30.0, "ours openvino": 40.0,
             "hf eager": 10.0, "hf onnx": 25.0}
    results = {name: row(rates[name.rsplit(" ", 1)[0]]) for name in tasks}
    results["keras int8 b16"] = {"error": "boom"}
    prepared = dict(onnx_mb=114.0, openvino_mb=114.0, hf_onnx_mb=115.0, keras_mb=114.5, int8_keras_mb=30.0,
                    onnx_diff=1e-6, openvino_diff=2e-6, hf_onnx_diff=3e-6, int8_relative_error=0.01,
                    onnx_fixed_mb=113.0, onnx_fixed_diff=1e-6)
    text = deploy.deploy_section("a CPU", results, prepared, 3, (1, 16), note="Shared machine.")
    lines = text.splitlines()
    assert (lines[0], lines[-1]) == (deploy.DEPLOY_START, deploy.DEPLOY_END) and "Shared machine." in lines
    assert "| keras_swin OpenVINO IR (f32) | 40.00 | 4.00x | 40.00 | 4.00x |" in lines
    assert "| keras_swin `predict` int8 (`model.quantize`) | 15.00 | 1.50x | fails |  |" in lines
    assert ("ONNX Runtime: fixed at 224² like Hugging Face's, batch 1 1.20x (met), batch 16 1.20x (met); the file "
            "for every size, batch 1 0.80x (not met), batch 16 0.80x (not met).") in text
    assert "PyTorch eager: batch 1 keras_swin OpenVINO IR (f32) 4.00x (met)" in text
    assert "Failed: keras int8 b16: boom" in text
