"""Object detection: the RetinaNet builder on Swin V1 and V2 backbones, the anchors against the
digit scenes, the data sources (digit scenes, COCO folders, tfds voc/coco) and their bad
input, box-aware augmentation, COCO metrics against known answers, the CLI end to end and the
exported detector called from plain TensorFlow."""

import json
import os

import keras
import keras_hub  # the [hub] extra, which the test extra includes
import numpy as np
import pytest
import tensorflow as tf

from harness import cli, run_python
from keras_swin import export
from keras_swin.data import detection as detection_data
from keras_swin.data.segmentation import digit_scenes
from keras_swin.models.retinanet import anchor_boxes, build_retinanet, is_detector
from keras_swin.models.swin import SwinTransformer
from keras_swin.models.swin_v2 import SwinTransformerV2
from keras_swin.training.detection import coco_metrics, detect

SIZE = 64
TINY = dict(patch_size=4, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
            pyramid_norm=True, include_final_norm=False, always_partition=True, drop_path_rate=0.0)


def tiny_detector(model_class=SwinTransformer, num_classes=3):
    """A small RetinaNet that keeps every box (confidence threshold 0), so that barely trained
    it still returns detections to compare."""
    backbone = model_class(**TINY, input_shape=(SIZE, SIZE, 3))
    return build_retinanet(backbone, num_classes, anchor_size=2.0, aspect_ratios=(1.0,), head_conv_layers=0,
                           confidence_threshold=0.0)


