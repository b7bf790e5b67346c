"""Input pipelines: the embedded digits data, tensorflow-datasets and image folders.

Every source becomes a `Splits` of float32 RGB images in [0, 255] at a fixed size and
integer labels, split into train/validation/test. `make_pipeline` turns a split into a
`tf.data` pipeline (cache, shuffle, batch, augmentation, prefetch).
"""

import dataclasses
import errno
import logging
import os
import re
import stat

import keras
import numpy as np
import tensorflow as tf

from keras_swin.configs import MAX_IMAGE_SIZE

logger = logging.getLogger("keras_swin")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".jxl")  # what tf.io.decode_image reads
AUTOTUNE = tf.data.AUTOTUNE
# The largest image side the loaders resize to: 4096x4096x3 float32 is 200 MB an image.


@dataclasses.dataclass
class Splits:
    """Datasets of `(image (H, W, 3) float32 in [0, 255], label int32)` pairs."""

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    class_names: list
    skipped_files: int = 0
    # (path, reason) of each file or link under the folder that is in no split.
    skipped: list = dataclasses.field(default_factory=list)


def check_image_size(image_size, name="--image-size"):
    """The image side as an int, refused outside 1..MAX_IMAGE_SIZE. TensorFlow bounds nothing
    here: an oversized resize fails inside the pipeline, and a dataset that skips its errors
    then drops every image."""
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or not (
        1 <= image_size <= MAX_IMAGE_SIZE
    ):
        raise ValueError(
            f"{name} must be a whole number of pixels from 1 to {MAX_IMAGE_SIZE}; received {image_size!r}."
        )
    return int(image_size)


def _pathconf(key, default):
    try:
        return os.pathconf("/", key)
    except (AttributeError, OSError, ValueError):  # no pathconf on Windows
        return default


def check_folder(path, name="--data"):
    """Raises OSError saying why `path` is not a readable folder. `os.path.isdir` answers
    False for every failure (missing, too long, a symlink loop, no permission), so this stats
    the path and keeps the reason."""
    path = os.fspath(path)
    shown = repr(path) if len(path) <= 100 else f"'{path[:50]}...{path[-30:]}'"
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:
            encoded = os.fsencode(path)
            longest = max(len(part) for part in encoded.split(os.fsencode(os.sep)))
            name_max, path_max = _pathconf("PC_NAME_MAX", 255), _pathconf("PC_PATH_MAX", 4096)
            if longest > name_max:
                detail = f"one name in it is {longest} bytes long; the system's limit is {name_max} (PC_NAME_MAX)"
            else:
                detail = f"it is {len(encoded)} bytes long; the system's limit is {path_max} (PC_PATH_MAX)"
            raise OSError(errno.ENAMETOOLONG, f"{name} {shown}: the path is too long: {detail}.") from error
        raise OSError(error.errno, f"{name} {shown}: {error.strerror}.") from error
    if not stat.S_ISDIR(mode):
        raise NotADirectoryError(errno.ENOTDIR, f"{name} {shown} is a file; expected a folder.")
    if not os.access(path, os.R_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"{name} {shown}: the folder is not readable.")
    return path


def decode_rgb(data):
    """An encoded image as uint8 RGB `(H, W, 3)`. `tf.io.decode_image(channels=3)` refuses RGBA
    WebP ("Number of channels requested does not match input"), so this decodes the stored
    channels and then drops alpha or repeats gray, as `channels=3` does for PNG."""
    image = tf.io.decode_image(data, channels=0, expand_animations=False)
    image = tf.cond(tf.shape(image)[-1] < 3, lambda: tf.tile(image[..., :1], [1, 1, 3]), lambda: image[..., :3])
    image.set_shape((None, None, 3))
    return image


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

    image_size = check_image_size(image_size)
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

    image_size = check_image_size(image_size)
    parts = spec.split(":", 2)
    name = parts[1] if len(parts) > 1 else ""
    if not name:
        raise ValueError(f"--data {spec!r}: expected tfds:NAME[:SPLITS], e.g. tfds:tf_flowers.")
    splits = parts[2].split(",") if len(parts) > 2 and parts[2] else None
    if splits and (len(splits) > 3 or not all(split.strip() for split in splits)):
        raise ValueError(
            f"--data {spec!r}: expected up to three comma-separated splits (train, validation, test), "
            f"e.g. tfds:{name}:train[:80%],train[80%:90%],test; received {parts[2]!r}."
        )
    builder = tfds.builder(name, data_dir=data_dir)
    available = list(builder.info.splits.keys()) if builder.info.splits else ["train"]
    if not splits:
        splits = (["train", "validation", "test"] if {"test", "validation"} <= set(available)
                  else ["train[:90%]", "train[90%:]", "test"] if "test" in available
                  else ["train[:70%]", "train[70%:80%]", "train[80%:]"])
    if len(splits) == 1:
        base = splits[0]
        splits = [f"{base}[:70%]", f"{base}[70%:80%]", f"{base}[80%:]"]
    if len(splits) == 2:
        splits = [splits[0], splits[1], splits[1]]
    builder.download_and_prepare()
    datasets = []
    for role, split in zip(("train", "validation", "test"), splits):
        try:
            dataset = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
        except ValueError as error:  # tensorflow-datasets explains the split, but not which --data
            raise ValueError(f"--data {spec!r}: the {role} split {split!r}: {error}") from error
        if dataset.cardinality() == 0:
            raise ValueError(f"--data {spec!r}: the {role} split {split!r} has 0 examples; expected at least 1.")
        datasets.append(
            dataset.map(lambda image, label: _resize(image, label, image_size), num_parallel_calls=AUTOTUNE)
        )
    label_feature = builder.info.features["label"]
    class_names = list(label_feature.names)
    return Splits(*datasets, class_names)


