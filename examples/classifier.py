"""A SwinT classifier for 10 classes, trained for one step on random images."""

import numpy as np

import keras_swin

model = keras_swin.SwinT(include_top=True, classes=10, input_shape=(224, 224, 3))
# One step: XLA's compilation (about 20 s on a CPU) would cost more than it saves. For real
# training leave `jit_compile` at its default.
model.compile(optimizer="adamw", loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=False)
rng = np.random.default_rng(0)
images = rng.uniform(0, 255, (4, 224, 224, 3)).astype("float32")  # pixels in [0, 255]
labels = rng.integers(0, 10, size=4)
model.fit(images, labels, epochs=1, batch_size=4)
print("probabilities:", model.predict(images[:1], verbose=0).round(3))
