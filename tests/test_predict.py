"""`keras-swin predict` for every task: a classifier's top-k, a segmenter's masks at each
image's own size, a detector's boxes and overlays, one predictions.json, and unreadable files
named and skipped while the others run."""

import json

import numpy as np
import pytest
import tensorflow as tf

import keras_swin
from harness import cli
from keras_swin.models.retinanet import build_retinanet
from keras_swin.training.detection import detect


def write_images(folder, sizes=((40, 56), (30, 30))):
    """PNG and JPEG images of the given sizes, a corrupt PNG and a text file in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (height, width) in enumerate(sizes):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        encoded = tf.io.encode_png(pixels) if i % 2 == 0 else tf.io.encode_jpeg(pixels)
        (folder / f"image{i}.{'png' if i % 2 == 0 else 'jpg'}").write_bytes(encoded.numpy())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image")
    return folder


def _save(model, folder, class_names):
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "best.keras")
    (folder / "class_names.json").write_text(json.dumps(class_names))
    return folder / "best.keras"


def _by_file(summary):
    return {record["file"].rsplit("/", 1)[-1]: record for record in summary["images"]}


def test_classifier_top_k_and_the_unreadable_file(tmp_path):
    model = keras_swin.SwinTransformer(embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=4, patch_size=2,
                                       include_top=True, classes=4, input_shape=(16, 16, 3), drop_path_rate=0.0)
    path = _save(model, tmp_path / "run", ["w", "x", "y", "z"])
    images = write_images(tmp_path / "images")
    result = cli("predict", path, images, "--output", tmp_path / "out", "--top-k", "2")
    assert result.returncode == 2 and "broken.png" in result.stderr and "1 of 3 inputs" in result.stderr
    summary = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert summary["task"] == "classifier" and [s["file"].endswith("broken.png") for s in summary["skipped"]] == [True]
    records = _by_file(summary)
    assert sorted(records) == ["image0.png", "image1.jpg"]
    pixels = tf.io.decode_png((images / "image0.png").read_bytes()).numpy()
    expected = model.predict(tf.image.resize(pixels[None].astype("float32"), (16, 16)).numpy(), verbose=0)[0]
    top = records["image0.png"]["top_k"]
    assert [t["index"] for t in top] == list(np.argsort(-expected)[:2])
    assert top[0]["class"] == "wxyz"[top[0]["index"]] and top[0]["score"] == pytest.approx(expected.max(), abs=1e-5)


def test_segmenter_masks_at_each_images_size(tmp_path):
    backbone = keras_swin.SwinTransformer(patch_size=2, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2),
                                          window_size=4, pyramid_norm=True, include_final_norm=False,
                                          always_partition=True, input_shape=(32, 32, 3), drop_path_rate=0.0)
    model = keras_swin.UPerNet(backbone, num_classes=3, channels=16)
    path = _save(model, tmp_path / "run", ["background", "cat", "dog"])
    images = write_images(tmp_path / "images")
    result = cli("predict", path, images / "image0.png", images / "image1.jpg", "--output", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "out" / "predictions.json").read_text())
    for name, (height, width) in (("image0.png", (40, 56)), ("image1.jpg", (30, 30))):
        record = _by_file(summary)[name]
        colour = tf.io.decode_png((tmp_path / "out" / record["mask"]).read_bytes()).numpy()
        classes = tf.io.decode_png((tmp_path / "out" / record["class_map"]).read_bytes()).numpy()[..., 0]
        assert colour.shape == (height, width, 3) and classes.shape == (height, width)
        assert set(np.unique(classes)) <= {0, 1, 2}
        assert sum(record["class_fractions"].values()) == pytest.approx(1.0)


def test_detector_boxes_and_overlays_in_original_pixels(tmp_path):
    backbone = keras_swin.SwinTransformer(patch_size=4, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2),
                                          window_size=4, pyramid_norm=True, include_final_norm=False,
                                          always_partition=True, input_shape=(64, 64, 3), drop_path_rate=0.0)
    detector = build_retinanet(backbone, 2, anchor_size=2.0, aspect_ratios=(1.0,), head_conv_layers=0,
                               confidence_threshold=0.0)  # untrained: keep every box, to compare
    path = _save(detector, tmp_path / "run", ["a", "b"])
    images = write_images(tmp_path / "images", sizes=((32, 128),))
    result = cli("predict", path, images / "image0.png", "--output", tmp_path / "out", "--min-score", "0.0")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "out" / "predictions.json").read_text())
    record = _by_file(summary)["image0.png"]
    overlay = tf.io.decode_png((tmp_path / "out" / record["overlay"]).read_bytes()).numpy()
    assert overlay.shape == (32, 128, 3)
    boxes = json.loads((tmp_path / "out" / record["boxes"]).read_text())["detections"]
    pixels = tf.io.decode_png((images / "image0.png").read_bytes()).numpy()
    want = detect(detector, tf.image.resize(pixels[None].astype("float32"), (64, 64)).numpy())[0]
    assert len(boxes) == len(want["scores"]) > 0
    np.testing.assert_allclose([b["box"] for b in boxes], want["boxes"] * np.array([0.5, 2, 0.5, 2]), atol=0.02)
    assert [b["class"] for b in boxes] == [["a", "b"][k] for k in want["labels"]]


def test_predict_refuses_a_backbone_and_missing_inputs(tmp_path):
    backbone = keras_swin.SwinTransformer(embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=4, patch_size=2,
                                          input_shape=(16, 16, 3), drop_path_rate=0.0)
    path = _save(backbone, tmp_path / "run", [])
    result = cli("predict", path, tmp_path, "--output", tmp_path / "out")
    assert result.returncode == 2 and "is a backbone" in result.stderr
    result = cli("predict", tmp_path / "nothing.keras", tmp_path, "--output", tmp_path / "out")
    assert result.returncode == 2 and "No model file" in result.stderr