def squares(count=4, seed=0, size=SIZE):
    """Images with bright squares, their boxes (yxyx pixels) and labels, padded with -1."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 30, (count, size, size, 3)).astype("float32")
    boxes, labels = -np.ones((count, 2, 4), "float32"), -np.ones((count, 2), "float32")
    for i in range(count):
        top, left = rng.integers(0, size - 24, 2)
        side = int(rng.integers(12, 24))
        images[i, top:top + side, left:left + side] = 230
        boxes[i, 0], labels[i, 0] = (top, left, top + side, left + side), i % 3
    return images, {"boxes": boxes, "labels": labels}


@pytest.fixture(scope="module")
def trained_detector():
    keras.utils.set_random_seed(0)
    detector = tiny_detector()
    detector.compile(optimizer=keras.optimizers.Adam(1e-3))
    images, targets = squares()
    history = detector.fit(images, targets, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    return detector


# --------------------------------------------------------------------------- the model


def test_detector_on_swin_v1_predicts_and_reloads_safely(trained_detector, tmp_path):
    detector = trained_detector
    assert is_detector(detector) and not is_detector(detector.backbone.image_encoder)
    images, _ = squares(2, seed=1)
    found = detector.predict(images, verbose=0)
    assert found["boxes"].shape == (2, 100, 4) and found["labels"].shape == (2, 100)
    assert (found["num_detections"] > 0).all()
    # The per-level norms (as the official detection backbones have) are the detector's weights.
    encoder = detector.backbone.image_encoder
    norms = {w.path for layer in encoder.pyramid_norm_layers for w in layer.weights}
    assert len(encoder.pyramid_norm_layers) == 4 and norms <= {w.path for w in detector.weights}
    detector.save(tmp_path / "detector.keras")
    restored = keras.saving.load_model(tmp_path / "detector.keras", safe_mode=True)
    again = restored.predict(images, verbose=0)
    for key in found:
        np.testing.assert_allclose(np.asarray(again[key]), np.asarray(found[key]), atol=1e-5, err_msg=key)
    assert restored.get_config()["anchor_generator"] == detector.get_config()["anchor_generator"]


def test_detector_on_swin_v2_trains_one_step():
    detector = tiny_detector(SwinTransformerV2)
    detector.compile(optimizer=keras.optimizers.Adam(1e-3))
    images, targets = squares(2)
    before = [np.array(w) for w in detector.backbone.image_encoder.trainable_weights]
    detector.fit(images, targets, batch_size=2, epochs=1, verbose=0)
    changed = [not np.array_equal(b, np.array(w))
               for b, w in zip(before, detector.backbone.image_encoder.trainable_weights)]
    assert sum(changed) > 0.8 * len(changed)  # all but the norm of P2, which RetinaNet does not read


def test_builder_refuses_what_keras_hub_cannot_build():
    with pytest.raises(ValueError, match=r"divisible by 32.*received 48x48"):
        build_retinanet(SwinTransformer(**TINY, input_shape=(48, 48, 3)), 3)
    with pytest.raises(ValueError, match="pass `image_size`"):
        build_retinanet(SwinTransformer(**TINY), 3)
    with pytest.raises(ValueError, match="pyramid_outputs"):
        build_retinanet(keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Conv2D(4, 3)]), 3)
    three_stages = dict(TINY, depths=(1, 1, 1), num_heads=(1, 1, 2))
    with pytest.raises(ValueError, match=r"missing \['P5'\]"):
        build_retinanet(SwinTransformer(**three_stages, input_shape=(SIZE, SIZE, 3)), 3)
    with pytest.raises(ValueError, match="num_classes"):
        build_retinanet(SwinTransformer(**TINY, input_shape=(SIZE, SIZE, 3)), 0)
    with pytest.raises(ValueError, match="backbone takes images of 64x64; received image_size=128x128"):
        build_retinanet(SwinTransformer(**TINY, input_shape=(SIZE, SIZE, 3)), 3, image_size=128)


def _iou(anchors, box):
    top, left = np.maximum(anchors[:, 0], box[0]), np.maximum(anchors[:, 1], box[1])
    bottom, right = np.minimum(anchors[:, 2], box[2]), np.minimum(anchors[:, 3], box[3])
    overlap = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
    areas = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    return overlap / (areas + (box[2] - box[0]) * (box[3] - box[1]) - overlap)


def test_scene_anchors_match_the_digits_smallest_included():
    """With retinanet_swin_scenes' anchors at 128x128, nearly every digit (12-28 px in the 64 px
    scene) has an anchor of IoU >= 0.5, which makes it a positive in training; without the 2x
    resize, keras-hub's default anchors (32 px and up on P3) match almost none."""
    from keras_swin.configs import DETECTORS

    settings = DETECTORS["retinanet_swin_scenes"]
    splits = detection_data.digit_scene_detection(128, seed=0, counts={"train": 1, "validation": 1, "test": 60})
    backbone = SwinTransformer(**TINY, input_shape=(128, 128, 3))
    detector = build_retinanet(backbone, 10, anchor_size=settings["anchor_size"],
                               aspect_ratios=settings["aspect_ratios"], head_conv_layers=0)
    anchors = anchor_boxes(detector)
    _, boxes, labels = splits.test
    true = boxes[labels >= 0]
    best = np.array([_iou(anchors, box).max() for box in true])
    smallest = (true[:, 2] - true[:, 0]) < 30
    assert smallest.any() and (best >= 0.5).mean() >= 0.9 and (best[smallest] >= 0.5).mean() >= 0.8
    default = anchor_boxes(build_retinanet(SwinTransformer(**TINY, input_shape=(64, 64, 3)), 10, head_conv_layers=0))
    assert np.mean([_iou(default, box / 2).max() >= 0.5 for box in true]) < 0.2


# --------------------------------------------------------------------------- data


def test_digit_scene_boxes_are_the_scenes_boxes_scaled():
    counts = {"train": 12, "validation": 4, "test": 6}
    splits = detection_data.digit_scene_detection(128, seed=2, counts=counts)
    _, objects = digit_scenes(seed=2, counts=counts, with_boxes=True)
    images, boxes, labels = splits.test
    assert images.shape == (6, 128, 128, 3) and images.dtype == np.uint8
    assert splits.class_names == [str(d) for d in range(10)]
    for i, scene in enumerate(objects["test"]):
        np.testing.assert_allclose(boxes[i, : len(scene)], 2 * np.array([o[:4] for o in scene]))
        assert labels[i, : len(scene)].tolist() == [o[4] for o in scene]
        assert (labels[i, len(scene):] == -1).all()
        # Each box bounds bright pixels: the digit is there in the resized image.
        top, left, bottom, right = boxes[i, 0].astype(int)
        assert images[i, top:bottom, left:right, 0].max() > 150


