"""Keras's LayerNormalization, written in the textbook order that exporters fuse (OpenVINO's MVN)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_swin")
class LayerNormalization(keras.layers.LayerNormalization):
    """`keras.layers.LayerNormalization` (same arguments, weights and statistics) that
    normalises the last axis as `(x - mean) / sqrt(mean((x - mean) ** 2) + epsilon) * gamma
    + beta`.

    Keras computes the same thing as `x * (rsqrt(variance + epsilon) * gamma) + (beta -
    mean * ...)`, the form of TensorFlow's batch normalisation. This order is the textbook one
    that exporters' pattern matchers look for: OpenVINO's converter fuses it into its MVN op,
    after which SwinUNETR's OpenVINO logits came within 1e-4 of Keras (1.5e-4 with Keras's
    form; tests/test_export_onnx.py). ONNX Runtime fuses it into its LayerNormalization kernel
    in a small graph (Dense, norm, Dense), but not yet in the full models' graphs (not known
    why; see the closing note of 2026-12-02).

    The statistics are computed in float32 for float16 and bfloat16 inputs, as Keras's
    are. Other axes, `rms_scaling` and the PyTorch backend (where Keras calls torch's own
    kernel) take Keras's path.
    """

    def call(self, inputs):
        last_axis = len(inputs.shape) - 1
        axes = self.axis if isinstance(self.axis, (list, tuple)) else [self.axis]
        last_only = [a % (last_axis + 1) for a in axes] == [last_axis]
        if self.rms_scaling or keras.backend.backend() == "torch" or not last_only:
            return super().call(inputs)
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        # The axes as a list: a 1-D reduction constant. OpenVINO's converter fuses this
        # pattern into its MVN op and fails on a scalar axis ("Expected 1D tensor for the
        # 'axes' input").
        centred = x - ops.mean(x, axis=[-1], keepdims=True)
        variance = ops.mean(ops.power(centred, 2.0), axis=[-1], keepdims=True)
        outputs = centred / ops.sqrt(variance + self.epsilon)
        if self.gamma is not None:
            outputs = outputs * ops.cast(self.gamma, x.dtype)
        if self.beta is not None:
            outputs = outputs + ops.cast(self.beta, x.dtype)
        return ops.cast(outputs, self.compute_dtype)
