"""What a user would pick to run SwinT on a CPU: keras_swin's routes against Hugging Face's.

SwinT at 224², batch 1 and 16, float32 unless marked:
- keras_swin `predict` (its default path: XLA on a CPU in float32), and after
  `model.quantize("int8")`;
- keras_swin's ONNX files (`keras_swin.export.to_onnx`) in ONNX Runtime: the default one for
  every size, and one fixed at 224² (`image_size=224`, batch dynamic, as Hugging Face's);
- keras_swin's OpenVINO IR (`keras_swin.export.to_openvino`) on OpenVINO's CPU plugin, in f32;
- Hugging Face `SwinForImageClassification` (the swin-tiny configuration, random weights,
  built locally) in PyTorch eager;
- that model exported with `torch.onnx.export`, in ONNX Runtime.

A first fresh process writes the three files and measures their agreement; then every
measurement runs in its own fresh process, the routes alternating within each round, and the
median of the rounds is reported (as `bench.py` does).

    python benchmarks/deploy.py                 # writes the "deploy" section of RESULTS.md
    python benchmarks/deploy.py --rounds 1 --no-write
    python benchmarks/deploy.py --smoke         # tiny models at 32x32, one round, nothing written
"""

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench import measure  # noqa: E402
from report import machine_description, versions, write_section  # noqa: E402
from workers import _images, _rss_mb, _timed  # noqa: E402

DEPLOY_START, DEPLOY_END = "<!-- deploy -->", "<!-- /deploy -->"
# SwinT's configuration, on both sides (keras_swin.SwinT() and HF's swin-tiny).
SWIN_T = dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7)
TINY = dict(embed_dim=16, depths=[2, 2], num_heads=[1, 2], window_size=4)
ROUTES = (
    ("keras fp32", "keras_swin `predict` fp32"),
    ("keras int8", "keras_swin `predict` int8 (`model.quantize`)"),
    ("ours onnx", "keras_swin ONNX (any size) in ONNX Runtime"),
    ("ours onnx fixed", "keras_swin ONNX (fixed at 224², `image_size=224`) in ONNX Runtime"),
    ("ours openvino", "keras_swin OpenVINO IR (f32)"),
    ("hf eager", "Hugging Face PyTorch eager"),
    ("hf onnx", "Hugging Face `torch.onnx` in ONNX Runtime"),
)
OURS = ("keras fp32", "keras int8", "ours onnx", "ours onnx fixed", "ours openvino")


# --------------------------------------------------------------------------- workers (fresh processes)


def _keras_model(task):
    import keras

    import keras_swin

    keras.utils.set_random_seed(0)
    config = task["config"]
    return keras_swin.SwinTransformer(**config, patch_size=4, include_top=True, classes=1000, drop_path_rate=0.0,
                                      name="swin_t")


def _hf_model(task):
    import torch
    from transformers import SwinConfig, SwinForImageClassification

    torch.manual_seed(0)
    config = SwinConfig(image_size=task["size"], num_labels=1000, drop_path_rate=0.0, **task["config"])
    return SwinForImageClassification(config).eval()


def _max_abs_diff(a, b):
    import numpy as np

    return float(np.abs(np.asarray(a, "float32") - np.asarray(b, "float32")).max())


