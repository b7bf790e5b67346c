"""Serving a RetinaNet detector (`keras_swin.models.retinanet`): the named outputs of the
SavedModel's signatures and of the TFLite file.

keras-hub's own decoder does the work (anchors, box deltas to boxes, non-maximum
suppression). It reads the batch size from the static shape, so a batch of any size is
decoded one image at a time (`tf.map_fn`); the network itself runs on the whole batch.
"""

import os

import tensorflow as tf

from keras_swin.models.retinanet import detector_size

OUTPUT_NAMES = ("boxes", "classes", "scores", "num_detections")


def max_detections(model):
    return int(model.prediction_decoder.max_detections)


def _decode(model, raw_boxes, raw_logits, images):
    """keras-hub's decoder on a batch of a static size: `boxes` yxyx pixels clipped to the
    image, `classes` int32, `scores` float32, `num_detections` int32; rows past
    `num_detections` are -1 (boxes, classes) and 0 (scores)."""
    height, width = detector_size(model)
    decoded = model.decode_predictions(
        {"bbox_regression": tf.cast(raw_boxes, tf.float32), "cls_logits": tf.cast(raw_logits, tf.float32)}, images
    )
    count = tf.cast(decoded["num_detections"], tf.int32)
    valid = tf.range(max_detections(model))[None, :] < count[:, None]
    limit = tf.constant([height, width, height, width], tf.float32)
    boxes = tf.clip_by_value(tf.cast(decoded["boxes"], tf.float32), 0.0, limit)
    return {
        "boxes": tf.where(valid[..., None], boxes, -1.0),
        "classes": tf.where(valid, tf.cast(decoded["labels"], tf.int32), -1),
        "scores": tf.where(valid, tf.cast(decoded["confidence"], tf.float32), 0.0),
        "num_detections": count,
    }


def detection_outputs(model):
    """A function `images (B, H, W, 3) -> {boxes (B, D, 4) yxyx pixels, classes (B, D)
    int32, scores (B, D), num_detections (B,) int32}`, D = the decoder's `max_detections`."""
    detections = max_detections(model)

    def detect(images):
        raw = model(images, training=False)

        def one(row):
            raw_boxes, raw_logits, image = row
            found = _decode(model, raw_boxes[None], raw_logits[None], image[None])
            return tuple(found[name][0] for name in OUTPUT_NAMES)

        signature = (tf.TensorSpec((detections, 4), tf.float32), tf.TensorSpec((detections,), tf.int32),
                     tf.TensorSpec((detections,), tf.float32), tf.TensorSpec((), tf.int32))
        found = tf.map_fn(one, (raw["bbox_regression"], raw["cls_logits"], images), fn_output_signature=signature)
        return dict(zip(OUTPUT_NAMES, found))

    return detect


def raw_outputs(model):
    """A function `images -> (B, A, 4 + num_classes)`: per anchor, the box deltas
    (center_xywh, keras-hub's encoding with variance 1) then the class logits. What the
    TFLite file holds: keras-hub's decoder does not lower to TFLite builtins (see
    docs/detection.md for the decode, with the anchors file beside the `.tflite`)."""

    def raw(images):
        found = model(images, training=False)
        return tf.concat([tf.cast(found["bbox_regression"], tf.float32),
                          tf.cast(found["cls_logits"], tf.float32)], axis=-1)

    return raw


def anchors_path(tflite_path):
    """Where `to_tflite` writes a detector's anchors: `<name>_anchors.npy` beside `<name>.tflite`."""
    root = os.fspath(tflite_path)
    return (root[: -len(".tflite")] if root.endswith(".tflite") else root) + "_anchors.npy"


def to_original_size(result, sizes, model_size):
    """`result`'s boxes (in pixels of the model's `model_size`) scaled to each image's
    original `sizes` `(B, 2)` (height, width); padding rows stay -1."""
    scale = tf.cast(sizes, tf.float32) / tf.constant(model_size, tf.float32)
    scale = tf.concat([scale, scale], axis=-1)[:, None, :]
    valid = tf.range(tf.shape(result["boxes"])[1])[None, :] < result["num_detections"][:, None]
    return {**result, "boxes": tf.where(valid[..., None], result["boxes"] * scale, -1.0)}


def image_sizes(image_bytes):
    """(height, width) of each encoded image, int32 `(B, 2)` (decoded once more: TensorFlow
    has no header reader for every format). Call it after `decode_images` has refused any
    bad image, so that this decode never fails."""
    return tf.map_fn(lambda data: tf.shape(tf.io.decode_image(data, expand_animations=False))[:2], image_bytes,
                     fn_output_signature=tf.TensorSpec((2,), tf.int32))


def with_labels(result, class_names):
    """Adds `labels`, the class name of each detection ("" for padding rows)."""
    names = tf.gather(tf.constant(list(class_names)), tf.maximum(result["classes"], 0))
    return {**result, "labels": tf.where(result["classes"] >= 0, names, "")}


def bytes_outputs(result, images, image_bytes, model_size, class_names=None):
    """What `serving_bytes` returns for a detector: `result` (on `images`, the decoded and
    resized `image_bytes`) with its boxes in each original image's pixels, and `labels`
    when `class_names` is given."""
    with tf.control_dependencies([images]):  # decode_images refuses a bad image first
        sizes = image_sizes(image_bytes)
    served = to_original_size(result, sizes, model_size)
    return with_labels(served, class_names) if class_names is not None else served
