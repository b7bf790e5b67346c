"""Export to SavedModel (TF Serving layout, with an image and an encoded-bytes signature)
and to TFLite with builtin ops only (float32, float16, dynamic-range int8, full int8).

TensorFlow-specific code lives here and in `keras_swin.data`, not in the layers.
"""

import os

import keras
import numpy as np
import tensorflow as tf

QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
DEFAULT_IMAGE_SIZE = 224
IMAGE_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"


def decode_images(encoded, image_size):
    """Decodes a batch of encoded images (JPEG, PNG, GIF, BMP) to RGB pixels in [0, 255].

    Grayscale and RGBA become RGB; each image is resized bilinearly to `image_size`, as
    the training pipeline does.

    Args:
        encoded: string tensor `(B,)`.
        image_size: (height, width).

    Returns:
        float32 `(B, height, width, 3)`; undecodable bytes raise InvalidArgumentError.
    """
    height, width = image_size

    def decode_one(data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image.set_shape((None, None, 3))
        return tf.image.resize(tf.cast(image, tf.float32), (height, width), method="bilinear")

    return tf.map_fn(
        decode_one, encoded, fn_output_signature=tf.TensorSpec((height, width, 3), tf.float32)
    )


def serving_image_size(model, image_size=None):
    """The (height, width) encoded images are resized to: the model's own input size when
    it is fixed, else `image_size` (default 224)."""
    height, width = model.input.shape[1:3]
    if height is not None and width is not None:
        return int(height), int(width)
    if image_size is None:
        image_size = DEFAULT_IMAGE_SIZE
    if isinstance(image_size, int):
        return image_size, image_size
    return tuple(int(s) for s in image_size)


def is_segmenter(model):
    """True for a `keras_swin.UPerNet` (per-pixel logits)."""
    from keras_swin.upernet import UPerNet

    return isinstance(model, UPerNet)


def segmentation_logits(model):
    """The segmenter as a model `images -> (B, H, W, classes)` logits: the main output,
    without the auxiliary head (a training-only output)."""
    logits = model.output["logits"] if isinstance(model.output, dict) else model.output
    return keras.Model(model.input, logits, name=model.name)


def named_outputs(model):
    """A function `images -> {name: tensor}` with the outputs users call: `logits` and
    `probabilities` for a classifier, `logits` and `class_map` (int32 `(B, H, W)`) for a
    segmenter, `features` and `P2..` for a backbone."""
    if is_segmenter(model):
        segmenter = segmentation_logits(model)

        def segment(images):
            logits = tf.cast(segmenter(images), tf.float32)
            return {"logits": logits, "class_map": tf.argmax(logits, axis=-1, output_type=tf.int32)}

        return segment
    if getattr(model, "include_top", False):
        head = model.get_layer("predictions")
        trunk = keras.Model(model.input, head.input)
        activation = keras.activations.get(model.classifier_activation)

        def classifier(images):
            pooled = tf.cast(trunk(images), tf.float32)
            logits = tf.matmul(pooled, head.kernel) + head.bias
            probabilities = (
                tf.nn.softmax(logits)
                if model.classifier_activation in (None, "linear", "softmax")
                else activation(logits)
            )
            return {"logits": logits, "probabilities": probabilities}

        return classifier
    pyramid = getattr(model, "pyramid_outputs", {})
    extractor = keras.Model(model.input, {"features": model.output, **pyramid})

    def backbone(images):
        return {name: tf.cast(value, tf.float32) for name, value in extractor(images).items()}

    return backbone


def to_saved_model(
    model, path, name=None, version=1, class_names=None, top_k=5, image_size=None
):
    """Writes `model` as a SavedModel in TF Serving's `<path>/<name>/<version>/` layout.

    Signatures:
        serving_default: `images` float32 `(batch, H, W, 3)` pixels in [0, 255] -> the
            named outputs (see `named_outputs`). H and W are dynamic when the model's are.
        serving_bytes: `image_bytes` string `(batch,)` of encoded images -> decoded and
            resized in-graph, then `probabilities`, `classes` (top-k indices) and `labels`
            (when `class_names` is given) for a classifier, `class_map` for a segmenter,
            or the backbone outputs.

    Args:
        model: a built Keras model (a `keras_swin.SwinTransformer` or any image model).
        path: the model base path.
        name: the model name; defaults to `model.name`.
        version: int >= 1.
        class_names: optional list of class names, index-aligned with the classifier.
        top_k: int, number of classes returned by serving_bytes.
        image_size: resize target of serving_bytes when the model's size is dynamic.

    Returns:
        The export directory.
    """
    if int(version) < 1:
        raise ValueError(f"`version` must be an int >= 1; received version={version}.")
    is_classifier = bool(getattr(model, "include_top", False))
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if not is_classifier or len(class_names) != model.output.shape[-1]:
            raise ValueError(
                f"`class_names` must have one name per class ({model.output.shape[-1]}); "
                f"received {len(class_names)} names."
            )
    export_dir = os.path.join(os.fspath(path), name or model.name, str(int(version)))
    outputs = named_outputs(model)
    height, width = model.input.shape[1:3]
    size = serving_image_size(model, image_size)

    def serve_bytes(image_bytes):
        result = outputs(decode_images(image_bytes, size))
        if is_segmenter(model):
            return {"class_map": result["class_map"]}
        if not is_classifier:
            return result
        top = tf.math.top_k(result["probabilities"], k=min(int(top_k), model.output.shape[-1]))
        served = {"probabilities": result["probabilities"], "classes": top.indices, "scores": top.values}
        if class_names is not None:
            served["labels"] = tf.gather(tf.constant(class_names), top.indices)
        return served

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        IMAGE_SIGNATURE,
        outputs,
        input_signature=[tf.TensorSpec((None, height, width, 3), tf.float32, name="images")],
    )
    archive.add_endpoint(
        BYTES_SIGNATURE,
        serve_bytes,
        input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")],
    )
    archive.write_out(export_dir, verbose=False)
    return export_dir


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