def worker_prepare(task):
    """Writes our ONNX and OpenVINO files and HF's ONNX file into `task["tmp"]`; returns their
    sizes and their agreement with the model they came from on 2 random images."""
    import gc
    import warnings

    import keras
    import numpy as np
    import torch

    from keras_swin import export

    tmp, size = task["tmp"], task["size"]
    images = _images(2, size, size, seed=1)
    model = _keras_model(task)
    ours = export.named_outputs(model)(images)
    onnx_path, xml_path = os.path.join(tmp, "swin_t.onnx"), os.path.join(tmp, "swin_t.xml")
    result = {"onnx_mb": export.to_onnx(model, onnx_path) / 1e6, "openvino_mb": export.to_openvino(model, xml_path) / 1e6}
    result["onnx_diff"] = export.compare_outputs(model, export.run_onnx(onnx_path, images), images)["max_abs_diff"]
    fixed_path = os.path.join(tmp, "swin_t_fixed.onnx")
    result["onnx_fixed_mb"] = export.to_onnx(model, fixed_path, image_size=size) / 1e6
    result["onnx_fixed_diff"] = export.compare_outputs(model, export.run_onnx(fixed_path, images), images)["max_abs_diff"]
    result["openvino_diff"] = export.compare_outputs(model, export.run_openvino(xml_path, images), images)["max_abs_diff"]
    keras_path = os.path.join(tmp, "fp32.keras")
    model.save(keras_path)
    result["keras_mb"] = os.path.getsize(keras_path) / 1e6
    collect = gc.collect  # Keras collects after each kernel it replaces: seconds for nothing here
    gc.collect = lambda *args: 0
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have a `quantize` method")
            model.quantize("int8")
    finally:
        gc.collect = collect
    int8_path = os.path.join(tmp, "int8.keras")
    model.save(int8_path)
    result["int8_keras_mb"] = os.path.getsize(int8_path) / 1e6
    int8_logits = np.asarray(export.named_outputs(model)(images)["logits"])
    logits = np.asarray(ours["logits"])
    result["int8_relative_error"] = float(np.linalg.norm(int8_logits - logits) / np.linalg.norm(logits))
    del model
    keras.backend.clear_session()

    hf = _hf_model(task)
    pixels = torch.from_numpy(images.transpose(0, 3, 1, 2).copy() / 255.0)
    hf_path = os.path.join(tmp, "hf_swin_t.onnx")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = hf(pixel_values=pixels).logits.numpy()
        # The TorchScript exporter (dynamo=False), which takes a dynamic batch without torch.export's
        # shape constraints and needs no onnxscript; height and width stay fixed at 224 (traced).
        # Traced at batch 1 and checked below at batch 2: the batch is dynamic in the file.
        torch.onnx.export(hf, (pixels[:1],), hf_path, input_names=["pixel_values"], output_names=["logits"],
                          dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=export.ONNX_OPSET, dynamo=False)
    result["hf_onnx_mb"] = os.path.getsize(hf_path) / 1e6
    found = export.onnx_session(hf_path).run(["logits"], {"pixel_values": pixels.numpy().astype("float32")})[0]
    result["hf_onnx_diff"] = _max_abs_diff(found, expected)
    return result


def worker_keras(task):
    model = _keras_model(task)
    if task.get("quantize"):
        model.quantize(task["quantize"])
    batch, size = task["batch"], task["size"]
    images = _images(batch, size, size)
    baseline = _rss_mb("VmRSS")
    seconds = _timed(lambda: model.predict(images, batch_size=batch, verbose=0), 2, task["iterations"])
    return {"seconds": seconds, "images_per_second": batch / seconds, "memory_growth_mb": _rss_mb("VmHWM") - baseline,
            "xla": int(bool(model.jit_compile))}


def worker_onnxruntime(task):
    """Our file (NHWC pixels in [0, 255], input `images`) or HF's (NCHW in [0, 1], `pixel_values`)."""
    import onnxruntime

    batch, size = task["batch"], task["size"]
    images = _images(batch, size, size)
    if task["layout"] == "nchw":
        images = (images.transpose(0, 3, 1, 2) / 255.0).astype("float32")
    session = onnxruntime.InferenceSession(task["path"], providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: images}
    baseline = _rss_mb("VmRSS")
    seconds = _timed(lambda: session.run(None, feed), 2, task["iterations"])
    return {"seconds": seconds, "images_per_second": batch / seconds, "memory_growth_mb": _rss_mb("VmHWM") - baseline}


def worker_openvino(task):
    import openvino as ov

    batch, size = task["batch"], task["size"]
    images = _images(batch, size, size)
    compiled = ov.Core().compile_model(task["path"], "CPU", {"INFERENCE_PRECISION_HINT": task["precision"]})
    request = compiled.create_infer_request()
    baseline = _rss_mb("VmRSS")
    seconds = _timed(lambda: request.infer({0: images}), 2, task["iterations"])
    return {"seconds": seconds, "images_per_second": batch / seconds, "memory_growth_mb": _rss_mb("VmHWM") - baseline}


def worker_hf_eager(task):
    import torch

    batch, size = task["batch"], task["size"]
    model = _hf_model(task)
    pixels = torch.from_numpy(_images(batch, size, size).transpose(0, 3, 1, 2).copy() / 255.0)

    def run():
        with torch.no_grad():
            model(pixel_values=pixels)

    baseline = _rss_mb("VmRSS")
    seconds = _timed(run, 2, task["iterations"])
    return {"seconds": seconds, "images_per_second": batch / seconds, "memory_growth_mb": _rss_mb("VmHWM") - baseline}


