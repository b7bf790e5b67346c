"""Export to ONNX through Keras's own exporter (`model.export(format="onnx")`, which is tf2onnx
on the TensorFlow backend), and running an `.onnx` file in ONNX Runtime.

By default one file serves every size: the batch, height and width are dynamic in the graph
(a model built for a fixed size keeps that size). `image_size=` fixes the height and width
instead (the batch stays dynamic): the shapes, window masks and index tables then fold to
constants, and ONNX Runtime runs the file faster (docs/deployment.md, "ONNX"). The graph uses
the standard ONNX domain only, at opset `ONNX_OPSET`: the cyclic shift of the shifted windows
is slices and a concatenation (`keras_swin.ops.cyclic_shift`), so no `Roll`-like custom op
appears.

The input is `images` (float32 `(batch, H, W, C)`, pixels in [0, 255] for the RGB models); the
outputs are those of the SavedModel's `serving_default` (`keras_swin.export.named_outputs`):
`logits` and `probabilities` for a classifier, `logits` and `class_map` for a segmenter,
`features` and `P2`..`P5` for a backbone.
"""

import contextlib
import importlib.util
import logging
import os

import keras
import numpy as np

from keras_swin.export.common import named_outputs, serving_image_size, write_staged

ONNX_OPSET = 17  # LayerNormalization is in the standard domain from 17; TensorRT 8.6+ takes it.
ONNX_EXTRA = "onnx"
INPUT_NAME = "images"
# What `model.export(format="onnx")` needs on the TensorFlow backend, and what runs the file.
ONNX_PACKAGES = {"tf2onnx": "tf2onnx", "onnx": "onnx", "onnxruntime": "onnxruntime"}
STANDARD_DOMAINS = ("", "ai.onnx")


def missing_packages(packages):
    """The pip names of the `{module: pip name}` packages that are not installed."""
    return [name for module, name in packages.items() if importlib.util.find_spec(module) is None]


def require_extra(packages, extra, what):
    """A ModuleNotFoundError naming the extra to install when any of `packages` is missing."""
    missing = missing_packages(packages)
    if missing:
        raise ModuleNotFoundError(
            f"{what} needs the `{extra}` extra, which is not installed (missing: {', '.join(missing)}). "
            f"Install it with: pip install 'keras-swin[{extra}]'"
        )


def check_exportable(model, what):
    """A ValueError unless `model` is a built float32 model taking one image tensor
    `(batch, height, width, channels)` (any channel count: SwinUNETR takes 1 to N)."""
    inputs = getattr(model, "inputs", None)
    if not isinstance(model, keras.Model) or not inputs or len(inputs) != 1 or len(inputs[0].shape) != 4:
        received = [tuple(x.shape) for x in inputs] if inputs else None
        raise ValueError(
            f"{what} needs a built image model with one input of shape (batch, height, width, channels); "
            f"received a {type(model).__name__} with inputs {received}."
        )
    compute = model.dtype_policy.compute_dtype
    if compute != "float32":
        raise ValueError(
            f"{what} needs a float32 model (Keras's exporters trace the float32 graph); received a model "
            f"computing in {compute} (dtype policy '{model.dtype_policy.name}'). Rebuild it in float32, e.g. "
            "type(model).from_config({**model.get_config(), 'dtype': 'float32'}), and copy the weights "
            "(set_weights(model.get_weights()))."
        )


def input_spec(model, image_size=None):
    """The exported input: `images`, float32 `(None, H, W, C)` with the model's H and W
    (None where the model takes any size), or `image_size` `(H, W)` where given."""
    height, width, channels = model.input.shape[1:]
    if image_size is not None:
        height, width = image_size
    return keras.InputSpec(shape=(None, height, width, channels), dtype="float32", name=INPUT_NAME)


@contextlib.contextmanager
def normalization_as_constants(model):
    """Within the block, each `keras.layers.Normalization` of `model` built with a given mean
    and variance holds them as constants made in the graph being traced.

    Keras keeps such a mean and variance as eager tensors, which a `tf.function` captures as
    extra inputs of its concrete function; tf2onnx 1.17's `from_function` (what
    `model.export(format="onnx")` calls) makes every non-variable input of the concrete function
    a graph input, so the file asked for `.../preprocessing_1/Sub/y:0` and `.../Sqrt/x:0` at run
    time. Made inside the trace, they are `Const` nodes, and the file takes `images` only."""
    import tensorflow as tf  # the exporters trace on the TensorFlow backend

    swapped = []
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.Normalization) and layer.input_mean is not None and layer.built:
            swapped.append((layer, layer.mean, layer.variance))
            layer.mean = tf.constant(keras.ops.convert_to_numpy(layer.mean))
            layer.variance = tf.constant(keras.ops.convert_to_numpy(layer.variance))
    try:
        yield
    finally:
        for layer, mean, variance in swapped:
            layer.mean, layer.variance = mean, variance


class NamedOutputs(keras.Model):
    """`model` with the outputs users call, by name (`keras_swin.export.named_outputs`), as
    a Keras model for Keras's exporters (`export(format="onnx" | "openvino")`). Not saved:
    built for one export."""

    def __init__(self, model):
        super().__init__(name=f"{model.name}_named_outputs")
        self.wrapped = model  # tracks the weights the outputs read
        self._outputs = named_outputs(model)
        self.built = True

    def call(self, images):
        with normalization_as_constants(self.wrapped):
            return self._outputs(images)


def output_names(model):
    """The names of the exported outputs, sorted (the order of the graph's outputs)."""
    outputs = named_outputs(model)
    height, width = (s or 64 for s in model.input.shape[1:3])
    probe = np.zeros((1, height, width, model.input.shape[-1]), "float32")
    return sorted(outputs(probe))


