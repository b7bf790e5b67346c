"""Patch embedding: non-overlapping patches projected to `embed_dim` channels."""

import keras

from keras_swin import ops as swin_ops
from keras_swin.layers.initializers import conv_bias_initializer, conv_kernel_initializer


@keras.saving.register_keras_serializable(package="keras_swin")
class PatchEmbedding(keras.layers.Layer):
    """Splits an image into `patch_size x patch_size` patches, projects each to
    `embed_dim` channels with a strided convolution (with bias) and applies LayerNorm.
    The convolution starts as in the official code (PyTorch's default `Conv2d` init).

    H and W are zero-padded at the bottom and right up to a multiple of `patch_size`.

    Args:
        patch_size: int, patch side in pixels. Default 4.
        embed_dim: int, output channels C. Default 96.
        use_norm: bool, apply LayerNorm after the projection. Default True.
        norm_epsilon: float, LayerNorm epsilon. Default 1e-5.

    Input shape: `(B, H, W, channels)`.
    Output shape: `(B, ceil(H / patch_size), ceil(W / patch_size), embed_dim)`.
    """

    def __init__(self, patch_size=4, embed_dim=96, use_norm=True, norm_epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        if int(patch_size) < 1:
            raise ValueError(f"`patch_size` must be >= 1; received patch_size={patch_size}.")
        if int(embed_dim) < 1:
            raise ValueError(f"`embed_dim` must be >= 1; received embed_dim={embed_dim}.")
        self.patch_size = int(patch_size)
        self.embed_dim = int(embed_dim)
        self.use_norm = bool(use_norm)
        self.norm_epsilon = float(norm_epsilon)
        self.projection = keras.layers.Conv2D(
            self.embed_dim,
            self.patch_size,
            strides=self.patch_size,
            padding="valid",
            kernel_initializer=conv_kernel_initializer(),
            dtype=self.dtype_policy,
            name="projection",
        )
        self.norm = (
            keras.layers.LayerNormalization(
                epsilon=self.norm_epsilon, dtype=self.dtype_policy, name="norm"
            )
            if self.use_norm
            else None
        )

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "PatchEmbedding expects a 4D input (batch, height, width, channels); "
                f"received shape {tuple(input_shape)}."
            )
        if input_shape[-1] is None:
            raise ValueError(
                "PatchEmbedding needs a known channel count; received shape "
                f"{tuple(input_shape)}."
            )
        self.input_spec = keras.InputSpec(ndim=4, axes={-1: input_shape[-1]})
        padded = self._padded_shape(input_shape)
        # The bias bound depends on fan_in, known only now.
        self.projection.bias_initializer = conv_bias_initializer(
            self.patch_size**2 * input_shape[-1]
        )
        self.projection.build(padded)
        if self.norm is not None:
            self.norm.build(self.compute_output_shape(input_shape))

    def _padded_shape(self, input_shape):
        def up(size):
            return None if size is None else -(-size // self.patch_size) * self.patch_size

        return (input_shape[0], up(input_shape[1]), up(input_shape[2]), input_shape[3])

    def call(self, images):
        x = swin_ops.pad_to_multiple(images, self.patch_size, self.patch_size)
        x = self.projection(x)
        if self.norm is not None:
            x = self.norm(x)
        return x

    def compute_output_shape(self, input_shape):
        def down(size):
            return None if size is None else -(-size // self.patch_size)

        return (input_shape[0], down(input_shape[1]), down(input_shape[2]), self.embed_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
            "use_norm": self.use_norm,
            "norm_epsilon": self.norm_epsilon,
        }
