"""Decoding encoded images in the graph, for the SavedModel's `serving_bytes` signature: every
format `tf.io.decode_image` reads, a size cap read from each file's header before decoding, and
one error that names each bad image by its index."""

import tensorflow as tf

from keras_swin.configs import MAX_IMAGE_SIZE
from keras_swin.export.common import DEFAULT_MAX_PIXELS, FORMATS, check_int

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
