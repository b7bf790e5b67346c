"""Object detection with keras-hub's RetinaNet on a keras_swin backbone.

keras-hub's `RetinaNetBackbone` takes any `image_encoder` with `pyramid_outputs`; a
keras_swin model built with `pyramid_norm=True, include_final_norm=False` is one (keras-hub's
own Swin has no pyramid outputs). The data are the embedded digit scenes of
`keras-swin train --task segmentation`, with each digit's bounding box and class. A few
epochs on a CPU take a couple of minutes: the loss goes down and one test image's
detections are printed. Needs the `hub` extra (`pip install "keras-swin[hub]"`).

Two limits on keras-hub's side: its heads need image sizes divisible by 32 (by 128 with
levels up to P7), and its anchor generator breaks on a second input size unless the model
runs eagerly, so the detector is built for one fixed size (pad or resize images to it).
"""

import keras
import keras_hub
import numpy as np

import keras_swin
from keras_swin.data.segmentation import digit_scenes

SIZE = 64  # divisible by 32: levels P3..P5 are 8x8, 4x4 and 2x2
keras.utils.set_random_seed(0)

# Scenes with their boxes, as keras-hub wants them: yxyx pixels, padded with -1.
splits, objects = digit_scenes(seed=0, counts={"train": 600, "validation": 1, "test": 8}, with_boxes=True)


def targets(scenes):
    boxes = -np.ones((len(scenes), 4, 4), "float32")
    labels = -np.ones((len(scenes), 4), "float32")
    for i, scene in enumerate(scenes):
        for j, (top, left, bottom, right, digit) in enumerate(scene):
            boxes[i, j], labels[i, j] = (top, left, bottom, right), digit
    return {"boxes": boxes, "labels": labels}


train_images = splits.train[0].astype("float32")
train_targets = targets(objects["train"])

# The backbone: pixels in [0, 255], normalised inside the model (no keras-hub preprocessor).
# Trained from scratch here, so without the per-level norms of a pretrained detection
# backbone (with them, P2's norm would get no gradient: RetinaNet reads P3..P5).
encoder = keras_swin.SwinTransformer(
    patch_size=4, embed_dim=48, depths=(2, 2, 2, 2), num_heads=(2, 4, 8, 16), window_size=4,
    include_final_norm=False, always_partition=True, input_shape=(SIZE, SIZE, 3),
)
backbone = keras_hub.models.RetinaNetBackbone(
    image_encoder=encoder, min_level=3, max_level=5, use_p5=False, image_shape=(SIZE, SIZE, 3)
)
# Anchors of 16-25 px on P3 for digits of 12-28 px (the default anchor_size=4 starts at 32).
anchors = keras_hub.layers.AnchorGenerator(
    "yxyx", min_level=3, max_level=5, num_scales=3, aspect_ratios=[0.5, 1.0, 2.0], anchor_size=2
)
# After a few epochs the scores are still low: keep detections above 0.2 (keras-hub's default is 0.5).
decoder = keras_hub.layers.NonMaxSuppression(bounding_box_format="yxyx", from_logits=True, confidence_threshold=0.2)
detector = keras_hub.models.RetinaNetObjectDetector(
    backbone=backbone, num_classes=10, bounding_box_format="yxyx", anchor_generator=anchors,
    prediction_decoder=decoder,
)
detector.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.05, global_clipnorm=5.0))

history = detector.fit(train_images, train_targets, batch_size=16, epochs=6, verbose=0)
for epoch, loss in enumerate(history.history["loss"], 1):
    print(f"epoch {epoch}: loss {loss:.3f}")

# One test image (its digits were never seen in training): the truth and the top detections.
image, truth = splits.test[0][:1].astype("float32"), objects["test"][0]
found = detector.predict(image, verbose=0)
for top, left, bottom, right, digit in truth:
    print(f"true digit {digit} at {[int(top), int(left), int(bottom), int(right)]}")
count = int(found["num_detections"][0])
print(f"{count} detections with confidence >= 0.2")
for box, label, score in list(zip(found["boxes"][0], found["labels"][0], found["confidence"][0]))[: min(count, 5)]:
    print(f"detected {int(label)} with confidence {score:.2f} at {np.round(box).astype(int).tolist()}")
