"""Patch merging: halves the resolution and doubles the channels between stages."""

import keras
from keras import ops

from keras_swin import ops as swin_ops
from keras_swin.layers.initializers import dense_kernel_initializer


@keras.saving.register_keras_serializable(package="keras_swin")
class PatchMerging(keras.layers.Layer):
    """Concatenates each 2x2 neighbourhood into 4C channels, applies LayerNorm(4C) and a
    bias-free Dense to `output_dim` (2C by default).

    The concatenation order is the official one: `[0::2, 0::2]`, `[1::2, 0::2]`,
    `[0::2, 1::2]`, `[1::2, 1::2]` (row offset varies fastest). Odd H or W are zero-padded
    at the bottom or right first.

    Args:
        output_dim: int or None, output channels; None means 2C. Default None.
        norm_epsilon: float, LayerNorm epsilon. Default 1e-5.

    Input shape: `(B, H, W, C)`.
    Output shape: `(B, ceil(H / 2), ceil(W / 2), output_dim)`.
    """

    def __init__(self, output_dim=None, norm_epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        if output_dim is not None and int(output_dim) < 1:
            raise ValueError(f"`output_dim` must be >= 1 or None; received output_dim={output_dim}.")
        self.output_dim = None if output_dim is None else int(output_dim)
        self.norm_epsilon = float(norm_epsilon)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "PatchMerging expects a 4D input (batch, height, width, channels) with known "
                f"channels; received shape {tuple(input_shape)}."
            )
        channels = input_shape[-1]
        self.input_spec = keras.InputSpec(ndim=4, axes={-1: channels})
        self._output_channels = self.output_dim or 2 * channels
        self.norm = keras.layers.LayerNormalization(
            epsilon=self.norm_epsilon, dtype=self.dtype_policy, name="norm"
        )
        self.norm.build((None, None, None, self._norm_channels(channels)))
        self.reduction = keras.layers.Dense(
            self._output_channels,
            use_bias=False,
            kernel_initializer=dense_kernel_initializer(),
            dtype=self.dtype_policy,
            name="reduction",
        )
        self.reduction.build((None, None, None, 4 * channels))

    def _norm_channels(self, channels):
        """Channels the LayerNorm sees: the 4C gathered ones (V1)."""
        return 4 * channels

    def gather(self, x):
        """`(B, H, W, C)` -> `(B, ceil(H/2), ceil(W/2), 4C)` in the official order."""
        x = swin_ops.pad_to_multiple(x, 2, 2)
        height, width = swin_ops.spatial_shape(x)
        channels = ops.shape(x)[3]
        # (B, H/2, 2[row], W/2, 2[col], C) -> (B, H/2, W/2, col, row, C): row varies fastest,
        # which is the official order x0, x1, x2, x3.
        x = ops.reshape(x, (-1, height // 2, 2, width // 2, 2, channels))
        x = ops.transpose(x, (0, 1, 3, 4, 2, 5))
        return ops.reshape(x, (-1, height // 2, width // 2, 4 * channels))

    def call(self, x):
        return self.reduction(self.norm(self.gather(x)))

    def compute_output_shape(self, input_shape):
        def half(size):
            return None if size is None else -(-size // 2)

        channels = self.output_dim or 2 * input_shape[-1]
        return (input_shape[0], half(input_shape[1]), half(input_shape[2]), channels)

    def get_config(self):
        return {
            **super().get_config(),
            "output_dim": self.output_dim,
            "norm_epsilon": self.norm_epsilon,
        }
