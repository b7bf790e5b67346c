"""Input pipelines for object detection: the embedded digit scenes with their boxes, COCO-format
folders (`images/` and an instances JSON), and tensorflow-datasets `voc/2007` and `coco/2017`.

Every source gives `DetectionSplits`: per split `(images, boxes, labels)` with uint8 images
`(N, S, S, 3)` at the detector's size, float32 boxes `(N, M, 4)` in yxyx pixels of that size
and int32 labels `(N, M)`, rows past an image's objects padded with -1 (keras-hub's
convention). Images are resized to the detector's size (keras-hub's anchors are built for one
size), the boxes scaled with them.
"""

import dataclasses
import json
import logging
import os

import keras
import numpy as np
import tensorflow as tf

from keras_swin.data.classification import IMAGE_EXTENSIONS, check_folder, check_image_size, read_rgb
from keras_swin.data import segmentation
from keras_swin.data.segmentation import SCENE_SIZE

logger = logging.getLogger("keras_swin")

AUGMENTS = ("none", "zoom-translate", "flip-zoom-translate")
# The instances JSON of a COCO-format folder: this name, else the only .json beside images/
# or in annotations/.
COCO_JSON = "annotations.json"
COCO_KEYS = ("images", "annotations", "categories")
TFDS_TEST_SPLITS = {"voc": "test", "coco": "validation"}  # coco/2017's test split has no boxes


@dataclasses.dataclass
class DetectionSplits:
    train: tuple
    validation: tuple
    test: tuple
    class_names: list
    # How many boxes reaching outside their image were clipped to it, over all splits.
    clipped_boxes: int = 0


def pad_objects(objects, max_objects=None):
    """`[[(top, left, bottom, right, label), ...] per image]` -> boxes `(N, M, 4)` float32
    and labels `(N, M)` int32, padded with -1 to M = the most objects of any image (at least 1)."""
    count = max([len(o) for o in objects] + [1]) if max_objects is None else max_objects
    boxes = -np.ones((len(objects), count, 4), np.float32)
    labels = -np.ones((len(objects), count), np.int32)
    for i, image_objects in enumerate(objects):
        for j, (*box, label) in enumerate(image_objects):
            boxes[i, j], labels[i, j] = box, label
    return boxes, labels


def _resize(images, size):
    return tf.cast(tf.round(tf.image.resize(images, (size, size))), tf.uint8).numpy()


# --------------------------------------------------------------------------- digit scenes


def digit_scene_detection(image_size=128, seed=0, counts=None):
    """The digit scenes (`keras_swin.data.segmentation.digit_scenes`) as a detection set:
    each digit's box (its labelled extent) and class 0-9; test scenes hold only digits unseen
    in training. The 64x64 scenes are resized to `image_size` (default 128), so their 12-28 px
    digits become 24-56 px: the smallest then match P3's anchors (stride 8) of the
    `retinanet_swin_scenes` config.

    Returns:
        `DetectionSplits` (default 3,000 / 300 / 500 scenes), class names "0".."9".
    """
    image_size = check_image_size(image_size, "image_size")
    splits, objects = segmentation.digit_scenes(seed, counts, with_boxes=True)
    scale = image_size / SCENE_SIZE
    result = {}
    for name in ("train", "validation", "test"):
        images = getattr(splits, name)[0]
        scaled = [[(t * scale, l * scale, b * scale, r * scale, d) for t, l, b, r, d in o] for o in objects[name]]
        boxes, labels = pad_objects(scaled, 4)  # digit_scenes places at most 4 digits
        result[name] = (images if image_size == SCENE_SIZE else _resize(images, image_size), boxes, labels)
    return DetectionSplits(result["train"], result["validation"], result["test"], [str(d) for d in range(10)])


# --------------------------------------------------------------------------- COCO folders


def _find_coco_json(directory):
    named = os.path.join(directory, COCO_JSON)
    if os.path.isfile(named):
        return named
    for folder in (directory, os.path.join(directory, "annotations")):
        if os.path.isdir(folder):
            found = sorted(n for n in os.listdir(folder) if n.lower().endswith(".json"))
            if len(found) == 1:
                return os.path.join(folder, found[0])
            if len(found) > 1:
                raise ValueError(
                    f"--data {directory!r}: {len(found)} JSON files in '{folder}' ({', '.join(found[:5])}); "
                    f"expected one COCO instances file (or name it {COCO_JSON})."
                )
    raise OSError(f"--data {directory!r}: no COCO instances JSON ({COCO_JSON}, or one .json beside images/ "
                  "or in annotations/).")


