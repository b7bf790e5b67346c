"""keras_swin against the PyTorch reference (Hugging Face transformers Swin), on this machine.

Every figure is measured in a fresh worker process, so that peak memory belongs to one
measurement. keras_swin and PyTorch workers alternate within each round, every measurement
is repeated `--rounds` times and the median is reported. Models are built with their
defaults (keras_swin: `keras_swin.SwinT()`, whose `jit_compile="auto"` picks XLA in float32
on a CPU; PyTorch: eager, `torch.autocast` for bf16).

    python benchmarks/bench.py                 # everything; writes RESULTS.md and scaling.png
    python benchmarks/bench.py --quick         # SwinT 224 batch-16 predict fp32, both sides
    python benchmarks/bench.py --smoke         # tiny sizes, for the test suite

Also `keras-swin benchmark [ARGS]`.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
SCALING_SIZES = (224, 448, 896)
TFLITE_VARIANTS = ("none", "float16", "dynamic", "int8")
# RESULTS.md section written by train_epoch.py, which write_results keeps.
TRAIN_EPOCH_START, TRAIN_EPOCH_END = "<!-- train_epoch -->", "<!-- /train_epoch -->"
# RESULTS.md section written by `bench.py --extra` (UPerNet and Swin V2), which the full run keeps.
EXTRA_START, EXTRA_END = "<!-- extra -->", "<!-- /extra -->"
# RESULTS.md section written by `bench.py --jax`, which the full run keeps.
JAX_START, JAX_END = "<!-- jax -->", "<!-- /jax -->"
JAX_ROWS = ("keras predict fp32 b16", "keras predict fp32 b1", "keras fit fp32 b16")
# (name, model, image side, batch) of the --extra rows.
EXTRA_ROWS = (
    ("UPerNet-SwinT", "upernet_swin_t", 512, 1),
    ("UPerNet-SwinT", "upernet_swin_t", 512, 4),
    ("SwinV2T", "swinv2_t", 256, 16),
)
# precision: (Keras dtype policy, torch autocast dtype); fp16 is meant for a GPU run.
PRECISIONS = {"fp32": ("float32", None), "bf16": ("mixed_bfloat16", "bfloat16"), "fp16": ("mixed_float16", "float16")}


# --------------------------------------------------------------------------- workers


def _images(batch, height, width, seed=0):
    import numpy as np

    return np.random.default_rng(seed).uniform(0, 255, (batch, height, width, 3)).astype("float32")


def _rss_mb(field):
    """VmRSS (current) or VmHWM (peak) of this process, in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _timed(fn, warmup, iterations):
    """Median seconds of one call after `warmup` calls."""
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def _keras_model(task):
    import keras

    import keras_swin

    keras.config.set_dtype_policy(PRECISIONS[task.get("precision", "fp32")][0])
    if task.get("model") == "upernet_swin_t":
        return keras_swin.UPerNetSwinT()
    if task.get("model") == "swinv2_t":
        return keras_swin.SwinV2T()
    if task.get("config"):
        return keras_swin.SwinTransformer(**task["config"])
    return keras_swin.SwinT(include_top=task.get("include_top", True))


