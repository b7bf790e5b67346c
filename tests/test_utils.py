"""Analytic FLOPs against the paper's table."""

import pytest

import keras_swin
from keras_swin.utils import flops


@pytest.mark.parametrize(
    "factory, size, window, paper_gflops",
    [
        (keras_swin.SwinT, 224, 7, 4.5),
        (keras_swin.SwinS, 224, 7, 8.7),
        (keras_swin.SwinB, 224, 7, 15.4),
        (keras_swin.SwinL, 224, 7, 34.5),
        (keras_swin.SwinB, 384, 12, 47.0),
    ],
)
def test_flops_match_the_paper(factory, size, window, paper_gflops):
    model = factory(window_size=window, input_shape=(size, size, 3))
    assert abs(flops(model, (size, size, 3)) / 1e9 - paper_gflops) <= 0.02 * paper_gflops


def test_flops_grow_linearly_with_pixels():
    model = keras_swin.SwinT(include_top=False)
    small, large = flops(model, (224, 224)), flops(model, (448, 448))
    assert 3.9 < large / small < 4.1


def test_flops_rejects_bad_shapes():
    with pytest.raises(ValueError, match="input_shape"):
        flops(keras_swin.SwinT(), (0, 224, 3))
