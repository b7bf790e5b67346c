"""The base of every keras_swin model: the checks it applies to the images it is given,
the resolution of its `dtype` argument, and the batching of arrays in `predict`."""

import gc

import keras
import numpy as np

CHANNELS = 3


def resolve_dtype_policy(dtype):
    """The `DTypePolicy` for a model's `dtype` argument: None means the global policy."""
    if dtype is None:
        return keras.config.dtype_policy()
    try:
        return keras.dtype_policies.get(dtype)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"`dtype` must be a dtype policy name such as 'float32' or 'mixed_bfloat16', or a "
            f"keras.DTypePolicy; received dtype={dtype!r} ({error})."
        ) from None


def check_input_shape(input_shape, channels):
    """`input_shape` as a tuple `(H, W, channels)` (None: any size); a ValueError otherwise."""
    if input_shape is None:
        return (None, None, channels)
    input_shape = tuple(None if d is None else int(d) for d in input_shape)
    if len(input_shape) != 3:
        raise ValueError(
            "`input_shape` must be (height, width, channels) for a rank-4 image batch; "
            f"received input_shape={input_shape}."
        )
    if input_shape[-1] != channels:
        raise ValueError(
            f"`input_shape` must have {channels} channels; received input_shape={input_shape}."
        )
    for size in input_shape[:2]:
        if size is not None and size < 1:
            raise ValueError(
                "Images must be at least 1x1 pixel (padded to one patch); received "
                f"input_shape={input_shape}."
            )
    return input_shape


def image_input(input_shape, input_tensor):
    """The model's image input: a new `keras.Input`, or the given tensor."""
    if input_tensor is None:
        return keras.Input(shape=input_shape, name="images")
    if keras.backend.is_keras_tensor(input_tensor):
        return input_tensor
    return keras.Input(tensor=input_tensor, shape=input_shape, name="images")