def worker_keras(task):
    import numpy as np

    size, batch, kind = task["size"], task["batch"], task["kind"]
    model = _keras_model(task)
    if task.get("jit_compile") is not None:  # else "auto": the model's own choice
        model.jit_compile = task["jit_compile"]
    images = _images(batch, size, size)
    baseline = _rss_mb("VmRSS")
    if kind == "predict":
        seconds = _timed(lambda: model.predict(images, batch_size=batch, verbose=0), 2, task["iterations"])
    elif kind == "predict_on_batch":
        seconds = _timed(lambda: model.predict_on_batch(images), 2, task["iterations"])
    elif kind == "call":
        seconds = _timed(lambda: model(images, training=False), 1, task["iterations"])
    elif kind == "fit":
        steps = task["iterations"]
        classes = model.output.shape[-1]
        labels = np.arange(batch * steps) % classes
        many = np.concatenate([images] * steps)
        model.compile(optimizer="adamw", loss="sparse_categorical_crossentropy")
        model.fit(images, labels[:batch], batch_size=batch, epochs=1, verbose=0)  # compile
        seconds = _timed(lambda: model.fit(many, labels, batch_size=batch, epochs=1, verbose=0), 0, 1) / steps
    elif kind == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        from keras_swin import export

        path = os.path.join(task["tmp"], f"{task['quantize']}.tflite")
        representative = _images(8, size, size, seed=1)
        size_bytes = export.to_tflite(model, path, quantize=task["quantize"],
                                      representative_data=representative, image_size=(size, size))
        interpreter = Interpreter(model_path=path, num_threads=os.cpu_count())
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, images.shape)
        interpreter.allocate_tensors()
        output = interpreter.get_output_details()[0]["index"]

        def run():
            interpreter.set_tensor(index, images)
            interpreter.invoke()
            return interpreter.get_tensor(output)

        seconds = _timed(run, 1, task["iterations"])
        return {
            "seconds": seconds, "images_per_second": batch / seconds, "size_mb": size_bytes / 1e6,
            **export.compare_tflite(model, path, representative[:4]),
            "memory_growth_mb": _rss_mb("VmHWM") - baseline,
        }
    else:
        raise ValueError(f"unknown keras benchmark kind {kind!r}")
    from keras_swin.cpu import INSTRUCTION_SETS, instruction_set

    # Which path ran: XLA or not (1/0), on which instruction set (an index of INSTRUCTION_SETS).
    return {"seconds": seconds, "images_per_second": batch / seconds,
            "memory_growth_mb": _rss_mb("VmHWM") - baseline, "xla": int(bool(model.jit_compile)),
            "isa": INSTRUCTION_SETS.index(instruction_set())}


def _torch_model(task):
    from transformers import SwinConfig, SwinForImageClassification, SwinModel

    config = SwinConfig(image_size=task["size"], embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                        window_size=7, num_labels=1000, drop_path_rate=0.2)
    if task.get("model") == "swinv2_t":
        from transformers import Swinv2Config, Swinv2ForImageClassification

        return Swinv2ForImageClassification(Swinv2Config(
            image_size=task["size"], embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=8,
            num_labels=1000, drop_path_rate=0.2,
        ))
    if task.get("model") == "upernet_swin_t":
        from transformers import UperNetConfig, UperNetForSemanticSegmentation

        config.out_features = ["stage1", "stage2", "stage3", "stage4"]
        config.drop_path_rate = 0.3
        return UperNetForSemanticSegmentation(
            UperNetConfig(backbone_config=config, auxiliary_in_channels=384, num_labels=150, use_auxiliary_head=False)
        )
    return SwinForImageClassification(config) if task.get("include_top", True) else SwinModel(config)


def worker_torch(task):
    import torch

    torch.manual_seed(0)
    size, batch, kind = task["size"], task["batch"], task["kind"]
    model = _torch_model(task)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device)
    pixels = torch.from_numpy(_images(batch, size, size).transpose(0, 3, 1, 2).copy() / 255.0).to(device)
    autocast_dtype = PRECISIONS[task.get("precision", "fp32")][1]
    autocast = dict(device_type=device.type, dtype=getattr(torch, autocast_dtype or "float32"),
                    enabled=autocast_dtype is not None)

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()
    baseline = _rss_mb("VmRSS")
    if kind in ("predict", "call", "predict_on_batch"):
        model.eval()

        def run():
            with torch.no_grad(), torch.autocast(**autocast):
                model(pixel_values=pixels)
            synchronize()

        seconds = _timed(run, 2, task["iterations"])
    elif kind == "fit":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters())
        labels = (torch.arange(batch) % 1000).to(device)

        def run():
            optimizer.zero_grad()
            with torch.autocast(**autocast):
                loss = torch.nn.functional.cross_entropy(model(pixel_values=pixels).logits, labels)
            loss.backward()
            optimizer.step()
            synchronize()

        seconds = _timed(run, 1, task["iterations"])
    else:
        raise ValueError(f"unknown torch benchmark kind {kind!r}")
    return {"seconds": seconds, "images_per_second": batch / seconds,
            "memory_growth_mb": _rss_mb("VmHWM") - baseline}