def _write_coco(root, annotations, images=4, categories=((3, "cat"), (7, "dog")), size=(40, 60)):
    (root / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(images):
        pixels = np.full((*size, 3), 20 + 10 * i, np.uint8)
        (root / "images" / f"{i}.png").write_bytes(tf.io.encode_png(pixels).numpy())
        records.append({"id": 100 + i, "file_name": f"{i}.png", "height": size[0], "width": size[1]})
    data = {"images": records, "annotations": annotations,
            "categories": [{"id": k, "name": name} for k, name in categories]}
    (root / "annotations.json").write_text(json.dumps(data))
    return root


def _annotation(number, image, category, bbox, **extra):
    return {"id": number, "image_id": 100 + image, "category_id": category, "bbox": bbox, **extra}


def test_coco_folder_maps_categories_clips_and_keeps_negatives(tmp_path, caplog):
    annotations = [
        _annotation(1, 0, 7, [10, 5, 20, 10]),
        _annotation(2, 0, 3, [50, 30, 20, 20]),  # reaches outside the 60x40 image: clipped
        _annotation(3, 1, 3, [0, 0, 30, 30]),
        _annotation(4, 2, 7, [1, 1, 5, 5], iscrowd=1),  # a crowd region: left out
    ]  # image 3 has no box: a negative
    root = _write_coco(tmp_path / "coco", annotations, images=10)
    splits = detection_data.load_coco_folder(root, image_size=32, seed=0)
    assert splits.class_names == ["cat", "dog"] and splits.clipped_boxes == 1
    assert "clipped 1 boxes" in caplog.text
    everything = [np.concatenate(parts) for parts in zip(splits.train, splits.validation, splits.test)]
    images, boxes, labels = everything
    assert images.shape == (10, 32, 32, 3) and boxes.shape == (10, 2, 4)
    found = sorted((int(lab), tuple(np.round(box, 2))) for box, lab in zip(boxes.reshape(-1, 4), labels.ravel())
                   if lab >= 0)
    sy, sx = 32 / 40, 32 / 60
    expected = sorted([(1, (5 * sy, 10 * sx, 15 * sy, 30 * sx)), (0, (30 * sy, 50 * sx, 40 * sy, 60 * sx)),
                       (0, (0.0, 0.0, 30 * sy, 30 * sx))])
    assert [f[0] for f in found] == [e[0] for e in expected]
    np.testing.assert_allclose([f[1] for f in found], [e[1] for e in expected], atol=0.01)
    assert (labels == -1).all(axis=1).sum() == 8  # the negatives stay


@pytest.mark.parametrize("annotation, error, message", [
    (_annotation(9, 0, 3, [5, 5, 0, 10]), ValueError, r"annotation 9 .*zero or negative area: bbox \[5, 5, 0, 10\]"),
    (_annotation(9, 0, 5, [5, 5, 4, 4]), ValueError, r"annotation 9 has category_id 5, which is not in `categories`"),
    (_annotation(9, 8, 3, [5, 5, 4, 4]), ValueError, r"annotation 9 is for image_id 108, which is not in `images`"),
    (_annotation(9, 0, 3, [70, 50, 4, 4]), ValueError, r"annotation 9 .*entirely outside its 60x40 image"),
    (_annotation(9, 0, 3, [1, 2, 3]), ValueError, r"annotation 9 has bbox \[1, 2, 3\]"),
])
def test_coco_bad_annotations_name_the_file_and_annotation(tmp_path, annotation, error, message):
    root = _write_coco(tmp_path / "coco", [annotation])
    with pytest.raises(error, match=message) as raised:
        detection_data.load_coco_folder(root, image_size=32)
    assert "annotations.json" in str(raised.value)


def test_coco_bad_files(tmp_path):
    root = _write_coco(tmp_path / "missing", [])
    os.remove(root / "images" / "2.png")
    with pytest.raises(OSError, match=r"image 102 is '2.png', which is not in"):
        detection_data.load_coco_folder(root, image_size=32)
    root = _write_coco(tmp_path / "captions", [])
    (root / "annotations.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(ValueError, match=r"not a COCO instances file.*\['categories'\] missing"):
        detection_data.load_coco_folder(root, image_size=32)
    (root / "annotations.json").write_text("{not json")
    with pytest.raises(ValueError, match="annotations.json' is not JSON"):
        detection_data.load_coco_folder(root, image_size=32)
    root = _write_coco(tmp_path / "corrupt", [])
    (root / "images" / "1.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match=r"1.png' does not decode as an image"):
        detection_data.load_coco_folder(root, image_size=32)


# coco/2017 reads its class names from metadata written when the set is prepared; under
# mock_data they are "0".."79".
@pytest.mark.parametrize("name, classes, first", [("voc/2007", 20, "aeroplane"), ("coco/2017", 80, "0")])
def test_tfds_voc_and_coco_through_their_builders(name, classes, first):
    """tfds' mock_data with examples of known boxes: class names from the builder, relative
    yxyx boxes to pixels of the detector size, crowd boxes left out."""
    import tensorflow_datasets as tfds

    def as_dataset(self, *args, **kwargs):
        def examples():
            for i in range(10):
                objects = {"bbox": np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]], np.float32),
                           "label": np.array([i % 3, 1], np.int64)}
                if name.startswith("coco"):
                    objects["is_crowd"] = np.array([False, True])
                yield {"image": np.full((30, 40, 3), i, np.uint8), "objects": objects}

        spec = {"image": tf.TensorSpec((None, None, 3), tf.uint8),
                "objects": {"bbox": tf.TensorSpec((None, 4), tf.float32), "label": tf.TensorSpec((None,), tf.int64),
                            **({"is_crowd": tf.TensorSpec((None,), tf.bool)} if name.startswith("coco") else {})}}
        return tf.data.Dataset.from_generator(examples, output_signature=spec)

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        splits = detection_data.load_detection_data(f"tfds:{name}", image_size=64)
    assert len(splits.class_names) == classes and splits.class_names[0] == first
    images, boxes, labels = splits.test
    assert images.shape == (10, 64, 64, 3) and len(splits.train[0]) == 9 and len(splits.validation[0]) == 1
    np.testing.assert_allclose(boxes[0, 0], [6.4, 12.8, 32.0, 38.4], atol=1e-4)
    if name.startswith("coco"):
        assert labels.shape == (10, 1)  # the crowd box is left out
    else:
        np.testing.assert_allclose(boxes[0, 1], [0, 0, 64, 64])


