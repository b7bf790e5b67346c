"""Input pipelines for semantic segmentation: the embedded digit scenes, folders of images
and masks, and tensorflow-datasets sets with a segmentation mask.

Every source gives `SegmentationSplits`: uint8 images `(N, H, W, 3)` and uint8 masks
`(N, H, W)` of class ids, 255 meaning "ignore". TensorFlow-specific code lives here.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

IGNORE_INDEX = 255
SCENE_SIZE = 64
SCENE_COUNTS = {"train": 3000, "validation": 300, "test": 500}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


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


def _decode_mask(path):
    data = tf.io.read_file(path)
    mask = tf.io.decode_png(data, channels=0, dtype=tf.uint8)
    return mask.numpy()


def load_segmentation_folder(directory, seed=0, image_size=None):
    """A folder with `images/` and `masks/` matched by file stem; masks are
    single-channel PNGs of class ids (255: ignore). `classes.txt` (one name per line) is
    optional. Images are resized to `image_size` (bilinear, masks nearest) when given.

    Returns:
        `SegmentationSplits`, split 70/10/20 at random by `seed`.
    """
    directory = os.fspath(directory)
    image_dir, mask_dir = os.path.join(directory, "images"), os.path.join(directory, "masks")
    for path in (image_dir, mask_dir):
        if not os.path.isdir(path):
            raise OSError(f"--data {directory!r}: no '{os.path.basename(path)}/' folder; expected images/ and masks/.")

    def stems(folder, suffixes):
        return {os.path.splitext(f)[0]: os.path.join(folder, f) for f in sorted(os.listdir(folder))
                if f.lower().endswith(suffixes)}

    images, masks = stems(image_dir, IMAGE_SUFFIXES), stems(mask_dir, (".png",))
    for missing, have, kind in ((set(images) - set(masks), images, "mask"), (set(masks) - set(images), masks, "image")):
        if missing:
            name = have[sorted(missing)[0]]
            raise ValueError(f"'{name}' has no matching {kind} (matched by file stem); every image needs a mask.")
    class_file = os.path.join(directory, "classes.txt")
    class_names = None
    if os.path.isfile(class_file):
        class_names = [line.strip() for line in open(class_file) if line.strip()]
    pixels, labels = [], []
    for stem in sorted(images):
        image = tf.io.decode_image(tf.io.read_file(images[stem]), channels=3, expand_animations=False).numpy()
        mask = _decode_mask(masks[stem])
        if mask.shape[-1] != 1:
            raise ValueError(
                f"'{masks[stem]}' has {mask.shape[-1]} channels; a mask must be a single-channel PNG of class ids."
            )
        mask = mask[..., 0]
        if mask.shape != image.shape[:2]:
            raise ValueError(
                f"'{masks[stem]}' is {mask.shape[1]}x{mask.shape[0]} but its image is "
                f"{image.shape[1]}x{image.shape[0]}; a mask must have its image's size."
            )
        if image_size:
            image = tf.cast(tf.image.resize(image, (image_size, image_size)), tf.uint8).numpy()
            mask = tf.image.resize(mask[..., None], (image_size, image_size), method="nearest").numpy()[..., 0]
        pixels.append(image)
        labels.append(mask)
    if len({p.shape for p in pixels}) > 1:
        raise ValueError(f"--data {directory!r}: images have different sizes; pass --image-size to resize them.")
    pixels, labels = np.stack(pixels), np.stack(labels)
    valid = labels[labels != IGNORE_INDEX]
    num_classes = len(class_names) if class_names else int(valid.max()) + 1 if valid.size else 1
    if valid.size and valid.max() >= num_classes:
        raise ValueError(
            f"--data {directory!r}: a mask has class id {int(valid.max())}, but classes.txt names "
            f"{num_classes} classes (ids 0..{num_classes - 1}, and 255 for ignore)."
        )
    class_names = class_names or [str(i) for i in range(num_classes)]
    if len(pixels) < 3:
        raise ValueError(f"--data {directory!r}: {len(pixels)} images; at least 3 are needed for train/validation/test.")
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

    parts = spec[len("tfds:"):].split(":")
    name = parts[0]
    train_split, test_split = (parts[1].split(",") + ["test"])[:2] if len(parts) > 1 else ("train", "test")
    builder = tfds.builder(name, data_dir=data_dir)
    features = builder.info.features
    mask_key = next((k for k in ("segmentation_mask", "mask", "label") if k in features and
                     len(getattr(features[k], "shape", ())) == 3), None)
    if mask_key is None:
        raise ValueError(f"--data {spec!r}: the dataset has no segmentation mask feature; found {list(features)}.")
    builder.download_and_prepare()
    offset = 1 if name == "oxford_iiit_pet" else 0  # trimaps are 1-based

    def load(split):
        images, masks = [], []
        for example in tfds.as_numpy(builder.as_dataset(split=split)):
            image = tf.image.resize(example["image"], (image_size, image_size))
            mask = tf.image.resize(example[mask_key], (image_size, image_size), method="nearest")
            images.append(tf.cast(image, tf.uint8).numpy())
            masks.append(mask.numpy()[..., 0].astype(np.uint8) - offset)
        return np.stack(images), np.stack(masks)

    train_images, train_masks = load(train_split)
    order = np.random.default_rng(seed).permutation(len(train_images))
    cut = max(1, len(order) // 10)
    num_classes = int(max(m[m != IGNORE_INDEX].max() for m in (train_masks,))) + 1
    names = ["pet", "background", "border"] if name == "oxford_iiit_pet" else [str(i) for i in range(num_classes)]
    return SegmentationSplits(
        (train_images[order[cut:]], train_masks[order[cut:]]),
        (train_images[order[:cut]], train_masks[order[:cut]]),
        load(test_split),
        names,
    )


def load_segmentation_data(spec, image_size=None, data_dir=None, seed=0):
    """Dispatches `--data` for segmentation: "digit-scenes", "tfds:NAME", or a folder."""
    if spec == "digit-scenes":
        return digit_scenes(seed)
    if spec.startswith("tfds:"):
        return load_segmentation_tfds(spec, image_size or 128, data_dir, seed)
    if os.path.isdir(spec):
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
