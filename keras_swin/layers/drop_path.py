"""Stochastic depth: drops the residual branch of whole samples during training."""

import keras
from keras import ops

from keras_swin.utils import check_rates


def apply_if_active(layer, x, training):
    """`layer(x, training=training)` for a dropout or stochastic-depth layer (one with a
    `rate`), and `x` itself where that call is the identity: outside training or at rate 0.

    The skipped call adds no op to any graph; in an eager call (op by op) it saves Keras's
    per-layer call machinery, six times in every Swin block."""
    if not training or not layer.rate:
        return x
    return layer(x, training=training)


@keras.saving.register_keras_serializable(package="keras_swin")
class DropPath(keras.layers.Layer):
    """Zeroes each sample's input with probability `rate` during training, scaling the
    kept samples by `1 / (1 - rate)`. The identity at inference.

    Args:
        rate: float in [0, 1), the drop probability.
        seed: optional int seed.

    Input and output shape: `(B, ...)`.
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        check_rates(rate=rate)
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if rate > 0 else None
        self.supports_masking = True
        # No weights to create. Built from the start, as Keras's Dropout is: a block that owns
        # it builds its sublayers from shapes without calling them, and one unbuilt layer
        # sends JAX's `predict` through an eager, op-by-op pass of the whole model first.
        self.built = True

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        batch = ops.shape(inputs)[0]
        noise_shape = (batch,) + (1,) * (len(inputs.shape) - 1)
        kept = keras.random.uniform(noise_shape, seed=self.seed_generator) < keep
        return ops.where(kept, inputs / ops.cast(keep, inputs.dtype), ops.zeros_like(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