def test_unknown_detection_source():
    with pytest.raises(ValueError, match="not a detection source"):
        detection_data.load_detection_data("digits", 64)


def test_augmentation_moves_boxes_with_the_pixels():
    """After flip, zoom and translation each kept box still bounds its bright square, and a
    square pushed out of the image loses its label."""
    rng = np.random.default_rng(0)
    images = np.zeros((16, SIZE, SIZE, 3), np.uint8)
    boxes, labels = -np.ones((16, 2, 4), np.float32), -np.ones((16, 2), np.int32)
    for i in range(16):
        top, left = rng.integers(4, SIZE - 24, 2)
        images[i, top:top + 16, left:left + 16] = 255
        boxes[i, 0], labels[i, 0] = (top, left, top + 16, left + 16), 1
    dataset = detection_data.make_detection_pipeline((images, boxes, labels), 16, training=True,
                                                     augment="flip-zoom-translate", seed=3)
    moved, targets = next(iter(dataset))
    moved, out_boxes, out_labels = moved.numpy(), targets["boxes"].numpy(), targets["labels"].numpy()
    assert not np.allclose(out_boxes[:, 0], boxes[:, 0])  # something moved
    for image, box, label in zip(moved, out_boxes[:, 0], out_labels[:, 0]):
        bright = np.argwhere(image[..., 0] > 127)
        if label < 0:
            continue
        found = [bright[:, 0].min(), bright[:, 1].min(), bright[:, 0].max() + 1, bright[:, 1].max() + 1]
        np.testing.assert_allclose(box, found, atol=2.0)
    assert (out_labels[:, 1] == -1).all() and (out_boxes[:, 1] == -1).all()  # padding stays padding


def test_pipeline_refuses_an_unknown_augment():
    split = (np.zeros((2, SIZE, SIZE, 3), np.uint8), -np.ones((2, 1, 4), np.float32), -np.ones((2, 1), np.int32))
    with pytest.raises(ValueError, match="--augment for detection must be one of"):
        detection_data.make_detection_pipeline(split, 2, training=True, augment="flip-scale-crop")


