"""Bilinear resizing of one map to the size of another, decided at run time."""

import keras

from keras_swin import ops as swin_ops


@keras.saving.register_keras_serializable(package="keras_swin")
class BilinearResize(keras.layers.Layer):
    """Resizes `x` bilinearly to the height and width of `reference`.

    Equal to PyTorch's `interpolate(mode="bilinear", align_corners=False)` at every size
    pair, including non-integer ratios. The size is read from `reference` at run time, so
    one graph serves every input size (an FPN's coarse level resized to the exact size of
    the finer one, or logits resized to the image).

    Input: a list `[x, reference]`, `x` of shape `(B, h, w, C)` and `reference` of shape
        `(B, H, W, ...)`.
    Output shape: `(B, H, W, C)`.
    """

    def call(self, inputs):
        x, reference = inputs
        height, width = swin_ops.spatial_shape(reference)
        return swin_ops.resize_bilinear(x, height, width)

    def compute_output_shape(self, input_shape):
        x_shape, reference_shape = input_shape
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[-1])
