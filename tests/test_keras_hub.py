"""keras-hub's task models on a keras_swin backbone: RetinaNet detection and DeepLabV3
segmentation (fit, predict, `.keras` save and load), and preprocessing applied once."""

import keras
import keras_hub  # the [hub] extra, which the test extra includes
import numpy as np

import keras_swin

SIZE = 128  # keras-hub's heads need sizes divisible by 32 (RetinaNet up to P5 here)


def swin_encoder(include_preprocessing=True):
    """A small pyramid-only Swin: no final norm (nothing without gradients), a norm per level."""
    return keras_swin.SwinTransformer(
        embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
        pyramid_norm=True, include_final_norm=False, always_partition=True,
        include_preprocessing=include_preprocessing, input_shape=(SIZE, SIZE, 3),
    )


def retinanet(encoder, preprocessor=None):
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=encoder, min_level=3, max_level=5, use_p5=False, image_shape=(SIZE, SIZE, 3),
    )
    return keras_hub.models.RetinaNetObjectDetector(
        backbone=backbone, num_classes=10, bounding_box_format="yxyx", preprocessor=preprocessor,
    )


def boxes_batch(count=4, seed=0):
    """Images with bright squares and their boxes (yxyx, pixels), padded with -1."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 30, (count, SIZE, SIZE, 3)).astype("float32")
    boxes = -np.ones((count, 3, 4), "float32")
    labels = -np.ones((count, 3), "float32")
    for i in range(count):
        for j in range(rng.integers(1, 4)):
            top, left = rng.integers(0, SIZE - 40, 2)
            side = int(rng.integers(16, 40))
            images[i, top:top + side, left:left + side] = 220
            boxes[i, j] = (top, left, top + side, left + side)
            labels[i, j] = rng.integers(0, 10)
    return images, {"boxes": boxes, "labels": labels}


def _assert_same_predictions(first, second):
    for key in first:
        np.testing.assert_allclose(np.asarray(first[key]), np.asarray(second[key]), atol=1e-5, err_msg=key)


def test_retinanet_on_a_swin_backbone_fits_predicts_and_reloads(tmp_path):
    detector = retinanet(swin_encoder())
    detector.compile(optimizer=keras.optimizers.Adam(1e-3))
    images, targets = boxes_batch()
    history = detector.fit(images, targets, batch_size=2, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    predictions = detector.predict(images[:2], verbose=0)
    assert predictions["boxes"].shape[:2] == predictions["labels"].shape[:2]
    detector.save(tmp_path / "retinanet.keras")
    restored = keras.saving.load_model(tmp_path / "retinanet.keras", safe_mode=True)
    _assert_same_predictions(predictions, restored.predict(images[:2], verbose=0))
    assert not [w.path for w in detector.backbone.image_encoder.weights if "final_norm" in w.path]


def test_retinanet_with_a_keras_hub_preprocessor_normalises_once():
    """keras-hub's image converter normalises with the ImageNet mean and std; the encoder is
    then built with include_preprocessing=False, and gives what our own preprocessing gives."""
    keras.utils.set_random_seed(1)
    ours = retinanet(swin_encoder(include_preprocessing=True))
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    converter = keras_hub.layers.RetinaNetImageConverter(
        image_size=(SIZE, SIZE), scale=list(1 / (255 * std)), offset=list(-mean / std),
    )
    preprocessor = keras_hub.models.RetinaNetObjectDetectorPreprocessor(image_converter=converter)
    theirs = retinanet(swin_encoder(include_preprocessing=False), preprocessor=preprocessor)
    theirs.set_weights(ours.get_weights())
    images, _ = boxes_batch(2, seed=3)
    ours_features = ours.backbone(images)
    theirs_features = theirs.backbone(converter(images))
    for level in ours_features:
        np.testing.assert_allclose(ours_features[level], theirs_features[level], atol=1e-4, err_msg=level)


def test_deeplab_v3_on_a_swin_backbone_fits_predicts_and_reloads(tmp_path):
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=swin_encoder(), spatial_pyramid_pooling_key="P4", upsampling_size=4,
        dilation_rates=[1, 2], low_level_feature_key="P2", image_shape=(SIZE, SIZE, 3),
    )
    segmenter = keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=3)
    segmenter.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images, _ = boxes_batch(4, seed=2)
    masks = (images[..., 0] > 100).astype("int32")[..., None]  # keras-hub wants (B, H, W, 1)
    history = segmenter.fit(images, masks, batch_size=2, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    logits = segmenter.predict(images[:2], verbose=0)
    assert logits.shape == (2, SIZE, SIZE, 3)
    segmenter.save(tmp_path / "deeplab.keras")
    restored = keras.saving.load_model(tmp_path / "deeplab.keras", safe_mode=True)
    np.testing.assert_allclose(restored.predict(images[:2], verbose=0), logits, atol=1e-5)