# --------------------------------------------------------------------------- COCO metrics


def _one_box_per_image(shift=0.0, count=5):
    boxes = np.array([[[10.0, 10.0, 30.0, 30.0]]] * count, np.float32)
    labels = np.array([[i % 2] for i in range(count)], np.int32)
    detections = [{"boxes": boxes[i] + np.array([0, shift, 0, shift], np.float32), "labels": labels[i],
                   "scores": np.array([0.9], np.float32)} for i in range(count)]
    return boxes, labels, detections


def test_coco_metrics_known_answers():
    boxes, labels, perfect = _one_box_per_image()
    metrics = coco_metrics(boxes, labels, perfect, ["a", "b"], (64, 64))
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AP50"] == pytest.approx(1.0)
    assert metrics["AP_small"] == pytest.approx(1.0)  # 20x20 = 400 < 32^2
    assert metrics["AP_medium"] is None and metrics["AP_large"] is None  # no such true boxes
    assert metrics["per_class_AP"] == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}
    # Shifted by 4 of 20 px: IoU 16/24 = 0.667, a match at the IoU thresholds 0.50..0.65 (4 of
    # the 10), none from 0.70: AP 0.4, AP50 1, AP75 0.
    _, _, shifted = _one_box_per_image(shift=4.0)
    metrics = coco_metrics(boxes, labels, shifted, ["a", "b"], (64, 64))
    assert metrics["AP"] == pytest.approx(0.4) and metrics["AP50"] == pytest.approx(1.0)
    assert metrics["AP75"] == pytest.approx(0.0)
    # The wrong class everywhere, and nothing at all: AP 0.
    wrong = [dict(d, labels=1 - d["labels"]) for d in perfect]
    assert coco_metrics(boxes, labels, wrong, ["a", "b"], (64, 64))["AP"] == pytest.approx(0.0)
    empty = [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int), "scores": np.zeros(0)}] * 5
    assert coco_metrics(boxes, labels, empty, ["a", "b"], (64, 64))["AP"] == pytest.approx(0.0)


# --------------------------------------------------------------------------- export


