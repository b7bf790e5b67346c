"""Datasets and tf.data pipelines, one module per task: `classification` (digits, folders of
class sub-folders, tensorflow-datasets) and `segmentation` (digit scenes, image/mask folders,
tensorflow-datasets). TensorFlow-specific code lives here and in `keras_swin.export`."""

from keras_swin.data import classification, segmentation

__all__ = ["classification", "segmentation"]