WORKERS = {"prepare": worker_prepare, "keras": worker_keras, "onnxruntime": worker_onnxruntime,
           "openvino": worker_openvino, "hf_eager": worker_hf_eager}


def run_worker(task_json):
    task = json.loads(task_json)
    result = WORKERS[task["worker"]](task)
    result["peak_rss_mb"] = _rss_mb("VmHWM")
    print("RESULT " + json.dumps(result))


# --------------------------------------------------------------------------- the driver


def tasks(tmp, size, config, iterations, batches):
    """{"<route> b<batch>": task} for every route and batch; b1 runs 4x the iterations."""
    common = dict(size=size, config=config)
    found = {}
    for batch in batches:
        its = iterations if batch > 1 else 4 * iterations
        run = dict(common, batch=batch, iterations=its)
        found.update({
            f"keras fp32 b{batch}": dict(run, worker="keras"),
            f"keras int8 b{batch}": dict(run, worker="keras", quantize="int8"),
            f"ours onnx b{batch}": dict(run, worker="onnxruntime", path=os.path.join(tmp, "swin_t.onnx"),
                                        layout="nhwc"),
            f"ours onnx fixed b{batch}": dict(run, worker="onnxruntime", layout="nhwc",
                                              path=os.path.join(tmp, "swin_t_fixed.onnx")),
            f"ours openvino b{batch}": dict(run, worker="openvino", path=os.path.join(tmp, "swin_t.xml"),
                                            precision="f32"),
            f"hf eager b{batch}": dict(run, worker="hf_eager"),
            f"hf onnx b{batch}": dict(run, worker="onnxruntime", path=os.path.join(tmp, "hf_swin_t.onnx"),
                                      layout="nchw"),
        })
    return found


def measure_rounds(all_tasks, rounds, log=print):
    """Every task `rounds` times, interleaved, each in a fresh `deploy.py --worker` process; the
    median per task. A task whose worker fails is `{"error": ...}`."""
    samples, failed = {name: [] for name in all_tasks}, {}
    for index in range(rounds):
        for name, task in all_tasks.items():
            if name in failed:
                continue
            try:
                samples[name].append(measure(task, script=__file__))
            except RuntimeError as error:
                failed[name] = {"error": str(error).strip().splitlines()[-1][:300]}
                log(f"  round {index + 1}/{rounds} {name}: FAILED {failed[name]['error']}")
                continue
            log(f"  round {index + 1}/{rounds} {name}: {samples[name][-1]['images_per_second']:.2f} img/s")
    results = dict(failed)
    for name, runs in samples.items():
        if runs:
            results[name] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    return results


def _rate(results, name):
    row = results.get(name, {"error": "not run"})
    return "fails" if "error" in row else f"{row['images_per_second']:.2f}"


def _ratio(results, ours, theirs):
    a, b = results.get(ours, {}), results.get(theirs, {})
    if "images_per_second" not in a or "images_per_second" not in b:
        return None
    return a["images_per_second"] / b["images_per_second"]