@pytest.mark.slow
def test_saved_model_detector_from_plain_tensorflow(trained_detector, tmp_path):
    detector = trained_detector
    images, _ = squares(3, seed=5)
    export_dir = export.to_saved_model(detector, tmp_path / "serving", name="det", class_names=["a", "b", "c"])
    expected = detect(detector, images)
    big = np.clip(tf.image.resize(images[:1], (96, 128)).numpy(), 0, 255).astype(np.uint8)
    np.save(tmp_path / "x.npy", images)
    (tmp_path / "big.png").write_bytes(tf.io.encode_png(big[0]).numpy())
    out = run_python(
        f"""
        import json, sys
        sys.modules["keras"] = sys.modules["keras_swin"] = sys.modules["keras_hub"] = None
        import numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({export_dir!r})
        found = loaded.signatures["serving_default"](images=tf.constant(np.load({str(tmp_path / "x.npy")!r})))
        data = open({str(tmp_path / "big.png")!r}, "rb").read()
        served = loaded.signatures["serving_bytes"](image_bytes=tf.constant([data]))
        both = {{**found, **{{"b_" + k: v for k, v in served.items()}}}}
        print(json.dumps({{k: v.numpy().tolist() if v.dtype != tf.string else
                          [[x.decode() for x in r] for r in v.numpy()] for k, v in both.items()}}))
        """
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert sorted(k for k in result if not k.startswith("b_")) == ["boxes", "classes", "num_detections", "scores"]
    for i, want in enumerate(expected):
        n = result["num_detections"][i]
        assert n == len(want["scores"])
        np.testing.assert_allclose(np.array(result["boxes"][i][:n]).reshape(-1, 4), want["boxes"], atol=1e-3)
        np.testing.assert_allclose(result["scores"][i][:n], want["scores"], atol=1e-4)
        assert result["classes"][i][:n] == want["labels"].tolist()
        assert all(c == -1 for c in result["classes"][i][n:])
    # serving_bytes: the 96x128 image is resized to 64x64; its boxes come back in its pixels.
    n = result["b_num_detections"][0]
    resized = tf.image.resize(tf.io.decode_png(tf.constant((tmp_path / "big.png").read_bytes()))[None], (64, 64))
    want = detect(detector, resized.numpy())[0]
    np.testing.assert_allclose(np.array(result["b_boxes"][0][:n]).reshape(-1, 4),
                               want["boxes"] * np.array([1.5, 2.0, 1.5, 2.0]), atol=1e-2)
    assert result["b_labels"][0][:n] == [["a", "b", "c"][k] for k in want["labels"]]


# --------------------------------------------------------------------------- the CLI


def test_cli_refuses_a_segmentation_model_and_bad_sizes(tmp_path):
    result = cli("train", "--task", "detection", "--model", "upernet_swin_nano", "--output", tmp_path / "a")
    assert result.returncode == 2 and "'upernet_swin_nano' is a segmentation-only model" in result.stderr
    result = cli("train", "--task", "detection", "--model", "retinanet_swin_nano", "--image-size", "48",
                 "--output", tmp_path / "b")
    assert result.returncode == 2 and "must be divisible by 32" in result.stderr
    result = cli("train", "--task", "detection", "--select", "val_mean_iou", "--output", tmp_path / "c")
    assert result.returncode == 2 and "use val_ap50" in result.stderr


@pytest.mark.slow
def test_cli_end_to_end_writes_every_output(tmp_path):
    """A tiny detector, 2 epochs on a COCO folder of squares: every output is written, and
    metrics.json holds the COCO figures the CLI printed."""
    rng = np.random.default_rng(0)
    annotations = []
    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True)
    records = []
    for i in range(24):
        pixels = rng.integers(0, 40, (64, 64, 3), dtype=np.uint8)
        top, left = (int(v) for v in rng.integers(0, 40, 2))
        pixels[top:top + 20, left:left + 20] = 220
        (root / "images" / f"{i}.jpg").write_bytes(tf.io.encode_jpeg(pixels).numpy())
        records.append({"id": i, "file_name": f"{i}.jpg"})
        annotations.append({"id": i + 1, "image_id": i, "category_id": 1 + i % 2, "bbox": [left, top, 20, 20]})
    (root / "annotations.json").write_text(json.dumps(
        {"images": records, "annotations": annotations,
         "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    out = tmp_path / "out"
    result = cli("train", "--task", "detection", "--model", "retinanet_swin_nano", "--data", root, "--epochs", "2",
                 "--batch-size", "4", "--select", "val_ap50", "--output", out, "--verbose", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("best.keras", "metrics.json", "history.csv", "training_curves.png", "predictions.png",
                 "class_names.json", "retinanet_swin_nano.tflite", "retinanet_swin_nano_anchors.npy",
                 "run.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "serving" / "retinanet_swin_nano" / "1" / "saved_model.pb").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large"):
        assert key in metrics
    assert 0 <= metrics["AP"] <= metrics["AP50"] <= 1 and set(metrics["per_class_AP"]) == {"a", "b"}
    assert f"test COCO AP: {metrics['AP']:.4f}" in result.stdout and "Average Precision" in result.stdout
    header = (out / "history.csv").read_text().splitlines()
    assert "val_ap50" in header[0].split(",") and len(header) == 3
    restored = keras.saving.load_model(out / "best.keras", safe_mode=True)
    assert isinstance(restored, keras_hub.models.RetinaNetObjectDetector)
    # The TFLite file: builtins only, the raw head (box deltas, then logits) for each anchor.
    tflite = out / "retinanet_swin_nano.tflite"
    assert not [op for op in export.tflite_op_names(tflite) if op.startswith("Flex") or op == "CUSTOM"]
    anchors = np.load(out / "retinanet_swin_nano_anchors.npy")
    images = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    raw = export.run_tflite(tflite, images)
    found = restored(images)
    assert raw.shape == (2, len(anchors), 4 + 2)
    np.testing.assert_allclose(raw[..., :4], np.asarray(found["bbox_regression"]), atol=1e-4)
    np.testing.assert_allclose(raw[..., 4:], np.asarray(found["cls_logits"]), atol=1e-4)
