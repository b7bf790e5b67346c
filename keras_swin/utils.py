"""Pure helpers: argument checks shared by the layers and models, and the analytic cost of a
Swin model and of UPerNet on it."""

import math


def check_rates(**rates):
    """Raises a ValueError naming the first rate that is not a finite float in [0, 1).

    Example: `check_rates(dropout_rate=0.1, drop_path_rate=0.2)`.
    """
    for name, rate in rates.items():
        try:
            valid = math.isfinite(float(rate)) and 0.0 <= float(rate) < 1.0
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise ValueError(f"`{name}` must be in [0, 1); received {name}={rate!r}.")


def check_stages(depths, num_heads, width, width_name):
    """A ValueError unless every stage has >= 1 block and heads that divide its width
    (`width * 2**stage`, `width` being the argument named `width_name`)."""
    if min(depths) < 1:
        raise ValueError(f"Every stage needs >= 1 block; received depths={depths}.")
    for stage, heads in enumerate(num_heads):
        stage_width = width * 2**stage
        if heads < 1 or stage_width % heads:
            raise ValueError(
                f"`num_heads[{stage}]`={heads} must divide the stage width {stage_width} "
                f"({width_name}={width} * 2**{stage})."
            )


def _ceil_div(a, b):
    return -(-a // b)


def flops(model, input_shape):
    """Multiply-accumulate count of one forward pass (the papers' "FLOPs").

    A `SwinTransformer` is counted per layer as the official implementation does: patch
    embedding, window attention on the padded map (qkv, q@k, attention@v, projection),
    MLP, norms, patch merging and the classifier. A `UPerNet` adds its decoder: every
    convolution, at the resolution it runs at (pooling, BatchNorm, ReLU and resizing are
    left out, as they are a fraction of a percent).

    Args:
        model: a `keras_swin.SwinTransformer` or a `keras_swin.UPerNet` over one (only the
            configuration is read).
        input_shape: (height, width) or (height, width, channels) of one image.

    Returns:
        int, the count for one image.
    """
    if len(input_shape) not in (2, 3) or min(input_shape[:2]) < 1:
        raise ValueError(
            f"`input_shape` must be (height, width[, channels]) with sizes >= 1; received {input_shape}."
        )
    if hasattr(model, "backbone") and hasattr(model, "pool_scales"):
        return flops(model.backbone, input_shape) + upernet_decoder_flops(model, input_shape)
    height, width = (int(s) for s in input_shape[:2])
    channels_in = int(input_shape[2]) if len(input_shape) == 3 else 3
    patch = model.patch_size
    height, width = _ceil_div(height, patch), _ceil_div(width, patch)
    channels = model.embed_dim
    total = height * width * channels * channels_in * patch * patch  # projection
    total += height * width * channels  # norm
    always_partition = getattr(model, "always_partition", False)
    for stage, (depth, heads) in enumerate(zip(model.depths, model.num_heads)):
        for _ in range(depth):
            window = model.window_size
            if min(height, width) <= model.window_size and not always_partition:
                window = min(height, width)
            padded = _ceil_div(height, window) * window * _ceil_div(width, window) * window
            tokens = window * window
            num_windows = padded // tokens
            total += 2 * height * width * channels  # two norms
            total += num_windows * (
                tokens * channels * 3 * channels  # qkv
                + 2 * tokens * tokens * channels  # q @ k^T and attention @ v, all heads
                + tokens * channels * channels  # projection
            )
            total += 2 * height * width * channels * int(channels * model.mlp_ratio)
        if getattr(model, "pyramid_norm", False):
            total += height * width * channels  # the level's output norm
        if stage < len(model.depths) - 1:
            total += height * width * channels  # merging norm (official count)
            height, width = _ceil_div(height, 2), _ceil_div(width, 2)
            total += height * width * 4 * channels * 2 * channels
            channels *= 2
    if getattr(model, "include_final_norm", True):
        total += height * width * channels  # final norm
    if model.include_top:
        total += channels * model.classes
    return int(total)


def upernet_decoder_flops(model, input_shape):
    """Multiply-accumulates of UPerNet's convolutions (decode head and, when present, the
    auxiliary head) for one image of `input_shape`."""
    backbone = model.backbone
    height, width = (int(s) for s in input_shape[:2])
    sizes, widths = [], []
    height, width = _ceil_div(height, backbone.patch_size), _ceil_div(width, backbone.patch_size)
    for stage in range(len(backbone.depths)):
        sizes.append(height * width)
        widths.append(backbone.embed_dim * 2**stage)
        height, width = _ceil_div(height, 2), _ceil_div(width, 2)
    channels = model.channels
    total = sum(scale * scale * widths[-1] * channels for scale in model.pool_scales)
    total += sizes[-1] * 9 * (widths[-1] + len(model.pool_scales) * channels) * channels
    for level in range(len(sizes) - 1):
        total += sizes[level] * widths[level] * channels  # lateral 1x1
        total += sizes[level] * 9 * channels * channels  # fpn 3x3
    total += sizes[0] * 9 * len(sizes) * channels * channels  # fuse 3x3
    total += sizes[0] * channels * model.num_classes  # classifier
    if model.auxiliary_head:
        total += sizes[2] * 9 * widths[2] * model.auxiliary_channels
        total += sizes[2] * model.auxiliary_channels * model.num_classes
    return int(total)
