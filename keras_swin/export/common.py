"""What the SavedModel and TFLite exporters share: argument and image checks, the serving image
size, in-graph image decoding, writing an export under a temporary name, and the named outputs
of each kind of model."""

import numbers
import os
import shutil
import uuid

import keras
import numpy as np
import tensorflow as tf

from keras_swin.configs import MAX_IMAGE_SIZE
from keras_swin.export.detection import detection_outputs
from keras_swin.models.retinanet import is_detector
from keras_swin.models.swin_unetr import SwinUNETR
from keras_swin.models.upernet import UPerNet

DEFAULT_IMAGE_SIZE = 224
DEFAULT_MAX_PIXELS = 40_000_000  # 40 megapixels: about 120 MB as uint8, 480 MB as float32
FORMATS = "JPEG, PNG, GIF, BMP, WebP or JPEG XL"  # what tf.io.decode_image reads (TF 2.21)


def check_int(value, name, low, high=None):
    """`value` as an int in [low, high]; a ValueError naming `name`, the range and the value."""
    valid = f">= {low}" if high is None else f"in [{low}, {high}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"`{name}` must be an int {valid}; received {name}={value!r}.")
    if value < low or (high is not None and value > high):
        raise ValueError(f"`{name}` must be an int {valid}; received {name}={value}.")
    return int(value)


def check_image_model(model):
    """A ValueError unless `model` takes one image tensor `(batch, H, W, channels)` with a
    known channel count (3 for every model but a SwinUNETR built for other channels)."""
    inputs = getattr(model, "inputs", None)
    shape = tuple(inputs[0].shape) if inputs and len(inputs) == 1 else None
    if shape is None or len(shape) != 4 or shape[-1] is None:
        received = [tuple(x.shape) for x in inputs] if inputs else None
        raise ValueError(
            "Export needs a built image model with one input of shape (batch, height, width, channels); "
            f"received a {type(model).__name__} with inputs {received}."
        )


def is_quantized(model):
    """True when any layer of `model` holds quantized weights (`model.quantize(...)`)."""
    return any(getattr(layer, "quantization_mode", None) for layer in model._flatten_layers())


def image_channels(model):
    """The channels of `model`'s image input (3 for RGB models)."""
    return int(model.inputs[0].shape[-1])


def has_fixed_size(model):
    """Whether `model` was built for one image size (its input's height and width are set)."""
    return None not in tuple(model.inputs[0].shape[1:3])


def serving_image_size(model, image_size=None):
    """The (height, width) encoded images are resized to: the model's own input size when
    it is fixed, else `image_size` (default 224); each side in [1, 4096].

    A ValueError when `image_size` is not an int or a (height, width) pair in that range, or
    when it differs from the model's fixed input size (that size would silently win)."""
    if image_size is not None:
        pair = (image_size, image_size) if isinstance(image_size, numbers.Integral) else image_size
        try:
            pair = tuple(pair)
        except TypeError:
            pair = ()
        if len(pair) != 2:
            raise ValueError(
                f"`image_size` must be an int or a (height, width) pair of ints in [1, {MAX_IMAGE_SIZE}]; "
                f"received image_size={image_size!r}."
            )
        image_size = tuple(check_int(s, "image_size", 1, MAX_IMAGE_SIZE) for s in pair)
    height, width = model.input.shape[1:3]
    if height is not None and width is not None:
        fixed = (int(height), int(width))
        if image_size is not None and image_size != fixed:
            raise ValueError(
                f"The model takes images of a fixed size {fixed[0]}x{fixed[1]}; received "
                f"image_size={image_size[0]}x{image_size[1]}. Omit `image_size` or pass {fixed}."
            )
        return fixed
    return image_size or (DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE)


def check_images(images, size, name="images", channels=3):
    """`images` as float32 `(N, height, width, channels)` with N >= 1 and finite values, else
    a ValueError naming `name`, what was expected and what was received.

    Args:
        images: array-like of real numbers.
        size: (height, width) the images must have; None accepts any size.
        name: what the message calls the images.
        channels: the channels the images must have (3: RGB).
    """
    array = np.asarray(images)
    expected = f"(N, {size[0]}, {size[1]}, {channels})" if size else f"(N, height, width, {channels})"
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"`{name}` must be real-valued pixels {expected} (float32 or an integer type); "
            f"received dtype {array.dtype} with shape {array.shape}."
        )
    if array.ndim != 4 or array.shape[-1] != channels or (size and tuple(array.shape[1:3]) != tuple(size)):
        raise ValueError(f"`{name}` must be images of shape {expected}; received shape {array.shape}.")
    if array.shape[0] == 0 or array.shape[1] == 0 or array.shape[2] == 0:
        raise ValueError(f"`{name}` must hold at least one non-empty image {expected}; received shape {array.shape}.")
    array = array.astype("float32", copy=False)
    finite = np.isfinite(array).reshape(len(array), -1).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        first = array[bad[0]]
        raise ValueError(
            f"`{name}` must be finite pixel values; {len(bad)} of {len(array)} images hold NaN or Inf, "
            f"first image {int(bad[0])} ({int(np.isnan(first).sum())} NaN, {int(np.isinf(first).sum())} Inf"
            f"); indices {bad[:10].tolist()}{' ...' if len(bad) > 10 else ''}."
        )
    return array


