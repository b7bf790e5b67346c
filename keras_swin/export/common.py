"""What the SavedModel and TFLite exporters share: the serving image size, in-graph image
decoding, and the named outputs of each kind of model."""

import keras
import tensorflow as tf

from keras_swin.models.upernet import UPerNet

DEFAULT_IMAGE_SIZE = 224


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
