"""keras_swin against the PyTorch reference (Hugging Face transformers Swin), on this machine.

Every figure is measured in a fresh worker process (so peak memory is per measurement),
keras_swin and PyTorch workers alternate, each measurement is repeated `--rounds` times
and the median is reported. Writes `benchmarks/RESULTS.md` (and a scaling plot) unless
`--no-write`.

    python benchmarks/bench.py                 # the full run (tens of minutes on 2 cores)
    python benchmarks/bench.py --quick         # SwinT 224 batch-16 predict only
    python benchmarks/bench.py --smoke         # tiny sizes, for the test suite
"""

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)


# --------------------------------------------------------------------------- workers


def _images(batch, height, width, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (batch, height, width, 3)).astype("float32")


def _timed(fn, warmup, iterations):
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    return (time.perf_counter() - start) / iterations


def worker_keras(task):
    import keras
    import numpy as np

    import keras_swin

    if task.get("precision") == "bf16":
        keras.config.set_dtype_policy("mixed_bfloat16")
    size, batch = task["size"], task["batch"]
    config = task.get("config")
    if config:
        model = keras_swin.SwinTransformer(**config, input_shape=(size, size, 3))
    else:
        model = keras_swin.SwinT(include_top=task.get("include_top", True), input_shape=(size, size, 3))
    images = _images(batch, size, size)
    kind = task["kind"]
    if kind == "predict":
        seconds = _timed(lambda: model.predict(images, batch_size=batch, verbose=0), 1, task["iterations"])
    elif kind == "call":
        seconds = _timed(lambda: model(images, training=False), 1, task["iterations"])
    elif kind == "fit":
        labels = np.arange(batch) % model.output.shape[-1]
        model.compile(optimizer="adamw", loss="sparse_categorical_crossentropy")
        seconds = _timed(lambda: model.fit(images, labels, batch_size=batch, epochs=1, verbose=0), 1, task["iterations"])
    elif kind in ("tflite_fp32", "tflite_int8"):
        from ai_edge_litert.interpreter import Interpreter

        from keras_swin import export

        path = os.path.join(task["tmp"], f"{kind}.tflite")
        quantize = "int8" if kind == "tflite_int8" else None
        export.to_tflite(model, path, quantize=quantize, representative_data=_images(8, size, size, seed=1))
        interpreter = Interpreter(model_path=path, num_threads=os.cpu_count())
        interpreter.allocate_tensors()
        index = interpreter.get_input_details()[0]["index"]

        def run():
            interpreter.set_tensor(index, images[:1])
            interpreter.invoke()

        seconds = _timed(run, 2, task["iterations"])
        batch = 1
    else:
        raise ValueError(kind)
    return {"seconds": seconds, "images_per_second": batch / seconds}


def worker_torch(task):
    import torch
    from transformers import SwinConfig, SwinForImageClassification, ViTConfig, ViTModel

    torch.manual_seed(0)
    size, batch = task["size"], task["batch"]
    if task.get("model") == "vit":
        config = ViTConfig(image_size=size, patch_size=16, hidden_size=384, num_hidden_layers=12,
                           num_attention_heads=6, intermediate_size=1536)
        model = ViTModel(config, add_pooling_layer=False)
    else:
        config = SwinConfig(image_size=size, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                            window_size=7, num_labels=1000)
        model = SwinForImageClassification(config)
    pixels = torch.from_numpy(_images(batch, size, size).transpose(0, 3, 1, 2).copy() / 255.0)
    autocast = task.get("precision") == "bf16"
    if task["kind"] in ("predict", "call"):
        model.eval()

        def run():
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                model(pixel_values=pixels)

        seconds = _timed(run, 1, task["iterations"])
    elif task["kind"] == "fit":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters())
        labels = torch.arange(batch) % 1000

        def run():
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = torch.nn.functional.cross_entropy(model(pixel_values=pixels).logits, labels)
            loss.backward()
            optimizer.step()

        seconds = _timed(run, 1, task["iterations"])
    else:
        raise ValueError(task["kind"])
    return {"seconds": seconds, "images_per_second": batch / seconds}


def worker_keras_vit(task):
    """A global-attention ViT (patch 16, width 384, 12 layers) in Keras, for scaling."""
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
    seconds = _timed(lambda: model.predict(images, verbose=0), 1, task["iterations"])
    return {"seconds": seconds, "images_per_second": 1 / seconds}


WORKERS = {"keras": worker_keras, "torch": worker_torch, "keras_vit": worker_keras_vit}


def run_worker(task_json):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    task = json.loads(task_json)
    result = WORKERS[task["worker"]](task)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


# --------------------------------------------------------------------------- driver


def measure(task, timeout=1800):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(task)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=env,
    )
    for line in process.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"benchmark worker failed for {task}:\n{process.stderr[-3000:]}")


def measure_alternating(tasks, rounds):
    """Runs every task `rounds` times, interleaved; returns the median result per task."""
    samples = {name: [] for name in tasks}
    for _ in range(rounds):
        for name, task in tasks.items():
            samples[name].append(measure(task))
    return {
        name: {
            "images_per_second": statistics.median(s["images_per_second"] for s in runs),
            "seconds": statistics.median(s["seconds"] for s in runs),
            "peak_rss_mb": max(s["peak_rss_mb"] for s in runs),
        }
        for name, runs in samples.items()
    }


def machine_description():
    model, flags = "unknown", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown":
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8")
                    flags = [f for f in line.split(":", 1)[1].split() if f in wanted]
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores ({' '.join(flags) or 'flags unknown'}), {platform.system()} {platform.machine()}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"))
    args = parser.parse_args(argv)
    if args.worker:
        return run_worker(args.worker)
    import tempfile

    tmp = tempfile.mkdtemp(prefix="keras_swin_bench_")
    its = args.iterations
    if args.smoke:
        tiny = dict(patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[1, 2], window_size=4,
                    include_top=True, classes=10)
        tasks = {
            "keras predict": dict(worker="keras", kind="predict", size=32, batch=2, iterations=1, config=tiny),
            "keras tflite_fp32": dict(worker="keras", kind="tflite_fp32", size=32, batch=1, iterations=1,
                                      config=tiny, tmp=tmp),
        }
        results = measure_alternating(tasks, 1)
        for name, value in results.items():
            print(f"{name}: {value['images_per_second']:.2f} img/s")
        return results
    print(f"machine: {machine_description()}")
    headline = {
        "keras_swin predict fp32 b16": dict(worker="keras", kind="predict", size=224, batch=16, iterations=its),
        "pytorch eager fp32 b16": dict(worker="torch", kind="predict", size=224, batch=16, iterations=its),
    }
    if args.quick:
        results = measure_alternating(headline, args.rounds)
        for name, value in results.items():
            print(f"{name}: {value['images_per_second']:.2f} img/s")
        ratio = results["keras_swin predict fp32 b16"]["images_per_second"] / results["pytorch eager fp32 b16"]["images_per_second"]
        print(f"ratio keras_swin / pytorch: {ratio:.2f}x")
        return results
    raise SystemExit("the full run lands with the performance issue; use --quick")


if __name__ == "__main__":
    main()
