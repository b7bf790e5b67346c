"""Where `predict` spends its time, by TensorFlow op type (the tables of PROFILE.md).

SwinT 224², batch 16, `model.predict` in float32 without XLA (so that each op is visible),
one warm-up call, then one call under `tf.profiler.experimental`; the executed ops of the
trace (XSpace, host `tf_Compute` threads) are summed by op type. With `--avx2`, the process first caps oneDNN, XLA and MKL at AVX2
(benchmarks/workers.py's AVX2_ONLY), to see an AVX2 machine's kernels on a wider CPU.

    python benchmarks/profile_ops.py [--avx2] [--batch 16] [--top 12]
"""

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from workers import AVX2_ONLY  # noqa: E402

OP_EVENT = re.compile(r"^[^:]+:(\w+)$")  # "swin_t_1/stage1/.../MatMul:_MklNativeFusedMatMul"


def op_times(space):
    """`{op type: (milliseconds, calls)}` from a profiler XSpace: the events of the host's
    `tf_Compute` threads named `node:OpType` (one per executed op), summed by op type."""
    totals = collections.defaultdict(lambda: [0.0, 0])
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                match = OP_EVENT.match(plane.event_metadata[event.metadata_id].name)
                if match:
                    totals[match.group(1)][0] += event.duration_ps / 1e9
                    totals[match.group(1)][1] += 1
    return {op: tuple(values) for op, values in totals.items()}


def profile(batch, size=224):
    import numpy as np
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    import keras_swin  # here, not at the top: with --avx2 the process re-executes itself before loading TensorFlow

    model = keras_swin.SwinT()
    model.jit_compile = False
    images = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype("float32")
    model.predict(images, batch_size=batch, verbose=0)
    start = time.perf_counter()
    model.predict(images, batch_size=batch, verbose=0)
    wall = time.perf_counter() - start
    logdir = tempfile.mkdtemp(prefix="keras_swin_profile_")
    tf.profiler.experimental.start(logdir)
    model.predict(images, batch_size=batch, verbose=0)
    tf.profiler.experimental.stop()
    (path,) = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    return op_times(space), wall


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--avx2", action="store_true", help="cap oneDNN, XLA and MKL at AVX2 first")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    if args.avx2 and os.environ.get("ONEDNN_MAX_CPU_ISA") != "AVX2":
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **AVX2_ONLY})
    times, wall = profile(args.batch)
    total = sum(ms for ms, _ in times.values())
    print(f"predict wall {wall * 1e3:.0f} ms; op time {total:.0f} ms "
          f"(ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')})")
    print("| op type | ms | calls | share |\n|---|---|---|---|")
    for op, (ms, calls) in sorted(times.items(), key=lambda item: -item[1][0])[: args.top]:
        print(f"| {op} | {ms:.0f} | {calls} | {100 * ms / total:.0f}% |")
    return times


if __name__ == "__main__":
    main()
