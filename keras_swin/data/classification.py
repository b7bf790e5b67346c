"""Input pipelines: the embedded digits data, tensorflow-datasets and image folders.

Every source becomes a `Splits` of float32 RGB images in [0, 255] at a fixed size and
integer labels, split into train/validation/test. `make_pipeline` turns a split into a
`tf.data` pipeline (cache, shuffle, batch, augmentation, prefetch).
"""

import dataclasses
import logging
import os

import keras
import numpy as np
import tensorflow as tf

logger = logging.getLogger("keras_swin")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass
class Splits:
    """Datasets of `(image (H, W, 3) float32 in [0, 255], label int32)` pairs."""

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    class_names: list
    skipped_files: int = 0


def _stratified_split(labels, seed, validation_fraction=0.1, test_fraction=0.2):
    """Index arrays (train, validation, test), stratified by label."""
    from sklearn.model_selection import train_test_split

    classes, counts = np.unique(labels, return_counts=True)
    # Split sizes as train_test_split rounds them; each split must hold every class.
    test_size = int(np.ceil(test_fraction * len(labels)))
    validation_size = int(np.ceil((len(labels) - test_size) * (validation_fraction / (1.0 - test_fraction))))
    train_size = len(labels) - test_size - validation_size
    if min(test_size, validation_size, train_size) < len(classes) or counts.min() < 3:
        raise ValueError(
            f"{len(labels)} images in {len(classes)} classes (fewest in one class: {counts.min()}) "
            f"are too few for a stratified {1 - validation_fraction - test_fraction:.0%}/"
            f"{validation_fraction:.0%}/{test_fraction:.0%} split: every split needs each class, so "
            f"expected at least {int(np.ceil(len(classes) / min(validation_fraction, test_fraction)))} "
            "images and at least 3 per class."
        )
    indices = np.arange(len(labels))
    rest, test = train_test_split(indices, test_size=test_fraction, stratify=labels, random_state=seed)
    train, validation = train_test_split(
        rest,
        test_size=validation_fraction / (1.0 - test_fraction),
        stratify=labels[rest],
        random_state=seed,
    )
    return train, validation, test


def load_digits(image_size, seed=0):
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), as RGB pixels in
    [0, 255] resized to `image_size`, split 70/10/20 stratified by `seed`."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = digits.images.astype("float32") * (255.0 / 16.0)
    images = np.repeat(images[..., None], 3, axis=-1)
    images = tf.image.resize(images, (image_size, image_size), method="bilinear").numpy()
    labels = digits.target.astype("int32")
    train, validation, test = _stratified_split(labels, seed)

    def subset(index):
        return tf.data.Dataset.from_tensor_slices((images[index], labels[index]))

    return Splits(subset(train), subset(validation), subset(test), [str(i) for i in range(10)])


def _resize(image, label, image_size):
    image = tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size), method="bilinear")
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    elif image.shape[-1] == 4:
        image = image[..., :3]
    return image, tf.cast(label, tf.int32)


def load_tfds(spec, image_size, data_dir=None, seed=0):
    """`tfds:NAME[:SPLITS]` through tensorflow-datasets (downloads when online).

    SPLITS is up to three comma-separated split specs (train, validation, test), such as
    `train[:80%],train[80%:90%],train[90%:]`. Missing ones are carved from the train split.
    """
    import tensorflow_datasets as tfds

    parts = spec.split(":", 2)
    name = parts[1] if len(parts) > 1 else ""
    if not name:
        raise ValueError(f"--data {spec!r}: expected tfds:NAME[:SPLITS], e.g. tfds:tf_flowers.")
    builder = tfds.builder(name, data_dir=data_dir)
    available = list(builder.info.splits.keys()) if builder.info.splits else ["train"]
    if len(parts) > 2 and parts[2]:
        splits = parts[2].split(",")
    elif "test" in available and "validation" in available:
        splits = ["train", "validation", "test"]
    elif "test" in available:
        splits = ["train[:90%]", "train[90%:]", "test"]
    else:
        splits = ["train[:70%]", "train[70%:80%]", "train[80%:]"]
    if len(splits) == 1:
        base = splits[0]
        splits = [f"{base}[:70%]", f"{base}[70%:80%]", f"{base}[80%:]"]
    if len(splits) == 2:
        splits = [splits[0], splits[1], splits[1]]
    builder.download_and_prepare()
    datasets = [
        builder.as_dataset(split=split, as_supervised=True, shuffle_files=False).map(
            lambda image, label: _resize(image, label, image_size), num_parallel_calls=AUTOTUNE
        )
        for split in splits[:3]
    ]
    label_feature = builder.info.features["label"]
    class_names = list(label_feature.names)
    return Splits(*datasets, class_names)


def _is_decodable(path):
    try:
        data = tf.io.read_file(path)
        tf.io.decode_image(data, channels=3, expand_animations=False)
        return True
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
        return False


