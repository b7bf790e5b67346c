"""Segmentation training: the digit scenes, folders and tfds, joint augmentation, the IoU
metrics against a hand-computed confusion matrix, the CLI end to end, and bad input."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from folders import write_segmentation_folder
from harness import cli
from keras_swin import export
from keras_swin.models.swin_unetr import SwinUNETR
from keras_swin.data import segmentation as segmentation_data
from keras_swin.train import TrainConfig, train
from keras_swin.training.segmentation import DiceCrossEntropy, confusion_matrix, iou_metrics

NANO = dict(task="segmentation", model="upernet_swin_nano", batch_size=16, jit_compile=False, verbose=0)


def test_digit_scenes_are_deterministic():
    counts = {"train": 40, "validation": 10, "test": 20}
    first = segmentation_data.digit_scenes(seed=3, counts=counts)
    second = segmentation_data.digit_scenes(seed=3, counts=counts)
    np.testing.assert_array_equal(first.train[0], second.train[0])
    np.testing.assert_array_equal(first.test[1], second.test[1])
    assert first.train[0].shape == (40, 64, 64, 3) and first.train[0].dtype == np.uint8
    assert first.test[1].shape == (20, 64, 64) and set(np.unique(first.test[1])) <= set(range(11))
    assert len(first.class_names) == 11 and first.class_names[0] == "background"
    # Every scene has at least one digit, and labelled pixels are bright.
    for images, masks in (first.train, first.test):
        assert all((m > 0).any() for m in masks)
        assert images[..., 0][masks > 0].mean() > 100 > images[..., 0][masks == 0].mean()


class _DrawnRows(np.ndarray):
    """A digit pool that records every image drawn from it by an integer index."""

    drawn = None

    def __getitem__(self, index):
        if self.drawn is not None and isinstance(index, (int, np.integer)):
            self.drawn.append(np.asarray(self)[index].tobytes())
        return super().__getitem__(index)


def test_test_scenes_hold_only_digits_that_no_training_scene_holds(monkeypatch):
    """digit_scenes exposes no digit identity (`with_boxes` gives each object's class and
    extent only), so the digit images each split's scenes draw are observed where the scenes
    are composed: every `_compose_scene` call's pool, and the images taken from it."""
    from sklearn.datasets import load_digits

    compose, drawn = segmentation_data._compose_scene, {}
    counts = {"train": 200, "validation": 20, "test": 60}
    splits_in_order = iter([name for name, count in counts.items() for _ in range(count)])

    def recording(rng, digit_images, digit_labels, *args, **kwargs):
        pool = digit_images.view(_DrawnRows)
        pool.drawn = drawn.setdefault(next(splits_in_order), [])
        return compose(rng, pool, digit_labels, *args, **kwargs)

    monkeypatch.setattr(segmentation_data, "_compose_scene", recording)
    splits, objects = segmentation_data.digit_scenes(seed=3, counts=counts, with_boxes=True)
    assert next(splits_in_order, None) is None  # one call per scene, the splits in this order
    digits = load_digits()
    labels = {image.tobytes(): label for image, label in zip(digits.images.astype(np.float64), digits.target)}
    assert len(labels) == 1797  # every 8x8 digit image is distinct: an image identifies a digit
    train, validation, test = (set(drawn[name]) for name in ("train", "validation", "test"))
    assert train and validation and test and set(drawn["test"]) <= set(labels)
    shared = test & (train | validation)
    assert not shared, f"{len(shared)} digit images of the test scenes are in training or validation scenes"
    # The drawn digits are the scenes' digits: one per object, with its class.
    assert sorted(labels[d] for d in drawn["test"]) == sorted(o[4] for scene in objects["test"] for o in scene)
    assert len(splits.test[0]) == 60
def test_iou_metrics_against_a_hand_computed_confusion_matrix():
    labels = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    predictions = np.array([[0, 1, 1, 1], [2, 0, 2, 2]])
    matrix = confusion_matrix(labels, predictions, 3)
    # true 0: predicted 0, 1; true 1: 1, 1, 2; true 2: 2, 0; the 255 pixel is ignored.
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 2, 1], [1, 0, 1]])
    metrics = iou_metrics(matrix, ["background", "a", "b"])
    # IoU = TP / (TP + FP + FN): class 0: 1 / (1 + 1 + 1); class 1: 2 / (2 + 1 + 1); class 2: 1 / (1 + 1 + 1).
    assert metrics["per_class_iou"] == pytest.approx({"background": 1 / 3, "a": 0.5, "b": 1 / 3})
    assert metrics["mean_iou"] == pytest.approx((1 / 3 + 0.5 + 1 / 3) / 3)
    assert metrics["foreground_mean_iou"] == pytest.approx((0.5 + 1 / 3) / 2)
    assert metrics["pixel_accuracy"] == pytest.approx(4 / 7)
    # A class in neither labels nor predictions is left out of the mean.
    absent = iou_metrics(confusion_matrix(labels, predictions, 4), ["background", "a", "b", "c"])
    assert absent["per_class_iou"]["c"] is None and absent["mean_iou"] == pytest.approx(metrics["mean_iou"])
    with pytest.raises(ValueError, match="class id 3"):
        confusion_matrix(np.array([3]), np.array([0]), 3)


