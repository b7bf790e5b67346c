"""Export to TFLite with builtin ops only (float32, float16, dynamic-range int8, full int8), and
running a `.tflite` file in the LiteRT interpreter."""

import os

import numpy as np
import tensorflow as tf

from keras_swin.export.common import is_segmenter, segmentation_logits, serving_image_size

QUANTIZATIONS = ("none", "float16", "dynamic", "int8")


def _representative_dataset(representative_data, count=100):
    data = np.asarray(representative_data, dtype="float32")
    if data.ndim != 4 or data.shape[-1] != 3:
        raise ValueError(
            "`representative_data` must be images of shape (N, H, W, 3); received shape "
            f"{data.shape}."
        )

    def generate():
        for image in data[:count]:
            yield [image[None]]

    return generate


def to_tflite(model, path, quantize=None, representative_data=None, image_size=None):
    """Converts `model` to a `.tflite` file that uses TFLite builtin ops only.

    The input is float32 `(batch, H, W, 3)` pixels in [0, 255], with a resizable batch
    (`interpreter.resize_tensor_input`); the output is the model's output (a segmenter's
    main logits, without its auxiliary head).

    Args:
        model: a built Keras model.
        path: the `.tflite` file to write.
        quantize: None/"none" (float32), "float16", "dynamic" (dynamic-range int8 weights)
            or "int8" (full integer with float input and output; needs
            `representative_data`).
        representative_data: images `(N, H, W, 3)` for "int8" calibration.
        image_size: (height, width) for models built with a dynamic size (default 224).

    Returns:
        The flatbuffer size in bytes.
    """
    quantize = "none" if quantize is None else quantize
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"`quantize` must be one of {QUANTIZATIONS}; received quantize={quantize!r}.")
    if quantize == "int8" and representative_data is None:
        raise ValueError("quantize='int8' needs `representative_data` (images (N, H, W, 3)).")
    height, width = serving_image_size(model, image_size)
    if is_segmenter(model):
        model = segmentation_logits(model)
    function = tf.function(lambda images: model(images, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec((None, height, width, 3), tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize in ("float16", "dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        converter.representative_dataset = _representative_dataset(representative_data)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    flatbuffer = converter.convert()
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    os.makedirs(directory, exist_ok=True)
    with open(path, "wb") as f:
        f.write(flatbuffer)
    return len(flatbuffer)


def tflite_op_names(path):
    """The set of operator names in a `.tflite` file (builtins, or `Flex*`/custom names)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=os.fspath(path))
    return {op["op_name"] for op in interpreter._get_ops_details()}


def run_tflite(path, images, num_threads=None):
    """Runs a `.tflite` file on `images` `(N, H, W, 3)` in the LiteRT interpreter, with the
    batch resized to N; returns the first output as a NumPy array."""
    from ai_edge_litert.interpreter import Interpreter

    images = np.asarray(images, dtype="float32")
    interpreter = Interpreter(model_path=os.fspath(path), num_threads=num_threads)
    index = interpreter.get_input_details()[0]["index"]
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
    if is_segmenter(model):
        model = segmentation_logits(model)
    expected = np.asarray(model.predict(np.asarray(images, dtype="float32"), verbose=0), dtype="float32")
    found = run_tflite(path, images)
    return {
        "max_abs_diff": float(np.abs(found - expected).max()),
        "top1_agreement": float(np.mean(found.argmax(-1) == expected.argmax(-1))),
    }
