"""keras_swin against the PyTorch reference (Hugging Face transformers Swin), on this machine.

Every figure is measured in a fresh worker process, so that peak memory belongs to one
measurement. keras_swin and PyTorch workers alternate within each round, every measurement
is repeated `--rounds` times and the median is reported. Models are built with their
defaults (keras_swin: `keras_swin.SwinT()`, whose `jit_compile="auto"` picks XLA in float32
on a CPU; PyTorch: eager, `torch.autocast` for bf16).

    python benchmarks/bench.py                 # everything; writes RESULTS.md and scaling.png
    python benchmarks/bench.py --quick         # SwinT 224 batch-16 predict fp32, both sides
    python benchmarks/bench.py --smoke         # tiny sizes, for the test suite

Also `keras-swin benchmark [ARGS]`. Each fresh process runs `bench.py --worker TASK`, which
calls workers.py; the RESULTS.md sections and scaling.png are written by report.py.
"""

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Callable, NamedTuple, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)  # `keras-swin benchmark` runs this file with runpy, which leaves sys.path alone

from report import (  # noqa: E402
    EXTRA_END, EXTRA_ROWS, EXTRA_START, JAX_END, JAX_ROWS, JAX_START, SCALING_SIZES, TFLITE_VARIANTS, UNET_END,
    UNET_ROWS, UNET_START, extra_section, headline_ratios, jax_section, machine_description, paths_markers,
    paths_section, ratio, unet_section, write_plot, write_results, write_section,
)
from workers import AVX2_ONLY, PRECISIONS, run_worker  # noqa: E402


# --------------------------------------------------------------------------- fresh processes


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


# --------------------------------------------------------------------------- tasks: name -> worker task


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


def quick_tasks(iterations):
    tasks = headline_tasks(iterations, ("fp32",))
    return {name: tasks[name] for name in ("keras predict fp32 b16", "torch eager fp32 b16")}


def jax_tasks(iterations):
    """The JAX_ROWS with `KERAS_BACKEND=jax` in their workers, and the PyTorch fp32 rows."""
    tasks = {}
    for name, task in headline_tasks(iterations, ("fp32",)).items():
        if name in JAX_ROWS:
            tasks[name] = dict(task, env={"KERAS_BACKEND": "jax"})
        elif name.startswith("torch"):
            tasks[name] = task
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


def extra_tasks(iterations, rows=EXTRA_ROWS):
    tasks = {}
    for _, model, size, batch in rows:
        common = dict(model=model, kind="predict", size=size, batch=batch, iterations=iterations, precision="fp32")
        tasks[f"keras {model} b{batch}"] = dict(worker="keras", **common)
        tasks[f"torch {model} b{batch}"] = dict(worker="torch", **common)
    return tasks


def smoke_tasks(tmp):
    """A tiny SwinTransformer (predict, int8 TFLite) and the --extra models at 64x64, one call each."""
    tiny = dict(patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[1, 2], window_size=4,
                include_top=True, classes=10)
    tasks = {
        "keras predict": dict(worker="keras", kind="predict", size=32, batch=2, iterations=1, config=tiny),
        "keras tflite int8": dict(worker="keras", kind="tflite", size=32, batch=1, iterations=1,
                                  config=tiny, quantize="int8", tmp=tmp),
    }
    for _, model, _, _ in EXTRA_ROWS[1:] + UNET_ROWS[1:]:
        for worker in ("keras", "torch"):
            tasks[f"{worker} {model}"] = dict(worker=worker, model=model, kind="predict", size=64, batch=1,
                                              iterations=1, precision="fp32")
    return tasks


# --------------------------------------------------------------------------- modes: run(args, machine) -> results


def run_section(args, machine, tasks, section, markers, allow_failure=False):
    """Measures `tasks`, prints `section(machine, results, rounds)` and writes it between `markers`."""
    results = measure_alternating(tasks, args.rounds, allow_failure=allow_failure)
    text = section(machine, results, args.rounds)
    print(text)
    if not args.no_write:
        write_section(args.output, text, *markers)
        print(f"wrote {args.output}")
    return results


