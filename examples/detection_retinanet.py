"""Object detection with keras-hub's RetinaNet on a keras_swin backbone.

`keras-swin train --task detection` is this script grown up (the recipe's schedule, validation
AP per epoch, checkpoints, plots and export; docs/detection.md). Here are its parts, on the
embedded digit scenes: the data with boxes, the detector, a short `fit`, and COCO metrics
from pycocotools on test scenes whose digits were never seen in training. It runs offline,
from random weights, in a few minutes on a CPU: the numbers it prints are those of a short
run, far below the task's. Needs the `hub` extra (`pip install "keras-swin[hub]"`).
"""

import keras

import keras_swin
from keras_swin.data.detection import digit_scene_detection, make_detection_pipeline
from keras_swin.training.detection import coco_metrics, detect

SIZE = 128  # the 64x64 scenes resized: their 12-28 px digits become 24-56 px
EPOCHS = 2
keras.utils.set_random_seed(0)

# ## The data
# Each scene holds 1-4 digits with a box (yxyx pixels) and a class 0-9 each. Rows past a
# scene's digits are padding (label -1), as keras-hub's RetinaNet wants them. The training
# pipeline zooms and translates scenes with Keras's box-aware layers, moving the boxes too.
splits = digit_scene_detection(SIZE, seed=0, counts={"train": 600, "validation": 10, "test": 40})
train = make_detection_pipeline(splits.train, batch_size=16, training=True, augment="zoom-translate")

# ## The detector
# A small Swin with a LayerNorm per pyramid level (as the official detection backbones have)
# feeds keras-hub's FPN and heads. Anchors of 24-38 px on P3 (stride 8) match the smallest
# digits; heads of only their output convolution keep it CPU-sized (the paper has four 3x3
# convolutions before it, which made training 2.6x slower here).
backbone = keras_swin.SwinTransformer(
    patch_size=4, embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), window_size=4, drop_path_rate=0.0,
    pyramid_norm=True, include_final_norm=False, always_partition=True, input_shape=(SIZE, SIZE, 3),
)
detector = keras_swin.build_retinanet(backbone, num_classes=10, anchor_size=3.0, aspect_ratios=(1.0, 2.0),
                                      head_conv_layers=0)
detector.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.05, global_clipnorm=5.0))

# ## Training
# keras-hub's focal loss on the classes and Huber loss on the box offsets.
history = detector.fit(train, epochs=EPOCHS, verbose=0)
for epoch, loss in enumerate(history.history["loss"], 1):
    print(f"epoch {epoch}: loss {loss:.3f}")

# ## Evaluation
# `detect` returns each image's boxes, labels and scores; `coco_metrics` runs COCOeval.
images, boxes, labels = splits.test
found = detect(detector, images)
metrics = coco_metrics(boxes, labels, found, splits.class_names, (SIZE, SIZE))
print(f"test COCO AP {metrics['AP']:.3f}, AP50 {metrics['AP50']:.3f} after {EPOCHS} epochs")
first = found[0]
for box, label, score in list(zip(first["boxes"], first["labels"], first["scores"]))[:3]:
    print(f"first test scene: digit {label} with score {score:.2f} at {box.round().astype(int).tolist()}")

# ## Conclusion
# The detector saves to `.keras` and loads with `safe_mode=True`; `keras-swin export` turns it
# into a SavedModel whose `serving_default` returns boxes, classes, scores and
# num_detections, and `keras-swin predict` draws its boxes on your own images.
