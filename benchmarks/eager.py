"""Eager calls: `model(x)` of keras_swin's SwinT on the TensorFlow backend against the eager
PyTorch reference (Hugging Face `SwinForImageClassification`, random weights, its config
built here, `torch.no_grad()`), at 224², batch 1 and 16, fp32.

Each figure comes from a fresh process (`bench.measure`, the workers of workers.py: keras
"call" runs `model(images, training=False)` after one warm-up call); keras_swin and PyTorch
alternate within each round and the median over the rounds is reported.

    python benchmarks/eager.py                 # 3 rounds, prints the figures and ratios
    python benchmarks/eager.py --rounds 5 --iterations 20
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench import measure_alternating  # noqa: E402
from report import machine_description, versions  # noqa: E402

BATCHES = (1, 16)


def eager_tasks(iterations, batches=BATCHES):
    tasks = {}
    for batch in batches:
        its = iterations if batch == 16 else 4 * iterations
        tasks[f"keras call fp32 b{batch}"] = dict(worker="keras", kind="call", size=224, batch=batch, iterations=its)
        tasks[f"torch eager fp32 b{batch}"] = dict(worker="torch", kind="predict", size=224, batch=batch,
                                                  iterations=its)
    return tasks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=5, help="timed calls at batch 16 (4x at batch 1)")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    args = parser.parse_args(argv)
    batches = tuple(int(b) for b in args.batches.split(","))
    print(machine_description())
    print(versions())
    results = measure_alternating(eager_tasks(args.iterations, batches), args.rounds)
    for batch in batches:
        ours, theirs = results[f"keras call fp32 b{batch}"], results[f"torch eager fp32 b{batch}"]
        print(f"batch {batch}: keras_swin model(x) {1e3 * ours['seconds']:.1f} ms, PyTorch eager "
              f"{1e3 * theirs['seconds']:.1f} ms, ratio {theirs['seconds'] / ours['seconds']:.2f}x")
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
