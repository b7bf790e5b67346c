"""Training throughput: one `model.fit` epoch of Swin-T on a generated 224² image folder.

It goes through what `keras-swin train` runs (the image-folder pipeline with its light
augmentation, the AdamW recipe, XLA), one fresh process per precision, on the GPU when
there is one. The first epoch includes decoding and compilation; the img/s figure is the
second epoch's, when the pipeline reads from its cache.

    python benchmarks/train_epoch.py                          # fp16,bf16 on a GPU; fp32,bf16 on a CPU
    python benchmarks/train_epoch.py --precisions fp32,fp16,bf16 --images 4096 --batch-size 128
    python benchmarks/train_epoch.py --smoke                  # tiny model and images, nothing written

The figures go into the "Training epoch" section of RESULTS.md (bench.py keeps it).
"""

import argparse
import datetime
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench import measure  # noqa: E402
from report import TRAIN_EPOCH_END, TRAIN_EPOCH_START, machine_description, versions, write_section  # noqa: E402

PRECISIONS = {"fp32": "off", "bf16": "bfloat16", "fp16": "float16"}


def write_image_folder(root, images, size, classes=10, seed=0):
    """`images` JPEGs of `size`² in `classes` subfolders: smooth random colour fields."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    for index in range(images):
        folder = os.path.join(root, f"class_{index % classes}")
        os.makedirs(folder, exist_ok=True)
        coarse = rng.uniform(0, 255, (1, 8, 8, 3)).astype("float32")
        pixels = tf.cast(tf.image.resize(coarse, (size, size))[0], tf.uint8)
        tf.io.write_file(os.path.join(folder, f"{index}.jpg"), tf.io.encode_jpeg(pixels))


def _device():
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")


def worker(task):
    # Imported in the fresh worker process only: the driver never loads TensorFlow.
    import keras

    from keras_swin.data import classification as data_lib
    from keras_swin.training.classification import compile_model, create_model
    from keras_swin.training.recipe import TrainConfig, strategy_for

    config = TrainConfig(
        data=task["folder"], model=task["model"], image_size=task["size"], batch_size=task["batch"],
        mixed_precision=PRECISIONS[task["precision"]], jit_compile=True, augment=task["augment"],
    )
    keras.utils.set_random_seed(0)
    if config.mixed_precision != "off":
        keras.mixed_precision.set_global_policy(f"mixed_{config.mixed_precision}")
    splits = data_lib.load_folder(config.data, config.image_size)
    num_classes = len(splits.class_names)
    train_ds = data_lib.make_pipeline(
        splits.train, num_classes, config.batch_size, training=True, image_size=config.image_size,
        augment=config.augment,
    )
    steps = int(train_ds.reduce(0, lambda count, _: count + 1).numpy())
    with strategy_for(config).scope():
        model = create_model(config, num_classes)
        compile_model(model, config, steps)

    epoch_seconds = []
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: epoch_seconds.append(-time.perf_counter()),
        on_epoch_end=lambda epoch, logs: epoch_seconds.__setitem__(-1, epoch_seconds[-1] + time.perf_counter()),
    )
    history = model.fit(train_ds, epochs=2, callbacks=[timer], verbose=0)
    images = sum(1 for _ in splits.train)
    first, second = epoch_seconds
    return {
        "device": _device(), "images": images, "batch": config.batch_size, "steps": steps,
        "first_epoch_s": first, "epoch_s": second, "images_per_second": images / second,
        "final_loss": float(history.history["loss"][-1]),
    }


def section(results, args, machine):
    device = next(iter(results.values()))["device"]
    lines = [
        TRAIN_EPOCH_START,
        "## Training epoch (img/s, higher is better)",
        "",
        f"Measured {datetime.date.today().isoformat()} by `python benchmarks/train_epoch.py "
        f"--precisions {args.precisions} --images {args.images} --batch-size {args.batch_size}` on "
        f"{device} ({machine}); {versions()}. `{args.model}`, {args.image_size}², the "
        f"`keras-swin train` pipeline (augment {args.augment}) and AdamW recipe, XLA. "
        "The second epoch is timed; the first includes decoding and compilation.",
        "",
        "| precision | img/s | epoch (s) | first epoch (s) | images | batch |",
        "|---|---|---|---|---|---|",
    ]
    for precision, row in results.items():
        lines.append(f"| {precision} | {row['images_per_second']:.1f} | {row['epoch_s']:.1f} | "
                     f"{row['first_epoch_s']:.1f} | {row['images']} | {row['batch']} |")
    return "\n".join(lines + ["", TRAIN_EPOCH_END])


def replace_section(path, text):
    """Writes `text` in place of the previous training-epoch section of `path` (or appends it)."""
    write_section(path, text, TRAIN_EPOCH_START, TRAIN_EPOCH_END)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--precisions", default=None, help="comma-separated fp32, bf16, fp16")
    parser.add_argument("--images", type=int, default=None, help="images generated (70%% train)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--model", default="swin_t")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--augment", default="light", choices=("light", "none"))
    parser.add_argument("--smoke", action="store_true", help="swin_nano at 32², nothing written")
    parser.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"))
    args = parser.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))))
        return None

    import tensorflow as tf

    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    if args.smoke:
        args.model, args.image_size, args.precisions = "swin_nano", 32, args.precisions or "fp32"
        args.images, args.batch_size = args.images or 100, args.batch_size or 8
    args.precisions = args.precisions or ("fp16,bf16" if on_gpu else "fp32,bf16")
    args.images = args.images or (4096 if on_gpu else 256)
    args.batch_size = args.batch_size or (128 if on_gpu else 16)
    precisions = args.precisions.split(",")
    unknown = sorted(set(precisions) - set(PRECISIONS))
    if unknown:
        raise SystemExit(f"--precisions must be among {sorted(PRECISIONS)}; received {args.precisions!r}")

    folder = tempfile.mkdtemp(prefix="keras_swin_epoch_")
    write_image_folder(folder, args.images, args.image_size)
    machine = machine_description()
    results = {}
    for precision in precisions:
        task = dict(folder=folder, model=args.model, size=args.image_size, batch=args.batch_size,
                    precision=precision, augment=args.augment)
        results[precision] = measure(task, timeout=3600, script=__file__)
        row = results[precision]
        print(f"{precision}: {row['images_per_second']:.1f} img/s ({row['images']} images in "
              f"{row['epoch_s']:.1f} s; first epoch {row['first_epoch_s']:.1f} s) on {row['device']}")
    print(json.dumps(results, indent=1))
    if not args.smoke:
        replace_section(args.output, section(results, args, machine))
        print(f"wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
