"""Builds SwinT, runs it on a few images and prints the pyramid shapes and a parameter summary."""

import keras
import numpy as np

import keras_swin


def main():
    model = keras_swin.SwinT(include_top=True)
    extractor = keras.Model(model.input, model.pyramid_outputs)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(2, 224, 224, 3)).astype("float32")
    for level, features in extractor(images).items():
        print(f"{level}: {tuple(features.shape)}")
    print(f"logits: {tuple(model(images).shape)}")
    print(f"parameters: {model.count_params():,}")


if __name__ == "__main__":
    main()