def array_batches(images, batch_size):
    """A `tf.data` pipeline of `batch_size` batches (the last may be smaller) over an
    array or tensor of images `(N, H, W, C)`, in order (TensorFlow backend only)."""
    import tensorflow as tf  # only on the TensorFlow backend; the other backends never import it

    return tf.data.Dataset.from_tensor_slices(images).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def check_image_shape(shape, where, channels=CHANNELS):
    """Raises a ValueError unless `shape` is that of a batch of images
    `(batch, height, width, channels)` (RGB by default). Dimensions unknown at trace time pass.

    Args:
        shape: a tuple (None for unknown dimensions) or a TensorShape.
        where: what received it, for the message ("call", "predict", ...).
        channels: int, the channels the model was built for. Default 3.
    """
    try:
        dims = tuple(None if d is None else int(d) for d in shape)
    except (TypeError, ValueError):  # an unknown rank (TensorShape(None))
        return
    if len(dims) != 4:
        raise ValueError(
            f"{where}: expected a batch of images of rank 4 (batch, height, width, {channels}); "
            f"received rank {len(dims)} with shape {dims}. For one image, add a batch axis "
            "(image[None])."
        )
    if dims[0] == 0:
        raise ValueError(f"{where}: received 0 images (shape {dims}); expected a batch of at least one image.")
    if 0 in dims[1:3]:
        raise ValueError(f"{where}: images must be at least 1x1 pixel; received shape {dims}.")
    received = dims[-1]
    if received is not None and received != channels:
        rgb = " (RGB)" if channels == 3 else ""
        hint = (
            " For grayscale, repeat the channel first (np.repeat(images, 3, axis=-1)); the model "
            "never does it silently."
            if channels == 3 and received == 1
            else ""
        )
        raise ValueError(
            f"{where}: expected images with {channels} channel{'s' if channels != 1 else ''}{rgb}, shape "
            f"(batch, height, width, {channels}); received {received} channel{'s' if received != 1 else ''} "
            f"in shape {dims}.{hint}"
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


def own_leaf_layers(model, prefix=""):
    """`(path, layer)` for the leaf layers of `model`, paths made of layer names joined by "/"
    (unique where names repeat inside blocks). A nested model (UPerNet's backbone) is left out:
    its own config records its own layers."""
    for layer in model._flatten_layers(include_self=False, recursive=False):
        if isinstance(layer, keras.Model):
            continue
        path = f"{prefix}{layer.name}"
        if any(True for _ in layer._flatten_layers(include_self=False, recursive=False)):
            yield from own_leaf_layers(layer, path + "/")
        else:
            yield path, layer


def quantized_layers(model):
    """`{path: {"mode", "config"}}` for the layers of `model` that `model.quantize(...)` changed.

    A keras_swin model is rebuilt from its constructor arguments, which build float layers; this
    record lets `from_config` quantize the same layers again before the saved int8 weights load
    (a plain functional Keras model gets the same from each layer's serialized dtype policy)."""
    found = {}
    for path, layer in own_leaf_layers(model):
        mode = getattr(layer, "quantization_mode", None)
        if mode:
            config = getattr(layer, "quantization_config", None)
            found[path] = {"mode": mode,
                           "config": None if config is None else keras.saving.serialize_keras_object(config)}
    return found


def requantize(model, quantized):
    """Quantizes the layers named in `quantized` (from `quantized_layers`), as
    `model.quantize(...)` did to the model that was saved; a ValueError names a path this
    architecture does not have (a file edited by hand, or from another architecture)."""
    if not isinstance(quantized, dict):
        raise ValueError(f"`quantized_layers` must be a dict of layer path -> {{'mode', 'config'}}; received "
                         f"{type(quantized).__name__}.")
    layers = dict(own_leaf_layers(model))
    missing = sorted(set(quantized) - set(layers))
    if missing:
        raise ValueError(f"`quantized_layers` names layers that {model.name} does not have: {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}; expected paths such as {sorted(layers)[:3]}.")
    # Keras's Layer.__delattr__ runs gc.collect() after each float kernel it drops (to free
    # device memory at once): about 0.25 s each here, seconds per model. One collection at the
    # end frees the same memory.
    collect = gc.collect
    gc.collect = lambda *args: 0
    try:
        for path, entry in quantized.items():
            config = entry.get("config")
            config = None if config is None else keras.saving.deserialize_keras_object(config)
            layers[path].quantize(entry["mode"], type_check=False, config=config)
    finally:
        gc.collect = collect
    gc.collect()
    # As keras.Model.quantize does: the compiled step functions are stale.
    model.train_function = model.test_function = model.predict_function = None


class ImageModel(keras.Model):
    """A functional model over images `(batch, height, width, input_channels)` that refuses
    anything else with a ValueError, in `__call__`, `predict`, `fit` and `evaluate`.
    `input_channels` is 3 (RGB) unless a family sets it to the channels it was built for.

    The `__call__` check reads only the static shape, so it adds no op to the graph and forces
    no retrace; the data checks read arrays and dataset specs before Keras sees them (a
    relaxed retrace may no longer know the channels).
    """

    input_channels = CHANNELS

    def __call__(self, *args, **kwargs):
        inputs = args[0] if args else kwargs.get("inputs")
        if hasattr(inputs, "shape") and not isinstance(inputs, (dict, list, tuple)):
            check_image_shape(inputs.shape, self.name, self.input_channels)
        return super().__call__(*args, **kwargs)

    def _check_data(self, x, where):
        shape = _data_shape(x)
        if shape is not None:
            check_image_shape(shape, f"{self.name}.{where}", self.input_channels)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """`keras.Model.predict` after the input check, with one speed-up on TensorFlow: a
        single array of images is fed as a `tf.data` pipeline of batches. Keras's generic
        array adapter measured about 175 ms of extra time per call here (SwinT, 16 images
        of 224x224: 0.65 s instead of 0.48 s; benchmarks/PROFILE.md). Results are
        identical; other inputs go to Keras unchanged."""
        self._check_data(x, "predict")
        is_array = isinstance(x, np.ndarray) or keras.ops.is_tensor(x)
        if keras.backend.backend() == "tensorflow" and steps is None and is_array:
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

    def get_config(self):
        # The arguments every keras_swin model takes; each family adds its own.
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }
        quantized = quantized_layers(self)
        if quantized:
            config["quantized_layers"] = quantized
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        quantized = config.pop("quantized_layers", None)
        model = cls(**config)
        if quantized:
            requantize(model, quantized)
        return model
