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


# -- In-graph decoding. tf.io.decode_image raises on the first bad image of a batch without
# saying which one, and has no size cap. TensorFlow has no op that decodes without raising,
# so each image is decoded in a tf.data pipeline whose `ignore_errors()` drops the ones that
# fail; the indices that did not come through, and the sizes read before decoding, name the
# bad images in one InvalidArgumentError. Everything is graph ops: it runs in TF Serving.

_OK, _EMPTY, _TOO_LARGE, _NO_PIXELS, _UNDECODABLE = 0, 1, 2, 3, 4
# (name, byte signature at offset 0, second signature, its offset); as decode_image sniffs them.
_SIGNATURES = (
    ("JPEG", b"\xff\xd8\xff", b"", 0),
    ("PNG", b"\x89PNG\r\n\x1a\n", b"", 0),
    ("GIF", b"GIF8", b"", 0),
    ("BMP", b"BM", b"", 0),
    ("WebP", b"RIFF", b"WEBP", 8),
    ("JPEG XL", b"\xff\x0a", b"", 0),
    ("JPEG XL", b"\x00\x00\x00\x0cJXL \x0d\x0a\x87\x0a", b"", 0),
)
# Static tf.data rewrites and autotuning cost milliseconds per request for nothing here.
_DATA_OPTIONS = tf.data.Options()
_DATA_OPTIONS.autotune.enabled = False
_DATA_OPTIONS.experimental_optimization.apply_default_optimizations = False
_WEBP = 1 + [name for name, *_ in _SIGNATURES].index("WebP")  # WebP and JPEG XL come last
_HEAD = 32  # bytes read from each file's start for the signature and the header size


def _head(data):
    """The first 32 bytes of each string, zero-padded (so that fixed offsets never fail)."""
    return tf.strings.substr(tf.strings.join([tf.strings.substr(data, 0, _HEAD), b"\x00" * _HEAD]), 0, _HEAD)


def _format_index(head):
    """0 for an unknown format, else 1 + the index of the format in _SIGNATURES."""
    found = tf.zeros(tf.shape(head), tf.int32)
    for i, (_, signature, second, offset) in reversed(list(enumerate(_SIGNATURES))):
        match = tf.equal(tf.strings.substr(head, 0, len(signature)), signature)
        if second:
            match &= tf.equal(tf.strings.substr(head, offset, len(second)), second)
        found = tf.where(match, i + 1, found)
    return found


def _rgb(image):
    """An image of 1 to 4 channels as RGB: gray is repeated, alpha dropped. For WebP and JPEG
    XL, whose decoders refuse `channels=3` for a file with alpha (TF 2.21: "Number of channels
    requested does not match input"); the other decoders convert with `channels=3`."""
    channels = tf.shape(image)[-1]
    return tf.case([(channels <= 2, lambda: tf.tile(image[..., :1], [1, 1, 3]))], default=lambda: image[..., :3])


def _bytes_at(head, offset, count, big_endian=False):
    """The unsigned integer stored in `count` bytes at `offset` of a 32-byte head (int64)."""
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(head, offset, count), tf.uint8), tf.int64)
    weights = tf.constant([256**i for i in range(count)][:: -1 if big_endian else 1], tf.int64)
    return tf.reduce_sum(raw * weights)


