"""Initialisers of the official Swin code: trunc_normal(0.02) weights, zero biases."""

import keras


def dense_kernel_initializer():
    return keras.initializers.TruncatedNormal(stddev=0.02)