def nonstandard_nodes(proto):
    """`[(domain, op_type)]` of the nodes (subgraphs included) outside the standard ONNX domain."""
    found, graphs = set(), [proto.graph]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            if node.domain not in STANDARD_DOMAINS:
                found.add((node.domain, node.op_type))
            for attribute in node.attribute:
                graphs.extend([attribute.g] if attribute.HasField("g") else [])
                graphs.extend(attribute.graphs)
    return sorted(found)


def to_onnx(model, path, opset=ONNX_OPSET, image_size=None):
    """Writes `model` as an ONNX file through `model.export(format="onnx")`.

    The file takes `images` float32 `(batch, H, W, C)` (H and W dynamic unless the model has
    a fixed size) and returns the named outputs (see the module docstring). It holds standard
    ONNX ops only (checked: a node of another domain is an error and no file is written).
    The file is written under a temporary name and renamed into place.

    A model quantized with `model.quantize("int8")` exports too: its int8 kernels stay int8
    in the file, and each quantized Dense is the same int8 x int8 -> int32 product
    (`MatMulInteger`) with the same per-row input scaling as in Keras.

    Args:
        model: a built float32 keras_swin model (classifier, backbone, Swin V2, UPerNet,
            SwinUNETR; float or `quantize("int8")`), or any Keras image model with one input.
        path: the `.onnx` file to write.
        opset: ONNX opset, >= 17 (tf2onnx 1.17 converts up to 18). Default `ONNX_OPSET`.
        image_size: None (default) for a file that takes every height and width the model
            takes; an int or `(height, width)` for a file fixed at that size, batch still
            dynamic (faster in ONNX Runtime; what `torch.onnx` traces). A model built for a
            fixed size takes only its own.

    Returns:
        The file size in bytes.

    Raises:
        ModuleNotFoundError: the `onnx` extra is not installed.
        ValueError: a model that is not a float32 image model, an opset outside [17, 18], or an
            `image_size` that is not a size in [1, 4096] or differs from a fixed model's.
        OSError: `path` is a folder, or cannot be written.
    """
    require_extra(ONNX_PACKAGES, ONNX_EXTRA, "ONNX export")
    check_exportable(model, "ONNX export")
    if isinstance(opset, bool) or not isinstance(opset, int) or not 17 <= opset <= 18:
        raise ValueError(f"`opset` must be 17 or 18 (what tf2onnx 1.17 converts to); received opset={opset!r}.")
    fixed_size = None if image_size is None else serving_image_size(model, image_size)
    os.fspath(path)  # a TypeError for a path that is not one, before any work
    import onnx

    names = output_names(model)
    wrapper = NamedOutputs(model)

    def write(staged):
        # tf2onnx logs every rewrite at INFO level.
        tf2onnx_logger = logging.getLogger("tf2onnx")
        level = tf2onnx_logger.level
        tf2onnx_logger.setLevel(logging.ERROR)
        try:
            wrapper.export(staged, format="onnx", input_signature=[input_spec(model, fixed_size)],
                           opset_version=opset, verbose=False)
        finally:
            tf2onnx_logger.setLevel(level)
        proto = onnx.load(staged)
        onnx.checker.check_model(proto)
        foreign = nonstandard_nodes(proto)
        graph_inputs = [i.name for i in proto.graph.input]
        graph_outputs = sorted(o.name for o in proto.graph.output)
        if foreign or graph_inputs != [INPUT_NAME] or graph_outputs != names:
            # A keras_swin bug, not the user's: every op is meant to convert to standard ONNX.
            raise ValueError(
                f"The ONNX conversion of {model.name} gave nodes outside the standard domain {foreign}, inputs "
                f"{graph_inputs} and outputs {graph_outputs}; expected none, ['{INPUT_NAME}'] and {names}. "
                "Please report it."
            )

    written = write_staged(path, write, "the ONNX model")
    return os.path.getsize(written)


def onnx_session(path, num_threads=None):
    """An ONNX Runtime CPU session of `path`; an OSError naming the path when it is missing or
    not a readable ONNX file."""
    require_extra(ONNX_PACKAGES, ONNX_EXTRA, "Running an ONNX file")
    import onnxruntime

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise OSError(f"No ONNX file at '{path}'.")
    options = onnxruntime.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = int(num_threads)
    try:
        return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001  (ORT raises its own Fail/InvalidProtobuf kinds)
        raise OSError(f"'{path}' is not a readable ONNX file: {error}") from error


def run_onnx(path, images, session=None):
    """Runs an ONNX file on `images` `(N, H, W, C)` in ONNX Runtime (CPU); returns
    `{output name: array}`."""
    session = session or onnx_session(path)
    images = np.asarray(images, dtype="float32")
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, {INPUT_NAME: images})))


def compare_outputs(model, found, images):
    """How exported outputs `found` (`{name: array}`, from `run_onnx` or `run_openvino` on
    `images`) agree with the Keras model's named outputs on the same images.

    Returns:
        `{"max_abs_diff": float}` over the float outputs, and `"class_map_agreement"` (the
        fraction of equal pixels) for a segmenter.
    """
    expected = {name: np.asarray(value) for name, value in named_outputs(model)(np.asarray(images, "float32")).items()}
    if sorted(found) != sorted(expected):
        raise ValueError(f"The exported outputs are {sorted(found)}; the model's are {sorted(expected)}.")
    floats = [name for name, value in expected.items() if value.dtype.kind == "f"]
    result = {"max_abs_diff": max(float(np.abs(found[name] - expected[name]).max()) for name in floats)}
    if "class_map" in expected:
        result["class_map_agreement"] = float(np.mean(found["class_map"] == expected["class_map"]))
    return result
