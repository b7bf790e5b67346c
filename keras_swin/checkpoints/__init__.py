"""Foreign and Keras checkpoints: safe reading (`files`), one mapping module per model family
(`swin`, `swin_v2`, `upernet`), named presets and parity against the PyTorch references.

Nothing here imports `keras_swin.models`: each model calls its own family's loader."""
