"""SwinT as a backbone: the final feature map and the stride 4/8/16/32 pyramid for FPN/UNet heads."""

import keras
import numpy as np

import keras_swin

backbone = keras_swin.SwinT(include_top=False)  # any image size: input (None, None, 3)
images = np.random.default_rng(0).uniform(0, 255, (1, 256, 320, 3)).astype("float32")
print("final map:", tuple(backbone(images).shape))  # (1, 8, 10, 768)

extractor = keras.Model(backbone.input, backbone.pyramid_outputs)
for level, features in extractor(images).items():
    print(level, tuple(features.shape))  # P2 (1, 64, 80, 96) ... P5 (1, 8, 10, 768)