def read_coco_json(path):
    """A COCO instances file as a dict; a ValueError naming the file when it is not JSON or
    not COCO instances (the lists `images`, `annotations` and `categories`)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except ValueError as error:
        raise ValueError(f"'{path}' is not JSON: {error}") from error
    missing = [key for key in COCO_KEYS if not isinstance(data, dict) or not isinstance(data.get(key), list)]
    if missing:
        found = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
        raise ValueError(
            f"'{path}' is not a COCO instances file: expected the lists {list(COCO_KEYS)}; {missing} missing or "
            f"not lists (found {found}). Captions, keypoints-only or panoptic files are not detection data."
        )
    return data


def _field(record, key, kinds, path, what):
    value = record.get(key) if isinstance(record, dict) else None
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise ValueError(f"'{path}': {what} has no valid {key!r} (received {str(record)[:200]}).")
    return value


def coco_objects(data, path, image_sizes):
    """Per image id, `[(top, left, bottom, right, class_index)]` in the image's pixels, and
    the class names, from the parsed COCO instances `data` read from `path`.

    `category_id`s are mapped to 0..K-1 in the order of their ids, keeping the names. Crowd
    annotations (`iscrowd: 1`) are left out, as COCO's evaluation does for detections.
    Boxes reaching outside their image are clipped to it (the count is returned); boxes of
    zero or negative width or height (also after clipping), category ids not in
    `categories` and image ids not in `images` are ValueErrors naming the annotation.

    Args:
        image_sizes: `{image_id: (height, width)}` of the images read.

    Returns:
        `(objects_by_image_id, class_names, clipped_count)`.
    """
    categories = {}
    for category in data["categories"]:
        category_id = _field(category, "id", int, path, "a category")
        categories[category_id] = str(category.get("name", category_id)) if isinstance(category, dict) else ""
    if not categories:
        raise ValueError(f"'{path}' has no categories; expected at least one class.")
    ids = sorted(categories)
    index = {category_id: i for i, category_id in enumerate(ids)}
    objects = {image_id: [] for image_id in image_sizes}
    clipped = 0
    for position, annotation in enumerate(data["annotations"]):
        what = f"annotation {annotation.get('id', f'#{position}') if isinstance(annotation, dict) else f'#{position}'}"
        image_id = _field(annotation, "image_id", (int, str), path, what)
        category_id = _field(annotation, "category_id", int, path, what)
        bbox = _field(annotation, "bbox", list, path, what)
        if annotation.get("iscrowd", 0):
            continue
        if category_id not in index:
            raise ValueError(
                f"'{path}': {what} has category_id {category_id}, which is not in `categories` "
                f"(ids {ids[:20]}{' ...' if len(ids) > 20 else ''})."
            )
        if image_id not in image_sizes:
            raise ValueError(f"'{path}': {what} is for image_id {image_id!r}, which is not in `images`.")
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in bbox):
            raise ValueError(f"'{path}': {what} has bbox {bbox}; expected [x, y, width, height] of 4 finite numbers.")
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            raise ValueError(
                f"'{path}': {what} (image_id {image_id!r}) has a box of zero or negative area: bbox {bbox} "
                "([x, y, width, height]); expected width and height > 0."
            )
        height, width = image_sizes[image_id]
        top, left, bottom, right = max(y, 0.0), max(x, 0.0), min(y + h, height), min(x + w, width)
        if (top, left, bottom, right) != (y, x, y + h, x + w):
            clipped += 1
        if bottom <= top or right <= left:
            raise ValueError(
                f"'{path}': {what} (image_id {image_id!r}) has bbox {bbox}, entirely outside its "
                f"{width}x{height} image: nothing is left after clipping."
            )
        objects[image_id].append((top, left, bottom, right, index[category_id]))
    return objects, [categories[i] for i in ids], clipped


def load_coco_folder(directory, image_size, seed=0):
    """A COCO-format folder: `images/` and an instances JSON (`annotations.json`, or the one
    `.json` beside `images/` or in `annotations/`), the format labelling tools export.
    Images without boxes are kept (negatives). Images are resized to `image_size` square.

    Returns:
        `DetectionSplits`, split 70/10/20 at random by `seed`; `clipped_boxes` counts the
        boxes clipped to their image (also logged).
    """
    directory = check_folder(directory)
    image_size = check_image_size(image_size, "--image-size")
    json_path = _find_coco_json(directory)
    data = read_coco_json(json_path)
    image_dir = os.path.join(directory, "images")
    check_folder(image_dir)
    records, pixels, sizes = [], [], {}
    for position, image in enumerate(data["images"]):
        what = f"image #{position}"
        image_id = _field(image, "id", (int, str), json_path, what)
        file_name = _field(image, "file_name", str, json_path, f"image {image_id!r}")
        path = os.path.join(image_dir, file_name)
        if not os.path.isfile(path):
            raise OSError(f"'{json_path}': image {image_id!r} is '{file_name}', which is not in '{image_dir}'.")
        if os.path.splitext(file_name)[1].lower() not in IMAGE_EXTENSIONS:
            raise ValueError(f"'{path}' is not an image file ({', '.join(IMAGE_EXTENSIONS)}).")
        rgb = read_rgb(path)  # OSError or ValueError naming the file
        sizes[image_id] = rgb.shape[:2]
        records.append(image_id)
        pixels.append(_resize(rgb, image_size))
    if len(records) < 3:
        raise ValueError(f"--data {directory!r}: {len(records)} images in '{json_path}'; at least 3 are needed for "
                         "train/validation/test.")
    objects, class_names, clipped = coco_objects(data, json_path, sizes)
    if clipped:
        logger.warning("%s: clipped %d boxes that reached outside their image to it.", json_path, clipped)
    scaled = []
    for image_id in records:
        height, width = sizes[image_id]
        sy, sx = image_size / height, image_size / width
        scaled.append([(t * sy, l * sx, b * sy, r * sx, c) for t, l, b, r, c in objects[image_id]])
    boxes, labels = pad_objects(scaled)
    images = np.stack(pixels)
    order = np.random.default_rng(seed).permutation(len(images))
    test_count = max(1, round(0.2 * len(order)))
    validation_count = max(1, round(0.1 * len(order)))
    test, validation, train = np.split(order, [test_count, test_count + validation_count])
    pick = lambda rows: (images[rows], boxes[rows], labels[rows])  # noqa: E731
    return DetectionSplits(pick(train), pick(validation), pick(test), class_names, clipped)


# --------------------------------------------------------------------------- tfds


def load_detection_tfds(spec, image_size, data_dir=None, seed=0):
    """`tfds:voc/2007`, `tfds:coco/2017` (or another set whose examples have `image` and
    `objects` with a relative yxyx `bbox` and a `label`), as `tfds:NAME[:TRAIN[,TEST]]`.

    Images are resized to `image_size` square, boxes scaled to its pixels; crowd boxes
    (`objects/is_crowd`) are left out. 10% of the train split is for validation; the test
    split defaults to "test" (VOC) or "validation" (COCO, whose test split has no boxes).
    """
    import tensorflow_datasets as tfds

    image_size = check_image_size(image_size, "--image-size")
    parts = spec[len("tfds:"):].split(":", 1)
    name, splits = parts[0], (parts[1].split(",") if len(parts) > 1 else ["train"])
    if not name or len(splits) > 2 or not all(split.strip() for split in splits):
        raise ValueError(f"--data {spec!r}: expected tfds:NAME[:TRAIN[,TEST]], e.g. tfds:voc/2007:train,test.")
    default_test = TFDS_TEST_SPLITS.get(name.split("/")[0], "test")
    train_split, test_split = (splits + [default_test])[:2]
    builder = tfds.builder(name, data_dir=data_dir)
    features = builder.info.features
    # `objects` is a tfds Sequence of a FeaturesDict (voc, coco).
    objects_feature = getattr(features["objects"], "feature", None) if "objects" in features else None
    has_boxes = objects_feature is not None and "bbox" in objects_feature.keys() and "label" in objects_feature.keys()
    if "image" not in features or not has_boxes:
        raise ValueError(f"--data {spec!r}: the dataset has no `image` and `objects` (bbox, label) features; "
                         f"found {list(features)}.")
    class_names = list(objects_feature["label"].names)
    builder.download_and_prepare()

    def load(split, role):
        try:
            dataset = builder.as_dataset(split=split)
        except ValueError as error:
            raise ValueError(f"--data {spec!r}: the {role} split {split!r}: {error}") from error
        images, objects = [], []
        for example in tfds.as_numpy(dataset):
            images.append(_resize(example["image"], image_size))
            found = example["objects"]
            crowd = found.get("is_crowd", np.zeros(len(found["label"]), bool))
            kept = []
            for box, label, is_crowd in zip(found["bbox"], found["label"], crowd):
                top, left, bottom, right = (float(np.clip(v, 0.0, 1.0)) * image_size for v in box)
                if not is_crowd and bottom > top and right > left:
                    kept.append((top, left, bottom, right, int(label)))
            objects.append(kept)
        if len(images) < (2 if role == "train" else 1):
            raise ValueError(f"--data {spec!r}: the {role} split {split!r} has {len(images)} examples; expected at "
                             f"least {2 if role == 'train' else 1}.")
        return np.stack(images), objects

    train_images, train_objects = load(train_split, "train")
    test_images, test_objects = load(test_split, "test")
    count = max(len(o) for o in train_objects + test_objects + [[0]])
    train_boxes, train_labels = pad_objects(train_objects, max(count, 1))
    test_boxes, test_labels = pad_objects(test_objects, max(count, 1))
    order = np.random.default_rng(seed).permutation(len(train_images))
    cut = max(1, len(order) // 10)
    pick = lambda rows: (train_images[rows], train_boxes[rows], train_labels[rows])  # noqa: E731
    return DetectionSplits(pick(order[cut:]), pick(order[:cut]), (test_images, test_boxes, test_labels), class_names)


def load_detection_data(spec, image_size, data_dir=None, seed=0):
    """Dispatches `--data` for detection: "digit-scenes", "tfds:NAME" or a COCO-format folder."""
    spec = os.fspath(spec)
    if spec == "digit-scenes":
        return digit_scene_detection(image_size, seed)
    if spec.startswith("tfds:"):
        return load_detection_tfds(spec, image_size, data_dir, seed)
    if os.path.sep in spec or os.path.exists(spec):
        return load_coco_folder(spec, image_size, seed)
    raise ValueError(
        f"--data {spec!r} is not a detection source; expected digit-scenes, tfds:voc/2007, tfds:coco/2017 (or "
        "another tfds set with objects) or a COCO-format folder (images/ and an instances JSON)."
    )


def check_labels(splits):
    """A ValueError when a split's labels reach past the class names (a tfds or folder bug)."""
    for name in ("train", "validation", "test"):
        labels = getattr(splits, name)[2]
        if labels.size and labels.max() >= len(splits.class_names):
            raise ValueError(f"The {name} split has class id {int(labels.max())}; there are "
                             f"{len(splits.class_names)} classes (ids 0..{len(splits.class_names) - 1}).")