def _header_size(data, head, form):
    """(height, width) as the file's header states them, read without decoding; (0, 0) where
    the format's header is variable-length (JPEG XL; checked after decoding instead).

    TensorFlow reads JPEG headers (tf.image.extract_jpeg_shape) but has no such op for the
    other formats, whose sizes sit at fixed offsets."""

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(data), tf.int64)
        return shape[0], shape[1]

    def png():  # IHDR: width, height as big-endian uint32 at bytes 16 and 20
        return _bytes_at(head, 20, 4, True), _bytes_at(head, 16, 4, True)

    def gif():  # logical screen: width, height as little-endian uint16 at bytes 6 and 8
        return _bytes_at(head, 8, 2), _bytes_at(head, 6, 2)

    def bmp():  # BITMAPINFOHEADER: int32 width at 18, height at 22 (negative: top-down rows)
        def signed(value):
            return tf.where(value >= 2**31, value - 2**32, value)

        return tf.abs(signed(_bytes_at(head, 22, 4))), tf.abs(signed(_bytes_at(head, 18, 4)))

    def webp():
        chunk = tf.strings.substr(head, 12, 4)

        def vp8():  # lossy: 14-bit width and height at bytes 26 and 28
            return _bytes_at(head, 28, 2) % 16384, _bytes_at(head, 26, 2) % 16384

        def vp8l():  # lossless: 14-bit width-1 and height-1 packed at byte 21
            bits = _bytes_at(head, 21, 4)
            return (bits // 16384) % 16384 + 1, bits % 16384 + 1

        def vp8x():  # extended: 24-bit canvas width-1 and height-1 at bytes 24 and 27
            return _bytes_at(head, 27, 3) + 1, _bytes_at(head, 24, 3) + 1

        def unknown():
            return tf.constant(0, tf.int64), tf.constant(0, tf.int64)

        return tf.case([(tf.equal(chunk, b"VP8 "), vp8), (tf.equal(chunk, b"VP8L"), vp8l),
                        (tf.equal(chunk, b"VP8X"), vp8x)], default=unknown)

    def other():
        return tf.constant(0, tf.int64), tf.constant(0, tf.int64)

    return tf.switch_case(form, [other, jpeg, png, gif, bmp, webp, other, other])


def decode_images(encoded, image_size, max_pixels=DEFAULT_MAX_PIXELS):
    """Decodes a batch of encoded images (JPEG, PNG, GIF, BMP, WebP, JPEG XL) to RGB pixels in
    [0, 255].

    Grayscale and RGBA become RGB; each image is resized bilinearly to `image_size`, as
    the training pipeline does.

    Args:
        encoded: string tensor `(B,)`.
        image_size: (height, width).
        max_pixels: the most pixels (height * width) an image may decode to. The size is read
            from the file's header before decoding where the format allows it (all but JPEG
            XL), so that a small file claiming a huge image is refused without decoding it.

    Returns:
        float32 `(B, height, width, 3)`.

    Raises:
        InvalidArgumentError: when any image is empty, not an image, corrupt or truncated,
            over `max_pixels` or of zero pixels; the whole batch is refused and the message
            names each bad image by its index, e.g. "image_bytes[1] is a corrupt or
            truncated PNG file".
    """
    height, width = (check_int(s, "image_size", 1, MAX_IMAGE_SIZE) for s in image_size)
    max_pixels = check_int(max_pixels, "max_pixels", 1)
    encoded = tf.convert_to_tensor(encoded, tf.string)
    count = tf.shape(encoded, out_type=tf.int64)[0]
    zeros = tf.zeros((height, width, 3), tf.float32)

    def decode_one(index, data):
        head = _head(data)
        form = _format_index(head)
        header_height, header_width = _header_size(data, head, form)

        def refuse(status, image_height, image_width):
            return lambda: (zeros, tf.constant(status), image_height, image_width)

        def decode():
            image = tf.cond(form >= _WEBP, lambda: _rgb(tf.io.decode_image(data, expand_animations=False)),
                            lambda: tf.io.decode_image(data, channels=3, expand_animations=False))
            image.set_shape((None, None, 3))
            shape = tf.shape(image, out_type=tf.int64)
            # Checked again after decoding: for JPEG XL, and for a header that lied.
            return tf.case(
                [(shape[0] * shape[1] > max_pixels, refuse(_TOO_LARGE, shape[0], shape[1])),
                 (shape[0] * shape[1] == 0, refuse(_NO_PIXELS, shape[0], shape[1]))],
                default=lambda: (tf.image.resize(tf.cast(image, tf.float32), (height, width), method="bilinear"),
                                 tf.constant(_OK), shape[0], shape[1]),
            )

        empty = tf.equal(tf.strings.length(data), 0)
        image, status, image_height, image_width = tf.case(
            [(empty, refuse(_EMPTY, tf.constant(0, tf.int64), tf.constant(0, tf.int64))),
             (header_height * header_width > max_pixels, refuse(_TOO_LARGE, header_height, header_width))],
            default=decode,
        )
        return index, image, status, image_height, image_width

    # One batch of the images that decoded, then a sentinel row (so that there is always one
    # batch, for get_single_element: much cheaper per call than Dataset.reduce).
    sentinel = (tf.constant(-1, tf.int64), zeros, tf.constant(_OK), tf.constant(0, tf.int64),
                tf.constant(0, tf.int64))
    decoded = (
        tf.data.Dataset.from_tensor_slices((tf.range(count), encoded))
        .map(decode_one)
        .ignore_errors()
        .concatenate(tf.data.Dataset.from_tensors(sentinel))
        .batch(count + 1)
        .with_options(_DATA_OPTIONS)
    )
    indices, images, statuses, heights, widths = (t[:-1] for t in decoded.get_single_element())

    def scatter(initial, values):
        return tf.tensor_scatter_nd_update(tf.fill([count], initial), indices[:, None], values)

    # Images that raised in decode_one did not come through: not an image, corrupt or truncated.
    statuses = scatter(tf.constant(_UNDECODABLE), statuses)
    heights, widths = scatter(tf.constant(0, tf.int64), heights), scatter(tf.constant(0, tf.int64), widths)
    formats = _format_index(_head(encoded))
    names = tf.gather(tf.constant(["unknown"] + [name for name, *_ in _SIGNATURES]), formats)
    size = tf.strings.as_string(heights) + "x" + tf.strings.as_string(widths)
    label = "image_bytes[" + tf.strings.as_string(tf.range(count)) + "]"
    messages = tf.gather(
        tf.stack([
            label,
            label + " is empty (0 bytes)",
            label + " is a " + size + " image (" + tf.strings.as_string(heights * widths)
            + f" pixels), over the {max_pixels} pixels (max_pixels) this model accepts",
            label + " decodes to an image of " + size + " pixels",
            tf.where(formats == 0, label + f" is not a {FORMATS} file",
                     label + " is a corrupt or truncated " + names + " file"),
        ], axis=1),
        statuses[:, None], batch_dims=1,
    )[:, 0]
    bad = tf.boolean_mask(messages, statuses != _OK)
    shown = 5
    summary = tf.strings.join([
        "serving_bytes refused the batch (", tf.strings.as_string(tf.size(bad)), " of ",
        tf.strings.as_string(count), " images bad; every image must be a ", FORMATS,
        f" file of at most {max_pixels} pixels): ",
        tf.strings.reduce_join(bad[:shown], separator="; "),
        tf.cond(tf.size(bad) > shown,
                lambda: tf.strings.join(["; and ", tf.strings.as_string(tf.size(bad) - shown), " more"]),
                lambda: tf.constant("")),
    ])
    if tf.executing_eagerly():  # tf.debugging.Assert's eager message would wrap the summary
        if tf.size(bad) > 0:
            raise tf.errors.InvalidArgumentError(None, None, summary.numpy().decode("utf-8", "replace"))
        return images
    check = tf.debugging.Assert(tf.equal(tf.size(bad), 0), [summary])
    with tf.control_dependencies([check]):
        return tf.identity(images)


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
