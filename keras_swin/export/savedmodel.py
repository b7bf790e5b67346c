"""Export to a SavedModel in TF Serving's layout, with an image and an encoded-bytes signature."""

import os

import keras
import tensorflow as tf

from keras_swin.export.common import decode_images, is_segmenter, named_outputs, serving_image_size

IMAGE_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"


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
