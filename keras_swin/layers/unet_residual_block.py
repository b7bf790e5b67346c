"""The residual conv block of nnU-Net and MONAI's UNETR decoders (MONAI's `UnetResBlock`)."""

import keras
from keras import ops

from keras_swin import ops as swin_ops
from keras_swin.layers.initializers import conv_kernel_initializer

NORMS = ("instance", "batch")


@keras.saving.register_keras_serializable(package="keras_swin")
class UnetResidualBlock(keras.layers.Layer):
    """conv -> norm -> LeakyReLU -> conv -> norm, plus the input, then LeakyReLU.

    The convolutions are `kernel_size x kernel_size`, stride 1, "same" padding, without
    bias, as in MONAI's `UnetResBlock`. When the channels change, the input goes through a
    1x1 conv and a norm of its own before the sum.

    Args:
        filters: int, output channels.
        kernel_size: int, side of the two main convolutions. Default 3.
        norm: "instance" or "batch". "instance" normalises each sample and channel over H
            and W without a learned scale or offset (PyTorch's `InstanceNorm2d` defaults,
            which MONAI's "instance" keeps; `ops.instance_normalize`, in float32); "batch"
            is BatchNorm with scale and offset (PyTorch's momentum 0.1 is Keras's 0.9).
            Default "instance".
        norm_epsilon: float. Default 1e-5.
        negative_slope: float, slope of the LeakyReLU below zero. Default 0.01.

    Input shape: `(B, H, W, C)`.
    Output shape: `(B, H, W, filters)`.
    """

    def __init__(self, filters, kernel_size=3, norm="instance", norm_epsilon=1e-5, negative_slope=0.01, **kwargs):
        super().__init__(**kwargs)
        if int(filters) < 1:
            raise ValueError(f"`filters` must be >= 1; received filters={filters}.")
        if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise ValueError(f"`kernel_size` must be an odd int >= 1; received kernel_size={kernel_size}.")
        if norm not in NORMS:
            raise ValueError(f"`norm` must be one of {NORMS}; received norm={norm!r}.")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.norm = norm
        self.norm_epsilon = float(norm_epsilon)
        self.negative_slope = float(negative_slope)

    def _conv(self, kernel_size, name):
        return keras.layers.Conv2D(
            self.filters,
            kernel_size,
            padding="same",
            use_bias=False,
            kernel_initializer=conv_kernel_initializer(),
            dtype=self.dtype_policy,
            name=name,
        )

    def _make_norm(self, name, shape):
        """A BatchNorm layer, or None for the instance norm (it has no weights)."""
        if self.norm != "batch":
            return None
        norm = keras.layers.BatchNormalization(
            epsilon=self.norm_epsilon, momentum=0.9, dtype=self.dtype_policy, name=name
        )
        norm.build(shape)
        return norm

    def _normalize(self, x, norm, training):
        if norm is None:
            return swin_ops.instance_normalize(x, self.norm_epsilon)
        return norm(x, training=training)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "UnetResidualBlock expects a 4D input (batch, height, width, channels) with known "
                f"channels; received shape {tuple(input_shape)}."
            )
        channels = input_shape[-1]
        self.input_spec = keras.InputSpec(ndim=4, axes={-1: channels})
        output_shape = self.compute_output_shape(input_shape)
        self.conv1 = self._conv(self.kernel_size, "conv1")
        self.conv1.build(input_shape)
        self.norm1 = self._make_norm("norm1", output_shape)
        self.conv2 = self._conv(self.kernel_size, "conv2")
        self.conv2.build(output_shape)
        self.norm2 = self._make_norm("norm2", output_shape)
        # The input's own conv and norm, where the channels change.
        self.conv3 = self.norm3 = None
        if channels != self.filters:
            self.conv3 = self._conv(1, "conv3")
            self.conv3.build(input_shape)
            self.norm3 = self._make_norm("norm3", output_shape)

    def call(self, x, training=None):
        out = self._normalize(self.conv1(x), self.norm1, training)
        out = self._normalize(self.conv2(ops.leaky_relu(out, self.negative_slope)), self.norm2, training)
        residual = x if self.conv3 is None else self._normalize(self.conv3(x), self.norm3, training)
        return ops.leaky_relu(out + residual, self.negative_slope)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "norm": self.norm,
            "norm_epsilon": self.norm_epsilon,
            "negative_slope": self.negative_slope,
        }
