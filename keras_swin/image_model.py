"""The checks every keras_swin model applies to the images it is given."""

import keras
import numpy as np

CHANNELS = 3


def check_image_shape(shape, where):
    """Raises a ValueError unless `shape` is that of a batch of RGB images
    `(batch, height, width, 3)`. Dimensions unknown at trace time pass.

    Args:
        shape: a tuple (None for unknown dimensions) or a TensorShape.
        where: what received it, for the message ("call", "predict", ...).
    """
    try:
        dims = tuple(None if d is None else int(d) for d in shape)
    except (TypeError, ValueError):  # an unknown rank (TensorShape(None))
        return
    if len(dims) != 4:
        raise ValueError(
            f"{where}: expected a batch of images of rank 4 (batch, height, width, {CHANNELS}); "
            f"received rank {len(dims)} with shape {dims}. For one image, add a batch axis "
            "(image[None])."
        )
    channels = dims[-1]
    if channels is not None and channels != CHANNELS:
        hint = (
            " For grayscale, repeat the channel first (np.repeat(images, 3, axis=-1)); the model "
            "never does it silently."
            if channels == 1
            else ""
        )
        raise ValueError(
            f"{where}: expected images with {CHANNELS} channels (RGB), shape (batch, height, width, "
            f"{CHANNELS}); received {channels} channel{'s' if channels != 1 else ''} in shape {dims}.{hint}"
        )


def _data_shape(x):
    """The shape of the images in `x` when it is an array, a tensor or a tf.data dataset
    (of images or `(images, ...)` tuples); None for anything else."""
    if isinstance(x, np.ndarray) or keras.ops.is_tensor(x):
        return tuple(x.shape)
    spec = getattr(x, "element_spec", None)
    if spec is None:
        return None
    if isinstance(spec, (tuple, list)) and spec:
        spec = spec[0]
    return tuple(spec.shape) if hasattr(spec, "shape") else None


class ImageModel(keras.Model):
    """A functional model over images `(batch, height, width, 3)` that refuses anything
    else with a ValueError, in `__call__`, `predict`, `fit` and `evaluate`.

    The `__call__` check reads only the static shape, so it adds no op to the graph and forces
    no retrace; the data checks read arrays and dataset specs before Keras sees them (a
    relaxed retrace may no longer know the channels).
    """

    def __call__(self, *args, **kwargs):
        inputs = args[0] if args else kwargs.get("inputs")
        if hasattr(inputs, "shape") and not isinstance(inputs, (dict, list, tuple)):
            check_image_shape(inputs.shape, self.name)
        return super().__call__(*args, **kwargs)

    def _check_data(self, x, where):
        shape = _data_shape(x)
        if shape is not None:
            check_image_shape(shape, f"{self.name}.{where}")

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """`keras.Model.predict` after the input check, with one speed-up on TensorFlow: a
        single array of images is fed as a `tf.data` pipeline of batches. Keras's generic
        array adapter measured about 175 ms of extra time per call here (SwinT, 16 images
        of 224x224: 0.65 s instead of 0.48 s; benchmarks/PROFILE.md). Results are
        identical; other inputs go to Keras unchanged."""
        self._check_data(x, "predict")
        is_array = isinstance(x, np.ndarray) or keras.ops.is_tensor(x)
        if keras.backend.backend() == "tensorflow" and steps is None and is_array:
            from keras_swin.data import array_batches

            x, batch_size = array_batches(x, batch_size or 32), None
        return super().predict(x, batch_size=batch_size, verbose=verbose, steps=steps, callbacks=callbacks)

    def fit(self, x=None, y=None, *args, **kwargs):
        self._check_data(x, "fit")
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)) and validation:
            self._check_data(validation[0], "fit(validation_data)")
        elif validation is not None:
            self._check_data(validation, "fit(validation_data)")
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._check_data(x, "evaluate")
        return super().evaluate(x, y, *args, **kwargs)