def deploy_section(machine, results, prepared, rounds, batches, note=""):
    """The RESULTS.md section: one row per route, ratios to PyTorch eager, the two goals."""
    import importlib.metadata as metadata

    extra = []
    for name in ("onnxruntime", "openvino", "tf2onnx", "onnx"):
        try:
            extra.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    head = " | ".join(f"batch {b} (img/s) | vs PyTorch eager" for b in batches)
    lines = [
        DEPLOY_START,
        "## Deployment on a CPU: SwinT 224², every route a user would pick (`benchmarks/deploy.py`)",
        "",
        f"Measured {datetime.date.today().isoformat()} by `python benchmarks/deploy.py --rounds {rounds}` on "
        f"{machine}; {versions()}, {', '.join(extra)}. Random weights on both sides (Hugging Face's swin-tiny",
        "configuration built locally); every measurement in a fresh process, the routes alternating within each",
        "round, median of the rounds. ONNX Runtime and OpenVINO use their default thread counts (all cores).",
        *([note] if note else []),
        "",
        f"| route | {head} |",
        "|---|" + "---|---|" * len(batches),
    ]
    for route, label in ROUTES:
        cells = []
        for batch in batches:
            versus = _ratio(results, f"{route} b{batch}", f"hf eager b{batch}")
            cells.append(f"{_rate(results, f'{route} b{batch}')} | {'' if versus is None else f'{versus:.2f}x'}")
        lines.append(f"| {label} | {' | '.join(cells)} |")
    lines.append("")
    onnx_vs = [_ratio(results, f"ours onnx b{b}", f"hf onnx b{b}") for b in batches]
    fixed_vs = [_ratio(results, f"ours onnx fixed b{b}", f"hf onnx b{b}") for b in batches]
    fastest = []
    for batch in batches:
        rates = {route: results[f"{route} b{batch}"]["images_per_second"] for route in OURS
                 if "images_per_second" in results.get(f"{route} b{batch}", {})}
        best = max(rates, key=rates.get) if rates else None
        fastest.append((batch, best, _ratio(results, f"{best} b{batch}", f"hf eager b{batch}") if best else None))

    def verdict(value, goal):
        return "n/a" if value is None else f"{value:.2f}x ({'met' if value >= goal else 'not met'})"

    labels = dict(ROUTES)
    lines += [
        "Goals: our ONNX in ONNX Runtime >= 1.0x Hugging Face's ONNX in ONNX Runtime: fixed at 224² like "
        + "Hugging Face's, " + ", ".join(f"batch {b} {verdict(v, 1.0)}" for b, v in zip(batches, fixed_vs))
        + "; the file for every size, " + ", ".join(f"batch {b} {verdict(v, 1.0)}" for b, v in zip(batches, onnx_vs))
        + ".",
        "Fastest keras_swin route >= 1.5x PyTorch eager: "
        + ", ".join(f"batch {b} {labels.get(best, 'n/a')} {verdict(v, 1.5)}" for b, best, v in fastest) + ".",
        "",
        "Files and agreement (2 random images at 224²; max abs diff of the logits and probabilities):",
        f"keras_swin ONNX {prepared['onnx_mb']:.1f} MB (opset 17, batch/H/W dynamic), {prepared['onnx_diff']:.1e} "
        f"against Keras; fixed at 224² {prepared['onnx_fixed_mb']:.1f} MB, {prepared['onnx_fixed_diff']:.1e}; "
        f"OpenVINO IR {prepared['openvino_mb']:.1f} MB, {prepared['openvino_diff']:.1e}; Hugging Face "
        f"ONNX {prepared['hf_onnx_mb']:.1f} MB (H and W fixed at 224 by tracing), {prepared['hf_onnx_diff']:.1e} "
        "against PyTorch. `.keras` files: float32 "
        f"{prepared['keras_mb']:.1f} MB, int8 {prepared['int8_keras_mb']:.1f} MB; the int8 logits are off by "
        f"{100 * prepared['int8_relative_error']:.1f}% (relative, Frobenius) on this untrained model (accuracy on a "
        "trained one: `tests/test_quantize.py`).",
    ]
    failures = [f"{name}: {row['error']}" for name, row in results.items() if "error" in row]
    if failures:
        lines += ["", "Failed: " + "; ".join(failures)]
    return "\n".join(lines + ["", DEPLOY_END])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3, help="fresh-process repetitions (median)")
    parser.add_argument("--iterations", type=int, default=3, help="timed calls per batch-16 measurement")
    parser.add_argument("--smoke", action="store_true", help="tiny models at 32x32, one round, nothing written")
    parser.add_argument("--note", default="", help="a sentence added to the section (e.g. that the machine was shared)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"))
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return run_worker(args.worker)
    size, config, batches = (32, TINY, (1, 2)) if args.smoke else (224, SWIN_T, (1, 16))
    rounds, iterations = (1, 1) if args.smoke else (args.rounds, args.iterations)
    machine = machine_description()
    print(f"machine: {machine}")
    tmp = tempfile.mkdtemp(prefix="keras_swin_deploy_")
    prepared = measure(dict(worker="prepare", size=size, config=config, tmp=tmp), script=__file__)
    print("prepared: " + json.dumps(prepared))
    results = measure_rounds(tasks(tmp, size, config, iterations, batches), rounds)
    text = deploy_section(machine, results, prepared, rounds, batches, args.note)
    print(text)
    if not (args.no_write or args.smoke):
        write_section(args.output, text, DEPLOY_START, DEPLOY_END)
        print(f"wrote {args.output}")
    return {"prepared": prepared, "results": results}


if __name__ == "__main__":
    main()
