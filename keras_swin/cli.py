"""The `keras-swin` command: convert checkpoints (and the other jobs as they land)."""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FACTORIES = ("swin_t", "swin_s", "swin_b", "swin_l")


def _convert(args):
    from keras_swin import models
    from keras_swin.weights import official_to_keras, read_state_dict, to_official_layout

    if not args.dst.endswith((".weights.h5", ".keras")):
        raise ValueError(f"DST must end with .weights.h5 or .keras; received '{args.dst}'.")
    state, layout = to_official_layout(read_state_dict(args.src))
    has_head = "head.weight" in state
    classes = args.classes or (state["head.weight"].shape[0] if has_head else 1000)
    include_top = has_head and not args.no_top
    model = models.build_model(
        args.arch,
        include_top=include_top,
        classes=classes,
        window_size=args.window_size,
        input_shape=(None, None, 3),
    )
    official_to_keras(model, state, layout)
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
    from keras_swin.parity import measure_parity

    parity = measure_parity(model, state, image_size=32 * args.window_size)
    print("parity vs Hugging Face transformers (max abs diff, fp32): "
          + ", ".join(f"{k} {v:.2e}" for k, v in parity.items()))


def build_parser():
    parser = argparse.ArgumentParser(prog="keras-swin", description="Swin Transformer for Keras 3.")
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert", help="convert a PyTorch/safetensors checkpoint to Keras")
    convert.add_argument("src", help="checkpoint: .pth, .pt, .bin or .safetensors")
    convert.add_argument("dst", help="output .weights.h5 or .keras")
    convert.add_argument("--arch", choices=FACTORIES, required=True)
    convert.add_argument("--window-size", type=int, default=7)
    convert.add_argument("--classes", type=int, default=None, help="default: the checkpoint's")
    convert.add_argument("--no-top", action="store_true", help="drop the classifier head")
    convert.set_defaults(run=_convert)
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
