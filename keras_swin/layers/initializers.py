"""Initialisers of the official Swin code.

Linear layers (and the relative position bias table): trunc_normal(0.02) weights, zero
biases. The patch-embedding convolution keeps PyTorch's default `Conv2d` initialisation,
which the official code does not override: weights and bias uniform in
`[-1/sqrt(fan_in), 1/sqrt(fan_in)]`, `fan_in = patch_size**2 * in_channels`.
"""

import math

import keras


def dense_kernel_initializer():
    return keras.initializers.TruncatedNormal(stddev=0.02)


def conv_kernel_initializer():
    # PyTorch's kaiming_uniform(a=sqrt(5)): bound sqrt(3 * scale / fan_in) with scale 1/3.
    return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform")


def conv_bias_initializer(fan_in):
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)
