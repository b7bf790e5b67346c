"""Gradient checkpointing (`remat=True`): peak memory and step time of a training step, with
and without it, on this machine.

Every figure comes from a fresh process (`remat.py --worker TASK`, through `bench.measure`)
that builds one model, compiles it as `keras-swin train` would (AdamW, the model's own
`jit_compile="auto"`: XLA for SwinT in float32 on a CPU, the graph for UPerNet), runs one
step (tracing and compilation) and then `--steps` timed steps of `train_on_batch`. Its peak
resident memory is the OS's (`resource.getrusage(RUSAGE_SELF).ru_maxrss`), so it holds the
runtime, the weights, the optimizer state and the step's activations. With and without
remat alternate.

    python benchmarks/remat.py                # SwinT 448² and 640² b2, 448² b8, UPerNet-SwinT 512² b1, b2
    python benchmarks/remat.py --write        # the same, then the "Gradient checkpointing" section of RESULTS.md
    python benchmarks/remat.py --smoke        # a tiny model, to check that the script runs

The largest size that trains at batch 2 in 24 GiB is extrapolated from the batch-2 sizes
measured (peak = a + b * pixels, least squares): a bisection up to 24 GiB does not fit on a
machine whose memory is shared, and activations grow linearly with the pixels (windowed
attention).
"""

import argparse
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench import measure  # noqa: E402
from report import machine_description, versions, write_section  # noqa: E402

REMAT_START, REMAT_END = "<!-- remat -->", "<!-- /remat -->"
BUDGET_MB = 24 * 1024
# (label, model, image side, batch) of the with/without pairs, smallest first per model: a
# pair runs only if its peak, scaled from the model's previous pair, fits in the memory
# available then (the machine is shared; an out-of-memory kill could hit another job).
ROWS = (
    ("SwinT", "swin_t", 448, 8),
    ("UPerNet-SwinT", "upernet_swin_t", 512, 1),
    ("UPerNet-SwinT", "upernet_swin_t", 512, 2),
)
SWEEP_SIZES = (448, 640)
SWEEP_BATCH = 2
MARGIN_MB = 2048
# A tiny SwinT for --smoke.
SMOKE_CONFIG = dict(embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4, include_top=True, classes=3)


