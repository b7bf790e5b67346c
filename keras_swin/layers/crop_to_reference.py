"""Cropping of one map to the size of another, decided at run time."""

import keras

from keras_swin import ops as swin_ops


@keras.saving.register_keras_serializable(package="keras_swin")
class CropToReference(keras.layers.Layer):
    """Keeps the top-left `H x W` of `x`, H and W being the height and width of
    `reference`: it undoes `PadToMultiple` on a model's output. The size is read at run
    time (a strided slice, a TFLite builtin), so one graph serves every input size.

    Input: a list `[x, reference]`, `x` of shape `(B, h, w, C)` with `h >= H`, `w >= W`, and
        `reference` of shape `(B, H, W, ...)`.
    Output shape: `(B, H, W, C)`.
    """

    def call(self, inputs):
        x, reference = inputs
        height, width = swin_ops.spatial_shape(reference)
        return x[:, :height, :width]

    def compute_output_shape(self, input_shape):
        x_shape, reference_shape = input_shape
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[-1])
