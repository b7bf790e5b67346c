"""Pure `keras.ops` helpers for Swin: window partition/reverse, padding, cyclic shift,
relative position index and the shifted-window mask.

Every helper accepts sizes as Python ints (static shapes, constant-folded by the graph
compilers) or as scalar integer tensors (dynamic shapes under TensorFlow), so one graph
serves every input size. Only ops that lower to TFLite builtins are used: the cyclic shift
is two slices and a concatenation rather than `roll`.

The constant tables (the relative position index, the shifted-window mask) are NumPy arrays,
computed once per size, when every size is a Python int: an eager call (`model(x)`, op by op)
would otherwise rebuild them with a dozen small ops per block and call, and a traced graph
gets the constant its compiler would have folded. Sizes given as tensors (one graph for every
size) build them with ops.
"""

import functools

import numpy as np
from keras import ops

# Value added to attention logits between tokens of different shifted-window regions.
MASK_VALUE = -100.0


def spatial_shape(x):
    """Returns `(height, width)` of an NHWC tensor, as ints where static."""
    shape = ops.shape(x)
    return shape[1], shape[2]


def is_static(*values):
    """True when every value is a plain Python int (a statically known size)."""
    return all(isinstance(v, int) for v in values)


def _pair(value):
    """`(value, value)` for one size, or the `(height, width)` pair given."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _is_zero(value):
    return is_static(value) and value == 0


def pad_to_multiple(x, multiple_h, multiple_w):
    """Zero-pads an NHWC tensor at the bottom and right up to a multiple of the given sizes.

    Args:
        x: `(B, H, W, C)`.
        multiple_h, multiple_w: ints or scalar int tensors.

    Returns:
        `(B, ceil(H / multiple_h) * multiple_h, ceil(W / multiple_w) * multiple_w, C)`.
    """
    height, width = spatial_shape(x)
    pad_h = (multiple_h - height % multiple_h) % multiple_h
    pad_w = (multiple_w - width % multiple_w) % multiple_w
    if is_static(pad_h, pad_w) and pad_h == 0 and pad_w == 0:
        return x
    return ops.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])


def cyclic_shift(x, shift):
    """Rolls an NHWC tensor by `-shift` along H and W (toward the top-left).

    Equivalent to `roll(x, (-shift_h, -shift_w), axis=(1, 2))`, written as slices and a
    concatenation so that it lowers to TFLite builtins. `shift` is one shift for both axes
    or a pair `(shift_h, shift_w)`. Use `reverse_cyclic_shift` to undo.
    """
    shift_h, shift_w = _pair(shift)
    if not _is_zero(shift_h):
        x = ops.concatenate([x[:, shift_h:], x[:, :shift_h]], axis=1)
    if not _is_zero(shift_w):
        x = ops.concatenate([x[:, :, shift_w:], x[:, :, :shift_w]], axis=2)
    return x


def reverse_cyclic_shift(x, shift):
    """Rolls an NHWC tensor by `+shift` along H and W; undoes `cyclic_shift`."""
    shift_h, shift_w = _pair(shift)
    height, width = spatial_shape(x)
    if not _is_zero(shift_h):
        x = ops.concatenate([x[:, height - shift_h :], x[:, : height - shift_h]], axis=1)
    if not _is_zero(shift_w):
        x = ops.concatenate([x[:, :, width - shift_w :], x[:, :, : width - shift_w]], axis=2)
    return x


def window_partition(x, window_h, window_w):
    """Splits an NHWC map into non-overlapping windows.

    Args:
        x: `(B, H, W, C)` with H divisible by `window_h` and W by `window_w`.

    Returns:
        `(B * num_windows, window_h * window_w, C)`, windows in row-major order.
    """
    height, width = spatial_shape(x)
    channels = ops.shape(x)[3]
    x = ops.reshape(
        x, (-1, height // window_h, window_h, width // window_w, window_w, channels)
    )
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, window_h * window_w, channels))


def window_reverse(windows, window_h, window_w, height, width):
    """Inverse of `window_partition`.

    Args:
        windows: `(B * num_windows, window_h * window_w, C)`.
        height, width: the (padded) map size the windows came from.

    Returns:
        `(B, height, width, C)`.
    """
    channels = ops.shape(windows)[-1]
    x = ops.reshape(
        windows, (-1, height // window_h, width // window_w, window_h, window_w, channels)
    )
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, height, width, channels))


def _offset_index(rows, cols, table_window_h, table_window_w):
    """The table row of every pair of tokens at `(rows[i], cols[i])`: their offset
    `(dy, dx)` in a table made for a `table_window_h x table_window_w` window."""
    delta_rows = rows[:, None] - rows[None, :] + (table_window_h - 1)
    delta_cols = cols[:, None] - cols[None, :] + (table_window_w - 1)
    return delta_rows * (2 * table_window_w - 1) + delta_cols


def relative_position_index(window_h, window_w, table_window_h=None, table_window_w=None):
    """Index into a relative position bias table for every pair of tokens in a window.

    The table covers offsets of a `table_window_h x table_window_w` window, so it has
    `(2 * table_window_h - 1) * (2 * table_window_w - 1)` rows. A smaller window reads the
    central rows of the same table, so each offset keeps its learned bias.

    Args:
        window_h, window_w: the window actually attended over (ints or int tensors).
        table_window_h, table_window_w: the window the table was made for; default to
            the attended window.

    Returns:
        int32 `(window_h * window_w, window_h * window_w)`.
    """
    table_window_h = window_h if table_window_h is None else table_window_h
    table_window_w = window_w if table_window_w is None else table_window_w
    if is_static(window_h, window_w, table_window_h, table_window_w):
        return _static_relative_position_index(window_h, window_w, table_window_h, table_window_w)
    rows = ops.repeat(ops.arange(window_h, dtype="int32"), window_w)
    cols = ops.tile(ops.arange(window_w, dtype="int32"), [window_h])
    return _offset_index(rows, cols, table_window_h, table_window_w)


def _read_only(array):
    array.flags.writeable = False  # shared by every caller of the cache
    return array


@functools.lru_cache(maxsize=64)
def _static_relative_position_index(window_h, window_w, table_window_h, table_window_w):
    rows = np.repeat(np.arange(window_h, dtype=np.int32), window_w)
    cols = np.tile(np.arange(window_w, dtype=np.int32), window_h)
    return _read_only(_offset_index(rows, cols, table_window_h, table_window_w).astype(np.int32))


def truncated_position_index(tokens, table_window_h, table_window_w):
    """MONAI's index for a window of `tokens` tokens smaller than the table's window: the
    first `tokens` rows and columns of the full window's index
    (`relative_position_index[:tokens, :tokens]` in MONAI's `WindowAttention`).

    Token t takes the position `(t // table_window_w, t % table_window_w)` of the full
    window, so the offsets are the true ones only when the window keeps the table's width;
    a narrower window reads other rows of the table (as MONAI does, which its weights were
    trained with).

    Returns:
        int32 `(tokens, tokens)`.
    """
    if is_static(tokens, table_window_h, table_window_w):
        return _static_truncated_position_index(tokens, table_window_h, table_window_w)
    positions = ops.arange(tokens, dtype="int32")
    return _offset_index(positions // table_window_w, positions % table_window_w, table_window_h, table_window_w)


@functools.lru_cache(maxsize=64)
def _static_truncated_position_index(tokens, table_window_h, table_window_w):
    positions = np.arange(tokens, dtype=np.int32)
    index = _offset_index(positions // table_window_w, positions % table_window_w, table_window_h, table_window_w)
    return _read_only(index.astype(np.int32))


def _region_ids(length, window, shift):
    """Labels positions 0..length-1 with 0, 1 or 2: the three bands that a cyclic shift of
    `shift` creates in the last window (`[0, L-window)`, `[L-window, L-shift)`, `[L-shift, L)`).
    """
    positions = ops.arange(length, dtype="int32")
    first_cut = ops.cast(positions >= length - window, "int32")
    second_cut = ops.cast(positions >= length - shift, "int32")
    return first_cut + second_cut


def shifted_window_mask(height, width, window, shift):
    """Additive attention mask for shifted windows on a padded `height x width` map.

    Tokens of a window that come from different regions of the un-shifted map may not
    attend to each other: their logits get `MASK_VALUE`. With `shift == 0` the mask is
    all zeros. `window` and `shift` are one size for both axes or `(height, width)` pairs.

    Returns:
        float32 `(num_windows, window_h * window_w, window_h * window_w)`, values 0 or -100.
    """
    window_h, window_w = _pair(window)
    shift_h, shift_w = _pair(shift)
    if is_static(height, width, window_h, window_w, shift_h, shift_w):
        return _static_shifted_window_mask(height, width, window_h, window_w, shift_h, shift_w)
    region = _region_ids(height, window_h, shift_h)[:, None] * 3 + _region_ids(
        width, window_w, shift_w
    )[None, :]
    region = window_partition(region[None, :, :, None], window_h, window_w)[..., 0]
    different = ops.not_equal(region[:, :, None], region[:, None, :])
    return ops.where(different, MASK_VALUE, 0.0)


# A few sizes per stage; at 1024² the largest mask is 13 MB.
@functools.lru_cache(maxsize=32)
def _static_shifted_window_mask(height, width, window_h, window_w, shift_h, shift_w):
    """`shifted_window_mask` for static sizes, in NumPy: the same regions and partition."""

    def region_ids(length, window, shift):
        positions = np.arange(length)
        return (positions >= length - window).astype(np.int32) + (positions >= length - shift).astype(np.int32)

    region = region_ids(height, window_h, shift_h)[:, None] * 3 + region_ids(width, window_w, shift_w)[None, :]
    region = region.reshape(height // window_h, window_h, width // window_w, window_w).transpose(0, 2, 1, 3)
    region = region.reshape(-1, window_h * window_w)
    different = region[:, :, None] != region[:, None, :]
    return _read_only(np.where(different, MASK_VALUE, 0.0).astype(np.float32))


def constant_window(height, width, window_size, shift_size):
    """The window and shift of a block that keeps them on every map (mmseg's rule, a
    `SwinBlock(always_partition=True)`): the given ints when the map size is static, else
    the same values as scalar int tensors of the runtime size.

    Why tensors: OpenVINO's CPU plugin (2026.4) mis-infers the shapes of a dynamic-size graph
    in which a block after a patch merging partitions by a constant window; the block's
    residual Add then fails at every batch ("Eltwise shape infer input shapes dim index: 0
    mismatch"). With the window a value of the runtime size, as `effective_window` gives it,
    the same model runs (tests/test_export_onnx.py, UPerNet). The condition below always holds;
    it only ties the values to the runtime shape.

    Returns:
        `(window, shift)`.
    """
    if is_static(height, width):
        return window_size, shift_size
    any_size = ops.minimum(height, width) >= 0
    return ops.where(any_size, window_size, 0), ops.where(any_size, shift_size, 0)


def effective_window(height, width, window_size, shift_size):
    """The window and shift a block uses on an `height x width` map.

    As in the reference implementations, a map whose shorter side fits in one window is
    attended as a single window of that side and is not shifted.

    Returns:
        `(window, shift)`: ints when the map size is static, else scalar int tensors.
    """
    if is_static(height, width):
        shortest = min(height, width)
        if shortest <= window_size:
            return shortest, 0
        return window_size, shift_size
    shortest = ops.minimum(height, width)
    fits = shortest <= window_size
    window = ops.where(fits, shortest, window_size)
    shift = ops.where(fits, 0, shift_size)
    return window, shift


def per_axis_window(height, width, window_size, shift_size):
    """The window and shift of MONAI's Swin blocks (`get_window_size`) on a `height x width`
    map: on each axis where the map is at most `window_size`, the window shrinks to the map
    and that axis is not shifted; the other axis keeps the window and the shift.

    Returns:
        `((window_h, window_w), (shift_h, shift_w))`: ints when the size is static, else
        scalar int tensors.
    """

    def axis(size):
        if is_static(size):
            return (size, 0) if size <= window_size else (window_size, shift_size)
        fits = size <= window_size
        return ops.where(fits, size, window_size), ops.where(fits, 0, shift_size)

    (window_h, shift_h), (window_w, shift_w) = axis(height), axis(width)
    return (window_h, window_w), (shift_h, shift_w)


def gelu(x):
    """The exact GELU, `0.5 * x * (1 + erf(x / sqrt(2)))`, as PyTorch's `nn.GELU()`.

    Written with `erf` rather than `ops.gelu(approximate=False)`: TensorFlow's exact GELU is
    `erfc`, which tf2onnx 1.17 (Keras's ONNX exporter) cannot convert ("Tensorflow op Erfc is
    not supported"; ONNX has Erf but no Erfc). This form lowers to ONNX `Erf`, to TFLite's
    GELU builtin, and ran as fast as `tf.nn.gelu` in TensorFlow's graph (bf16 faster).
    """
    return 0.5 * x * (1.0 + ops.erf(x * 0.7071067811865476))


def instance_normalize(x, epsilon=1e-5):
    """`(x - mean) / sqrt(variance + epsilon)` per sample and channel over H and W of an
    NHWC tensor: PyTorch's `InstanceNorm2d` without affine weights, in float32.

    The statistics are means over W, then over H. TensorFlow's float32 mean over H and W
    at once accumulates sequentially: relative errors of 7e-5 to 2e-4 on the variance of
    64x96 and 256x256 maps were measured, against 1e-6 for the two steps.

    Returns:
        the normalised `x`, in its dtype.
    """
    values = ops.cast(x, "float32")
    mean = ops.mean(ops.mean(values, axis=2, keepdims=True), axis=1, keepdims=True)
    centred = values - mean
    variance = ops.mean(ops.mean(ops.square(centred), axis=2, keepdims=True), axis=1, keepdims=True)
    return ops.cast(centred * ops.rsqrt(variance + epsilon), x.dtype)


# --------------------------------------------------------------------------- dense prediction
# Resizing and adaptive pooling are written as two matrix products with matrices built from
# the runtime sizes: exact, differentiable, free of the shape checks in
# `ops.image.resize` that break when TensorFlow retraces with unknown sizes, and lowered
# to TFLite builtins (comparisons, casts and BATCH_MATMUL).


def _one_hot_rows(indices, depth, dtype):
    """`(len(indices), depth)` matrix with a 1 at `[i, indices[i]]`, for a runtime depth."""
    columns = ops.arange(depth, dtype="int32")
    return ops.cast(ops.equal(indices[:, None], columns[None, :]), dtype)


def bilinear_matrix(in_size, out_size, dtype="float32"):
    """`(out_size, in_size)` weights of 1-D linear interpolation with half-pixel centres,
    as PyTorch's `interpolate(mode="bilinear", align_corners=False)` computes them when
    it is given an output size: source `(i + 0.5) * in / out - 0.5`, clamped below at 0,
    and the upper tap clamped to the last pixel.
    """
    scale = ops.cast(in_size, "float32") / ops.cast(out_size, "float32")
    source = (ops.cast(ops.arange(out_size, dtype="int32"), "float32") + 0.5) * scale - 0.5
    source = ops.maximum(source, 0.0)
    lower = ops.minimum(ops.cast(ops.floor(source), "int32"), in_size - 1)
    upper = ops.minimum(lower + 1, in_size - 1)
    upper_weight = source - ops.cast(lower, "float32")
    matrix = _one_hot_rows(lower, in_size, "float32") * (1.0 - upper_weight)[:, None]
    matrix = matrix + _one_hot_rows(upper, in_size, "float32") * upper_weight[:, None]
    return ops.cast(matrix, dtype)


def adaptive_pool_matrix(in_size, bins, dtype="float32"):
    """`(bins, in_size)` averaging weights of PyTorch's adaptive average pooling: bin i
    spans `[floor(i * L / n), ceil((i + 1) * L / n))`."""
    index = ops.arange(bins, dtype="int32")
    start = (index * in_size) // bins
    end = ((index + 1) * in_size + bins - 1) // bins
    positions = ops.arange(in_size, dtype="int32")[None, :]
    inside = ops.logical_and(positions >= start[:, None], positions < end[:, None])
    counts = ops.cast(end - start, "float32")[:, None]
    return ops.cast(ops.cast(inside, "float32") / counts, dtype)


def apply_spatial_matrices(x, row_matrix, column_matrix):
    """`row_matrix @ x @ column_matrix^T` on every channel of an NHWC tensor.

    Args:
        x: `(B, H, W, C)`.
        row_matrix: `(H', H)`; column_matrix: `(W', W)`.

    Returns:
        `(B, H', W', C)`.
    """
    batch = ops.shape(x)[0]
    height, width = spatial_shape(x)
    channels = ops.shape(x)[3]
    out_height = ops.shape(row_matrix)[0]
    out_width = ops.shape(column_matrix)[0]
    x = ops.reshape(x, (-1, height, width * channels))
    x = ops.matmul(row_matrix, x)  # (B, H', W * C)
    x = ops.reshape(x, (-1, width, channels))
    x = ops.matmul(column_matrix, x)  # (B * H', W', C)
    return ops.reshape(x, (batch, out_height, out_width, channels))


def resize_bilinear(x, height, width):
    """Bilinear resize of an NHWC tensor to `height x width` (ints or scalar int tensors),
    equal to PyTorch's `interpolate(mode="bilinear", align_corners=False)`."""
    in_height, in_width = spatial_shape(x)
    if is_static(in_height, in_width, height, width) and (in_height, in_width) == (height, width):
        return x
    return apply_spatial_matrices(
        x,
        bilinear_matrix(in_height, height, x.dtype),
        bilinear_matrix(in_width, width, x.dtype),
    )


def adaptive_average_pool(x, bins):
    """PyTorch's `AdaptiveAvgPool2d(bins)` on an NHWC tensor: `(B, bins, bins, C)`."""
    height, width = spatial_shape(x)
    return apply_spatial_matrices(
        x, adaptive_pool_matrix(height, bins, x.dtype), adaptive_pool_matrix(width, bins, x.dtype)
    )


def log_spaced_coordinates(window_h, window_w, pretrained_h=0, pretrained_w=0):
    """Swin V2's continuous-position-bias input for a `window_h x window_w` window.

    Every relative offset `(dy, dx)` from `-(M-1)` to `M-1`, divided per axis by
    `pretrained - 1` when a pretrained window is given (> 0), else by `M - 1` (not for a
    window of 1), times 8, then mapped to `sign(t) * log2(|t| + 1) / log2(8)`.

    Returns:
        float32 `((2*window_h - 1) * (2*window_w - 1), 2)`, rows in the order that
        `relative_position_index` addresses.
    """

    def axis(window, pretrained):
        offsets = ops.cast(ops.arange(1 - window, window, dtype="int32"), "float32")
        if pretrained > 0:
            return offsets / float(pretrained - 1)
        return offsets / ops.cast(ops.maximum(window - 1, 1), "float32")

    rows, cols = axis(window_h, pretrained_h), axis(window_w, pretrained_w)
    table = ops.stack(
        [
            ops.repeat(rows, ops.shape(cols)[0]),
            ops.tile(cols, [ops.shape(rows)[0]]),
        ],
        axis=-1,
    )
    table = table * 8.0
    return ops.sign(table) * ops.log2(ops.abs(table) + 1.0) / 3.0  # log2(8) = 3
