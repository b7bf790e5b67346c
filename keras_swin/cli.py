"""The `keras-swin` command: train, export, predict, convert and benchmark."""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FACTORIES = ("swin_t", "swin_s", "swin_b", "swin_l")
FACTORIES_V2 = ("swinv2_t", "swinv2_s", "swinv2_b", "swinv2_l")


def _convert(args):
    from keras_swin.checkpoints.files import read_state_dict
    from keras_swin.checkpoints.swin import to_official_layout
    from keras_swin.models import build_model, build_model_v2

    if not args.dst.endswith((".weights.h5", ".keras")):
        raise ValueError(f"DST must end with .weights.h5 or .keras; received '{args.dst}'.")
    raw = read_state_dict(args.src)
    state, layout = to_official_layout(raw)
    has_head = "head.weight" in state
    classes = args.classes or (state["head.weight"].shape[0] if has_head else 1000)
    include_top = has_head and not args.no_top
    common = dict(include_top=include_top, classes=classes, input_shape=(None, None, 3))
    if args.arch.startswith("swinv2_"):
        args.window_size = args.window_size or 8
        pretrained = None
        if args.pretrained_window_sizes:
            pretrained = tuple(int(p) for p in args.pretrained_window_sizes.split(","))
        model = build_model_v2(args.arch, window_size=args.window_size, pretrained_window_sizes=pretrained, **common)
    else:
        if args.pretrained_window_sizes:
            raise ValueError("--pretrained-window-sizes is for Swin V2 (--arch swinv2_*).")
        args.window_size = args.window_size or 7
        model = build_model(args.arch, window_size=args.window_size, **common)
    model.load_checkpoint(args.src)
    os.makedirs(os.path.dirname(os.path.abspath(args.dst)), exist_ok=True)
    if args.dst.endswith(".keras"):
        model.save(args.dst)
    else:
        model.save_weights(args.dst)
    print(f"converted {args.src} ({layout} layout) -> {args.dst}: {model.name}, "
          f"window {args.window_size}, {'classes ' + str(classes) if include_top else 'no head'}, "
          f"{model.count_params():,} parameters")
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        print("parity: not measured (install torch and transformers)")
        return
    from keras_swin.checkpoints.parity import measure_parity

    parity = measure_parity(model, state, image_size=32 * args.window_size)
    print("parity vs Hugging Face transformers (max abs diff, fp32): "
          + ", ".join(f"{k} {v:.2e}" for k, v in parity.items()))


def _training_time(metrics):
    """What was timed: all the epochs, or those this process ran after a --resume."""
    seconds, timed, epochs = metrics["train_seconds"], metrics["timed_epochs"], metrics["epochs"]
    if timed == epochs:
        return f"training time: {seconds:.1f} s for {epochs} epochs"
    return (f"training time: {seconds:.1f} s for the {timed} epochs run now "
            f"(epochs {epochs - timed + 1}-{epochs} of {epochs}; the first {epochs - timed} ran before the resume)")


def _train(args):
    from keras_swin.train import TrainConfig, train

    fields = {f: getattr(args, f) for f in TrainConfig.__dataclass_fields__ if hasattr(args, f)}
    config = TrainConfig(**fields)
    metrics = train(config)
    print()
    print(f"model {metrics['model']} ({metrics['parameters']:,} parameters) on {metrics['data']}")
    if config.task == "detection":
        print(_training_time(metrics))
        print(f"test COCO AP: {metrics['AP']:.4f}  AP50: {metrics['AP50']:.4f}  AP75: {metrics['AP75']:.4f}  "
              f"({len(metrics['class_names'])} classes, {metrics['test_images']} test images at "
              f"{metrics['image_size']}x{metrics['image_size']})")
        print(f"outputs in {metrics['output']}: best.keras, metrics.json, history.csv, training_curves.png, "
              f"predictions.png{', serving/, ' + metrics['model'] + '.tflite' if config.export else ''}")
        return
    if config.task == "segmentation":
        print(_training_time(metrics))
        print(f"test mean IoU: {metrics['mean_iou']:.4f} ({len(metrics['class_names'])} classes)  "
              f"foreground mean IoU: {metrics['foreground_mean_iou']:.4f}  "
              f"pixel accuracy: {100 * metrics['pixel_accuracy']:.2f}%  ({metrics['test_images']} test images)")
        print(f"outputs in {metrics['output']}: best.keras, metrics.json, training_curves.png, predictions.png"
              f"{', serving/, ' + metrics['model'] + '.tflite' if config.export else ''}")
        return
    if metrics["skipped_files"]:
        print(f"skipped files (not images, unreadable or undecodable; see the warnings above): "
              f"{metrics['skipped_files']}")
    print(_training_time(metrics))
    print(f"test accuracy: {100 * metrics['test_accuracy']:.2f}%  test loss: {metrics['test_loss']:.4f}")
    print(f"outputs in {metrics['output']}: best.keras, metrics.json, training_curves.png, "
          f"confusion_matrix.png{', serving/, ' + metrics['model'] + '.tflite' if config.export else ''}")