def worker(task):
    """One training-step measurement (in a fresh process); returns the result dict."""
    import resource
    import time

    import keras
    import numpy as np

    import keras_swin

    keras.utils.set_random_seed(0)
    size, batch, remat = task["size"], task["batch"], task["remat"]
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    if task["model"] == "upernet_swin_t":
        model = keras_swin.UPerNetSwinT(remat=remat)
        labels = rng.integers(0, model.num_classes, (batch, size, size))
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    else:
        model = keras_swin.SwinTransformer(**SMOKE_CONFIG, remat=remat) if task["model"] == "smoke" else (
            keras_swin.SwinT(remat=remat))
        labels = np.arange(batch) % model.output.shape[-1]
        loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss=loss)
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    model.train_on_batch(images, labels)  # traces and compiles
    first_step = time.perf_counter() - start
    seconds = []
    for _ in range(task["steps"]):
        start = time.perf_counter()
        loss_value = model.train_on_batch(images, labels)
        seconds.append(time.perf_counter() - start)
    seconds.sort()
    return {
        "step_seconds": seconds[len(seconds) // 2],
        "first_step_seconds": first_step,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "before_training_rss_mb": before_mb,
        "loss": float(loss_value),
        "xla": int(bool(model.jit_compile)),
    }


def available_mb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("inf")


def estimated_peak_mb(task, measured):
    """The peak of `task` scaled linearly in pixels from the largest measurement of the same
    model and remat setting (runtime and weights kept); None when there is none."""
    same = [(key, value) for key, value in measured.items() if key[0] == task["label"] and key[3] == task["remat"]]
    if not same:
        return None
    key, value = max(same, key=lambda item: item[0][1] ** 2 * item[0][2])
    scale = task["size"] ** 2 * task["batch"] / (key[1] ** 2 * key[2])
    return value["before_training_rss_mb"] + scale * (value["peak_rss_mb"] - value["before_training_rss_mb"])


def run_guarded(tasks, measured, skipped, log=print):
    """Measures each task in a fresh process unless its estimated peak exceeds the memory
    available now (less `MARGIN_MB`); records it in `skipped` then."""
    for key, task in tasks.items():
        estimate, available = estimated_peak_mb(task, measured), available_mb()
        if estimate is not None and estimate > available - MARGIN_MB:
            skipped[key] = f"needs about {estimate / 1024:.1f} GiB, {available / 1024:.1f} GiB available"
            log(key, "SKIPPED", skipped[key], flush=True)
            continue
        measured[key] = measure(task, script=__file__)
        log(key, json.dumps(measured[key]), flush=True)


def pair_tasks(rows, steps):
    tasks = {}
    for label, model, size, batch in rows:
        for remat in (False, True):
            tasks[(label, size, batch, remat)] = dict(model=model, label=label, size=size, batch=batch, remat=remat,
                                                      steps=steps)
    return tasks


def largest_side(points, budget_mb=BUDGET_MB, multiple=32):
    """The largest square side (a multiple of `multiple`) whose peak, on the least-squares
    line through `points` [(side, peak MB)], is within `budget_mb`."""
    xs = [side * side for side, _ in points]
    ys = [peak for _, peak in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
    intercept = mean_y - slope * mean_x
    return int(math.sqrt(max(0.0, (budget_mb - intercept) / slope)) // multiple * multiple), slope, intercept


def section(machine, results, sweep, steps, skipped):
    import datetime

    lines = [
        REMAT_START,
        "## Gradient checkpointing (`remat=True`)",
        "",
        f"Measured {datetime.date.today().isoformat()} by `python benchmarks/remat.py` on {machine}; "
        f"{versions()}. **The machine was shared with other jobs** (two cores, 24 GiB): step times are "
        "contended and may be rerun on an idle machine; peak memory is what the OS reports for each fresh "
        f"process (`ru_maxrss`: runtime, weights, AdamW state and the step). fp32, one compiling step, then "
        f"the median of {steps} `train_on_batch` steps; XLA where the model's `jit_compile=\"auto\"` picks it.",
        "",
        "| model | image | batch | path | peak memory without / with remat | memory saved | step time without / with | time ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, size, batch in sorted({key[:3] for key in results}, key=lambda k: (k[0] != "SwinT", k[1], k[2])):
        if (label, size, batch, False) not in results or (label, size, batch, True) not in results:
            continue
        plain, remat = results[(label, size, batch, False)], results[(label, size, batch, True)]
        saved = 1 - remat["peak_rss_mb"] / plain["peak_rss_mb"]
        lines.append(
            f"| {label} | {size}² | {batch} | {'XLA' if plain['xla'] else 'graph'} | "
            f"{plain['peak_rss_mb'] / 1024:.2f} / {remat['peak_rss_mb'] / 1024:.2f} GiB | {100 * saved:.0f}% | "
            f"{plain['step_seconds']:.2f} / {remat['step_seconds']:.2f} s | "
            f"{remat['step_seconds'] / plain['step_seconds']:.2f}x |"
        )
    if sweep:
        lines += ["", f"SwinT at batch {SWEEP_BATCH}, peak memory by image size (fresh processes):", ""]
        lines += ["| image | without remat | with remat |", "|---|---|---|"]
        for size in sorted({key[1] for key in sweep}):
            cells = [f"{sweep[key]['peak_rss_mb'] / 1024:.2f} GiB" if key in sweep else "not run (memory)"
                     for key in (("SwinT", size, SWEEP_BATCH, False), ("SwinT", size, SWEEP_BATCH, True))]
            lines.append(f"| {size}² | {cells[0]} | {cells[1]} |")
        fits = []
        for remat in (False, True):
            points = [(key[1], value["peak_rss_mb"]) for key, value in sweep.items() if key[3] == remat]
            if len(points) < 2:
                continue
            side, slope, _ = largest_side(points)
            fits.append(f"{'with' if remat else 'without'} remat about {side}² ({slope * 1e3:.2f} MB per 1000 pixels)")
        lines += ["", f"The largest square image that trains at batch {SWEEP_BATCH} in 24 GiB, **extrapolated** "
                  f"from these sizes (peak = a + b * pixels, not measured at that size): {'; '.join(fits)}."]
    if skipped:
        lines += ["", "Not run, to keep the shared machine out of memory (estimated from the smaller runs): "
                  + "; ".join(f"{k[0]} {k[1]}² batch {k[2]} {'with' if k[3] else 'without'} remat ({why})"
                              for k, why in skipped.items()) + "."]
    lines.append(REMAT_END)
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after the compiling one")
    parser.add_argument("--skip-upernet-b2", action="store_true", help="leave out UPerNet-SwinT at batch 2")
    parser.add_argument("--no-sweep", action="store_true", help="skip the batch-2 sizes")
    parser.add_argument("--write", action="store_true", help="write the RESULTS.md section")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return
    machine = machine_description()
    rows = (("smoke", "smoke", 64, 2),) if args.smoke else ROWS
    measured, skipped = {}, {}
    steps = 1 if args.smoke else args.steps
    if not (args.smoke or args.no_sweep):  # first: SwinT's small sizes scale its larger rows
        run_guarded(pair_tasks([("SwinT", "swin_t", s, SWEEP_BATCH) for s in SWEEP_SIZES], steps), measured, skipped)
    sweep = dict(measured)
    if args.skip_upernet_b2:
        rows = tuple(row for row in rows if row[2:] != (512, 2))
    run_guarded(pair_tasks(rows, steps), measured, skipped)
    results = {key: value for key, value in measured.items() if key not in sweep}
    text = section(machine, results, sweep, steps, skipped)
    print(text)
    if args.write and not args.smoke:
        write_section(os.path.join(HERE, "RESULTS.md"), text, REMAT_START, REMAT_END)


if __name__ == "__main__":
    main()
