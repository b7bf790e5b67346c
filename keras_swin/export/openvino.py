"""Export to OpenVINO IR through Keras's own exporter (`model.export(format="openvino")`, which
is OpenVINO's TensorFlow frontend on the TensorFlow backend), and running it on the CPU.

The IR is two files, `<name>.xml` (the graph) and `<name>.bin` (the weights, float32), with
the input `images` (batch, H and W dynamic unless the model has a fixed size) and the named
outputs of the ONNX file and the SavedModel (`keras_swin.export.named_outputs`).
"""

import os
import shutil

import numpy as np

from keras_swin.export.common import has_fixed_size, is_quantized, make_directory, staging_path
from keras_swin.export.onnx import (
    INPUT_NAME,
    NamedOutputs,
    check_exportable,
    input_spec,
    output_names,
    require_extra,
)

OPENVINO_EXTRA = "openvino"
OPENVINO_PACKAGES = {"openvino": "openvino"}


def _bin_path(xml_path):
    return os.path.splitext(xml_path)[0] + ".bin"


def to_openvino(model, path):
    """Writes `model` as OpenVINO IR (`path`, an `.xml` file, and the `.bin` beside it) through
    `model.export(format="openvino")`.

    Both files are written in a temporary folder beside `path`, then moved into place: the
    `.bin` first, then the `.xml` (an existing `.xml` is removed first), so a failed or killed
    export never leaves an `.xml` whose weights are missing or from another export.

    Args:
        model: a built float32 keras_swin model (as for `to_onnx`). A quantized model
            (`model.quantize("int8")`) is refused (see docs/deployment.md).
        path: the `.xml` file to write.

    Returns:
        The size of the two files, in bytes.

    Raises:
        ModuleNotFoundError: the `openvino` extra is not installed.
        ValueError: not a float32 image model, a quantized model, or `path` not ending in `.xml`.
        OSError: `path` or its `.bin` is a folder, or cannot be written.
    """
    require_extra(OPENVINO_PACKAGES, OPENVINO_EXTRA, "OpenVINO export")
    check_exportable(model, "OpenVINO export")
    path = os.path.abspath(os.fspath(path))
    if not path.endswith(".xml"):
        raise ValueError(f"`path` must be the .xml file of the OpenVINO IR (the .bin goes beside it); received '{path}'.")
    if is_quantized(model):
        # OpenVINO's TensorFlow frontend converts Keras's int8 Dense, but the result differed from
        # Keras by 4e-2 to 6e-2 on the probabilities of a small SwinT (float exports: 1e-8).
        raise ValueError(
            "OpenVINO export cannot take a quantized model (model.quantize('int8')): OpenVINO's conversion of "
            "Keras's int8 layers does not agree with Keras. Export the float model and compress it with "
            "OpenVINO's NNCF (nncf.compress_weights), or export the quantized model to ONNX (docs/deployment.md)."
        )
    if has_fixed_size(model):
        # Converted, but the IR of a fixed-size SwinT failed at batch 2 in OpenVINO 2026.4's CPU
        # plugin ("Eltwise shape infer input shapes dim index: 0 mismatch"); any-size models run.
        raise ValueError(
            "OpenVINO export needs a model built for any image size (input_shape=(None, None, channels)); "
            f"received a model of fixed input shape {tuple(model.input.shape[1:])}, whose OpenVINO IR fails at "
            "batch sizes above 1. Rebuild it with input_shape=(None, None, channels) and copy the weights."
        )
    bin_path = _bin_path(path)
    for target in (path, bin_path):
        if os.path.isdir(target):
            raise OSError(f"Cannot write the OpenVINO model: '{target}' is a folder.")
    make_directory(os.path.dirname(path), "the OpenVINO model")
    import openvino as ov

    names = output_names(model)
    staged = staging_path(path)
    os.mkdir(staged)
    try:
        staged_xml = os.path.join(staged, os.path.basename(path))
        NamedOutputs(model).export(staged_xml, format="openvino", input_signature=[input_spec(model)], verbose=False)
        ov_model = ov.Core().read_model(staged_xml)
        found = sorted(_output_name(output) for output in ov_model.outputs)
        inputs = [i.get_any_name() for i in ov_model.inputs]
        if inputs != [INPUT_NAME] or found != names:
            raise ValueError(
                f"The OpenVINO conversion of {model.name} gave inputs {inputs} and outputs {found}; expected "
                f"['{INPUT_NAME}'] and {names}. Please report it."
            )
        if os.path.lexists(path):
            os.remove(path)  # no .xml while its .bin is being replaced
        os.replace(_bin_path(staged_xml), bin_path)
        os.replace(staged_xml, path)
    except OSError as error:
        raise OSError(f"Writing the OpenVINO model to '{path}' failed: {error}") from error
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return os.path.getsize(path) + os.path.getsize(bin_path)


def openvino_model(path, precision="f32", num_threads=None):
    """The OpenVINO IR at `path` compiled for the CPU, in `precision` ("f32", or "bf16"
    where the CPU has it); an OSError naming the path when it is missing or unreadable.

    OpenVINO's CPU plugin computes in bfloat16 by default on CPUs with native bf16 (AVX-512
    BF16, AMX); "f32" (the default here) keeps the float32 the export is checked in."""
    require_extra(OPENVINO_PACKAGES, OPENVINO_EXTRA, "Running an OpenVINO model")
    import openvino as ov

    path = os.fspath(path)
    if not os.path.isfile(path) or not os.path.isfile(_bin_path(path)):
        raise OSError(f"No OpenVINO model at '{path}' (an .xml with its .bin beside it).")
    config = {"INFERENCE_PRECISION_HINT": precision}
    if num_threads:
        config["INFERENCE_NUM_THREADS"] = int(num_threads)
    try:
        return ov.Core().compile_model(path, "CPU", config)
    except RuntimeError as error:
        raise OSError(f"'{path}' is not a readable OpenVINO model: {error}") from error


def run_openvino(path, images, compiled=None):
    """Runs the OpenVINO IR at `path` (float32, CPU) on `images` `(N, H, W, C)`; returns
    `{output name: array}`."""
    compiled = compiled or openvino_model(path)
    results = compiled(np.asarray(images, dtype="float32"))
    return {_output_name(output): np.asarray(value) for output, value in results.items()}


def _output_name(output):
    """The name of one output of an OpenVINO model: its Result node's, which is the Keras
    output's. Two outputs of one tensor (a backbone without its final norm and with
    `pyramid_norm`: `features` is `P5`) share the tensor and all its names, so the tensor's
    `get_any_name()` gave "P5" for both."""
    name = output.get_node().get_friendly_name()
    return name if name in output.get_names() else output.get_any_name()