def _check_export_args(args):
    from keras_swin.export import MAX_IMAGE_SIZE, check_name

    if args.version < 1:
        raise ValueError(f"--version must be an int >= 1; received --version {args.version}.")
    if args.image_size is not None and not 1 <= args.image_size <= MAX_IMAGE_SIZE:
        raise ValueError(f"--image-size must be in [1, {MAX_IMAGE_SIZE}]; received --image-size {args.image_size}.")
    if args.max_pixels < 1:
        raise ValueError(f"--max-pixels must be an int >= 1; received --max-pixels {args.max_pixels}.")
    if args.name is not None:
        check_name(args.name, "--name")
    if args.quantize == "int8" and not args.representative_data and args.format in ("tflite", "all"):
        raise ValueError("--quantize int8 needs --representative-data, a .npy of images (N, H, W, 3).")
    if args.quantize != "none" and args.format in ("onnx", "openvino"):
        raise ValueError(f"--quantize is for --format tflite (or all); received --quantize {args.quantize} with "
                         f"--format {args.format}. For int8 weights in Keras, see docs/deployment.md.")
    if args.onnx_fixed_size and args.format not in ("onnx", "all"):
        raise ValueError(f"--onnx-fixed-size is for --format onnx (or all); received --format {args.format}.")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise OSError(f"--output '{args.output}' is a file; expected a folder (created when missing).")


