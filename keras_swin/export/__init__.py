"""Export: SavedModel (TF Serving layout, with an image and an encoded-bytes signature),
TFLite with builtin ops only, and ONNX and OpenVINO IR through Keras's exporters.
TensorFlow-specific code lives here and in `keras_swin.data`."""

from keras_swin.export.common import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_MAX_PIXELS,
    MAX_IMAGE_SIZE,
    check_image_model,
    check_images,
    has_fixed_size,
    is_detector,
    is_quantized,
    is_segmenter,
    named_outputs,
    segmentation_logits,
    serving_image_size,
)
from keras_swin.export.decoding import decode_images
from keras_swin.export.files import class_names_beside, load_images_file, load_model_file
from keras_swin.export.onnx import (
    ONNX_EXTRA,
    ONNX_OPSET,
    ONNX_PACKAGES,
    compare_outputs,
    missing_packages,
    onnx_session,
    run_onnx,
    to_onnx,
)
from keras_swin.export.openvino import OPENVINO_EXTRA, OPENVINO_PACKAGES, openvino_model, run_openvino, to_openvino
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
    "ONNX_EXTRA",
    "ONNX_OPSET",
    "ONNX_PACKAGES",
    "OPENVINO_EXTRA",
    "OPENVINO_PACKAGES",
    "QUANTIZATIONS",
    "check_image_model",
    "check_images",
    "check_name",
    "class_names_beside",
    "compare_outputs",
    "compare_tflite",
    "decode_images",
    "has_fixed_size",
    "is_quantized",
    "is_detector",
    "is_segmenter",
    "load_images_file",
    "load_model_file",
    "missing_packages",
    "named_outputs",
    "onnx_session",
    "openvino_model",
    "run_onnx",
    "run_openvino",
    "run_tflite",
    "segmentation_logits",
    "serving_image_size",
    "tflite_op_names",
    "to_saved_model",
    "to_onnx",
    "to_openvino",
    "to_tflite",
]