def worker_keras_vit(task):
    """A global-attention ViT in Keras (patch 16, width 384, 12 layers, 6 heads: DeiT-S,
    the paper's counterpart of Swin-T), for the scaling comparison."""
    import keras

    size = task["size"]
    tokens = (size // 16) ** 2
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(384, 16, strides=16)(inputs)
    x = keras.layers.Reshape((tokens, 384))(x)
    for _ in range(12):
        h = keras.layers.LayerNormalization(epsilon=1e-6)(x)
        x = x + keras.layers.MultiHeadAttention(6, 64)(h, h)
        h = keras.layers.LayerNormalization(epsilon=1e-6)(x)
        x = x + keras.layers.Dense(384)(keras.layers.Dense(1536, activation="gelu")(h))
    model = keras.Model(inputs, x)
    images = _images(1, size, size)
    baseline = _rss_mb("VmRSS")
    seconds = _timed(lambda: model.predict_on_batch(images), 2, task["iterations"])
    return {"seconds": seconds, "images_per_second": 1 / seconds,
            "memory_growth_mb": _rss_mb("VmHWM") - baseline}


WORKERS = {"keras": worker_keras, "torch": worker_torch, "keras_vit": worker_keras_vit}


def run_worker(task_json):
    task = json.loads(task_json)
    result = WORKERS[task["worker"]](task)
    result["peak_rss_mb"] = _rss_mb("VmHWM")
    print("RESULT " + json.dumps(result))


# --------------------------------------------------------------------------- driver


def measure(task, timeout=1800, script=__file__):
    """Runs `task` in a fresh `script --worker` process; returns the dict it prints."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **task.get("env", {})}
    process = subprocess.run(
        [sys.executable, os.path.abspath(script), "--worker", json.dumps(task)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=env,
    )
    for line in process.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"benchmark worker failed for {task}:\n{process.stderr[-3000:]}")


def measure_alternating(tasks, rounds, log=print, allow_failure=False):
    """Runs every task `rounds` times, interleaved; returns the median result per task.
    With `allow_failure`, a task whose worker fails is reported as `{"error": ...}`."""
    samples = {name: [] for name in tasks}
    failed = {}
    for round_index in range(rounds):
        for name, task in tasks.items():
            if name in failed:
                continue
            try:
                samples[name].append(measure(task))
            except RuntimeError as error:
                if not allow_failure:
                    raise
                failed[name] = {"error": str(error).strip().splitlines()[-1][:300]}
                log(f"  round {round_index + 1}/{rounds} {name}: FAILED {failed[name]['error']}")
                continue
            log(f"  round {round_index + 1}/{rounds} {name}: "
                f"{samples[name][-1]['images_per_second']:.2f} img/s")
    results = dict(failed)
    for name, runs in samples.items():
        if name in failed:
            continue
        merged = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        merged["peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
        results[name] = merged
    return results


def machine_description():
    model, flags = platform.processor() or "unknown CPU", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
                    flags = [f for f in line.split(":", 1)[1].split() if f in wanted]
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, flags: {' '.join(flags) or 'unknown'}"


def versions():
    import importlib.metadata as metadata

    names = ("tensorflow", "keras", "torch", "transformers", "ai-edge-litert")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return f"Python {platform.python_version()}, " + ", ".join(found)


def headline_tasks(iterations, precisions=("fp32", "bf16")):
    tasks = {}
    for precision in precisions:
        for batch in (16, 1):
            its = iterations if batch == 16 else 4 * iterations
            for kind in ("predict", "call"):
                tasks[f"keras {kind} {precision} b{batch}"] = dict(
                    worker="keras", kind=kind, size=224, batch=batch, iterations=its, precision=precision)
            tasks[f"torch eager {precision} b{batch}"] = dict(
                worker="torch", kind="predict", size=224, batch=batch, iterations=its, precision=precision)
        tasks[f"keras fit {precision} b16"] = dict(
            worker="keras", kind="fit", size=224, batch=16, iterations=iterations, precision=precision)
        tasks[f"torch fit {precision} b16"] = dict(
            worker="torch", kind="fit", size=224, batch=16, iterations=iterations, precision=precision)
    return tasks


def tflite_tasks(iterations, tmp):
    return {
        f"tflite {quantize} b1": dict(worker="keras", kind="tflite", size=224, batch=1,
                                      iterations=4 * iterations, quantize=quantize, tmp=tmp)
        for quantize in TFLITE_VARIANTS
    }


def scaling_tasks(iterations):
    tasks = {}
    for size in SCALING_SIZES:
        its = max(2, iterations * 224 // size)
        tasks[f"swin {size}"] = dict(worker="keras", kind="predict_on_batch", size=size, batch=1,
                                     iterations=its, include_top=False)
        tasks[f"vit {size}"] = dict(worker="keras_vit", size=size, iterations=its)
    return tasks


def _ratio(results, ours, theirs):
    return results[ours]["images_per_second"] / results[theirs]["images_per_second"]


def write_plot(scaling, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for model, label in (("swin", "keras_swin SwinT (windows)"), ("vit", "ViT-S/16 (global attention)")):
        megapixels = [size * size / 1e6 for size in SCALING_SIZES]
        seconds = [scaling[f"{model} {size}"]["seconds"] for size in SCALING_SIZES]
        memory = [scaling[f"{model} {size}"]["memory_growth_mb"] for size in SCALING_SIZES]
        time_axis.plot(megapixels, [1e3 * s / mp for s, mp in zip(seconds, megapixels)], "o-", label=label)
        memory_axis.plot(megapixels, memory, "o-", label=label)
    time_axis.set_xlabel("megapixels (224², 448², 896²)")
    time_axis.set_ylabel("ms per megapixel (batch 1, fp32)")
    time_axis.set_title("time per pixel: flat means linear")
    memory_axis.set_xlabel("megapixels")
    memory_axis.set_ylabel("peak memory growth (MB)")
    memory_axis.set_title("memory")
    for axis in (time_axis, memory_axis):
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def marked_section(text, start, end):
    """The part of RESULTS.md text between two markers, markers included ("" if none)."""
    if start not in text or end not in text:
        return ""
    return text[text.index(start):text.index(end) + len(end)]


def train_epoch_section(text):
    """The section of RESULTS.md text that train_epoch.py wrote, markers included ("" if none)."""
    return marked_section(text, TRAIN_EPOCH_START, TRAIN_EPOCH_END)


def jax_section(machine, results, rounds):
    """The JAX-on-CPU rows: keras_swin on the JAX backend against the same PyTorch rows."""
    lines = [
        JAX_START,
        "## JAX backend on CPU (SwinT 224², fp32)",
        "",
        f"Measured {datetime.date.today().isoformat()} by `python benchmarks/bench.py --jax --rounds {rounds}` "
        f"on {machine}; {versions()}. The same rows as above with `KERAS_BACKEND=jax` (XLA-compiled",
        "`predict` and `fit`), against PyTorch eager in the same run.",
        "",
        "| measurement | keras_swin on JAX (img/s) | PyTorch (img/s) | ratio |",
        "|---|---|---|---|",
    ]
    for ours in JAX_ROWS:
        kind, precision, batch = ours.split()[1:]
        theirs = f"torch fit {precision} {batch}" if kind == "fit" else f"torch eager {precision} {batch}"
        lines.append(f"| {kind} {precision} batch {batch[1:]} | {results[ours]['images_per_second']:.2f} | "
                     f"{results[theirs]['images_per_second']:.2f} | {_ratio(results, ours, theirs):.2f}x |")
    return "\n".join(lines + ["", JAX_END])


def write_section(path, section, start, end):
    """Replaces (or appends) a marked section of RESULTS.md."""
    old = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    previous = marked_section(old, start, end)
    text = old.replace(previous, section) if previous else old.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(text)


# Caps that make oneDNN, XLA, MKL and PyTorch's kernels use AVX2 only on a wider CPU: an
# AVX2 machine's code paths (not its clock, cache or memory) for both sides of the ratio.
AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "XLA_FLAGS": "--xla_cpu_max_isa=AVX2",
             "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def paths_markers(precision):
    return f"<!-- paths {precision} -->", f"<!-- /paths {precision} -->"


def paths_tasks(iterations, precision="fp32"):
    """SwinT 224 predict batch 16 with XLA, without, and "auto", against PyTorch eager (bf16:
    autocast), on this CPU and capped to AVX2."""
    tasks = {}
    for label, env in (("native", {}), ("avx2", AVX2_ONLY)):
        common = dict(kind="predict", size=224, batch=16, iterations=iterations, precision=precision, env=env)
        for jit in (True, False, None):
            name = {True: "xla", False: "graph", None: "auto"}[jit]
            tasks[f"{label} keras {name}"] = dict(worker="keras", jit_compile=jit, **common)
        tasks[f"{label} torch"] = dict(worker="torch", **common)
    return tasks


def paths_section(machine, results, rounds, precision):
    from keras_swin.cpu import INSTRUCTION_SETS

    labels = sorted({name.split()[0] for name in results}, key=("native", "avx2").index)
    start, end = paths_markers(precision)
    lines = [
        start,
        f"## XLA or the oneDNN graph, per instruction set (SwinT 224², `predict` {precision}, batch 16)",
        "",
        f"Measured {datetime.date.today().isoformat()} by `python benchmarks/bench.py --paths --precisions "
        f"{precision} --rounds {rounds}` on {machine}; {versions()}.",
        "Row \"avx2\" caps every library at AVX2 on the same CPU (" + ", ".join(f"`{k}={v}`" for k, v in AVX2_ONLY.items())
        + "): an AVX2 machine's kernels, not its clock, caches or memory. Alternating fresh processes, median.",
        "",
        "| instruction set | XLA (img/s) | oneDNN graph (img/s) | `auto` picks | `auto` (img/s) | PyTorch eager (img/s) | auto / PyTorch |",
        "|---|---|---|---|---|---|---|",
    ]
    def rate(name):
        row = results[name]
        return "fails" if "error" in row else f"{row['images_per_second']:.2f}"

    failures = []
    for label in labels:
        auto = results[f"{label} keras auto"]
        picked = "fails" if "error" in auto else ("XLA" if auto["xla"] else "graph")
        isa = INSTRUCTION_SETS[int(auto["isa"])] if "isa" in auto else label
        ratio = "n/a" if "error" in auto or "error" in results[f"{label} torch"] else \
            f"{_ratio(results, f'{label} keras auto', f'{label} torch'):.2f}x"
        lines.append(f"| {isa} ({label}) | {rate(f'{label} keras xla')} | {rate(f'{label} keras graph')} | {picked} | "
                     f"{rate(f'{label} keras auto')} | {rate(f'{label} torch')} | {ratio} |")
        failures += [f"{name}: {row['error']}" for name, row in results.items()
                     if name.startswith(label) and "error" in row]
    if failures:
        lines += ["", "Failed: " + "; ".join(failures)]
    return "\n".join(lines + ["", end])


def extra_tasks(iterations):
    tasks = {}
    for _, model, size, batch in EXTRA_ROWS:
        common = dict(model=model, kind="predict", size=size, batch=batch, iterations=iterations, precision="fp32")
        tasks[f"keras {model} b{batch}"] = dict(worker="keras", **common)
        tasks[f"torch {model} b{batch}"] = dict(worker="torch", **common)
    return tasks


def extra_section(machine, results, rounds):
    from keras_swin import UPerNetSwinT
    from keras_swin.utils import flops

    lines = [
        EXTRA_START,
        "## UPerNet segmentation and Swin V2 (`predict` fp32)",
        "",
        f"Measured {datetime.date.today().isoformat()} by `python benchmarks/bench.py --extra --rounds {rounds}` "
        f"on {machine}; {versions()}. keras_swin `UPerNetSwinT()` (150 classes, logits at the input",
        "size) against Hugging Face `UperNetForSemanticSegmentation` with the same Swin-T configuration;",
        "`SwinV2T()` against `Swinv2ForImageClassification` (window 8). PyTorch eager under",
        "`torch.no_grad`; alternating fresh processes, median of the rounds.",
        "",
        "| model | size | batch | keras_swin (img/s) | PyTorch (img/s) | ratio | keras peak growth (MB) | torch peak growth (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, model, size, batch in EXTRA_ROWS:
        ours, theirs = results[f"keras {model} b{batch}"], results[f"torch {model} b{batch}"]
        lines.append(
            f"| {name} | {size}² | {batch} | {ours['images_per_second']:.2f} | {theirs['images_per_second']:.2f} | "
            f"{ours['images_per_second'] / theirs['images_per_second']:.2f}x | "
            f"{ours['memory_growth_mb']:.0f} | {theirs['memory_growth_mb']:.0f} |")
    count = flops(UPerNetSwinT(), (512, 2048))
    lines += [
        "",
        f"`keras_swin.utils.flops(UPerNetSwinT(), (512, 2048))`: {count / 1e9:.1f}G multiply-accumulates",
        f"(backbone and decode head; the Swin paper and mmseg give 945G: {100 * (count / 945e9 - 1):+.1f}%).",
        "",
        EXTRA_END,
    ]
    return "\n".join(lines)


def write_results(path, machine, headline, tflite, scaling, rounds, precisions):
    lines = [
        "# Benchmark results",
        "",
        f"Measured {datetime.date.today().isoformat()} by `python benchmarks/bench.py --rounds {rounds}` on "
        f"{machine}; {versions()}.",
        "Each figure is the median of the rounds, each round a fresh process; keras_swin and PyTorch",
        "alternate. keras_swin is `keras_swin.SwinT()` with its defaults, called through",
        "`model.predict`, `model(x)` and `model.fit`; PyTorch is Hugging Face transformers",
        "`SwinForImageClassification`, eager (`torch.no_grad`, `torch.autocast` for bf16/fp16). SwinT, 224².",
        "Memory is the growth of the peak resident set over the process after the model was built.",
        "Each keras_swin row names the path that `jit_compile=\"auto\"` took: XLA or TensorFlow's graph.",
        "",
        "## Inference and training (img/s, higher is better)",
        "",
        "| measurement | keras_swin | PyTorch | ratio | keras peak growth (MB) | torch peak growth (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for precision in precisions:
        for batch in (16, 1):
            torch_name = f"torch eager {precision} b{batch}"
            for kind in ("predict", "call"):
                ours = f"keras {kind} {precision} b{batch}"
                path = " (XLA)" if headline[ours].get("xla") else " (graph)" if "xla" in headline[ours] else ""
                lines.append(
                    f"| {kind} {precision} batch {batch}{path} | {headline[ours]['images_per_second']:.2f} | "
                    f"{headline[torch_name]['images_per_second']:.2f} | {_ratio(headline, ours, torch_name):.2f}x | "
                    f"{headline[ours]['memory_growth_mb']:.0f} | {headline[torch_name]['memory_growth_mb']:.0f} |")
        ours, theirs = f"keras fit {precision} b16", f"torch fit {precision} b16"
        lines.append(
            f"| fit {precision} batch 16 | {headline[ours]['images_per_second']:.2f} | "
            f"{headline[theirs]['images_per_second']:.2f} | {_ratio(headline, ours, theirs):.2f}x | "
            f"{headline[ours]['memory_growth_mb']:.0f} | {headline[theirs]['memory_growth_mb']:.0f} |")
    lines += [
        "",
        "Targets: predict fp32 batch 16 >= 1.5x, predict bf16 batch 16 >= 1.0x (against bf16 autocast),",
        "fit fp32 >= 1.2x (against PyTorch fp32: "
        f"{_ratio(headline, 'keras fit fp32 b16', 'torch fit fp32 b16'):.2f}x).",
        "",
        "## TFLite, batch 1 (LiteRT interpreter, all cores)",
        "",
        "| variant | latency (ms) | size (MB) | max abs diff vs Keras | top-1 agreement |",
        "|---|---|---|---|---|",
    ]
    for quantize in TFLITE_VARIANTS:
        row = tflite[f"tflite {quantize} b1"]
        lines.append(f"| {quantize if quantize != 'none' else 'float32'} | {1e3 * row['seconds']:.1f} | "
                     f"{row['size_mb']:.1f} | {row['max_abs_diff']:.2e} | {row['top1_agreement']:.2f} |")
    lines.append(f"| Keras predict fp32 (for comparison) | {1e3 * headline['keras predict fp32 b1']['seconds']:.1f} | | | |")
    lines += [
        "",
        "Agreement here is on 4 random-noise images with an untrained model, whose near-uniform",
        "probabilities make top-1 meaningless for int8; the quantised",
        "agreement targets are tested on the trained digits model (`tests/test_export.py`).",
        "",
        "## Linear scaling (batch 1, fp32, `predict_on_batch`)",
        "",
        "| side | SwinT backbone ms | per-pixel vs 224² | memory growth (MB) | ViT-S/16 ms | per-pixel vs 224² | memory growth (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in SCALING_SIZES:
        pixels = (size / SCALING_SIZES[0]) ** 2
        cells = []
        for model in ("swin", "vit"):
            row, base = scaling[f"{model} {size}"], scaling[f"{model} {SCALING_SIZES[0]}"]
            cells.append(f"{1e3 * row['seconds']:.0f} | {row['seconds'] / base['seconds'] / pixels:.2f}x | "
                         f"{row['memory_growth_mb']:.0f}")
        lines.append(f"| {size} | {cells[0]} | {cells[1]} |")
    lines += ["", "![scaling](scaling.png)", ""]
    old = open(path).read() if os.path.exists(path) else ""
    for kept in (train_epoch_section(old), marked_section(old, EXTRA_START, EXTRA_END),
                 marked_section(old, JAX_START, JAX_END), *(marked_section(old, *paths_markers(p)) for p in PRECISIONS),
                 marked_section(old, "<!-- gpu -->", "<!-- /gpu -->")):
        if kept:
            lines += [kept, ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3, help="fresh-process repetitions (median)")
    parser.add_argument("--iterations", type=int, default=3, help="timed calls per batch-16 measurement")
    parser.add_argument("--precisions", default="fp32,bf16",
                        help="comma-separated fp32, bf16, fp16 (fp16: for a GPU run)")
    parser.add_argument("--quick", action="store_true", help="SwinT 224 batch-16 predict fp32 only")
    parser.add_argument("--jax", action="store_true",
                        help="keras_swin on the JAX backend: predict b16/b1 and fit b16, fp32, against PyTorch")
    parser.add_argument("--extra", action="store_true",
                        help="UPerNet-SwinT 512 (batch 1, 4) and SwinV2T 256 (batch 16) predict fp32 against Hugging Face")
    parser.add_argument("--paths", action="store_true",
                        help="XLA against the oneDNN graph (and what jit_compile='auto' picks), natively and "
                             "capped to AVX2, against PyTorch, for each of --precisions")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round, nothing written")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"))
    args = parser.parse_args(argv)
    if args.worker:
        return run_worker(args.worker)

    tmp = tempfile.mkdtemp(prefix="keras_swin_bench_")
    if args.smoke:
        tiny = dict(patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[1, 2], window_size=4,
                    include_top=True, classes=10)
        tasks = {
            "keras predict": dict(worker="keras", kind="predict", size=32, batch=2, iterations=1, config=tiny),
            "keras tflite int8": dict(worker="keras", kind="tflite", size=32, batch=1, iterations=1,
                                      config=tiny, quantize="int8", tmp=tmp),
        }
        for _, model, _, _ in EXTRA_ROWS[1:]:  # the --extra models, at 64x64
            for worker in ("keras", "torch"):
                tasks[f"{worker} {model}"] = dict(worker=worker, model=model, kind="predict", size=64, batch=1,
                                                  iterations=1, precision="fp32")
        results = measure_alternating(tasks, 1)
        print(json.dumps(results, indent=1))
        return results
    machine = machine_description()
    print(f"machine: {machine}")
    if args.extra:
        results = measure_alternating(extra_tasks(args.iterations), args.rounds)
        section = extra_section(machine, results, args.rounds)
        print(section)
        if not args.no_write:
            write_section(args.output, section, EXTRA_START, EXTRA_END)
            print(f"wrote {args.output}")
        return results
    if args.paths:
        results = {}
        for precision in args.precisions.split(","):
            results[precision] = measure_alternating(paths_tasks(args.iterations, precision), args.rounds,
                                                     allow_failure=True)
            section = paths_section(machine, results[precision], args.rounds, precision)
            print(section)
            if not args.no_write:
                write_section(args.output, section, *paths_markers(precision))
                print(f"wrote {args.output}")
        return results
    if args.jax:
        os.environ["KERAS_BACKEND"] = "jax"  # for the keras workers; PyTorch is unaffected
        tasks = {name: task for name, task in headline_tasks(args.iterations, ("fp32",)).items()
                 if name in JAX_ROWS or name.startswith("torch")}
        results = measure_alternating(tasks, args.rounds)
        section = jax_section(machine, results, args.rounds)
        print(section)
        if not args.no_write:
            write_section(args.output, section, JAX_START, JAX_END)
            print(f"wrote {args.output}")
        return results
    if args.quick:
        tasks = {name: task for name, task in headline_tasks(args.iterations).items()
                 if name in ("keras predict fp32 b16", "torch eager fp32 b16")}
        results = measure_alternating(tasks, args.rounds)
        path = "XLA" if results["keras predict fp32 b16"].get("xla") else "graph"
        print(f"ratio keras_swin ({path}) / pytorch (predict fp32 b16): "
              f"{_ratio(results, 'keras predict fp32 b16', 'torch eager fp32 b16'):.2f}x")
        return results
    precisions = tuple(args.precisions.split(","))
    unknown = sorted(set(precisions) - set(PRECISIONS))
    if unknown or "fp32" not in precisions:
        raise SystemExit(f"--precisions must include fp32 and be among {sorted(PRECISIONS)}; received {args.precisions!r}")
    headline = measure_alternating(headline_tasks(args.iterations, precisions), args.rounds)
    tflite = measure_alternating(tflite_tasks(args.iterations, tmp), 1)
    scaling = measure_alternating(scaling_tasks(args.iterations), args.rounds)
    for name in [f"predict {p} b16" for p in precisions] + ["predict fp32 b1", "call fp32 b16"]:
        precision, batch = name.split()[1], name.split()[2]
        print(f"ratio {name}: {_ratio(headline, 'keras ' + name, f'torch eager {precision} {batch}'):.2f}x")
    print(f"ratio fit fp32 b16: {_ratio(headline, 'keras fit fp32 b16', 'torch fit fp32 b16'):.2f}x")
    if not args.no_write:
        write_plot(scaling, os.path.join(os.path.dirname(args.output), "scaling.png"))
        write_results(args.output, machine, headline, tflite, scaling, args.rounds, precisions)
        print(f"wrote {args.output}")
    return {"headline": headline, "tflite": tflite, "scaling": scaling}


if __name__ == "__main__":
    main()