def _export(args):
    import numpy as np

    from keras_swin import export

    _check_export_args(args)
    # ONNX and OpenVINO need their extras: asked for by name, a missing one is an error before
    # anything is read or written; under `all` it is skipped with a note.
    runtimes = {"onnx": ("ONNX", export.ONNX_PACKAGES, export.ONNX_EXTRA),
                "openvino": ("OpenVINO", export.OPENVINO_PACKAGES, export.OPENVINO_EXTRA)}
    formats = ["savedmodel", "tflite", "onnx", "openvino"] if args.format == "all" else [args.format]
    for key, (title, packages, extra) in runtimes.items():
        missing = export.missing_packages(packages) if key in formats else []
        if missing and args.format != "all":
            raise ValueError(f"--format {key} needs the `{extra}` extra (missing: {', '.join(missing)}); "
                             f"install it with: pip install 'keras-swin[{extra}]'")
        if missing:
            formats.remove(key)
            print(f"{title}: skipped (the `{extra}` extra is not installed: pip install 'keras-swin[{extra}]')")
    model = export.load_model_file(args.model)
    if export.is_detector(model) and set(formats) & set(runtimes):
        # keras-hub's decoder (a while loop over Bitcast, argmax) has no ONNX conversion.
        if args.format != "all":
            raise ValueError(f"--format {args.format} does not take a detector (keras-hub's RetinaNet decoder does "
                             "not convert); use --format savedmodel or tflite (docs/detection.md).")
        formats = [f for f in formats if f not in runtimes]
        print("ONNX, OpenVINO: skipped (a detector: keras-hub's decoder does not convert; docs/detection.md)")
    if args.format == "all" and "openvino" in formats and export.has_fixed_size(model):
        # to_openvino refuses a fixed-size model (its IR fails in OpenVINO's CPU plugin).
        formats.remove("openvino")
        print(f"OpenVINO: skipped (a model of fixed input shape {tuple(model.input.shape[1:])}: OpenVINO takes "
              "models built for any image size, input_shape=(None, None, channels); docs/deployment.md)")
    if {"savedmodel", "tflite"} & set(formats):
        export.check_image_model(model)
    # Keras's int8 Dense (an int8 x int8 -> int32 matmul) has no TFLite builtin, and OpenVINO's
    # conversion of it disagrees with Keras; the SavedModel and ONNX take it.
    refused = [f for f in formats if f in ("tflite", "openvino")] if export.is_quantized(model) else []
    if refused:
        raise ValueError(f"{args.model} is a quantized model (model.quantize): --format {' and '.join(refused)} "
                         "cannot take it (docs/deployment.md); use --format savedmodel or onnx, or export the "
                         "float model.")
    image_size = args.image_size and (args.image_size, args.image_size)
    try:
        height, width = export.serving_image_size(model, image_size)
    except ValueError as error:
        raise ValueError(f"--image-size {args.image_size}: {error}") from error
    representative = None
    if args.representative_data and "tflite" in formats:
        representative = export.check_images(
            export.load_images_file(args.representative_data, "--representative-data")[: export.CALIBRATION_IMAGES], (height, width),
            f"--representative-data {args.representative_data}",
        )
    class_names = export.class_names_beside(args.model, model)
    name = args.name or model.name
    if "savedmodel" in formats:
        path = export.to_saved_model(model, os.path.join(args.output, "serving"), name=name,
                                     version=args.version, class_names=class_names,
                                     image_size=image_size, max_pixels=args.max_pixels)
        print(f"SavedModel: {path}")
    if "tflite" in formats:
        suffix = "" if args.quantize == "none" else f"_{args.quantize}"
        path = os.path.join(args.output, f"{name}{suffix}.tflite")
        size = export.to_tflite(model, path, quantize=args.quantize, representative_data=representative,
                                image_size=image_size)
        check = representative[:8] if representative is not None else (
            np.random.default_rng(0).uniform(0, 255, (4, height, width, 3)).astype("float32"))
        agreement = export.compare_tflite(model, path, check)
        print(f"TFLite: {path} ({size / 1e6:.2f} MB; against Keras on {len(check)} images: max abs diff "
              f"{agreement['max_abs_diff']:.2e}, top-1 agreement {agreement['top1_agreement']:.0%})")
    check = np.random.default_rng(0).uniform(0, 255, (2, height, width, model.input.shape[-1])).astype("float32")
    if "onnx" in formats:
        path = os.path.join(args.output, f"{name}.onnx")
        size = export.to_onnx(model, path, image_size=(height, width) if args.onnx_fixed_size else None)
        agreement = export.compare_outputs(model, export.run_onnx(path, check), check)
        sizes = f"{height}x{width}" if args.onnx_fixed_size or export.has_fixed_size(model) else "any size"
        print(f"ONNX: {path} ({size / 1e6:.2f} MB, opset {export.ONNX_OPSET}, {sizes}; in ONNX Runtime against "
              f"Keras on {len(check)} images: max abs diff {agreement['max_abs_diff']:.2e})")
    if "openvino" in formats:
        path = os.path.join(args.output, f"{name}.xml")
        size = export.to_openvino(model, path)
        agreement = export.compare_outputs(model, export.run_openvino(path, check), check)
        print(f"OpenVINO: {path} and .bin ({size / 1e6:.2f} MB; on the CPU in float32 against Keras on "
              f"{len(check)} images: max abs diff {agreement['max_abs_diff']:.2e})")


def _predict(args):
    from keras_swin.predict import predict, skipped_message

    image_size = args.image_size and (args.image_size, args.image_size)
    summary = predict(args.model, args.images, args.output, top_k=args.top_k, min_score=args.min_score,
                      image_size=image_size, batch_size=args.batch_size, progress=sys.stdout.isatty())
    print(f"{summary['task']} {os.path.basename(args.model)}: predictions for {len(summary['images'])} images in "
          f"{os.path.join(args.output, 'predictions.json')}")
    problem = skipped_message(summary)
    if problem:
        raise OSError(problem)


