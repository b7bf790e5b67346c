"""Pure `keras.ops` helpers for Swin: window partition/reverse, padding, cyclic shift,
relative position index and the shifted-window mask.

Every helper accepts sizes as Python ints (static shapes, constant-folded by the graph
compilers) or as scalar integer tensors (dynamic shapes under TensorFlow), so one graph
serves every input size. Only ops that lower to TFLite builtins are used: the cyclic shift
is two slices and a concatenation rather than `roll`.
"""

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

    Equivalent to `roll(x, (-shift, -shift), axis=(1, 2))`, written as slices and a
    concatenation so that it lowers to TFLite builtins. Use `reverse_cyclic_shift` to undo.
    """
    x = ops.concatenate([x[:, shift:], x[:, :shift]], axis=1)
    return ops.concatenate([x[:, :, shift:], x[:, :, :shift]], axis=2)


def reverse_cyclic_shift(x, shift):
    """Rolls an NHWC tensor by `+shift` along H and W; undoes `cyclic_shift`."""
    height, width = spatial_shape(x)
    x = ops.concatenate([x[:, height - shift :], x[:, : height - shift]], axis=1)
    return ops.concatenate([x[:, :, width - shift :], x[:, :, : width - shift]], axis=2)


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
    rows = ops.repeat(ops.arange(window_h, dtype="int32"), window_w)
    cols = ops.tile(ops.arange(window_w, dtype="int32"), [window_h])
    delta_rows = rows[:, None] - rows[None, :] + (table_window_h - 1)
    delta_cols = cols[:, None] - cols[None, :] + (table_window_w - 1)
    return delta_rows * (2 * table_window_w - 1) + delta_cols


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
    all zeros.

    Returns:
        float32 `(num_windows, window * window, window * window)` with values 0 or -100.
    """
    region = _region_ids(height, window, shift)[:, None] * 3 + _region_ids(
        width, window, shift
    )[None, :]
    region = window_partition(region[None, :, :, None], window, window)[..., 0]
    different = ops.not_equal(region[:, :, None], region[:, None, :])
    return ops.where(different, MASK_VALUE, 0.0)


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