def test_joint_augmentation_keeps_image_and_mask_aligned():
    """Blocky masks drawn into the images: after flip, scale and crop, every pixel whose 3x3
    neighbourhood has one class still shows that class's intensity."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 3, (8, 8, 8)).astype(np.uint8)
    masks = np.kron(blocks, np.ones((1, 4, 4), np.uint8))
    images = np.repeat((masks * 100)[..., None], 3, axis=-1).astype(np.uint8)
    dataset = segmentation_data.make_segmentation_pipeline((images, masks), 4, training=True,
                                                           augment="flip-scale-crop", seed=1)
    changed = 0
    for batch_images, batch_masks in dataset:
        batch_images, batch_masks = batch_images.numpy(), batch_masks.numpy()
        assert batch_images.shape == (4, 32, 32, 3) and batch_masks.shape == (4, 32, 32)
        assert set(np.unique(batch_masks)) <= {0, 1, 2, 255}  # nearest neighbour: still class ids
        padded = np.pad(batch_masks, ((0, 0), (1, 1), (1, 1)), mode="edge")
        windows = np.stack([padded[:, i:i + 32, j:j + 32] for i in range(3) for j in range(3)])
        uniform = (windows == batch_masks).all(0) & (batch_masks != 255)
        np.testing.assert_allclose(batch_images[..., 0][uniform], (batch_masks * 100.0)[uniform], atol=1)
        changed += int((batch_masks != masks[:4]).any())
    assert changed


def test_folder_source(tmp_path):
    write_segmentation_folder(tmp_path / "data")
    splits = segmentation_data.load_segmentation_folder(tmp_path / "data", image_size=32)
    assert splits.class_names == ["background", "cat", "dog"]
    assert sum(len(s[0]) for s in (splits.train, splits.validation, splits.test)) == 6
    assert splits.train[0].shape[1:] == (32, 32, 3) and splits.train[1][0, 0, 0] == 255


def test_tfds_source_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        splits = segmentation_data.load_segmentation_tfds("tfds:oxford_iiit_pet", image_size=32)
    assert splits.class_names == ["pet", "background", "border"]
    assert splits.train[0].shape[1:] == (32, 32, 3) and splits.test[1].shape[1:] == (32, 32)
    assert len(splits.train[0]) + len(splits.validation[0]) == 12


@pytest.mark.slow
def test_cli_end_to_end_writes_every_output(tmp_path):
    """A tiny config, 2 epochs with the auxiliary head, on a folder: every output exists."""
    write_segmentation_folder(tmp_path / "data", count=20, size=32)
    out = tmp_path / "out"
    result = cli("train", "--task", "segmentation", "--data", str(tmp_path / "data"), "--model", "upernet_swin_nano",
                 "--epochs", "2", "--batch-size", "8", "--auxiliary-head", "--augment", "flip-scale-crop",
                 "--output", str(out), "--verbose", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test mean IoU" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("mean_iou", "foreground_mean_iou", "pixel_accuracy", "per_class_iou", "train_seconds"):
        assert key in metrics, key
    assert 0 <= metrics["mean_iou"] <= 1 and set(metrics["per_class_iou"]) == {"background", "cat", "dog"}
    for name in ("best.keras", "training_curves.png", "predictions.png", "history.csv",
                 "upernet_swin_nano.tflite", "serving/upernet_swin_nano/1/saved_model.pb"):
        assert (out / name).is_file(), name
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 3 and "val_logits_mean_iou" in history[0]


@pytest.mark.slow
def test_cli_trains_and_exports_a_swin_unetr(tmp_path):
    """SwinUNETR through the same recipe: no auxiliary head, full-resolution logits, every
    output, and an exported model that agrees with Keras."""
    write_segmentation_folder(tmp_path / "data", count=20, size=32)
    out = tmp_path / "out"
    result = cli("train", "--task", "segmentation", "--data", str(tmp_path / "data"), "--model", "swin_unetr_scenes",
                 "--image-size", "32", "--epochs", "2", "--batch-size", "8", "--output", str(out), "--verbose", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "swin_unetr_scenes" and 0 <= metrics["mean_iou"] <= 1
    for name in ("best.keras", "training_curves.png", "predictions.png", "history.csv",
                 "swin_unetr_scenes.tflite", "serving/swin_unetr_scenes/1/saved_model.pb"):
        assert (out / name).is_file(), name
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 3 and "val_mean_iou" in history[0] and "logits" not in history[0]
    model = keras.saving.load_model(out / "best.keras", safe_mode=True)
    assert isinstance(model, SwinUNETR) and model.include_preprocessing and model.out_channels == 3
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    found = export.run_tflite(out / "swin_unetr_scenes.tflite", images)
    np.testing.assert_allclose(found, keras.ops.convert_to_numpy(model(images)), atol=1e-4)


def test_short_fit_on_digit_scenes_learns_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(segmentation_data, "SCENE_COUNTS", {"train": 64, "validation": 16, "test": 16})
    config = dict(NANO, data="digit-scenes", image_size=64, epochs=3, export=False, select="val_mean_iou")
    metrics = train(TrainConfig(**config, output=str(tmp_path)))
    history = (tmp_path / "history.csv").read_text().splitlines()
    losses = [float(row.split(",")[history[0].split(",").index("loss")]) for row in history[1:]]
    assert losses[-1] < losses[0]
    assert 0 < metrics["pixel_accuracy"] <= 1 and metrics["test_images"] == 16
    # --resume with nothing left to do keeps the history and the best weights.
    again = train(TrainConfig(**config, output=str(tmp_path), resume=True))
    assert again["mean_iou"] == pytest.approx(metrics["mean_iou"])


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "swin_t"], "classification-only model"),
        (["--data", "nothere"], "not a segmentation source"),
        (["--augment", "light"], "--augment for --task segmentation"),
        (["--model", "swin_unetr_scenes", "--auxiliary-head"], "--auxiliary-head and --layer-decay are for UPerNet"),
        (["--model", "swin_unetr_scenes", "--layer-decay", "0.9"], "'swin_unetr_scenes' is a SwinUNETR"),
    ],
)
def test_bad_arguments_exit_nonzero_with_a_message(tmp_path, args, message):
    result = cli("train", "--task", "segmentation", "--output", str(tmp_path), *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]


def _folder_with(tmp_path, change):
    write_segmentation_folder(tmp_path / "data")
    change(tmp_path / "data")
    return cli("train", "--task", "segmentation", "--data", str(tmp_path / "data"), "--model", "upernet_swin_nano",
               "--epochs", "1", "--output", str(tmp_path / "out"))


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: (d / "masks" / "2.png").write_bytes(tf.io.encode_png(np.full((24, 24, 1), 7, np.uint8)).numpy()),
         "class id 7"),
        (lambda d: (d / "masks" / "2.png").write_bytes(tf.io.encode_png(np.zeros((20, 24, 1), np.uint8)).numpy()),
         "2.png' is 24x20 but its image is 24x24"),
        (lambda d: (d / "masks" / "3.png").unlink(), "3.jpg' has no matching mask"),
        (lambda d: (d / "images" / "4.jpg").unlink(), "4.png' has no matching image"),
        (lambda d: (d / "masks" / "1.png").write_bytes(tf.io.encode_png(np.zeros((24, 24, 3), np.uint8)).numpy()),
         "has 3 channels; a mask must be a single-channel PNG"),
    ],
)
def test_bad_folders_exit_nonzero_naming_the_file(tmp_path, change, message):
    result = _folder_with(tmp_path, change)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]


def test_dice_cross_entropy_equals_monai_and_ignores_the_ignored_pixels():
    import torch
    from monai.losses import DiceCELoss

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (3, 9, 7, 4)).astype("float32")
    labels = rng.integers(0, 4, (3, 9, 7))
    labels[1] = 0  # an image without some classes: Dice's smoothing decides those terms
    ours = float(DiceCrossEntropy()(labels, logits))
    reference = DiceCELoss(to_onehot_y=True, softmax=True)(
        torch.from_numpy(logits.transpose(0, 3, 1, 2)), torch.from_numpy(labels[:, None]))
    np.testing.assert_allclose(ours, float(reference), rtol=1e-5)
    # Pixels labelled 255 count in neither term, whatever their logits.
    ignored = labels.copy()
    ignored[:, :2] = 255
    changed = logits.copy()
    changed[:, :2] = rng.normal(0, 5, changed[:, :2].shape)
    loss = DiceCrossEntropy()
    np.testing.assert_allclose(float(loss(ignored, logits)), float(loss(ignored, changed)), rtol=1e-6)
    assert abs(float(loss(ignored, logits)) - ours) > 1e-3
    # Masks with a channel axis too; the config round-trips.
    np.testing.assert_allclose(float(loss(labels[..., None], logits)), ours, rtol=1e-6)
    restored = DiceCrossEntropy.from_config(DiceCrossEntropy(smooth=1e-3).get_config())
    assert (restored.smooth, restored.ignore_class) == (1e-3, 255)
