"""Inference throughput of keras_swin SwinT at 224x224 (batch 16, fp32, `model.predict`).

Prints the machine and img/s. Run: `make bench` or `python benchmarks/bench.py --batches 5`.
"""

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def time_predict(model, images, batch_size, repeats):
    model.predict(images, batch_size=batch_size, verbose=0)  # warm-up and tracing
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(images, batch_size=batch_size, verbose=0)
        timings.append(time.perf_counter() - start)
    return len(images) / float(np.median(timings))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=2, help="batches per timed predict")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args(argv)

    import keras_swin

    size = args.image_size
    model = keras_swin.SwinT(input_shape=(size, size, 3))
    images = np.random.default_rng(0).uniform(0, 255, (args.batch_size * args.batches, size, size, 3))
    images = images.astype("float32")
    throughput = time_predict(model, images, args.batch_size, args.repeats)
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores")
    print(
        f"keras_swin SwinT {size}x{size} predict fp32 batch {args.batch_size}: "
        f"{throughput:.2f} img/s"
    )
    return throughput


if __name__ == "__main__":
    main()
