"""Input pipelines for semantic segmentation: the embedded digit scenes, folders of images
and masks, and tensorflow-datasets sets with a segmentation mask.

Every source gives `SegmentationSplits`: uint8 images `(N, H, W, 3)` and uint8 masks
`(N, H, W)` of class ids, 255 meaning "ignore". TensorFlow-specific code lives here.
"""

import dataclasses
import io
import logging
import os

import numpy as np
import tensorflow as tf

from keras_swin.data.classification import IMAGE_EXTENSIONS, check_folder, check_image_size, read_rgb

logger = logging.getLogger("keras_swin")

IGNORE_INDEX = 255
SCENE_SIZE = 64
SCENE_COUNTS = {"train": 3000, "validation": 300, "test": 500}
IMAGE_SUFFIXES = IMAGE_EXTENSIONS


@dataclasses.dataclass
class SegmentationSplits:
    train: tuple
    validation: tuple
    test: tuple
    class_names: list


# --------------------------------------------------------------------------- digit scenes


def _linear_resize_matrix(in_size, out_size):
    """`(out_size, in_size)` bilinear weights with half-pixel centres (edge clamped)."""
    source = np.clip((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0, in_size - 1)
    lower = np.floor(source).astype(int)
    upper = np.minimum(lower + 1, in_size - 1)
    weight = source - lower
    matrix = np.zeros((out_size, in_size))
    matrix[np.arange(out_size), lower] += 1 - weight
    matrix[np.arange(out_size), upper] += weight
    return matrix


def _compose_scene(rng, digit_images, digit_labels, size=SCENE_SIZE):
    """One canvas with 1-4 digits: `(image float in [0, 1], mask uint8, objects)`, with
    `objects` a list of `(top, left, bottom, right, digit)`: each digit's labelled extent."""
    canvas = np.zeros((size, size))
    mask = np.zeros((size, size), np.uint8)
    boxes, objects = [], []
    for _ in range(rng.integers(1, 5)):
        index = rng.integers(len(digit_images))
        side = int(rng.integers(12, 29))
        # Place with little overlap: at most 15% of the smaller box shared with any other.
        for _attempt in range(20):
            top, left = (int(v) for v in rng.integers(0, size - side + 1, 2))
            if all(
                max(0, min(top + side, t + s) - max(top, t)) * max(0, min(left + side, l + s) - max(left, l))
                <= 0.15 * min(side, s) ** 2
                for t, l, s in boxes
            ):
                break
        else:
            continue
        boxes.append((top, left, side))
        matrix = _linear_resize_matrix(8, side)
        digit = matrix @ digit_images[index] @ matrix.T
        digit = digit / max(digit.max(), 1e-6)
        region = canvas[top : top + side, left : left + side]
        canvas[top : top + side, left : left + side] = np.maximum(region, digit)
        labelled = digit > 0.3
        mask[top : top + side, left : left + side][labelled] = digit_labels[index] + 1
        rows, cols = np.nonzero(labelled)
        objects.append((top + rows.min(), left + cols.min(), top + rows.max() + 1, left + cols.max() + 1,
                        int(digit_labels[index])))
    noise = rng.normal(0.0, 0.04, canvas.shape)
    return np.clip(canvas + noise, 0.0, 1.0), mask, objects


def digit_scenes(seed=0, counts=None, with_boxes=False):
    """Scenes of scikit-learn's real handwritten digits, in the style of M2NIST.

    The 1,797 digits are split first (stratified 80/20 by `seed`), so that test scenes
    hold only unseen digits; train and validation scenes draw from the 80%. Each 64x64
    scene has 1-4 digits, each upscaled to a random side of 12-28 px and placed with
    little overlap, plus light Gaussian noise. The mask is digit + 1 where the upscaled
    digit is above 0.3 of its maximum, else 0 (background): 11 classes.

    Returns:
        `SegmentationSplits` with `counts` scenes per split (default 3,000 / 300 / 500);
        with `with_boxes`, also `{split: [objects of each scene]}`, each object
        `(top, left, bottom, right, digit)` in pixels (the digit's labelled extent), for
        detection.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    counts = {**SCENE_COUNTS, **(counts or {})}
    digits = load_digits()
    images, labels = digits.images.astype(np.float64), digits.target
    pool, held_out = train_test_split(
        np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=seed
    )
    rng = np.random.default_rng(seed)
    splits, boxes = {}, {}
    for name, indices in (("train", pool), ("validation", pool), ("test", held_out)):
        scenes = [_compose_scene(rng, images[indices], labels[indices]) for _ in range(counts[name])]
        pixels = np.stack([s[0] for s in scenes])
        splits[name] = (
            np.repeat((pixels * 255).round().astype(np.uint8)[..., None], 3, axis=-1),
            np.stack([s[1] for s in scenes]),
        )
        boxes[name] = [s[2] for s in scenes]
    names = ["background"] + [str(d) for d in range(10)]
    result = SegmentationSplits(splits["train"], splits["validation"], splits["test"], names)
    return (result, boxes) if with_boxes else result


# --------------------------------------------------------------------------- folders


def _read_mask(path):
    """A mask's class ids, int64 `(H, W)`. Read with Pillow: TensorFlow's `decode_png` gives a
    palette (mode P) mask's RGB colours, and a 16-bit mask's top 8 bits (with dtype=uint16 it
    multiplies 8-bit ids by 257), losing the ids either way."""
    from PIL import Image

    with open(path, "rb") as file:  # OSError naming the file
        data = file.read()
    try:
        with Image.open(io.BytesIO(data)) as image:
            mode, kind, ids = image.mode, image.format, np.array(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:  # Pillow's decode errors
        raise ValueError(f"'{path}' does not decode as a PNG mask: {error}") from error
    if kind != "PNG":
        raise ValueError(f"'{path}' is a {kind} file; a mask must be a PNG (lossless) of class ids.")
    if ids.ndim != 2:
        raise ValueError(
            f"'{path}' has {ids.shape[-1]} channels; a mask must be a single-channel PNG of class ids "
            f"(8- or 16-bit grayscale, or a palette); received mode {mode}."
        )
    ids = ids.astype(np.int64)
    if ids.max() > IGNORE_INDEX:
        found = np.unique(ids[ids > IGNORE_INDEX])
        raise ValueError(f"'{path}' has class ids {_spans(found)}; expected 0..254, and 255 for ignore.")
    return ids


def _spans(ids):
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    spans = []
    for i in map(int, ids):
        if spans and spans[-1][1] == i - 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in spans)


def _by_stem(folder, suffixes, kind):
    """`{stem: path}` of the files in `folder` ending in `suffixes`; two with one stem are
    refused, and other entries are logged as ignored."""
    found, ignored = {}, []
    for name in sorted(os.listdir(folder)):
        path, (stem, suffix) = os.path.join(folder, name), os.path.splitext(name)
        if suffix.lower() not in suffixes or not os.path.isfile(path):
            ignored.append(path)
        elif stem in found:
            raise ValueError(
                f"'{found[stem]}' and '{path}' have the same stem {stem!r}; images and masks are matched "
                f"by file stem, so each stem must name one {kind}."
            )
        else:
            found[stem] = path
    if ignored:
        logger.warning("Ignoring %d entries that are not %s files (%s): %s", len(ignored), kind,
                       ", ".join(suffixes), ", ".join(ignored[:10]) + (", ..." if len(ignored) > 10 else ""))
    return found


def _class_names(directory, class_names, first_file):
    """Checks the ids found (`first_file`: {id: the first mask holding it}) against
    classes.txt, or without it requires ids 0..K-1 with none missing, K >= 2."""
    ids = sorted(set(first_file) - {IGNORE_INDEX})
    if not ids:
        raise ValueError(
            f"--data {directory!r}: every mask pixel is {IGNORE_INDEX} (ignore); expected class ids 0..254."
        )
    if class_names:
        if not 2 <= len(class_names) <= IGNORE_INDEX:
            raise ValueError(f"--data {directory!r}: classes.txt names {len(class_names)} classes; "
                             f"expected 2 to {IGNORE_INDEX} (id 255 is ignore).")
        if ids[-1] >= len(class_names):
            raise ValueError(
                f"--data {directory!r}: '{first_file[ids[-1]]}' has class id {ids[-1]}, but classes.txt names "
                f"{len(class_names)} classes (ids 0..{len(class_names) - 1}, and 255 for ignore)."
            )
        return class_names
    if ids == [0]:
        also = " and 255 (ignore)" if IGNORE_INDEX in first_file else ""
        raise ValueError(
            f"--data {directory!r}: the masks hold only class id 0{also}; expected at least 2 classes. "
            "A binary mask must store its foreground as 1: 255 means ignore."
        )
    missing = sorted(set(range(ids[-1] + 1)) - set(ids))
    if missing:
        raise ValueError(
            f"--data {directory!r}: the masks hold class ids {_spans(ids)} (id {ids[-1]} first in "
            f"'{first_file[ids[-1]]}'); without classes.txt the ids must run 0..K-1 with none missing, "
            f"and {_spans(missing)} are. Add classes.txt (one class name a line, id 0 first) or fix the masks."
        )
    return [str(i) for i in range(ids[-1] + 1)]


def load_segmentation_folder(directory, seed=0, image_size=None):
    """A folder with `images/` and `masks/` matched by file stem (one file a stem); masks are
    single-channel PNGs of class ids (8- or 16-bit grayscale or palette; 255: ignore).
    `classes.txt` (one name a line) names the classes; without it the ids must run 0..K-1
    with none missing. Images are resized to `image_size` (bilinear, masks nearest) when given.

    Returns:
        `SegmentationSplits`, split 70/10/20 at random by `seed`.
    """
    directory = check_folder(directory)
    if image_size is not None:
        image_size = check_image_size(image_size)
    image_dir, mask_dir = os.path.join(directory, "images"), os.path.join(directory, "masks")
    for path in (image_dir, mask_dir):
        if not os.path.isdir(path):
            raise OSError(f"--data {directory!r}: no '{os.path.basename(path)}/' folder; expected images/ and masks/.")
        check_folder(path)
    images, masks = _by_stem(image_dir, IMAGE_SUFFIXES, "image"), _by_stem(mask_dir, (".png",), "mask")
    for missing, have, kind in ((set(images) - set(masks), images, "mask"), (set(masks) - set(images), masks, "image")):
        if missing:
            name = have[sorted(missing)[0]]
            raise ValueError(f"'{name}' has no matching {kind} (matched by file stem); every image needs a mask.")
    if len(images) < 3:
        raise ValueError(f"--data {directory!r}: {len(images)} image/mask pairs; at least 3 are needed for "
                         "train/validation/test.")
    class_file = os.path.join(directory, "classes.txt")
    class_names = None
    if os.path.isfile(class_file):
        with open(class_file, encoding="utf-8") as file:
            class_names = [line.strip() for line in file if line.strip()]
    stems = sorted(images)
    pixels, labels, first_file = [], [], {}
    for stem in stems:
        image, mask = read_rgb(images[stem]), _read_mask(masks[stem])
        if mask.shape != image.shape[:2]:
            raise ValueError(
                f"'{masks[stem]}' is {mask.shape[1]}x{mask.shape[0]} but its image is "
                f"{image.shape[1]}x{image.shape[0]}; a mask must have its image's size."
            )
        for i in np.unique(mask):
            first_file.setdefault(int(i), masks[stem])
        mask = mask.astype(np.uint8)
        if image_size:
            image = tf.cast(tf.image.resize(image, (image_size, image_size)), tf.uint8).numpy()
            mask = tf.image.resize(mask[..., None], (image_size, image_size), method="nearest").numpy()[..., 0]
        pixels.append(image)
        labels.append(mask)
    odd = next((i for i, p in enumerate(pixels) if p.shape != pixels[0].shape), None)
    if odd is not None:
        raise ValueError(
            f"--data {directory!r}: images have different sizes ('{images[stems[0]]}' is "
            f"{pixels[0].shape[1]}x{pixels[0].shape[0]}, '{images[stems[odd]]}' is "
            f"{pixels[odd].shape[1]}x{pixels[odd].shape[0]}); pass --image-size to resize them."
        )
    class_names = _class_names(directory, class_names, first_file)
    pixels, labels = np.stack(pixels), np.stack(labels)
    order = np.random.default_rng(seed).permutation(len(pixels))
    test_count = max(1, round(0.2 * len(order)))
    validation_count = max(1, round(0.1 * len(order)))
    test, validation, train = np.split(order, [test_count, test_count + validation_count])
    return SegmentationSplits(
        (pixels[train], labels[train]), (pixels[validation], labels[validation]), (pixels[test], labels[test]),
        class_names,
    )


# --------------------------------------------------------------------------- tfds


def load_segmentation_tfds(spec, image_size, data_dir=None, seed=0):
    """`tfds:NAME[:TRAIN,TEST]` with an image and a segmentation mask feature (for example
    `tfds:oxford_iiit_pet`, whose trimaps 1/2/3 become classes 0/1/2). Images are
    resized to `image_size` (masks nearest); 10% of the train split is for validation."""
    import tensorflow_datasets as tfds

    image_size = check_image_size(image_size)
    parts = spec[len("tfds:"):].split(":", 1)  # a split spec may hold a colon: train[:80%]
    name, splits = parts[0], (parts[1].split(",") if len(parts) > 1 else ["train"])
    if not name or len(splits) > 2 or not all(split.strip() for split in splits):
        raise ValueError(f"--data {spec!r}: expected tfds:NAME[:TRAIN[,TEST]], e.g. tfds:oxford_iiit_pet:train,test.")
    train_split, test_split = (splits + ["test"])[:2]
    builder = tfds.builder(name, data_dir=data_dir)
    features = builder.info.features
    mask_key = next((k for k in ("segmentation_mask", "mask", "label") if k in features and
                     len(getattr(features[k], "shape", ())) == 3), None)
    if mask_key is None:
        raise ValueError(f"--data {spec!r}: the dataset has no segmentation mask feature; found {list(features)}.")
    builder.download_and_prepare()
    offset = 1 if name == "oxford_iiit_pet" else 0  # trimaps are 1-based

    def load(split, role):
        try:
            dataset = builder.as_dataset(split=split)
        except ValueError as error:  # tensorflow-datasets explains the split, but not which --data
            raise ValueError(f"--data {spec!r}: the {role} split {split!r}: {error}") from error
        images, masks = [], []
        for example in tfds.as_numpy(dataset):
            image = tf.image.resize(example["image"], (image_size, image_size))
            mask = tf.image.resize(example[mask_key], (image_size, image_size), method="nearest")
            images.append(tf.cast(image, tf.uint8).numpy())
            masks.append(mask.numpy()[..., 0].astype(np.uint8) - offset)
        if len(images) < (2 if role == "train" else 1):
            raise ValueError(f"--data {spec!r}: the {role} split {split!r} has {len(images)} examples; expected at "
                             f"least {2 if role == 'train' else 1}.")
        return np.stack(images), np.stack(masks)

    train_images, train_masks = load(train_split, "train")
    order = np.random.default_rng(seed).permutation(len(train_images))
    cut = max(1, len(order) // 10)
    ids = train_masks[train_masks != IGNORE_INDEX]
    if not ids.size:
        raise ValueError(f"--data {spec!r}: every train mask pixel is {IGNORE_INDEX} (ignore); expected class ids.")
    num_classes = int(ids.max()) + 1
    names = ["pet", "background", "border"] if name == "oxford_iiit_pet" else [str(i) for i in range(num_classes)]
    return SegmentationSplits(
        (train_images[order[cut:]], train_masks[order[cut:]]),
        (train_images[order[:cut]], train_masks[order[:cut]]),
        load(test_split, "test"),
        names,
    )


def load_segmentation_data(spec, image_size=None, data_dir=None, seed=0):
    """Dispatches `--data` for segmentation: "digit-scenes", "tfds:NAME", or a folder."""
    spec = os.fspath(spec)
    if spec == "digit-scenes":
        return digit_scenes(seed)
    if spec.startswith("tfds:"):
        return load_segmentation_tfds(spec, image_size or 128, data_dir, seed)
    if os.path.sep in spec or os.path.exists(spec):
        return load_segmentation_folder(spec, seed, image_size)
    raise ValueError(
        f"--data {spec!r} is not a segmentation source; expected digit-scenes, tfds:NAME or a folder "
        "with images/ and masks/."
    )


# --------------------------------------------------------------------------- pipelines


def augmentation_layers(seed=0, flip=True):
    """Joint image/mask augmentation with Keras preprocessing layers (dict inputs
    `{"images", "segmentation_masks"}`): a horizontal flip when `flip`."""
    import keras

    return [keras.layers.RandomFlip("horizontal", seed=seed)] if flip else []


def _random_scale_crop(image, mask, size, seed, scale=(0.75, 1.25)):
    """Rescales the pair by a random factor (bilinear image, nearest mask), pads with
    ignore, and crops a random `size x size` window back out."""
    factor = tf.random.stateless_uniform((), seed=seed, minval=scale[0], maxval=scale[1])
    side = tf.cast(tf.round(factor * size), tf.int32)
    image = tf.image.resize(image, (side, side))
    mask = tf.image.resize(mask, (side, side), method="nearest")
    pad = tf.maximum(size - side, 0)
    image = tf.pad(image, [[0, pad], [0, pad], [0, 0]])
    mask = tf.pad(mask - IGNORE_INDEX, [[0, pad], [0, pad], [0, 0]]) + IGNORE_INDEX
    both = tf.concat([image, tf.cast(mask, tf.float32)], axis=-1)
    both = tf.image.stateless_random_crop(both, (size, size, 4), seed=seed + 1)
    return both[..., :3], tf.cast(both[..., 3:], tf.int32)


def make_segmentation_pipeline(split, batch_size, training=False, augment="none", seed=0):
    """A batched `tf.data` pipeline of `(float32 images in [0, 255], int32 masks (B, H, W))`.

    `augment`: "none", or "flip-scale-crop" (horizontal flip, random scale in
    [0.75, 1.25] and crop, applied to image and mask together).
    """
    images, masks = split
    if len(images) == 0 or len(images) != len(masks):
        raise ValueError(f"make_segmentation_pipeline: the split has {len(images)} images and {len(masks)} masks; "
                         "expected as many masks as images, and at least 1.")
    dataset = tf.data.Dataset.from_tensor_slices((images, masks))
    if training:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    size = images.shape[1]

    def to_float(image, mask):
        return tf.cast(image, tf.float32), tf.cast(mask, tf.int32)

    dataset = dataset.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment == "flip-scale-crop":
        counter = tf.data.Dataset.counter(seed * 1_000_003)
        dataset = tf.data.Dataset.zip((dataset, counter)).map(
            lambda pair, index: _random_scale_crop(pair[0], pair[1][..., None], size, tf.stack([index, 7]))
        )
        dataset = dataset.map(lambda image, mask: (image, mask[..., 0]))
        flips = augmentation_layers(seed)

        def flip(image, mask):
            out = {"images": image, "segmentation_masks": mask[..., None]}
            for layer in flips:
                out = layer(out, training=True)
            return out["images"], tf.cast(out["segmentation_masks"][..., 0], tf.int32)

        dataset = dataset.batch(batch_size).map(flip)
    elif augment not in ("none", "flip-scale-crop"):
        raise ValueError(f"--augment for segmentation must be none or flip-scale-crop; received {augment!r}.")
    else:
        dataset = dataset.batch(batch_size)
    return dataset.prefetch(tf.data.AUTOTUNE)
