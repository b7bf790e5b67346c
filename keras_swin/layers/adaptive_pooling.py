"""Adaptive average pooling with PyTorch's bins, for the pyramid pooling module."""

import keras

from keras_swin import ops as swin_ops


@keras.saving.register_keras_serializable(package="keras_swin")
class AdaptiveAveragePooling2D(keras.layers.Layer):
    """Averages an NHWC map over `output_size x output_size` bins at any input size.

    Bin i of n over a length L spans `[floor(i * L / n), ceil((i + 1) * L / n))`, as in
    PyTorch's `AdaptiveAvgPool2d`, so bins overlap when L is not a multiple of n and a
    map smaller than n repeats its pixels.

    Args:
        output_size: int >= 1, bins per side.

    Input shape: `(B, H, W, C)`.
    Output shape: `(B, output_size, output_size, C)`.
    """

    def __init__(self, output_size, **kwargs):
        super().__init__(**kwargs)
        if int(output_size) < 1:
            raise ValueError(f"`output_size` must be >= 1; received output_size={output_size}.")
        self.output_size = int(output_size)
        self.input_spec = keras.InputSpec(ndim=4)

    def call(self, x):
        return swin_ops.adaptive_average_pool(x, self.output_size)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_size, self.output_size, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}
