"""2D medical-style segmentation with SwinUNETR, MONAI's Swin U-Net, trained from scratch.

`keras_swin.SwinUNETR` is MONAI's `SwinUNETR(spatial_dims=2)` in Keras, with MONAI's argument
names and exact outputs: its weights load from a MONAI checkpoint (`weights="model.pt"`, a whole
model or the self-supervised encoder of MONAI's tutorials). Here it learns, on a CPU in a couple
of minutes, to outline bright round lesions in noisy single-channel scans.
"""

import os
import tempfile

import numpy as np

import keras
import keras_swin
from keras_swin import export

# ## The data
#
# Synthetic "scans": one channel, already normalised (SwinUNETR has no built-in preprocessing,
# as in MONAI), with one to three bright disks of random size on a smooth, noisy background. The
# label of each pixel is 1 inside a disk, else 0.


def make_scans(count, size=64, seed=0):
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    images = np.empty((count, size, size, 1), "float32")
    masks = np.zeros((count, size, size), "int32")
    for index in range(count):
        background = np.sin(rows / rng.uniform(6, 14) + rng.uniform(0, 6)) * 0.3
        for _ in range(rng.integers(1, 4)):
            centre, radius = rng.uniform(8, size - 8, 2), rng.uniform(3, 9)
            masks[index] |= ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 < radius**2).astype("int32")
        images[index, ..., 0] = background + 1.2 * masks[index] + rng.normal(0, 0.35, (size, size))
    return images, masks


train_images, train_masks = make_scans(192, seed=0)
val_images, val_masks = make_scans(48, seed=1)
print("train", train_images.shape, "lesion pixels", f"{train_masks.mean():.1%}")

# ## The model
#
# A small SwinUNETR: feature size 12 (MONAI's default is 24; CT and MRI models use 48), one Swin
# block per stage. The encoder embeds 2x2 patches and halves the map four more times; the
# decoder climbs back with five up blocks, each joined by a skip from the encoder. Any image
# size works: the model pads to a multiple of 32 and crops the logits back.

model = keras_swin.SwinUNETR(
    in_channels=1, out_channels=2, feature_size=12, depths=(1, 1, 1, 1), num_heads=(3, 6, 12, 24)
)
print(f"SwinUNETR: {model.count_params():,} weights")
print("hidden states:", {level: tuple(x.shape[1:]) for level, x in model.pyramid_outputs.items()})

# ## Training
#
# Cross-entropy on the per-pixel logits, AdamW with the family's no-decay set (biases, norms and
# the relative position bias tables), and validation data to watch over-fitting.

optimizer = keras.optimizers.AdamW(learning_rate=2e-3, weight_decay=1e-4)
optimizer.exclude_from_weight_decay(var_names=list(model.no_weight_decay()))
model.compile(
    optimizer=optimizer,
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=[keras.metrics.MeanIoU(num_classes=2, sparse_y_pred=False)],
)
history = model.fit(
    train_images, train_masks, validation_data=(val_images, val_masks), batch_size=16, epochs=6, verbose=2
)

# ## Evaluation
#
# The Dice score of the lesion class on the validation scans, and a prediction at a size that
# is not a multiple of 32.

predicted = model.predict(val_images, verbose=0).argmax(-1)
intersection = np.sum((predicted == 1) & (val_masks == 1))
dice = 2 * intersection / (np.sum(predicted == 1) + np.sum(val_masks == 1))
print(f"validation Dice (lesions): {dice:.3f}")
odd_size = model.predict(val_images[:2, :50, :45], verbose=0)
print("logits at 50x45:", odd_size.shape)

# ## Weights from MONAI
#
# A 2D MONAI checkpoint loads by its path: a whole `SwinUNETR(spatial_dims=2)` state dict, or a
# self-supervised encoder saved the way MONAI's tutorials save one (`module.` keys), which
# leaves the decoder freshly initialised. With MONAI installed, a MONAI model with random
# weights shows it: the two give the same logits. (MONAI's published BTCV and BraTS weights
# are 3D; this model says so and refuses them.)

folder = tempfile.mkdtemp()
try:
    import torch
    from monai.networks.nets import SwinUNETR as MonaiSwinUNETR
except ImportError:
    print("MONAI is not installed: skipping the MONAI checkpoint (pip install monai einops)")
else:
    monai_model = MonaiSwinUNETR(
        spatial_dims=2, in_channels=1, out_channels=2, feature_size=12, depths=(1, 1, 1, 1)
    ).eval()
    torch.save(monai_model.state_dict(), os.path.join(folder, "swin_unetr.pt"))
    loaded = keras_swin.SwinUNETR(
        in_channels=1, out_channels=2, feature_size=12, depths=(1, 1, 1, 1), num_heads=(3, 6, 12, 24),
        weights=os.path.join(folder, "swin_unetr.pt"),
    )
    with torch.no_grad():
        reference = monai_model(torch.from_numpy(val_images[:2].transpose(0, 3, 1, 2))).numpy()
    ours = loaded.predict(val_images[:2], verbose=0).transpose(0, 3, 1, 2)
    print(f"MONAI checkpoint loaded: max abs difference {np.abs(ours - reference).max():.1e}")

# ## Export
#
# The trained model to TFLite (builtin ops only) and to a TF Serving SavedModel, whose
# `serving_default` signature returns `logits` and `class_map` at any size.

tflite_path = os.path.join(folder, "swin_unetr.tflite")
export.to_tflite(model, tflite_path, image_size=(64, 64))
tflite_logits = export.run_tflite(tflite_path, val_images[:4])
print(f"TFLite: max abs difference to Keras {np.abs(tflite_logits - model.predict(val_images[:4], verbose=0)).max():.1e}")
saved = export.to_saved_model(model, os.path.join(folder, "serving"), name="swin_unetr")
print("SavedModel:", saved)

# ## Conclusion
#
# SwinUNETR trains like any Keras model, predicts at any size, loads MONAI's 2D checkpoints and
# exports to TFLite and TF Serving. `keras-swin train --task segmentation --model
# swin_unetr_scenes` trains it with the project's recipe (docs/segmentation.md).
