"""SwinBlock against the brute-force definition (the shift mask, shifts and windows on their
own: tests/test_ops.py)."""

import keras
import numpy as np
import pytest

from brute_force import swin_block
from harness import random_inputs
from keras_swin import SwinBlock


def _perturbed_block(channels, num_heads, window_size, shift_size, seed):
    block = SwinBlock(num_heads, window_size=window_size, shift_size=shift_size)
    block.build((None, None, None, channels))
    rng = np.random.RandomState(seed)
    for weight in block.weights:
        weight.assign(rng.standard_normal(weight.shape).astype("float32") * 0.3 + (
            1.0 if "gamma" in weight.path else 0.0
        ))
    numpy = lambda v: keras.ops.convert_to_numpy(v).astype("float64")  # noqa: E731
    weights = {
        "norm1_gamma": numpy(block.norm1.gamma), "norm1_beta": numpy(block.norm1.beta),
        "qkv_kernel": numpy(block.attention.qkv.kernel), "qkv_bias": numpy(block.attention.qkv.bias),
        "table": numpy(block.attention.relative_position_bias_table),
        "proj_kernel": numpy(block.attention.projection.kernel),
        "proj_bias": numpy(block.attention.projection.bias),
        "norm2_gamma": numpy(block.norm2.gamma), "norm2_beta": numpy(block.norm2.beta),
        "fc1_kernel": numpy(block.mlp_fc1.kernel), "fc1_bias": numpy(block.mlp_fc1.bias),
        "fc2_kernel": numpy(block.mlp_fc2.kernel), "fc2_bias": numpy(block.mlp_fc2.bias),
    }
    return block, weights


@pytest.mark.parametrize(
    "height, width, window, shift",
    [
        (8, 8, 4, 2),  # exact windows, shifted
        (9, 13, 4, 2),  # padded, shifted
        (8, 12, 4, 0),  # regular windows
        (5, 11, 7, 3),  # shorter side fits one window: window 5, no shift, central bias
        (3, 3, 7, 3),  # whole map is one small window
        (6, 17, 4, 2),  # padding the narrow side of a non-square map
    ],
)
def test_swin_block_matches_brute_force(height, width, window, shift):
    block, weights = _perturbed_block(8, 2, window, shift, seed=height * 31 + width)
    x = random_inputs((2, height, width, 8))
    expected = np.stack([swin_block(image.astype("float64"), weights, 2, window, shift) for image in x])
    np.testing.assert_allclose(block(x), expected, atol=1e-4)
    # The same block in a graph whose spatial size is only known at run time.
    inputs = keras.Input((None, None, 8))
    dynamic = keras.Model(inputs, block(inputs))
    np.testing.assert_allclose(dynamic.predict(x, verbose=0), expected, atol=1e-4)