def run_smoke(args, machine):
    results = measure_alternating(smoke_tasks(tempfile.mkdtemp(prefix="keras_swin_bench_")), 1)
    print(json.dumps(results, indent=1))
    return results


def run_extra(args, machine):
    return run_section(args, machine, extra_tasks(args.iterations), extra_section, (EXTRA_START, EXTRA_END))


def run_unet(args, machine):
    return run_section(args, machine, extra_tasks(args.iterations, UNET_ROWS), unet_section, (UNET_START, UNET_END))


def run_paths(args, machine):
    return {precision: run_section(args, machine, paths_tasks(args.iterations, precision),
                                   functools.partial(paths_section, precision=precision),
                                   paths_markers(precision), allow_failure=True)
            for precision in args.precisions.split(",")}


def run_jax(args, machine):
    return run_section(args, machine, jax_tasks(args.iterations), jax_section, (JAX_START, JAX_END))


def run_quick(args, machine):
    results = measure_alternating(quick_tasks(args.iterations), args.rounds)
    path = "XLA" if results["keras predict fp32 b16"].get("xla") else "graph"
    print(f"ratio keras_swin ({path}) / pytorch (predict fp32 b16): "
          f"{ratio(results, 'keras predict fp32 b16', 'torch eager fp32 b16'):.2f}x")
    return results


def run_full(args, machine):
    precisions = tuple(args.precisions.split(","))
    unknown = sorted(set(precisions) - set(PRECISIONS))
    if unknown or "fp32" not in precisions:
        raise SystemExit(f"--precisions must include fp32 and be among {sorted(PRECISIONS)}; received {args.precisions!r}")
    headline = measure_alternating(headline_tasks(args.iterations, precisions), args.rounds)
    tflite = measure_alternating(tflite_tasks(args.iterations, tempfile.mkdtemp(prefix="keras_swin_bench_")), 1)
    scaling = measure_alternating(scaling_tasks(args.iterations), args.rounds)
    print("\n".join(headline_ratios(headline, precisions)))
    if not args.no_write:
        write_plot(scaling, os.path.join(os.path.dirname(args.output), "scaling.png"))
        write_results(args.output, machine, headline, tflite, scaling, args.rounds, precisions)
        print(f"wrote {args.output}")
    return {"headline": headline, "tflite": tflite, "scaling": scaling}


class Mode(NamedTuple):
    help: Optional[str]  # of its flag --<name>; None for "full", which runs when no mode flag is given
    run: Callable


# When several mode flags are given, the first in this table runs.
MODES = {
    "smoke": Mode("tiny sizes, one round, nothing written", run_smoke),
    "extra": Mode("UPerNet-SwinT 512 (batch 1, 4) and SwinV2T 256 (batch 16) predict fp32 against Hugging Face",
                  run_extra),
    "unet": Mode("SwinUNETR 2D (feature size 48) 256 (batch 1, 4) predict fp32 against MONAI", run_unet),
    "paths": Mode("XLA against the oneDNN graph (and what jit_compile='auto' picks), natively and "
                  "capped to AVX2, against PyTorch, for each of --precisions", run_paths),
    "jax": Mode("keras_swin on the JAX backend: predict b16/b1 and fit b16, fp32, against PyTorch", run_jax),
    "quick": Mode("SwinT 224 batch-16 predict fp32 only", run_quick),
    "full": Mode(None, run_full),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3, help="fresh-process repetitions (median)")
    parser.add_argument("--iterations", type=int, default=3, help="timed calls per batch-16 measurement")
    parser.add_argument("--precisions", default="fp32,bf16",
                        help="comma-separated fp32, bf16, fp16 (fp16: for a GPU run)")
    for name, mode in MODES.items():
        if mode.help:
            parser.add_argument(f"--{name}", action="store_true", help=mode.help)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"))
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return run_worker(args.worker)
    name = next((name for name in MODES if getattr(args, name, False)), "full")
    machine = None if name == "smoke" else machine_description()  # smoke prints its JSON only
    if machine:
        print(f"machine: {machine}")
    return MODES[name].run(args, machine)


if __name__ == "__main__":
    main()