# --------------------------------------------------------------------------- pipelines


def augmentation_layers(augment, seed=0):
    """Keras's box-aware augmentation layers for `augment` ("none", "zoom-translate",
    "flip-zoom-translate"), each given `bounding_box_format="yxyx"`: they move the boxes
    with the pixels, clip them to the image and set the label of a box left with no area
    to -1. The fill is black (a reflected fill would show objects without boxes).

    The flip is left out of "zoom-translate": a mirrored digit is another shape. Cropping
    is the zoom-in half of `RandomZoom` (a crop resized back): Keras 3.15's `RandomCrop`
    subtracts the row offset from the x coordinates of the boxes and does not clip them.
    """
    if augment not in AUGMENTS:
        raise ValueError(f"--augment for detection must be one of {list(AUGMENTS)}; received {augment!r}.")
    layers = []
    if augment == "flip-zoom-translate":
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed, bounding_box_format="yxyx"))
    if augment != "none":
        layers += [
            keras.layers.RandomZoom((-0.25, 0.25), fill_mode="constant", seed=seed + 1, bounding_box_format="yxyx"),
            keras.layers.RandomTranslation((-0.1, 0.1), (-0.1, 0.1), fill_mode="constant", seed=seed + 2,
                                           bounding_box_format="yxyx"),
        ]
    return layers


