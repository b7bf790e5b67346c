"""Export: SavedModel (TF Serving layout, with an image and an encoded-bytes signature) and
TFLite with builtin ops only. TensorFlow-specific code lives here and in `keras_swin.data`."""

from keras_swin.export.common import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_MAX_PIXELS,
    MAX_IMAGE_SIZE,
    check_image_model,
    check_images,
    decode_images,
    is_segmenter,
    named_outputs,
    segmentation_logits,
    serving_image_size,
)
from keras_swin.export.files import class_names_beside, load_images_file, load_model_file
from keras_swin.export.savedmodel import BYTES_SIGNATURE, IMAGE_SIGNATURE, check_name, to_saved_model
from keras_swin.export.tflite import (
    CALIBRATION_IMAGES,
    QUANTIZATIONS,
    compare_tflite,
    run_tflite,
    tflite_op_names,
    to_tflite,
)

__all__ = [
    "BYTES_SIGNATURE",
    "CALIBRATION_IMAGES",
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SIGNATURE",
    "MAX_IMAGE_SIZE",
    "QUANTIZATIONS",
    "check_image_model",
    "check_images",
    "check_name",
    "class_names_beside",
    "compare_tflite",
    "decode_images",
    "is_segmenter",
    "load_images_file",
    "load_model_file",
    "named_outputs",
    "run_tflite",
    "segmentation_logits",
    "serving_image_size",
    "tflite_op_names",
    "to_saved_model",
    "to_tflite",
]
