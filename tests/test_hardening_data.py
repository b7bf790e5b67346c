"""Hardening (issue #20, data): every bad input to the loaders and pipelines is a ValueError
(OSError for paths and files) naming the problem, the value received and the value expected;
no file is dropped without a word. Tiny folders of 8x8 images, no training."""

import errno
import io
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_swin.data import classification as data_lib
from keras_swin.data import segmentation as segmentation_data


def encoded(array, format="PNG", mode=None, **options):
    buffer = io.BytesIO()
    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    if mode == "P":
        image.putpalette([value for i in range(256) for value in (i, 255 - i, i // 2)])
    image.save(buffer, format, **options)
    return buffer.getvalue()


def image_folder(root, classes=("cat", "dog"), per_class=10):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            (root / name / f"{i}.png").write_bytes(encoded(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)))
    return root


def segmentation_folder(root, masks, classes=None):
    """`masks`: {stem: uint8/uint16 array or encoded PNG bytes}; an 8x8 JPEG image for each."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for stem, mask in masks.items():
        (root / "images" / f"{stem}.jpg").write_bytes(encoded(np.zeros((8, 8, 3), np.uint8), "JPEG"))
        (root / "masks" / f"{stem}.png").write_bytes(mask if isinstance(mask, bytes) else encoded(mask))
    if classes:
        (root / "classes.txt").write_text("\n".join(classes))
    return root


def ids_masks(*ids):
    """One 8x8 uint8 mask a stem, each filled with class ids cycling through `ids`."""
    return {f"s{i}": np.resize(np.array(ids, np.uint8), 64).reshape(8, 8) for i in range(3)}


def count(dataset):
    return int(dataset.reduce(0, lambda n, _: n + 1))


# --------------------------------------------------------------------------- 3: image sizes, empty splits


@pytest.mark.parametrize("size", [100000, 4097, 0, -1, 2.5, "224", True])
def test_image_size_outside_1_to_4096_is_refused_by_every_loader(tmp_path, size):
    message = rf"--image-size must be a whole number of pixels from 1 to 4096; received {size!r}"
    image_folder(tmp_path / "folder")
    with pytest.raises(ValueError, match=message):
        data_lib.load_data(str(tmp_path / "folder"), size)
    with pytest.raises(ValueError, match=message):
        data_lib.load_digits(size)
    with pytest.raises(ValueError, match=message):
        data_lib.load_tfds("tfds:no_such_dataset", size)  # refused before tensorflow-datasets looks
    with pytest.raises(ValueError, match=message):
        segmentation_data.load_segmentation_tfds("tfds:no_such_dataset", size)
    segmentation_folder(tmp_path / "scenes", ids_masks(0, 1))
    with pytest.raises(ValueError, match=message):
        segmentation_data.load_segmentation_data(str(tmp_path / "scenes"), size)
    dataset = tf.data.Dataset.from_tensor_slices((np.zeros((2, 8, 8, 3), "float32"), [0, 1]))
    with pytest.raises(ValueError, match=r"make_pipeline\(image_size=...\) must be .* received"):
        data_lib.make_pipeline(dataset, 2, 2, training=True, image_size=size, resized_crop=True)


def test_pipelines_refuse_an_empty_split():
    empty = tf.data.Dataset.from_tensor_slices((np.zeros((0, 8, 8, 3), "float32"), np.zeros(0, "int32")))
    with pytest.raises(ValueError, match=r"make_pipeline: the dataset has 0 examples; expected at least 1"):
        data_lib.make_pipeline(empty, 2, 4)
    with pytest.raises(ValueError, match=r"the split has 0 images and 0 masks; expected .* at least 1"):
        segmentation_data.make_segmentation_pipeline((np.zeros((0, 8, 8, 3)), np.zeros((0, 8, 8))), 4)
    with pytest.raises(ValueError, match=r"the split has 2 images and 1 masks; expected as many masks as images"):
        segmentation_data.make_segmentation_pipeline((np.zeros((2, 8, 8, 3)), np.zeros((1, 8, 8))), 4)


def test_folder_splits_hold_every_readable_image_and_know_their_size(tmp_path):
    """The splits list the files that decoded (no error is skipped inside the pipeline), so
    their sizes are known without a pass and add up to the readable images."""
    image_folder(tmp_path, per_class=10)
    (tmp_path / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    splits = data_lib.load_folder(str(tmp_path), image_size=8)
    sizes = [int(s.cardinality()) for s in (splits.train, splits.validation, splits.test)]
    assert sizes == [count(s) for s in (splits.train, splits.validation, splits.test)] and sum(sizes) == 20
    assert splits.skipped_files == 1 and "broken.png' does not decode as an image" in splits.skipped[0][1]


@pytest.fixture(scope="module")
def tiny_tfds(tmp_path_factory):
    """A tensorflow-datasets builder of 10 train and 4 test 8x8 examples, prepared offline."""
    import tensorflow_datasets as tfds

    class KerasSwinTinyExamples(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(8, 8, 3)),
                "label": tfds.features.ClassLabel(names=["a", "b"]),
                "segmentation_mask": tfds.features.Image(shape=(8, 8, 1)),
            })
            return tfds.core.DatasetInfo(builder=self, features=features, supervised_keys=("image", "label"))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(10), "test": self._generate_examples(4)}

        def _generate_examples(self, n):
            for i in range(n):
                yield i, {"image": np.full((8, 8, 3), i, np.uint8), "label": i % 2,
                          "segmentation_mask": np.full((8, 8, 1), i % 2, np.uint8)}

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    tfds.builder("keras_swin_tiny_examples", data_dir=data_dir).download_and_prepare()
    return data_dir


def test_tfds_specs_and_empty_splits_are_refused_naming_the_split(tiny_tfds):
    name = "tfds:keras_swin_tiny_examples"
    splits = data_lib.load_tfds(f"{name}:train[:60%],train[60%:80%],test", 8, data_dir=tiny_tfds)
    assert [count(s) for s in (splits.train, splits.validation, splits.test)] == [6, 2, 4]
    with pytest.raises(ValueError, match=r"the validation split 'train\[:0%\]': .*no data"):
        data_lib.load_tfds(f"{name}:train,train[:0%],test", 8, data_dir=tiny_tfds)
    with pytest.raises(ValueError, match=r"the train split 'trian': Unknown split 'trian'"):
        data_lib.load_tfds(f"{name}:trian,test", 8, data_dir=tiny_tfds)
    for splits in ("train,,test", "a,b,c,d"):
        with pytest.raises(ValueError, match=rf"expected up to three comma-separated splits .* received {splits!r}"):
            data_lib.load_tfds(f"{name}:{splits}", 8, data_dir=tiny_tfds)
    with pytest.raises(ValueError, match=r"expected tfds:NAME\[:SPLITS\]"):
        data_lib.load_data("tfds:", 8)

    scenes = segmentation_data.load_segmentation_tfds(f"{name}:train,test", 8, data_dir=tiny_tfds)
    assert len(scenes.train[0]) + len(scenes.validation[0]) == 10 and scenes.class_names == ["0", "1"]
    with pytest.raises(ValueError, match=r"the train split 'train\[:0%\]': .*no data"):
        segmentation_data.load_segmentation_tfds(f"{name}:train[:0%],test", 8, data_dir=tiny_tfds)
    for spec in ("tfds:", f"{name}:train,test,test", f"{name}:", f"{name}:train,"):
        with pytest.raises(ValueError, match=r"expected tfds:NAME\[:TRAIN\[,TEST\]\]"):
            segmentation_data.load_segmentation_data(spec, 8, data_dir=tiny_tfds)


# --------------------------------------------------------------------------- 9: folders


def test_a_class_folder_without_a_readable_image_is_refused_naming_it(tmp_path):
    image_folder(tmp_path)
    (tmp_path / "owl").mkdir()
    with pytest.raises(ValueError, match=r"class folder\(s\) '.*owl' have no readable image"):
        data_lib.load_folder(str(tmp_path), 8)
    (tmp_path / "owl" / "0.png").write_bytes(b"")
    (tmp_path / "owl" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"class folder\(s\) '.*owl' have no readable image"):
        data_lib.load_folder(str(tmp_path), 8)


def test_webp_is_read_and_every_other_file_is_counted_with_its_reason(tmp_path, caplog):
    image_folder(tmp_path, per_class=8)
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    alpha = rng.integers(1, 256, (8, 8, 1), dtype=np.uint8)
    (tmp_path / "cat" / "rgb.webp").write_bytes(encoded(rgb, "WEBP", lossless=True))
    (tmp_path / "dog" / "rgba.WEBP").write_bytes(encoded(np.dstack([rgb, alpha]), "WEBP", lossless=True, exact=True))
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "stray.png").write_bytes(encoded(rgb))
    with caplog.at_level(logging.WARNING, logger="keras_swin"):
        splits = data_lib.load_folder(str(tmp_path), 8)
    examples = [(image.numpy(), int(label)) for split in (splits.train, splits.validation, splits.test)
                for image, label in split]
    assert len(examples) == 18  # 16 PNG and 2 WebP
    assert sum(np.array_equal(image, rgb) for image, _ in examples) == 2  # lossless: the pixels, alpha dropped
    assert splits.skipped_files == 2
    reasons = " ".join(reason for _, reason in splits.skipped)
    assert "notes.txt' is not an image file (.jpg" in reasons and "stray.png' is outside the class folders" in reasons
    assert "Skipping 2 file(s)" in caplog.text and "notes.txt" in caplog.text


def test_symlink_loops_neither_hang_nor_crash_and_are_reported(tmp_path):
    image_folder(tmp_path)
    os.symlink("loop.png", tmp_path / "cat" / "loop.png")  # a link to itself
    os.symlink("..", tmp_path / "cat" / "up")  # back to the data folder (and the dog images)
    (tmp_path / "cat" / "more").mkdir()
    (tmp_path / "cat" / "more" / "x.png").write_bytes(encoded(np.zeros((8, 8, 3), np.uint8)))
    splits = data_lib.load_folder(str(tmp_path), 8)
    labels = [int(label) for s in (splits.train, splits.validation, splits.test) for _, label in s]
    assert labels.count(0) == 11 and labels.count(1) == 10  # nested image kept, dog images not doubled
    reasons = " ".join(reason for _, reason in splits.skipped)
    assert "Too many levels of symbolic links" in reasons and "up' links to a folder listed elsewhere" in reasons
    os.symlink("self", tmp_path / "self")
    with pytest.raises(OSError, match=r"--data '.*self': Too many levels of symbolic links") as error:
        data_lib.load_data(str(tmp_path / "self"), 8)
    assert error.value.errno == errno.ELOOP


def test_two_segmentation_images_with_one_stem_are_refused_naming_both(tmp_path):
    segmentation_folder(tmp_path, ids_masks(0, 1))
    (tmp_path / "images" / "s1.png").write_bytes(encoded(np.zeros((8, 8, 3), np.uint8)))
    with pytest.raises(ValueError, match=r"'.*s1.jpg' and '.*s1.png' have the same stem 's1'"):
        segmentation_data.load_segmentation_folder(tmp_path)


# --------------------------------------------------------------------------- 10: masks


def test_sparse_ids_without_classes_txt_are_refused_naming_them(tmp_path):
    masks = ids_masks(0, 1, 2)
    masks["s2"][0, 0] = 200
    segmentation_folder(tmp_path / "sparse", masks)
    with pytest.raises(ValueError, match=r"class ids 0-2, 200 \(id 200 first in '.*s2.png'\); without classes.txt "
                                         r"the ids must run 0..K-1 with none missing, and 3-199 are"):
        segmentation_data.load_segmentation_folder(tmp_path / "sparse")
    segmentation_folder(tmp_path / "named", masks, classes=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"s2.png' has class id 200, but classes.txt names 3 classes"):
        segmentation_data.load_segmentation_folder(tmp_path / "named")
    # Dense ids, with 255 as ignore, still give K classes.
    splits = segmentation_data.load_segmentation_folder(segmentation_folder(tmp_path / "dense", ids_masks(0, 1, 255)))
    assert splits.class_names == ["0", "1"]


def test_binary_0_255_and_all_ignore_masks_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"only class id 0 and 255 \(ignore\); expected at least 2 classes. "
                                         r"A binary mask must store its foreground as 1"):
        segmentation_data.load_segmentation_folder(segmentation_folder(tmp_path / "binary", ids_masks(0, 255)))
    with pytest.raises(ValueError, match=r"every mask pixel is 255 \(ignore\); expected class ids 0..254"):
        segmentation_data.load_segmentation_folder(segmentation_folder(tmp_path / "ignore", ids_masks(255)))


def test_16_bit_and_palette_masks_are_read_as_their_ids(tmp_path):
    sixteen = {stem: mask.astype(np.uint16) for stem, mask in ids_masks(0, 1, 2).items()}
    splits = segmentation_data.load_segmentation_folder(segmentation_folder(tmp_path / "sixteen", sixteen))
    assert splits.class_names == ["0", "1", "2"] and set(np.unique(splits.train[1])) == {0, 1, 2}
    sixteen["s1"][0, 0] = 300
    segmentation_folder(tmp_path / "large", sixteen)
    with pytest.raises(ValueError, match=r"s1.png' has class ids 300; expected 0..254, and 255 for ignore"):
        segmentation_data.load_segmentation_folder(tmp_path / "large")
    palette = {stem: encoded(mask, mode="P") for stem, mask in ids_masks(0, 1, 2).items()}
    splits = segmentation_data.load_segmentation_folder(segmentation_folder(tmp_path / "palette", palette))
    read = np.concatenate([s[1] for s in (splits.train, splits.validation, splits.test)])
    written = np.stack(list(ids_masks(0, 1, 2).values()))
    assert splits.class_names == ["0", "1", "2"]
    assert np.bincount(read.ravel()).tolist() == np.bincount(written.ravel()).tolist()


@pytest.mark.parametrize(
    "mask, message",
    [
        (encoded(np.zeros((8, 8, 3), np.uint8)), r"s1.png' has 3 channels; a mask must be a single-channel PNG .*RGB"),
        (encoded(np.zeros((8, 8, 2), np.uint8), mode="LA"), r"s1.png' has 2 channels; .* received mode LA"),
        (encoded(np.zeros((8, 8), np.uint8), "JPEG"), r"s1.png' is a JPEG file; a mask must be a PNG"),
        (b"", r"s1.png' does not decode as a PNG mask"),
        (encoded(np.zeros((8, 8), np.uint8))[:40], r"s1.png' does not decode as a PNG mask"),
    ],
    ids=["rgb", "gray-alpha", "jpeg", "empty", "truncated"],
)
def test_bad_mask_files_are_refused_naming_the_file(tmp_path, mask, message):
    masks = ids_masks(0, 1)
    masks["s1"] = mask
    with pytest.raises(ValueError, match=message):
        segmentation_data.load_segmentation_folder(segmentation_folder(tmp_path, masks))


def test_truncated_and_empty_images_are_refused_naming_the_file(tmp_path):
    segmentation_folder(tmp_path, ids_masks(0, 1))
    png = encoded(np.zeros((8, 8, 3), np.uint8))
    for data in (b"", png[: len(png) // 2]):
        (tmp_path / "images" / "s2.jpg").write_bytes(data)
        with pytest.raises(ValueError, match=r"s2.jpg' does not decode as an image: "):
            segmentation_data.load_segmentation_folder(tmp_path)


# --------------------------------------------------------------------------- 17: paths


@pytest.mark.parametrize("loader", [data_lib.load_data, segmentation_data.load_segmentation_data])
def test_a_path_too_long_says_so_with_its_length_and_the_limit(tmp_path, loader):
    name_max, path_max = os.pathconf("/", "PC_NAME_MAX"), os.pathconf("/", "PC_PATH_MAX")
    for path, message in [
        (str(tmp_path / ("a" * (name_max + 1))), rf"one name in it is {name_max + 1} bytes long; the system's "
                                                 rf"limit is {name_max} \(PC_NAME_MAX\)"),
        ("/" + "a/" * (path_max // 2 + 1), rf"it is {path_max + 3} bytes long; the system's limit is "
                                           rf"{path_max} \(PC_PATH_MAX\)"),
    ]:
        with pytest.raises(OSError, match="the path is too long: " + message) as error:
            loader(path, 8)
        assert error.value.errno == errno.ENAMETOOLONG


@pytest.mark.parametrize("loader", [data_lib.load_data, segmentation_data.load_segmentation_data])
def test_a_file_or_a_missing_folder_is_named_as_such(tmp_path, loader):
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match=r"--data '.*a.png' is a file; expected a folder"):
        loader(str(tmp_path / "a.png"), 8)
    with pytest.raises(FileNotFoundError, match=r"--data '.*nothere': No such file or directory"):
        loader(str(tmp_path / "nothere"), 8)
