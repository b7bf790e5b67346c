"""Export to a SavedModel in TF Serving's layout, with an image and an encoded-bytes signature."""

import os
import shutil

import keras
import tensorflow as tf

from keras_swin.export import detection
from keras_swin.export.common import (
    DEFAULT_MAX_PIXELS,
    check_image_model,
    check_int,
    check_serving_images,
    image_channels,
    is_segmenter,
    make_directory,
    move_into_place,
    named_outputs,
    run_batch,
    serving_image_size,
    staging_path,
)
from keras_swin.export.decoding import decode_images
from keras_swin.models.retinanet import is_detector

IMAGE_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"


def check_name(name, what="`name`"):
    """`name` if it can be one folder or file name (no separator, not '.' or '..'), else a ValueError."""
    separators = {"/", "\x00", os.sep, os.altsep} - {None}
    if not isinstance(name, str) or name in ("", ".", "..") or any(s in name for s in separators):
        raise ValueError(
            f"{what} must be a non-empty folder name without '/' (not '.' or '..'); received {name!r}."
        )
    return name


def to_saved_model(
    model, path, name=None, version=1, class_names=None, top_k=5, image_size=None,
    max_pixels=DEFAULT_MAX_PIXELS,
):
    """Writes `model` as a SavedModel in TF Serving's `<path>/<name>/<version>/` layout.

    Signatures:
        serving_default: `images` float32 `(batch, H, W, 3)` pixels in [0, 255] -> the
            named outputs (see `named_outputs`). H and W are dynamic when the model's are.
            A SwinUNETR built for other channels takes `(batch, H, W, in_channels)` of what
            it was trained on.
        serving_bytes: `image_bytes` string `(batch,)` of encoded images (JPEG, PNG, GIF,
            BMP, WebP, JPEG XL) -> decoded and resized in-graph, then `probabilities`,
            `classes` (top-k indices), `scores` and `labels` (when `class_names` is given)
            for a classifier, `class_map` for a segmenter, or the backbone outputs. Only
            for RGB models: a model of other channels has no image files to decode.
        A detector (`keras_swin.models.retinanet`) returns `boxes` (yxyx pixels; in
            serving_bytes, of each original image), `classes` (int32), `scores` and
            `num_detections` from both, and serving_bytes adds `labels` with `class_names`.

    Bad requests: the request fails as a whole with INVALID_ARGUMENT
    (`tf.errors.InvalidArgumentError`) and nothing is computed for the other images of the
    batch; the server keeps serving. The message says what is wrong:
        serving_bytes: each bad image by its index, e.g. "image_bytes[2] is empty (0 bytes)",
            "image_bytes[0] is not a JPEG, PNG, GIF, BMP, WebP or JPEG XL file",
            "image_bytes[1] is a corrupt or truncated PNG file", "image_bytes[3] is a
            10000x10000 image (100000000 pixels), over the 40000000 pixels (max_pixels) this
            model accepts" (the first five are listed, then how many more). The size is read
            from the file header before decoding (except JPEG XL, checked after decoding).
        serving_default: images that are not `(batch, H, W, 3)` with the model's fixed H and
            W: "Shape of tensor images [2,20,20,3] is not compatible with expected shape
            [?,16,16,3]"; images holding NaN or Inf: their batch indices.
    A batch of 0 images returns outputs with 0 rows.

    The version folder is written under a hidden temporary name (`.<version>.incomplete-*`)
    in `<path>/<name>/` and renamed into place when complete, so a failed or killed export
    never leaves a version folder TF Serving would load; an existing version is replaced only
    by a complete one. A kill can leave the hidden folder behind: TF Serving ignores it.

    Args:
        model: a built Keras model (a `keras_swin.SwinTransformer` or any image model).
        path: the model base path.
        name: the model name (one folder name); defaults to `model.name`.
        version: int >= 1.
        class_names: optional list of class names, index-aligned with the classifier.
        top_k: int >= 1, number of classes returned by serving_bytes.
        image_size: resize target of serving_bytes when the model's size is dynamic (int or
            (height, width), each in [1, 4096]; default 224).
        max_pixels: int >= 1, the most pixels (height * width) an encoded image may have
            (default 40 megapixels).

    Returns:
        The export directory.
    """
    version = check_int(version, "version", 1)
    top_k = check_int(top_k, "top_k", 1)
    max_pixels = check_int(max_pixels, "max_pixels", 1)
    check_image_model(model)
    name = check_name(model.name if name is None else name)
    is_classifier = bool(getattr(model, "include_top", False))
    if class_names is not None:
        if isinstance(class_names, (str, bytes)) or not hasattr(class_names, "__len__"):
            raise ValueError(f"`class_names` must be a list of class names; received {class_names!r}.")
        class_names = [str(c) for c in class_names]
        classes = model.num_classes if is_detector(model) else model.output.shape[-1] if is_classifier else None
        if classes is None or len(class_names) != classes:
            expected = classes or "none: the model has no classifier head"
            raise ValueError(
                f"`class_names` must have one name per class ({expected}); "
                f"received {len(class_names)} names."
            )
    size = serving_image_size(model, image_size)
    height, width = model.input.shape[1:3]
    outputs = named_outputs(model)

    channels = image_channels(model)

    def serve_images(images):
        return run_batch(outputs, check_serving_images(images, height, width, IMAGE_SIGNATURE, channels))

    def serve_bytes(image_bytes):
        image_bytes = tf.ensure_shape(image_bytes, (None,), name="image_bytes")
        images = decode_images(image_bytes, size, max_pixels)
        result = run_batch(outputs, images)
        if is_detector(model):  # boxes in the pixels of each original image
            return detection.bytes_outputs(result, images, image_bytes, size, class_names)
        if is_segmenter(model):
            return {"class_map": result["class_map"]}
        if not is_classifier:
            return result
        top = tf.math.top_k(result["probabilities"], k=min(top_k, model.output.shape[-1]))
        served = {"probabilities": result["probabilities"], "classes": top.indices, "scores": top.values}
        if class_names is not None:
            served["labels"] = tf.gather(tf.constant(class_names), top.indices)
        return served

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        IMAGE_SIGNATURE,
        serve_images,
        input_signature=[tf.TensorSpec((None, height, width, channels), tf.float32, name="images")],
    )
    if channels == 3:
        archive.add_endpoint(
            BYTES_SIGNATURE,
            serve_bytes,
            input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")],
        )

    parent = os.path.join(os.fspath(path), name)
    export_dir = os.path.join(parent, str(version))
    make_directory(parent, "the SavedModel")
    if os.path.lexists(export_dir) and not os.path.isdir(export_dir):
        raise OSError(f"Cannot write the SavedModel: '{export_dir}' exists and is not a folder.")
    staged = staging_path(export_dir)
    try:
        os.mkdir(staged)
        archive.write_out(staged, verbose=False)
        move_into_place(staged, export_dir)
    except tf.errors.OpError as error:  # TensorFlow's file errors (disk full, ...) are not OSErrors
        raise OSError(f"Writing the SavedModel to '{export_dir}' failed: {error.message}") from error
    except OSError as error:
        raise OSError(f"Writing the SavedModel to '{export_dir}' failed: {error}") from error
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return export_dir