def _benchmark(args):
    import runpy

    bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "bench.py")
    if not os.path.isfile(bench):
        raise OSError(f"benchmarks/bench.py not found next to the package ({bench}); run from a checkout.")
    sys.argv = [bench] + args.bench_args
    runpy.run_path(bench, run_name="__main__")


def build_parser():
    parser = argparse.ArgumentParser(prog="keras-swin", description="Swin Transformer for Keras 3.")
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert", help="convert a PyTorch/safetensors checkpoint to Keras")
    convert.add_argument("src", help="checkpoint: .pth, .pt, .bin or .safetensors")
    convert.add_argument("dst", help="output .weights.h5 or .keras")
    convert.add_argument("--arch", choices=FACTORIES + FACTORIES_V2, required=True)
    convert.add_argument("--window-size", type=int, default=None, help="default 7 (V1), 8 (V2)")
    convert.add_argument("--pretrained-window-sizes", default=None,
                         help="Swin V2: per-stage pretraining windows, e.g. 12,12,12,6")
    convert.add_argument("--classes", type=int, default=None, help="default: the checkpoint's")
    convert.add_argument("--no-top", action="store_true", help="drop the classifier head")
    convert.set_defaults(run=_convert)

    from keras_swin.configs import DETECTOR_NAMES, MODEL_NAMES, SEGMENTER_NAMES
    from keras_swin.export import CALIBRATION_IMAGES, DEFAULT_MAX_PIXELS, MAX_IMAGE_SIZE
    from keras_swin.training.recipe import SELECT_OPTIONS, STRATEGIES, TASK_DEFAULTS, TASKS, TrainConfig

    defaults = TrainConfig()

    def per_task(name):
        return "default " + " / ".join(f"{TASK_DEFAULTS[t][name]} ({t})" for t in TASKS)

    train = commands.add_parser("train", help="train or fine-tune a Swin classifier, segmenter or detector")
    train.add_argument("--task", default="classification", choices=TASKS)
    train.add_argument("--data", default=None,
                       help="digits | digit-scenes | tfds:NAME[:SPLITS] | PATH; " + per_task("data"))
    train.add_argument("--data-dir", default=None, help="tensorflow-datasets data dir")
    train.add_argument("--model", default=None, choices=MODEL_NAMES + SEGMENTER_NAMES + DETECTOR_NAMES,
                       help=per_task("model"))
    train.add_argument("--weights", default=None, help="PATH or imagenet (ade20k for UPerNet)")
    train.add_argument("--backbone-weights", default=None,
                       help="segmentation, detection: an ImageNet Swin classifier checkpoint (PATH or imagenet) "
                            "for the backbone")
    train.add_argument("--auxiliary-head", action=argparse.BooleanOptionalAction, default=None,
                       help="segmentation: the auxiliary FCN head on P4, loss weight 0.4; " + per_task("auxiliary_head"))
    train.add_argument("--image-size", type=int, default=None)
    train.add_argument("--epochs", type=int, default=None, help=per_task("epochs"))
    train.add_argument("--batch-size", type=int, default=None, help=per_task("batch_size"))
    train.add_argument("--learning-rate", type=float, default=None, help=per_task("learning_rate"))
    train.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    train.add_argument("--warmup-epochs", type=int, default=None, help=per_task("warmup_epochs"))
    train.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing)
    train.add_argument(
        "--clipnorm", type=float, default=defaults.clipnorm, help="clip the global gradient norm"
    )
    train.add_argument("--drop-path-rate", type=float, default=None)
    train.add_argument("--layer-decay", type=float, default=None, help="layer-wise LR decay, e.g. 0.9")
    train.add_argument("--freeze-backbone-epochs", type=int, default=0)
    train.add_argument("--augment", default=None,
                       choices=("light", "randaugment", "none", "flip-scale-crop", "zoom-translate",
                                "flip-zoom-translate"),
                       help=per_task("augment") + "; flip-scale-crop is for segmentation, zoom-translate and "
                            "flip-zoom-translate (box-aware) for detection")
    train.add_argument("--flip", action="store_true")
    train.add_argument("--random-resized-crop", action="store_true")
    train.add_argument("--mixup", action="store_true")
    train.add_argument("--cutmix", action="store_true")
    train.add_argument("--mixed-precision", default="off", choices=("off", "float16", "bfloat16"))
    train.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=None,
                       help=per_task("jit_compile"))
    train.add_argument("--remat", action="store_true",
                       help="gradient checkpointing of every Swin block: less memory, more time per step")
    train.add_argument(
        "--select", default=defaults.select, choices=SELECT_OPTIONS,
        help="weights kept as best.keras: the final epoch's, or the best validation epoch's",
    )
    train.add_argument("--strategy", default="auto", choices=STRATEGIES,
                       help="mirrored: every local GPU (or CPU) through tf.distribute.MirroredStrategy; "
                            "multiworker: several processes or machines, on KERAS_BACKEND=jax, with the cluster "
                            "in KERAS_DISTRIBUTION_* or TF_CONFIG (docs/training.md)")
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--output", default=None, help=per_task("output"))
    train.add_argument("--resume", action="store_true", help="continue the interrupted run in --output")
    train.add_argument("--overwrite", action="store_true",
                       help="replace an earlier run's outputs in --output (without it such an --output is refused)")
    train.add_argument("--export", action=argparse.BooleanOptionalAction, default=True)
    train.add_argument("--version", type=int, default=1)
    train.add_argument("--verbose", type=int, default=1)
    train.set_defaults(run=_train)

    exporter = commands.add_parser("export", help="export a .keras model to SavedModel, TFLite, ONNX and OpenVINO")
    exporter.add_argument("model", help="a .keras file")
    exporter.add_argument("--format", default="all", choices=("savedmodel", "tflite", "onnx", "openvino", "all"),
                          help="all: every format whose extra is installed (onnx and openvino need "
                               "keras-swin[onnx] and keras-swin[openvino])")
    exporter.add_argument("--output", required=True)
    exporter.add_argument("--name", default=None)
    exporter.add_argument("--version", type=int, default=1)
    exporter.add_argument("--quantize", default="none", choices=("none", "float16", "dynamic", "int8"))
    exporter.add_argument("--representative-data", default=None,
                          help=".npy of images (N, H, W, 3) at the export size: calibrates --quantize int8 "
                               f"(the first {CALIBRATION_IMAGES}) and checks the TFLite file against Keras")
    exporter.add_argument("--image-size", type=int, default=None,
                          help="serving and TFLite size of a model built for any size "
                               f"(default 224, at most {MAX_IMAGE_SIZE})")
    exporter.add_argument("--onnx-fixed-size", action="store_true",
                          help="fix the ONNX file's height and width at --image-size (batch still dynamic): "
                               "faster in ONNX Runtime; without it the file takes every size")
    exporter.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                          help="serving_bytes refuses images of more pixels (height * width) than this "
                               f"(default {DEFAULT_MAX_PIXELS:,})")
    exporter.set_defaults(run=_export)

    predictor = commands.add_parser(
        "predict", help="run a trained .keras classifier, segmenter or detector on image files")
    predictor.add_argument("model", help="a .keras file (e.g. a training run's best.keras)")
    predictor.add_argument("images", nargs="+", help="image files (JPEG, PNG, BMP, GIF, ...) or folders of them")
    predictor.add_argument("--output", required=True, help="folder for the per-image files and predictions.json")
    predictor.add_argument("--top-k", type=int, default=5, help="classifier: classes listed per image")
    predictor.add_argument("--min-score", type=float, default=0.5, help="detector: the lowest score written")
    predictor.add_argument("--image-size", type=int, default=None,
                           help="resize target of a model built for any size (default 224)")
    predictor.add_argument("--batch-size", type=int, default=16)
    predictor.set_defaults(run=_predict)

    bench = commands.add_parser("benchmark", help="run benchmarks/bench.py")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    bench.set_defaults(run=_benchmark)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError) as error:
        print(f"keras-swin {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
