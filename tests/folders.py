"""Folders of images that the data tests write: a classification folder (a subfolder per
class, with grayscale, RGBA and corrupt files among the JPEGs) and a segmentation folder
(images/, masks/ and classes.txt)."""

import os

import numpy as np
import tensorflow as tf


def _write(path, encoded):
    path.write_bytes(encoded.numpy())


def write_image_folder(root, classes=("cat", "dog", "owl"), per_class=10):
    """`per_class` images of 20-29 x 24 pixels in a folder per class: the first a grayscale
    PNG, the second an RGBA PNG, the others JPEGs; and one corrupt JPEG in the first class."""
    rng = np.random.default_rng(0)
    for index, name in enumerate(classes):
        os.makedirs(root / name)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)
            if i == 0:
                encoded = tf.io.encode_png(pixels[..., :1])  # grayscale
            elif i == 1:
                encoded = tf.io.encode_png(np.concatenate([pixels, pixels[..., :1]], -1))  # RGBA
            else:
                encoded = tf.io.encode_jpeg(pixels)
            _write(root / name / f"{i}.{'png' if i < 2 else 'jpg'}", encoded)
    (root / classes[0] / "broken.jpg").write_bytes(b"\xff\xd8\xff this is not a jpeg")


def write_segmentation_folder(root, count=6, size=24, classes=3):
    """`count` random JPEG images with PNG masks of class ids (255, "ignore", at the top-left
    pixel) under images/ and masks/, and the class names in classes.txt."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        mask = rng.integers(0, classes, (size, size)).astype(np.uint8)
        mask[0, 0] = 255
        image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        _write(root / "images" / f"{i}.jpg", tf.io.encode_jpeg(image))
        _write(root / "masks" / f"{i}.png", tf.io.encode_png(mask[..., None]))
    (root / "classes.txt").write_text("\n".join(["background", "cat", "dog"][:classes]))
