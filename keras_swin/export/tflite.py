"""Export to TFLite with builtin ops only (float32, float16, dynamic-range int8, full int8), and
running a `.tflite` file in the LiteRT interpreter."""

import io
import os

import numpy as np
import tensorflow as tf

from keras_swin.export.common import (
    check_image_model,
    check_images,
    image_channels,
    is_quantized,
    is_segmenter,
    segmentation_logits,
    serving_image_size,
    write_bytes,
)
from keras_swin.export.detection import anchors_path, raw_outputs
from keras_swin.models.retinanet import anchor_boxes, is_detector

QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
CALIBRATION_IMAGES = 100  # the first images of `representative_data` that calibrate "int8"


def _representative_dataset(data):
    def generate():
        for image in data:
            yield [image[None]]

    return generate


def to_tflite(model, path, quantize=None, representative_data=None, image_size=None):
    """Converts `model` to a `.tflite` file that uses TFLite builtin ops only.

    The input is float32 `(batch, H, W, 3)` pixels in [0, 255] (a SwinUNETR built for other
    channels: `(batch, H, W, in_channels)`), with a resizable batch
    (`interpreter.resize_tensor_input`); the output is the model's output (a segmenter's
    main logits, without its auxiliary head; a detector's raw head `(batch, anchors, 4 +
    classes)`, box deltas then logits, with its anchors written to `<name>_anchors.npy`
    beside the file: keras-hub's decoder does not lower to builtins, docs/detection.md).
    The file is written under a temporary name and renamed into place: a failed or killed
    export leaves no `.tflite` behind.

    Args:
        model: a built Keras model.
        path: the `.tflite` file to write.
        quantize: None/"none" (float32), "float16", "dynamic" (dynamic-range int8 weights)
            or "int8" (full integer with float input and output; needs
            `representative_data`).
        representative_data: for "int8", real-valued images `(N, H, W, 3)` at the export
            size, N >= 1, finite; the first 100 calibrate. A ValueError names what is wrong
            (before any conversion). Unused by the other quantizations.
        image_size: (height, width) for models built with a dynamic size (default 224).

    Returns:
        The flatbuffer size in bytes.
    """
    quantize = "none" if quantize is None else quantize
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"`quantize` must be one of {QUANTIZATIONS}; received quantize={quantize!r}.")
    check_image_model(model)
    if is_quantized(model):
        # Keras's int8 Dense is an int8 x int8 -> int32 matmul, which has no TFLite builtin.
        raise ValueError(f"TFLite export cannot take a quantized model ({model.name} went through "
                         "model.quantize): export the float model with quantize='dynamic' or 'int8', "
                         "TFLite's own int8 (docs/deployment.md).")
    height, width = serving_image_size(model, image_size)
    channels = image_channels(model)
    calibration = None
    if quantize == "int8":
        if representative_data is None:
            raise ValueError("quantize='int8' needs `representative_data` (images (N, H, W, 3)).")
        calibration = check_images(
            np.asarray(representative_data)[:CALIBRATION_IMAGES], (height, width), "representative_data", channels
        )
    if is_segmenter(model):
        model = segmentation_logits(model)
    function = tf.function(lambda images: model(images, training=False))
    if is_detector(model):
        # keras-hub's decoder has one op with no TFLite builtin (keras.ops.argmax lowers to
        # tf.BitwiseAnd), so the file holds the raw head and the anchors go beside it.
        function = tf.function(raw_outputs(model))
        write_bytes(anchors_path(path), _npy(anchor_boxes(model)), "the detector's anchors")
    concrete = function.get_concrete_function(tf.TensorSpec((None, height, width, channels), tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize in ("float16", "dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        converter.representative_dataset = _representative_dataset(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    flatbuffer = converter.convert()
    write_bytes(path, flatbuffer, "the TFLite model")
    return len(flatbuffer)


def tflite_op_names(path):
    """The set of operator names in a `.tflite` file (builtins, or `Flex*`/custom names)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = _interpreter(Interpreter, path)
    return {op["op_name"] for op in interpreter._get_ops_details()}


def _interpreter(interpreter_class, path, num_threads=None):
    """The LiteRT interpreter of `path`; an OSError naming the path when it is no `.tflite` file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise OSError(f"No TFLite file at '{path}'.")
    try:
        return interpreter_class(model_path=path, num_threads=num_threads)
    except (ValueError, RuntimeError) as error:
        raise OSError(f"'{path}' is not a readable .tflite file: {error}") from error


def run_tflite(path, images, num_threads=None):
    """Runs a `.tflite` file on `images` `(N, H, W, 3)` in the LiteRT interpreter, with the
    batch resized to N; returns the first output as a NumPy array."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = _interpreter(Interpreter, path, num_threads)
    images = check_images(images, None, channels=int(interpreter.get_input_details()[0]["shape"][-1]))
    details = interpreter.get_input_details()[0]
    index = details["index"]
    expected = tuple(int(s) for s in details["shape_signature"][1:])
    if any(e not in (-1, f) for e, f in zip(expected, images.shape[1:])):
        shown = ", ".join("H W C".split()[i] if e == -1 else str(e) for i, e in enumerate(expected))
        raise ValueError(f"`images` must be of shape (N, {shown}) for '{path}'; received shape {images.shape}.")
    interpreter.resize_tensor_input(index, images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, images)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def compare_tflite(model, path, images):
    """How a `.tflite` export agrees with the Keras model on `images`.

    Returns:
        `{"max_abs_diff": float, "top1_agreement": float}`; top-1 is over the last axis.
    """
    images = check_images(images, None, channels=image_channels(model))
    if is_segmenter(model):
        model = segmentation_logits(model)
    if is_detector(model):  # the raw head; top-1 over the class logits
        expected = np.asarray(raw_outputs(model)(tf.constant(images)))
        found = run_tflite(path, images)
        return {"max_abs_diff": float(np.abs(found - expected).max()),
                "top1_agreement": float(np.mean(found[..., 4:].argmax(-1) == expected[..., 4:].argmax(-1)))}
    expected = np.asarray(model.predict(images, verbose=0), dtype="float32")
    found = run_tflite(path, images)
    return {
        "max_abs_diff": float(np.abs(found - expected).max()),
        "top1_agreement": float(np.mean(found.argmax(-1) == expected.argmax(-1))),
    }



def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
