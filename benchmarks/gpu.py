"""SwinT 224² on one GPU: keras_swin on the JAX backend against timm (PyTorch), in one run.

The GPU machines this project borrows have PyTorch, JAX with CUDA, timm and transformers,
but no TensorFlow, so keras_swin runs there on `KERAS_BACKEND=jax` (keras, namex and optree
travel as wheels). Each measurement runs in its own process, one after the other:

- parity: timm's `swin_tiny_patch4_window7_224` (random weights; nothing is downloaded),
  saved as safetensors, loaded into `keras_swin.SwinT` with `weights=PATH`; logits compared
  at the highest matmul precision on both sides (no TF32);
- inference: a jitted keras_swin forward at batch 256 in float32 and `mixed_bfloat16`,
  against timm eager fp32 (strict, and with TF32, which JAX's default precision uses for
  float32 matmuls on Ampere and later) and bf16 autocast, and `torch.compile` bf16;
- training: keras_swin `model.fit` in `mixed_bfloat16` with AdamW at batch 128, against
  timm bf16 autocast with AdamW.

    KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false python benchmarks/gpu.py --output DIR
    python benchmarks/gpu.py --tiny --output DIR   # small model and batches, on a CPU, to test the script

Writes `DIR/gpu.json` (every figure and error) and `DIR/gpu.md`, the marked section that
replaces "GPU" in benchmarks/RESULTS.md.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZES = {  # image side, inference batch, training batch, timed iterations
    "full": dict(size=224, infer_batch=256, train_batch=128, iterations=20),
    "tiny": dict(size=32, infer_batch=4, train_batch=4, iterations=2),
}
TINY_SWIN = dict(patch_size=4, embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4)


def _images(batch, size, seed=0):
    import numpy as np

    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype("float32")


def _normalised_nchw(images):
    import numpy as np

    mean, std = np.array(MEAN, "float32") * 255, np.array(STD, "float32") * 255
    return np.ascontiguousarray(((images - mean) / std).transpose(0, 3, 1, 2))


# --------------------------------------------------------------------------- PyTorch side


def _torch_model(tiny):
    """timm's Swin-T; with `tiny` (a CPU test, where timm may not import) a small HF Swin."""
    if tiny:
        from transformers import SwinConfig, SwinForImageClassification

        config = SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[1, 2],
                            window_size=4, num_labels=1000)
        model = SwinForImageClassification(config)
        return model, (lambda m, x: m(pixel_values=x).logits)
    import timm

    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=1000)
    return model, (lambda m, x: m(x))


def worker_torch(task):
    import torch

    torch.manual_seed(0)
    # Strict float32 unless the task asks for TF32, which is what JAX's default matmul
    # precision uses for float32 on Ampere and later GPUs (the like-for-like timm row).
    torch.backends.cuda.matmul.allow_tf32 = bool(task.get("tf32"))
    torch.backends.cudnn.allow_tf32 = bool(task.get("tf32"))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sizes = SIZES[task["sizes"]]
    model, forward = _torch_model(task["sizes"] == "tiny")
    model = model.to(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(run, warmup, iterations):
        for _ in range(warmup):
            run()
        sync()
        start = time.perf_counter()
        for _ in range(iterations):
            run()
        sync()
        return (time.perf_counter() - start) / iterations

    kind, result = task["kind"], {}
    if kind == "save":  # the weights, for the parity worker, and the reference logits
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        if task["sizes"] == "tiny":  # HF layout: keras_swin reads it too
            state = {k: v for k, v in state.items() if not k.endswith("relative_position_index")}
        save_file(state, task["path"])
        images = _images(4, sizes["size"], seed=1)
        model.eval()
        with torch.no_grad():
            logits = forward(model, torch.from_numpy(_normalised_nchw(images)).to(device)).float().cpu().numpy()
        import numpy as np

        np.save(task["path"] + ".logits.npy", logits)
        np.save(task["path"] + ".images.npy", images)
        return {"device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor(),
                "torch": torch.__version__}
    pixels = torch.from_numpy(_normalised_nchw(_images(sizes[f"{task['phase']}_batch"], sizes["size"]))).to(device)
    bf16 = task.get("precision") == "bf16"
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)
    batch = pixels.shape[0]
    if task["phase"] == "infer":
        model.eval()
        if task.get("compiled"):
            model = torch.compile(model)
        start = time.perf_counter()

        def run():
            with torch.no_grad(), torch.autocast(**autocast):
                forward(model, pixels)

        run()
        sync()
        result["first_call_s"] = time.perf_counter() - start
        seconds = timed(run, 2, sizes["iterations"])
    else:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        labels = (torch.arange(batch) % 1000).to(device)

        def run():
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(**autocast):
                loss = torch.nn.functional.cross_entropy(forward(model, pixels), labels)
            loss.backward()
            optimizer.step()

        seconds = timed(run, 2, sizes["iterations"])
    return {**result, "seconds": seconds, "images_per_second": batch / seconds}


