"""What runs in each fresh benchmark process (`bench.py --worker TASK_JSON`): one measurement.

A worker imports its libraries (numpy, keras_swin, PyTorch) inside its function, not here:
this module is also imported by the driver and by every worker, so a PyTorch worker never
loads TensorFlow and the driver loads neither, and peak memory belongs to one measurement.
"""

import json
import os
import statistics
import time

# precision: (Keras dtype policy, torch autocast dtype); fp16 is meant for a GPU run.
PRECISIONS = {"fp32": ("float32", None), "bf16": ("mixed_bfloat16", "bfloat16"), "fp16": ("mixed_float16", "float16")}
# Caps that make oneDNN, XLA, MKL and PyTorch's kernels use AVX2 only on a wider CPU: an
# AVX2 machine's code paths (not its clock, cache or memory) for both sides of the ratio.
AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "XLA_FLAGS": "--xla_cpu_max_isa=AVX2",
             "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


# SwinUNETR as MONAI's tutorials build it for CT (BTCV: one channel, 14 classes), in 2D.
SWIN_UNETR_48 = dict(in_channels=1, out_channels=14, feature_size=48)


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
    if task.get("model") == "swin_unetr_48":
        return keras_swin.SwinUNETR(**SWIN_UNETR_48)
    if task.get("config"):
        return keras_swin.SwinTransformer(**task["config"])
    return keras_swin.SwinT(include_top=task.get("include_top", True))


def _keras_tflite(task, model, images, baseline):
    """Converts `model` with `task["quantize"]`, times the LiteRT interpreter and compares it with Keras."""
    from ai_edge_litert.interpreter import Interpreter

    from keras_swin import export

    size, batch = task["size"], task["batch"]
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


def worker_keras(task):
    import numpy as np

    from keras_swin.cpu import INSTRUCTION_SETS, instruction_set

    size, batch, kind = task["size"], task["batch"], task["kind"]
    model = _keras_model(task)
    if task.get("jit_compile") is not None:  # else "auto": the model's own choice
        model.jit_compile = task["jit_compile"]
    images = _images(batch, size, size)[..., : model.inputs[0].shape[-1]]
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
        return _keras_tflite(task, model, images, baseline)
    else:
        raise ValueError(f"unknown keras benchmark kind {kind!r}")
    # Which path ran: XLA or not (1/0), on which instruction set (an index of INSTRUCTION_SETS).
    return {"seconds": seconds, "images_per_second": batch / seconds,
            "memory_growth_mb": _rss_mb("VmHWM") - baseline, "xla": int(bool(model.jit_compile)),
            "isa": INSTRUCTION_SETS.index(instruction_set())}


def _torch_model(task):
    if task.get("model") == "swin_unetr_48":
        from monai.networks.nets import SwinUNETR

        return SwinUNETR(spatial_dims=2, **SWIN_UNETR_48)
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
    if task.get("model") == "swin_unetr_48":  # MONAI takes the tensor itself, of its channels
        pixels = pixels[:, : SWIN_UNETR_48["in_channels"]].contiguous()

        def forward():
            return model(pixels)
    else:
        def forward():
            return model(pixel_values=pixels)
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
                forward()
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
    """Runs one task and prints its result as a `RESULT {json}` line, for `bench.measure`."""
    task = json.loads(task_json)
    result = WORKERS[task["worker"]](task)
    result["peak_rss_mb"] = _rss_mb("VmHWM")
    print("RESULT " + json.dumps(result))
