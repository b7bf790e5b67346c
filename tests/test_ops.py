"""The pure helpers of keras_swin.ops against independent definitions: NumPy written from
the papers and the official code, PyTorch's `torch.nn.functional`, Hugging Face's Swinv2 and
the brute-force shifted-window definitions of tests/brute_force.py.

Each helper also takes its sizes as scalar int tensors (the dynamic shapes of one TensorFlow
graph for every input size); those cases run in a `tf.function` whose sizes are unknown at
trace time and must give what the static sizes give.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch

from brute_force import brute_force_mask
from harness import random_inputs
from keras_swin import ops as swin_ops
from reference import hf_v2_reference, torch_adaptive_average_pool, torch_resize_bilinear


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def dynamic(function, *sizes):
    """`function(*sizes)` in a graph in which the sizes are int32 tensors of unknown value."""
    traced = tf.function(function, input_signature=[tf.TensorSpec((), tf.int32)] * len(sizes))
    return traced(*(tf.constant(s, tf.int32) for s in sizes)).numpy()


# --------------------------------------------------------------------------- windows


def windows_by_definition(x, window_h, window_w):
    """Every window of every image, in row-major window order, tokens row-major."""
    batch, height, width, channels = x.shape
    return np.stack([
        x[b, top:top + window_h, left:left + window_w].reshape(-1, channels)
        for b in range(batch)
        for top in range(0, height, window_h)
        for left in range(0, width, window_w)
    ])


@pytest.mark.parametrize("shape, window", [((2, 6, 8, 3), (3, 4)), ((1, 8, 8, 2), (4, 4)), ((3, 5, 7, 1), (5, 7)),
                                           ((2, 4, 6, 2), (1, 2))])
def test_window_partition_and_reverse(shape, window):
    x = random_inputs(shape)
    windows = numpy(swin_ops.window_partition(x, *window))
    np.testing.assert_array_equal(windows, windows_by_definition(x, *window))
    np.testing.assert_array_equal(numpy(swin_ops.window_reverse(windows, *window, *shape[1:3])), x)


def test_window_partition_with_sizes_known_at_run_time():
    x = random_inputs((2, 6, 8, 3))

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 3))] + [tf.TensorSpec((), tf.int32)] * 2)
    def round_trip(images, window_h, window_w):
        windows = swin_ops.window_partition(images, window_h, window_w)
        height, width = swin_ops.spatial_shape(images)
        return windows, swin_ops.window_reverse(windows, window_h, window_w, height, width)

    windows, restored = round_trip(x, tf.constant(3), tf.constant(4))
    np.testing.assert_array_equal(windows.numpy(), windows_by_definition(x, 3, 4))
    np.testing.assert_array_equal(restored.numpy(), x)


@pytest.mark.parametrize("shift", [0, 1, 3, 6])
def test_cyclic_shift_is_roll(shift):
    x = random_inputs((2, 7, 9, 3))
    shifted = numpy(swin_ops.cyclic_shift(x, shift))
    np.testing.assert_array_equal(shifted, np.roll(x, (-shift, -shift), axis=(1, 2)))
    np.testing.assert_array_equal(numpy(swin_ops.reverse_cyclic_shift(x, shift)), np.roll(x, (shift, shift), axis=(1, 2)))
    np.testing.assert_array_equal(numpy(swin_ops.reverse_cyclic_shift(shifted, shift)), x)


def test_cyclic_shift_with_a_shift_known_at_run_time():
    x = random_inputs((1, 7, 9, 2))

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 2)), tf.TensorSpec((), tf.int32)])
    def shift_both_ways(images, shift):
        return swin_ops.cyclic_shift(images, shift), swin_ops.reverse_cyclic_shift(images, shift)

    forward, backward = shift_both_ways(x, tf.constant(2))
    np.testing.assert_array_equal(forward.numpy(), np.roll(x, (-2, -2), axis=(1, 2)))
    np.testing.assert_array_equal(backward.numpy(), np.roll(x, (2, 2), axis=(1, 2)))


@pytest.mark.parametrize("shape, multiple", [((1, 5, 9, 2), (4, 4)), ((2, 8, 8, 1), (4, 4)), ((1, 7, 3, 2), (3, 5)),
                                             ((1, 1, 1, 1), (7, 2))])
def test_pad_to_multiple_pads_bottom_and_right_with_zeros(shape, multiple):
    x = random_inputs(shape)
    pad_h, pad_w = (-shape[1]) % multiple[0], (-shape[2]) % multiple[1]
    expected = np.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
    np.testing.assert_array_equal(numpy(swin_ops.pad_to_multiple(x, *multiple)), expected)

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, shape[3]))] + [tf.TensorSpec((), tf.int32)] * 2)
    def pad(images, multiple_h, multiple_w):
        return swin_ops.pad_to_multiple(images, multiple_h, multiple_w)

    np.testing.assert_array_equal(pad(x, tf.constant(multiple[0]), tf.constant(multiple[1])).numpy(), expected)


# --------------------------------------------------------------------------- position bias and masks


def official_relative_position_index(window_h, window_w):
    """The official Swin code (`WindowAttention.__init__`), in NumPy."""
    coords = np.stack(np.meshgrid(np.arange(window_h), np.arange(window_w), indexing="ij"))
    flat = coords.reshape(2, -1)
    relative = (flat[:, :, None] - flat[:, None, :]).transpose(1, 2, 0)
    relative[:, :, 0] += window_h - 1
    relative[:, :, 1] += window_w - 1
    relative[:, :, 0] *= 2 * window_w - 1
    return relative.sum(-1)


@pytest.mark.parametrize("window", [(1, 1), (2, 3), (4, 4), (7, 7), (5, 2)])
def test_relative_position_index_is_the_official_one(window):
    index = numpy(swin_ops.relative_position_index(*window))
    assert index.dtype == np.int32
    np.testing.assert_array_equal(index, official_relative_position_index(*window))
    np.testing.assert_array_equal(dynamic(swin_ops.relative_position_index, *window), index)


@pytest.mark.parametrize("window, table", [((3, 3), (7, 7)), ((2, 5), (4, 6)), ((4, 4), (4, 4))])
def test_a_smaller_window_reads_each_offset_from_the_larger_table(window, table):
    """Row of offset (dy, dx) in a table made for `table`: (dy + Th - 1) * (2 Tw - 1) + dx + Tw - 1."""
    index = numpy(swin_ops.relative_position_index(*window, *table))
    tokens = [(r, c) for r in range(window[0]) for c in range(window[1])]
    expected = np.array([[(ri - rj + table[0] - 1) * (2 * table[1] - 1) + (ci - cj + table[1] - 1)
                          for rj, cj in tokens] for ri, ci in tokens])
    np.testing.assert_array_equal(index, expected)
    assert index.max() < (2 * table[0] - 1) * (2 * table[1] - 1)
    np.testing.assert_array_equal(dynamic(swin_ops.relative_position_index, *window, *table), index)


@pytest.mark.parametrize(
    "height, width, window, shift",
    [(8, 8, 4, 2), (14, 21, 7, 3), (12, 6, 3, 1), (10, 15, 5, 2), (8, 12, 4, 3)],
)
def test_shifted_window_mask_matches_brute_force(height, width, window, shift):
    mask = numpy(swin_ops.shifted_window_mask(height, width, window, shift))
    expected = brute_force_mask(height, width, window, shift)
    np.testing.assert_array_equal(mask, expected)
    assert set(np.unique(mask)) <= {0.0, swin_ops.MASK_VALUE}
    np.testing.assert_array_equal(dynamic(swin_ops.shifted_window_mask, height, width, window, shift), expected)


def test_shifted_window_mask_is_zero_without_shift():
    mask = numpy(swin_ops.shifted_window_mask(8, 12, 4, 0))
    assert mask.shape == (6, 16, 16) and not mask.any()


def effective_window_by_definition(height, width, window_size, shift_size):
    """The official SwinTransformerBlock: a map whose shorter side fits in one window is one
    window of that side, unshifted."""
    if min(height, width) <= window_size:
        return min(height, width), 0
    return window_size, shift_size


@pytest.mark.parametrize("height, width", [(56, 56), (7, 7), (3, 10), (10, 3), (8, 9), (1, 1), (6, 100)])
def test_effective_window(height, width):
    expected = effective_window_by_definition(height, width, 7, 3)
    assert swin_ops.effective_window(height, width, 7, 3) == expected
    got = dynamic(lambda h, w: keras.ops.stack(swin_ops.effective_window(h, w, 7, 3)), height, width)
    assert tuple(got) == expected


# --------------------------------------------------------------------------- resizing and pooling

SIZE_PAIRS = [(5, 13), (13, 5), (1, 3), (9, 2), (16, 64), (7, 25), (6, 6), (3, 1)]


def torch_matrix(function, in_size):
    """The matrix of a linear 1-D torch op: its outputs for every basis vector."""
    basis = torch.eye(in_size, dtype=torch.float64)[None]  # (1, channels = in_size, length = in_size)
    return function(basis)[0].numpy().T


@pytest.mark.parametrize("in_size, out_size", SIZE_PAIRS)
def test_bilinear_matrix_is_torch_linear_interpolation(in_size, out_size):
    expected = torch_matrix(
        lambda t: torch.nn.functional.interpolate(t, size=out_size, mode="linear", align_corners=False), in_size
    )
    np.testing.assert_allclose(numpy(swin_ops.bilinear_matrix(in_size, out_size)), expected, atol=1e-6)
    np.testing.assert_allclose(dynamic(swin_ops.bilinear_matrix, in_size, out_size), expected, atol=1e-6)


@pytest.mark.parametrize("in_size, bins", [(5, 1), (5, 2), (7, 3), (13, 6), (2, 3), (1, 6), (6, 6)])
def test_adaptive_pool_matrix_is_torch_adaptive_average_pooling(in_size, bins):
    expected = torch_matrix(lambda t: torch.nn.functional.adaptive_avg_pool1d(t, bins), in_size)
    np.testing.assert_allclose(numpy(swin_ops.adaptive_pool_matrix(in_size, bins)), expected, atol=1e-6)
    np.testing.assert_allclose(dynamic(swin_ops.adaptive_pool_matrix, in_size, bins), expected, atol=1e-6)


RESIZES = [((5, 7), (13, 19)), ((13, 19), (5, 7)), ((1, 9), (3, 2)), ((16, 16), (64, 64)), ((7, 11), (25, 41)),
           ((6, 8), (6, 8))]


@pytest.mark.parametrize("in_size, out_size", RESIZES)
def test_resize_bilinear_matches_torch(in_size, out_size):
    x = random_inputs((2,) + in_size + (4,))
    expected = torch_resize_bilinear(x, out_size)
    np.testing.assert_allclose(numpy(swin_ops.resize_bilinear(x, *out_size)), expected, atol=1e-5)

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 4))] + [tf.TensorSpec((), tf.int32)] * 2)
    def resize(images, height, width):
        return swin_ops.resize_bilinear(images, height, width)

    np.testing.assert_allclose(resize(x, tf.constant(out_size[0]), tf.constant(out_size[1])).numpy(), expected,
                               atol=1e-5)


@pytest.mark.parametrize("size", [(5, 7), (13, 19), (1, 9), (6, 6), (2, 3)])
@pytest.mark.parametrize("bins", [1, 2, 3, 6])
def test_adaptive_average_pool_matches_torch(size, bins):
    x = random_inputs((2,) + size + (3,))
    expected = torch_adaptive_average_pool(x, bins)
    np.testing.assert_allclose(numpy(swin_ops.adaptive_average_pool(x, bins)), expected, atol=1e-6)


# --------------------------------------------------------------------------- Swin V2 coordinates


def log_spaced_by_definition(window_h, window_w, pretrained_h=0, pretrained_w=0):
    """The official Swin V2 `relative_coords_table` (WindowAttention.__init__), in NumPy."""
    rows = np.arange(-(window_h - 1), window_h, dtype=np.float64)
    cols = np.arange(-(window_w - 1), window_w, dtype=np.float64)
    table = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1)
    if pretrained_h > 0:
        table[..., 0] /= pretrained_h - 1
        table[..., 1] /= pretrained_w - 1
    else:
        table[..., 0] /= window_h - 1
        table[..., 1] /= window_w - 1
    table *= 8
    return (np.sign(table) * np.log2(np.abs(table) + 1.0) / np.log2(8)).reshape(-1, 2)


@pytest.mark.parametrize("window,pretrained", [(8, 0), (5, 0), (16, 12), (1, 0), (8, 6)])
def test_log_spaced_coordinates_match_huggingface(window, pretrained):
    hf = hf_v2_reference(embed_dim=8, depths=(1,), num_heads=(1,), window_size=window,
                         pretrained_window_sizes=(pretrained,), image_size=4 * window)
    expected = hf.swinv2.encoder.layers[0].blocks[0].attention.self.relative_coords_table.numpy()
    got = numpy(swin_ops.log_spaced_coordinates(window, window, pretrained, pretrained))
    np.testing.assert_allclose(got, expected.reshape(-1, 2), atol=1e-6)


@pytest.mark.parametrize("window, pretrained", [((3, 5), (0, 0)), ((4, 7), (6, 12)), ((2, 2), (0, 0))])
def test_log_spaced_coordinates_on_non_square_windows(window, pretrained):
    got = numpy(swin_ops.log_spaced_coordinates(*window, *pretrained))
    assert got.shape == ((2 * window[0] - 1) * (2 * window[1] - 1), 2)
    np.testing.assert_allclose(got, log_spaced_by_definition(*window, *pretrained), atol=1e-6)
    # Row k is the offset that relative_position_index maps to k.
    index = numpy(swin_ops.relative_position_index(*window))
    np.testing.assert_array_equal(np.sign(got[index[0, -1]]), [-1, -1])  # first token to last: (-(h-1), -(w-1))