def augment_batch(layers, images, boxes, labels):
    """Applies `layers` to a batch; dropped boxes become -1 rows (keras-hub's padding)."""
    data = {"images": images, "bounding_boxes": {"boxes": boxes, "labels": labels}}
    for layer in layers:
        data = layer(data, training=True)
    labels = tf.cast(data["bounding_boxes"]["labels"], tf.float32)
    boxes = tf.where(labels[..., None] < 0, -1.0, tf.cast(data["bounding_boxes"]["boxes"], tf.float32))
    return data["images"], boxes, labels


def make_detection_pipeline(split, batch_size, training=False, augment="none", seed=0):
    """A batched `tf.data` pipeline of `(float32 images in [0, 255], {"boxes": float32
    (B, M, 4) yxyx pixels, "labels": float32 (B, M)})`, padding rows -1, as keras-hub's
    RetinaNet trains on; shuffled and augmented (`augmentation_layers`) when `training`."""
    images, boxes, labels = split
    if len(images) == 0 or not len(images) == len(boxes) == len(labels):
        raise ValueError(f"make_detection_pipeline: the split has {len(images)} images, {len(boxes)} box rows and "
                         f"{len(labels)} label rows; expected as many of each, and at least 1.")
    dataset = tf.data.Dataset.from_tensor_slices((images, boxes, labels.astype(np.float32)))
    if training:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(lambda i, b, l: (tf.cast(i, tf.float32), b, l),
                                            num_parallel_calls=tf.data.AUTOTUNE)
    layers = augmentation_layers(augment if training else "none", seed)
    if layers:
        dataset = dataset.map(lambda i, b, l: augment_batch(layers, i, b, l))
    dataset = dataset.map(lambda i, b, l: (i, {"boxes": b, "labels": l}))
    return dataset.prefetch(tf.data.AUTOTUNE)