# --------------------------------------------------------------------------- keras_swin on JAX


def _keras_model(tiny, weights=None, preprocessing=True):
    import keras_swin

    if tiny:
        return keras_swin.SwinTransformer(**TINY_SWIN, include_top=True, classes=1000, classifier_activation=None,
                                          include_preprocessing=preprocessing, weights=weights)
    return keras_swin.SwinT(classifier_activation=None, include_preprocessing=preprocessing, weights=weights)


def worker_keras(task):
    import jax
    import keras
    import numpy as np

    sizes = SIZES[task["sizes"]]
    tiny = task["sizes"] == "tiny"
    result = {"backend": keras.backend.backend(), "keras": keras.__version__, "jax": jax.__version__,
              "jax_device": str(jax.devices()[0])}
    if task["kind"] == "parity":
        jax.config.update("jax_default_matmul_precision", "highest")
        start = time.perf_counter()
        model = _keras_model(tiny, weights=task["path"])
        print(f"parity: built and loaded in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
        images = np.load(task["path"] + ".images.npy")
        reference = np.load(task["path"] + ".logits.npy")
        ours = np.asarray(model.predict(images, verbose=0))
        print(f"parity: predicted after {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
        return {**result, "max_abs_diff": float(np.max(np.abs(ours - reference))),
                "reference_max_abs": float(np.max(np.abs(reference)))}
    if task.get("precision") == "bf16":
        keras.config.set_dtype_policy("mixed_bfloat16")
    model = _keras_model(tiny)
    batch = sizes[f"{task['phase']}_batch"]
    images = _images(batch, sizes["size"])
    if task["phase"] == "infer":
        # The model's forward, jitted, on images already on the device (as timm's are).
        @jax.jit
        def forward(trainable, non_trainable, x):
            return model.stateless_call(trainable, non_trainable, x, training=False)[0]

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        pixels = jax.device_put(images)
        start = time.perf_counter()
        forward(trainable, non_trainable, pixels).block_until_ready()
        result["first_call_s"] = time.perf_counter() - start

        def run():
            return forward(trainable, non_trainable, pixels)

        for _ in range(2):
            run().block_until_ready()
        start = time.perf_counter()
        for _ in range(sizes["iterations"]):
            out = run()
        out.block_until_ready()
        seconds = (time.perf_counter() - start) / sizes["iterations"]
    else:
        steps = sizes["iterations"]
        model.compile(optimizer=keras.optimizers.AdamW(1e-4),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        labels = np.arange(batch * steps) % 1000
        many = np.concatenate([images] * steps)
        start = time.perf_counter()
        model.fit(images, labels[:batch], batch_size=batch, epochs=1, verbose=0)  # compiles
        result["first_call_s"] = time.perf_counter() - start
        start = time.perf_counter()
        model.fit(many, labels, batch_size=batch, epochs=1, verbose=0)
        seconds = (time.perf_counter() - start) / steps
    return {**result, "seconds": seconds, "images_per_second": batch / seconds}


WORKERS = {"torch": worker_torch, "keras": worker_keras}


# --------------------------------------------------------------------------- driver


def _worker_env(worker):
    """The environment of a worker process: the source on the path; keras_swin on JAX."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")]))}
    if worker == "keras":
        env.update(KERAS_BACKEND="jax", XLA_PYTHON_CLIENT_PREALLOCATE="false")
    return env


def run_task(task, timeout):
    """One task in a fresh process; its result dict, or `{"error": ...}`."""
    env = _worker_env(task["worker"])
    start = time.perf_counter()
    try:
        process = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(task)],
                                 capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO_ROOT)
    except subprocess.TimeoutExpired as expired:
        stderr = expired.stderr.decode(errors="replace") if isinstance(expired.stderr, bytes) else expired.stderr or ""
        return {"error": f"{stderr[-2500:]}\ntimed out after {timeout} s"}
    for line in process.stdout.splitlines():
        if line.startswith("RESULT "):
            return {**json.loads(line[len("RESULT "):]), "wall_s": round(time.perf_counter() - start, 1)}
    return {"error": process.stderr[-2500:]}


def run_worker_group(tasks):
    """In a worker process: each of `tasks` ({name: task}, one worker kind) in turn, printing a
    RESULT line `{"name", "result"}` for each; a task that raises gives `{"error": ...}`."""
    import traceback

    for name, task in tasks.items():
        if task["worker"] == "keras":  # what a keras task may have set for itself
            import jax
            import keras

            keras.config.set_dtype_policy("float32")
            jax.config.update("jax_default_matmul_precision", None)
        try:
            result = WORKERS[task["worker"]](task)
        except Exception:  # noqa: BLE001  (the driver reports it as the row's error)
            result = {"error": traceback.format_exc()[-2500:]}
        print("RESULT " + json.dumps({"name": name, "result": result}), flush=True)


def run_grouped(tasks, timeout):
    """--tiny (the script's test on a CPU): the tasks of each worker kind in one fresh process,
    the torch ones first (they save the parity weights), since starting nine processes would be
    most of the test's time. The same worker functions run as in the one-process-per-row GPU run."""
    results = {}
    for kind in ("torch", "keras"):
        group = {name: task for name, task in tasks.items() if task["worker"] == kind}
        process = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker-group", json.dumps(group)],
                                 capture_output=True, text=True, timeout=timeout * len(group), env=_worker_env(kind),
                                 cwd=REPO_ROOT)
        for line in process.stdout.splitlines():
            if line.startswith("RESULT "):
                row = json.loads(line[len("RESULT "):])
                results[row["name"]] = row["result"]
        for name in group:
            results.setdefault(name, {"error": process.stderr[-2500:] or "no result"})
    return {name: results[name] for name in tasks}


def plan(sizes, weights_path, compiled, dump_after=None):
    tasks = {
        "timm save": dict(worker="torch", kind="save", path=weights_path),
        "parity": dict(worker="keras", kind="parity", path=weights_path),
        "keras infer fp32": dict(worker="keras", phase="infer", precision="fp32"),
        "keras infer bf16": dict(worker="keras", phase="infer", precision="bf16"),
        "timm infer fp32": dict(worker="torch", phase="infer", precision="fp32"),
        "timm infer fp32 tf32": dict(worker="torch", phase="infer", precision="fp32", tf32=True),
        "timm infer bf16": dict(worker="torch", phase="infer", precision="bf16"),
        "keras train bf16": dict(worker="keras", phase="train", precision="bf16"),
        "timm train bf16": dict(worker="torch", phase="train", precision="bf16"),
    }
    if compiled:
        tasks["timm compiled infer bf16"] = dict(worker="torch", phase="infer", precision="bf16", compiled=True)
    for task in tasks.values():
        task.setdefault("kind", "measure")
        task["dump_after"] = dump_after
        task["sizes"] = sizes
    return tasks


def _rate(results, name):
    return results.get(name, {}).get("images_per_second")


def table(results, sizes):
    s = SIZES[sizes]
    device = results.get("timm save", {}).get("device", "unknown")
    versions = ", ".join(f"{k} {v}" for k, v in {
        "torch": results.get("timm save", {}).get("torch"), "jax": results.get("parity", {}).get("jax"),
        "keras": results.get("parity", {}).get("keras")}.items() if v)
    parity = results.get("parity", {})
    lines = [
        "<!-- gpu -->",
        f"## GPU: SwinT {s['size']}², keras_swin on JAX against timm",
        "",
        f"Measured {datetime.date.today().isoformat()} by `python benchmarks/gpu.py` on {device}; {versions}. "
        "Each row in its own process; timm eager unless marked; images already on the device.",
        "",
        f"Parity (timm's random weights as safetensors, loaded with `SwinT(weights=...)`, highest matmul "
        f"precision): max abs logit difference {parity.get('max_abs_diff', float('nan')):.2e}"
        + (" (<= 1e-4)" if parity.get("max_abs_diff", 1) <= 1e-4 else " (ABOVE 1e-4)") + ".",
        "",
        "| what | batch | keras_swin JAX (img/s) | timm (img/s) | ratio |",
        "|---|---|---|---|---|",
    ]
    rows = [
        ("inference fp32 (JAX's default precision: TF32 matmuls; timm strict fp32)", s["infer_batch"],
         "keras infer fp32", "timm infer fp32"),
        ("inference fp32, timm with TF32 too", s["infer_batch"], "keras infer fp32", "timm infer fp32 tf32"),
        ("inference bf16 (`mixed_bfloat16` / autocast)", s["infer_batch"], "keras infer bf16", "timm infer bf16"),
        ("inference bf16 against `torch.compile`", s["infer_batch"], "keras infer bf16", "timm compiled infer bf16"),
        ("training bf16, AdamW (`model.fit` / autocast)", s["train_batch"], "keras train bf16", "timm train bf16"),
    ]
    for label, batch, ours, theirs in rows:
        a, b = _rate(results, ours), _rate(results, theirs)
        cells = [f"{rate:.1f}" if rate else "n/a" for rate in (a, b)]
        lines.append(f"| {label} | {batch} | {cells[0]} | {cells[1]} | " + (f"{a / b:.2f}x |" if a and b else "n/a |"))
    errors = {name: r["error"].strip().splitlines()[-1] for name, r in results.items() if "error" in r}
    if errors:
        lines += ["", "Failed: " + "; ".join(f"{k}: {v}" for k, v in errors.items())]
    return "\n".join(lines + ["", "<!-- /gpu -->"]) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-group", help=argparse.SUPPRESS)
    parser.add_argument("--tiny", action="store_true", help="small model and batches (tests the script on a CPU)")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile row")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per measurement")
    parser.add_argument("--output", default=".", help="folder for gpu.json and gpu.md")
    args = parser.parse_args(argv)
    if args.worker:
        task = json.loads(args.worker)
        if task.get("dump_after"):  # a hung worker prints where it is stuck, before the driver's timeout
            import faulthandler

            faulthandler.dump_traceback_later(task["dump_after"], exit=False)
        print("RESULT " + json.dumps(WORKERS[task["worker"]](task)), flush=True)
        return None
    if args.worker_group:
        run_worker_group(json.loads(args.worker_group))
        return None
    sizes = "tiny" if args.tiny else "full"
    os.makedirs(args.output, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "timm_swin_t.safetensors")
        tasks = plan(sizes, weights, not args.no_compile, dump_after=max(args.timeout - 15, 1))
        if args.tiny:
            results = run_grouped(tasks, args.timeout)
        for name, task in tasks.items():
            if not args.tiny:
                results[name] = run_task(task, args.timeout)
            print(f"{name}: {json.dumps(results[name])[:300]}", flush=True)
            with open(os.path.join(args.output, "gpu.json"), "w") as f:
                json.dump(results, f, indent=1)
    markdown = table(results, sizes)
    with open(os.path.join(args.output, "gpu.md"), "w") as f:
        f.write(markdown)
    print(markdown)
    return results


if __name__ == "__main__":
    main()
