"""Swin V2 patch merging: the reduction comes before the norm."""

import keras

from keras_swin.layers.patch_merging import PatchMerging


@keras.saving.register_keras_serializable(package="keras_swin")
class PatchMergingV2(PatchMerging):
    """Concatenates each 2x2 neighbourhood into 4C channels (the official order, as in
    `PatchMerging`), applies a bias-free Dense to `output_dim` (2C by default), **then**
    LayerNorm over the output (V1 norms the 4C input before the reduction).

    Args:
        output_dim: int or None, output channels; None means 2C. Default None.
        norm_epsilon: float, LayerNorm epsilon. Default 1e-5.

    Input shape: `(B, H, W, C)`.
    Output shape: `(B, ceil(H / 2), ceil(W / 2), output_dim)`.
    """

    def _norm_channels(self, channels):
        return self.output_dim or 2 * channels

    def call(self, x):
        return self.norm(self.reduction(self.gather(x)))
