"""Semantic segmentation with UPerNet on a Swin-T backbone: build, predict a mask, export.

The model is the Swin paper's ADE20K configuration (150 classes). Here its weights are random,
so the script runs offline; with network access, `weights="ade20k"` loads the openmmlab
checkpoint (converted from mmseg) through `huggingface_hub`, and
`backbone_weights="imagenet"` starts a new segmenter from an ImageNet Swin-T instead.
"""

import os
import tempfile

import numpy as np

import keras_swin
from keras_swin import export

# Any image size works in one graph; pixels are in [0, 255] (normalised inside the model).
model = keras_swin.UPerNetSwinT(num_classes=150)  # or weights="ade20k"
print(f"UPerNetSwinT: {model.count_params():,} weights")

# A batch of two images of a size that is a multiple of neither 32 nor the window.
images = np.random.default_rng(0).uniform(0, 255, (2, 200, 300, 3)).astype("float32")
logits = model.predict(images, verbose=0)  # (2, 200, 300, 150), at the input size
masks = logits.argmax(-1)  # class id per pixel
print("logits", logits.shape, "mask", masks.shape, "classes in the first mask:", len(np.unique(masks[0])))

# Another size: the same model, no rebuild.
print("another size:", model.predict(images[:, :97, :131], verbose=0).shape)

# Deployment: a TF Serving SavedModel (`serving_default` returns `logits` and an int32
# `class_map`; `serving_bytes` takes encoded images). For a builtins-only TFLite file:
# export.to_tflite(model, "upernet.tflite", image_size=(512, 512)).
with tempfile.TemporaryDirectory() as directory:
    saved = export.to_saved_model(model, os.path.join(directory, "serving"), name="upernet", image_size=(512, 512))
    print("SavedModel:", os.path.relpath(saved, directory))