def load_folder(directory, image_size, seed=0):
    """An image folder with one subfolder per class, read with
    `keras.utils.image_dataset_from_directory`. Corrupt files are skipped and counted;
    grayscale and RGBA images become RGB. Split 70/10/20 stratified by `seed`."""
    if not os.path.isdir(directory):
        raise OSError(f"--data {directory!r}: no such folder.")
    class_dirs = sorted(d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))
    if len(class_dirs) < 2:
        raise ValueError(
            f"--data {directory!r}: expected one subfolder per class and at least 2 classes; "
            f"found {len(class_dirs)}."
        )
    dataset = keras.utils.image_dataset_from_directory(
        directory,
        labels="inferred",
        color_mode="rgb",
        batch_size=None,
        image_size=(image_size, image_size),
        shuffle=False,
        verbose=False,
    )
    paths = list(dataset.file_paths)
    if not paths:
        raise ValueError(f"--data {directory!r}: no images ({', '.join(IMAGE_EXTENSIONS)}) found.")
    valid = np.array([_is_decodable(p) for p in paths])
    skipped = int((~valid).sum())
    if skipped:
        logger.warning("Skipping %d corrupt image file(s) in %s.", skipped, directory)
    class_names = list(dataset.class_names)
    labels = np.array([class_names.index(os.path.basename(os.path.dirname(p))) for p in paths])
    valid_index = np.nonzero(valid)[0]
    if len(set(labels[valid_index])) < 2:
        raise ValueError(f"--data {directory!r}: fewer than 2 classes have readable images.")
    try:
        splits = _stratified_split(labels[valid_index], seed)
    except ValueError as error:
        raise ValueError(f"--data {directory!r}: {error}") from error
    split_of = np.full(len(paths), -1)
    for split, index in enumerate(splits):
        split_of[valid_index[index]] = split
    split_of = tf.constant(split_of)
    # Corrupt files fail to decode: drop those elements, keep the rest in file order.
    indexed = dataset.enumerate().ignore_errors()

    def subset(split):
        return indexed.filter(lambda i, example: tf.equal(tf.gather(split_of, i), split)).map(
            lambda i, example: (tf.cast(example[0], tf.float32), tf.cast(example[1], tf.int32))
        )

    return Splits(subset(0), subset(1), subset(2), class_names, skipped)


def load_data(spec, image_size, data_dir=None, seed=0):
    """Resolves `--data`: "digits", "tfds:NAME[:SPLITS]" or a folder path."""
    if spec == "digits":
        return load_digits(image_size, seed)
    if spec.startswith("tfds:"):
        return load_tfds(spec, image_size, data_dir, seed)
    if os.path.sep in spec or os.path.exists(spec):
        return load_folder(spec, image_size, seed)
    raise ValueError(
        f"Unknown dataset {spec!r}; expected 'digits', 'tfds:NAME[:SPLITS]' or a folder path."
    )


def random_resized_crop(images, image_size, scale=(0.35, 1.0), ratio=(3 / 4, 4 / 3), seed=None):
    """Crops a random box of `scale` area fraction and `ratio` aspect from each image and
    resizes it back to `image_size` (the Inception-style crop of the official recipe)."""
    batch = tf.shape(images)[0]
    area = tf.random.uniform((batch,), *scale, seed=seed)
    log_ratio = tf.random.uniform((batch,), np.log(ratio[0]), np.log(ratio[1]), seed=seed)
    aspect = tf.exp(log_ratio)
    height = tf.minimum(tf.sqrt(area / aspect), 1.0)
    width = tf.minimum(tf.sqrt(area * aspect), 1.0)
    top = tf.random.uniform((batch,), seed=seed) * (1.0 - height)
    left = tf.random.uniform((batch,), seed=seed) * (1.0 - width)
    boxes = tf.stack([top, left, top + height, left + width], axis=1)
    return tf.image.crop_and_resize(images, boxes, tf.range(batch), (image_size, image_size))


def augmentation_layers(augment="light", flip=False, seed=0):
    """Keras preprocessing layers for the training pipeline."""
    layers = []
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if augment == "light":
        layers += [
            # Distinct seeds, so that shift, angle and zoom are drawn independently.
            keras.layers.RandomTranslation(0.05, 0.05, fill_mode="constant", seed=seed),
            keras.layers.RandomRotation(0.03, fill_mode="constant", seed=seed + 1),
            keras.layers.RandomZoom(0.05, fill_mode="constant", seed=seed + 2),
        ]
    elif augment == "randaugment":
        layers.append(keras.layers.RandAugment(value_range=(0, 255), seed=seed))
    elif augment != "none":
        raise ValueError(f"--augment must be light, randaugment or none; received {augment!r}.")
    return layers


def make_pipeline(
    dataset,
    num_classes,
    batch_size,
    training=False,
    image_size=None,
    augment="none",
    flip=False,
    resized_crop=False,
    mixup=False,
    cutmix=False,
    seed=0,
):
    """Batches `(image, label)` pairs into `(images, one-hot labels)` with cache, shuffle,
    augmentation (training only) and prefetch."""
    dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(4096, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=False)
    dataset = dataset.map(
        lambda x, y: (x, tf.one_hot(y, num_classes)), num_parallel_calls=AUTOTUNE
    )
    if training:
        # Random augmentation maps run sequentially: parallel calls would draw from the shared
        # random state in a varying order, and the same seed would not repeat a run.
        layers = augmentation_layers(augment, flip, seed) if augment != "none" or flip else []
        if resized_crop:
            dataset = dataset.map(
                lambda x, y: (random_resized_crop(x, image_size), y)
            )
        for layer in layers:
            dataset = dataset.map(lambda x, y, layer=layer: (layer(x, training=True), y))
        mixers = []
        if mixup:
            mixers.append(keras.layers.MixUp(seed=seed))
        if cutmix:
            mixers.append(keras.layers.CutMix(seed=seed))
        for mixer in mixers:
            dataset = dataset.map(
                lambda x, y, mixer=mixer: _mix(mixer, x, y)
            )
    return dataset.prefetch(AUTOTUNE)


def _mix(mixer, images, labels):
    mixed = mixer({"images": images, "labels": labels}, training=True)
    return mixed["images"], mixed["labels"]
