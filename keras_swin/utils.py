"""Analytic cost of a Swin model."""


def _ceil_div(a, b):
    return -(-a // b)


def flops(model, input_shape):
    """Multiply-accumulate count of one forward pass of a `SwinTransformer` (the paper's
    "FLOPs"), counted per layer as the official implementation does: patch embedding,
    window attention on the padded map (qkv, q@k, attention@v, projection), MLP, norms,
    patch merging and the classifier.

    Args:
        model: a `keras_swin.SwinTransformer` (only its configuration is read).
        input_shape: (height, width) or (height, width, channels) of one image.

    Returns:
        int, the count for one image.
    """
    if len(input_shape) not in (2, 3) or min(input_shape[:2]) < 1:
        raise ValueError(
            f"`input_shape` must be (height, width[, channels]) with sizes >= 1; received {input_shape}."
        )
    height, width = (int(s) for s in input_shape[:2])
    channels_in = int(input_shape[2]) if len(input_shape) == 3 else 3
    patch = model.patch_size
    height, width = _ceil_div(height, patch), _ceil_div(width, patch)
    channels = model.embed_dim
    total = height * width * channels * channels_in * patch * patch  # projection
    total += height * width * channels  # norm
    for stage, (depth, heads) in enumerate(zip(model.depths, model.num_heads)):
        for _ in range(depth):
            window = min(height, width) if min(height, width) <= model.window_size else model.window_size
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
        if stage < len(model.depths) - 1:
            total += height * width * channels  # merging norm (official count)
            height, width = _ceil_div(height, 2), _ceil_div(width, 2)
            total += height * width * 4 * channels * 2 * channels
            channels *= 2
    total += height * width * channels  # final norm
    if model.include_top:
        total += channels * model.classes
    return int(total)