def check_serving_images(images, height, width, signature, channels=3):
    """`images` after in-graph checks: rank 4 with `channels` (and the model's fixed size),
    at least one pixel per side, finite values. Each failure is an InvalidArgumentError
    naming the expected and received shape, or the batch indices of non-finite images."""
    # tf.ensure_shape checks the rank, channels and fixed size at run time: TF Serving does not
    # check a request against the signature's shape.
    images = tf.ensure_shape(images, (None, height, width, channels), name="images")
    shape = tf.shape(images)
    checks = [tf.debugging.Assert(
        tf.reduce_all(shape[1:3] > 0),
        [tf.strings.format(signature + f": images must be (batch, height, width, {channels}) with height and width "
                           ">= 1; received shape {}", shape)],
    )]
    finite = tf.reduce_all(tf.math.is_finite(images), axis=[1, 2, 3])
    checks.append(tf.debugging.Assert(
        tf.reduce_all(finite),
        [tf.strings.format(signature + ": images must be finite pixel values in [0, 255]; the images at batch "
                           "indices {} hold NaN or Inf", tf.where(~finite)[:, 0], summarize=10)],
    ))
    with tf.control_dependencies([c for c in checks if c is not None]):
        return tf.identity(images)


def run_batch(outputs, images):
    """`outputs(images)`, also for a batch of 0 images (the model's ops fail on an empty batch:
    it runs on one zero image and returns 0 rows)."""
    count = tf.shape(images)[0]
    padded = tf.cond(count > 0, lambda: images,
                     lambda: tf.zeros(tf.concat([[1], tf.shape(images)[1:]], 0), images.dtype))
    padded.set_shape(images.shape)
    return {name: value[:count] for name, value in outputs(padded).items()}


# -- Files. An export is written under a temporary name in its destination's folder, then
# renamed into place: a killed or failed export leaves no file or version folder that looks
# complete (TF Serving loads every numeric folder). The temporary names start with a dot and
# are not numbers, so TF Serving ignores them; a kill can leave one behind, to delete.


def staging_path(path, kind="incomplete"):
    """A new unused name next to `path`: `.<basename>.<kind>-<pid>-<random>`."""
    directory, base = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(directory, f".{base}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def make_directory(directory, what):
    """`os.makedirs(directory)`, with an OSError that names `directory` and `what` it is for."""
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise OSError(f"Cannot write {what}: '{directory}' is a file, not a directory.")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise OSError(f"Cannot create the folder '{directory}' for {what}: {error.strerror or error}.") from error
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OSError(f"Cannot write {what}: the folder '{directory}' is not writable.")


def write_staged(path, write, what):
    """Calls `write(staged)` with a new temporary name in `path`'s folder, then renames the
    file into place: a failed or killed export never leaves a partial file at `path`, and an
    existing file is replaced only by a complete one. Returns the absolute `path`."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise OSError(f"Cannot write {what}: '{path}' is a folder.")
    make_directory(os.path.dirname(path), what)
    staged = staging_path(path)
    try:
        write(staged)
        os.replace(staged, path)
    except OSError as error:
        raise OSError(f"Writing {what} to '{path}' failed: {error.strerror or error}.") from error
    finally:
        if os.path.lexists(staged):
            os.remove(staged)
    return path


def write_bytes(path, data, what):
    """`data` into the file `path`, complete or not at all (`write_staged`), synced to disk."""

    def write(staged):
        with open(staged, "xb") as f:  # honours the umask, unlike tempfile's 0600 files
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    return write_staged(path, write, what)


def move_into_place(staged, destination):
    """Renames the folder `staged` to `destination`; an existing `destination` is replaced,
    and is kept (restored) when the rename fails."""
    if not os.path.lexists(destination):
        os.rename(staged, destination)
        return
    if not os.path.isdir(destination) or os.path.islink(destination):
        raise OSError(f"Cannot replace '{destination}': it exists and is not a folder.")
    previous = staging_path(destination, "replaced")
    os.rename(destination, previous)
    try:
        os.rename(staged, destination)
    except BaseException:
        os.rename(previous, destination)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def is_segmenter(model):
    """True for a `keras_swin.UPerNet` or `keras_swin.SwinUNETR` (per-pixel logits)."""
    return isinstance(model, (UPerNet, SwinUNETR))


def segmentation_logits(model):
    """The segmenter as a model `images -> (B, H, W, classes)` logits: the main output,
    without the auxiliary head (a training-only output)."""
    logits = model.output["logits"] if isinstance(model.output, dict) else model.output
    return keras.Model(model.input, logits, name=model.name)


def _pre_activation(head, x):
    """The Dense `head` on `x` without its activation: the classifier's logits.

    Dense has no pre-activation output, and after `model.quantize("int8")` its kernel is
    int8 with a separate scale, so a hand-written `x @ kernel + bias` would be wrong; the
    layer's own call (float or quantized) runs with the activation left out while tracing."""
    activation = head.activation
    head.activation = None
    try:
        return head(x)
    finally:
        head.activation = activation


def named_outputs(model):
    """A function `images -> {name: tensor}` with the outputs users call: `logits` and
    `probabilities` for a classifier, `logits` and `class_map` (int32 `(B, H, W)`) for a
    segmenter, `features` and `P2..` for a backbone; for a detector `boxes` (yxyx pixels),
    `classes` (int32), `scores` and `num_detections` (`keras_swin.export.detection`)."""
    if is_detector(model):
        return detection_outputs(model)
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
            logits = _pre_activation(head, pooled)
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