def read_rgb(path):
    """An image file as uint8 RGB `(H, W, 3)`; OSError when it cannot be read, ValueError naming
    it when it does not decode (TensorFlow's own errors name neither the file nor the path)."""
    with open(path, "rb") as file:
        data = file.read()
    try:
        return decode_rgb(data).numpy()
    except tf.errors.OpError as error:
        reason = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:.*", "", error.message)
        raise ValueError(f"'{path}' does not decode as an image: {reason}") from error


def _decode_error(path):
    """Why `path` is not a usable image, or None."""
    try:
        read_rgb(path)
    except (OSError, ValueError) as error:
        return str(error)
    return None


def _files_under(folder, taken):
    """`(files, links)` under `folder`: its files in the order Keras's
    `image_dataset_from_directory` lists them (folders sorted, then names), and the links not
    followed. Symlinks are followed, except to a folder in `taken` (real paths: the data folder,
    the class folders) or one already listed: `os.walk(followlinks=True)` alone recurses forever
    on a link to a parent folder."""

    def fail(error):
        raise OSError(error.errno, f"cannot read the folder {error.filename!r}: {error.strerror}.") from error

    seen, walked, links = set(taken), [], []
    for root, folders, files in os.walk(folder, followlinks=True, onerror=fail):
        real = os.path.realpath(root)
        if real in seen and root != folder:
            folders[:] = []
            links.append(root)
            continue
        seen.add(real)
        walked.append((root, files))
    return [os.path.join(root, name) for root, files in sorted(walked) for name in sorted(files)], links


def load_folder(directory, image_size, seed=0):
    """An image folder with one subfolder per class (hidden ones excepted). Every file in a
    class folder is used or counted in `skipped_files` with its reason (not an image type,
    does not decode); grayscale and RGBA images become RGB. A class folder without a
    readable image is refused. Split 70/10/20 stratified by `seed`."""
    # Keras's image_dataset_from_directory would list no .webp, keep an empty folder as a
    # class, and fail on a corrupt file inside the pipeline; so the files are listed and
    # checked here, and decoded and resized the way it does (bilinear).
    directory = check_folder(directory)
    image_size = check_image_size(image_size)
    entries = sorted(os.listdir(directory))
    class_names = [d for d in entries if not d.startswith(".") and os.path.isdir(os.path.join(directory, d))]
    if len(class_names) < 2:
        raise ValueError(
            f"--data {directory!r}: expected one subfolder per class and at least 2 classes; "
            f"found {len(class_names)}."
        )
    loose = [os.path.join(directory, f) for f in entries if f.lower().endswith(IMAGE_EXTENSIONS)]
    skipped = [(path, f"'{path}' is outside the class folders") for path in loose if os.path.isfile(path)]
    paths, labels = [], []
    taken = {os.path.realpath(os.path.join(directory, name)) for name in ["", *class_names]}
    for label, name in enumerate(class_names):
        files, links = _files_under(os.path.join(directory, name), taken)
        skipped += [(link, f"'{link}' links to a folder listed elsewhere; not followed") for link in links]
        for path in files:
            reason = (_decode_error(path) if path.lower().endswith(IMAGE_EXTENSIONS)
                      else f"'{path}' is not an image file ({', '.join(IMAGE_EXTENSIONS)})")
            if reason:
                skipped.append((path, reason))
            else:
                paths.append(path)
                labels.append(label)
    if skipped:
        shown = "; ".join(reason for _, reason in skipped[:10])
        logger.warning("Skipping %d file(s) in %s: %s%s", len(skipped), directory, shown,
                       "; ..." if len(skipped) > 10 else "")
    labels = np.array(labels, np.int32)
    empty = [os.path.join(directory, name) for i, name in enumerate(class_names) if not (labels == i).any()]
    if empty:
        raise ValueError(
            f"--data {directory!r}: class folder(s) {', '.join(map(repr, empty))} have no readable image; "
            f"expected images ({', '.join(IMAGE_EXTENSIONS)}) in every class folder."
        )
    try:
        splits = _stratified_split(labels, seed)
    except ValueError as error:
        raise ValueError(f"--data {directory!r}: {error}") from error
    paths = np.array(paths)

    def read(path, label):
        image = tf.image.resize(decode_rgb(tf.io.read_file(path)), (image_size, image_size), method="bilinear")
        return image, label

    def subset(index):
        index = np.sort(index)  # file order, as before
        return tf.data.Dataset.from_tensor_slices((paths[index], labels[index])).map(read, num_parallel_calls=AUTOTUNE)

    return Splits(*(subset(index) for index in splits), class_names, len(skipped), skipped)


def load_data(spec, image_size, data_dir=None, seed=0):
    """Resolves `--data`: "digits", "tfds:NAME[:SPLITS]" or a folder path."""
    spec = os.fspath(spec)
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
    augmentation (training only) and prefetch. An empty dataset is refused."""
    if dataset.cardinality() == 0:
        raise ValueError("make_pipeline: the dataset has 0 examples; expected at least 1 (image, label) pair.")
    if resized_crop:
        image_size = check_image_size(image_size, "make_pipeline(image_size=...)")
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
