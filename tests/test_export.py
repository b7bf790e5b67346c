"""SavedModel (TF Serving) and TFLite exports run like the Keras model."""

import base64
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras_swin
from harness import cli, random_inputs, run_python
from keras_swin import export

CLASS_NAMES = [f"class_{i}" for i in range(6)]


def tiny_classifier(input_shape=(None, None, 3)):
    return keras_swin.SwinTransformer(
        embed_dim=16, depths=(2, 2, 2), num_heads=(1, 2, 4), window_size=4, include_top=True,
        classes=6, input_shape=input_shape, drop_path_rate=0.0,
    )


def encoded_images(count, size=(40, 56), seed=0):
    rng = np.random.default_rng(seed)
    encoded = []
    for i in range(count):
        image = rng.integers(0, 256, size + (3,), dtype=np.uint8)
        encode = tf.io.encode_png if i % 2 == 0 else tf.io.encode_jpeg
        encoded.append(encode(image).numpy())
    return encoded


@pytest.fixture(scope="module")
def classifier_export(tmp_path_factory):
    path = tmp_path_factory.mktemp("serving")
    model = tiny_classifier()
    export_dir = export.to_saved_model(model, path, name="swin", version=3, class_names=CLASS_NAMES, top_k=3, image_size=64)
    return model, export_dir


def test_tf_serving_layout_and_signatures(classifier_export):
    model, export_dir = classifier_export
    assert export_dir.endswith("swin/3")
    result = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir", export_dir, "--all"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    shown = result.stdout
    default = shown.split("signature_def['serving_default']")[1].split("signature_def[")[0]
    assert "dtype: DT_FLOAT" in default and "shape: (-1, -1, -1, 3)" in default
    assert "outputs['probabilities']" in default and "outputs['logits']" in default
    by_bytes = shown.split("signature_def['serving_bytes']")[1].split("signature_def[")[0]
    assert "inputs['image_bytes']" in by_bytes and "dtype: DT_STRING" in by_bytes and "shape: (-1)" in by_bytes
    for name, dtype in (("classes", "DT_INT32"), ("labels", "DT_STRING"), ("probabilities", "DT_FLOAT")):
        assert f"outputs['{name}']" in by_bytes
        assert dtype in by_bytes.split(f"outputs['{name}']")[1].split("outputs[")[0]


def test_saved_model_runs_without_keras(classifier_export, tmp_path):
    model, export_dir = classifier_export
    images = random_inputs((3, 45, 70, 3)) * 60 + 120
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", np.asarray(model(images)))
    out = run_python(
        f"""
        import sys
        # Make keras and keras_swin unimportable: the SavedModel must not need them.
        sys.modules["keras"] = sys.modules["keras_swin"] = None
        import numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({export_dir!r})
        serve = loaded.signatures["serving_default"]
        out = serve(images=tf.constant(np.load({str(tmp_path / "x.npy")!r})))
        y = np.load({str(tmp_path / "y.npy")!r})
        print("maxdiff", float(np.abs(out["probabilities"].numpy() - y).max()))
        assert sys.modules["keras"] is None and sys.modules["keras_swin"] is None
        """
    )
    assert float(out.split("maxdiff")[-1]) <= 1e-5


def _decoded_reference(model, encoded):
    images = export.decode_images(tf.constant(encoded), (64, 64))
    return np.asarray(model(images))


def test_rest_b64_request_body(classifier_export):
    model, export_dir = classifier_export
    encoded = encoded_images(4)
    body = json.dumps({
        "signature_name": "serving_bytes",
        "instances": [{"image_bytes": {"b64": base64.b64encode(e).decode("ascii")}} for e in encoded],
    })
    # What TF Serving's REST handler does with the body: row format, b64 objects to bytes.
    request = json.loads(body)
    column = [base64.b64decode(row["image_bytes"]["b64"]) for row in request["instances"]]
    loaded = tf.saved_model.load(export_dir)
    out = loaded.signatures[request["signature_name"]](image_bytes=tf.constant(column))
    expected = _decoded_reference(model, encoded)
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    top = np.argsort(-expected, axis=1)[:, :3]
    np.testing.assert_array_equal(out["classes"], top)
    assert [[label.decode() for label in row] for row in out["labels"].numpy()] == [
        [CLASS_NAMES[i] for i in row] for row in top
    ]


def test_grpc_predict_request(classifier_export):
    from tensorflow_serving.apis import predict_pb2

    model, export_dir = classifier_export
    encoded = encoded_images(2, size=(80, 30), seed=1)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "swin"
    request.model_spec.signature_name = "serving_bytes"
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(encoded, dtype=tf.string))
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())  # over the wire
    loaded = tf.saved_model.load(export_dir)
    signature = loaded.signatures[request.model_spec.signature_name]
    inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
    out = signature(**inputs)
    np.testing.assert_allclose(out["probabilities"], _decoded_reference(model, encoded), atol=1e-5)


def test_invalid_bytes_fail_that_request_only(classifier_export):
    _, export_dir = classifier_export
    loaded = tf.saved_model.load(export_dir)
    signature = loaded.signatures["serving_bytes"]
    with pytest.raises(tf.errors.InvalidArgumentError):
        signature(image_bytes=tf.constant([b"not an image", encoded_images(1)[0]]))
    out = signature(image_bytes=tf.constant(encoded_images(2)))
    assert out["probabilities"].shape == (2, 6)


@pytest.mark.slow
def test_dynamic_swin_t_backbone_saved_model(tmp_path):
    backbone = keras_swin.SwinT(include_top=False)
    export_dir = export.to_saved_model(backbone, tmp_path, version=1)
    loaded = tf.saved_model.load(export_dir)
    serve = loaded.signatures["serving_default"]
    for height, width in ((224, 224), (320, 256)):
        images = random_inputs((1, height, width, 3)) * 60 + 120
        out = serve(images=tf.constant(images))
        assert sorted(out) == ["P2", "P3", "P4", "P5", "features"]
        np.testing.assert_allclose(out["features"], backbone(images), atol=1e-5)
        assert out["P2"].shape == (1, height // 4, width // 4, 96)
        assert out["P5"].shape == (1, height // 32, width // 32, 768)


def test_tflite_float32_in_litert_and_tf_lite(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    model = tiny_classifier(input_shape=(48, 64, 3))
    path = tmp_path / "model.tflite"
    export.to_tflite(model, path)
    ops = export.tflite_op_names(path)
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
    images = random_inputs((3, 48, 64, 3)) * 60 + 120
    expected = np.asarray(model(images))
    for interpreter_cls in (Interpreter, tf.lite.Interpreter):
        interpreter = interpreter_cls(model_path=str(path))
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, (3, 48, 64, 3))
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, images)
        interpreter.invoke()
        out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        np.testing.assert_allclose(out, expected, atol=1e-4)


def test_tflite_variants_convert_with_builtins_only(tmp_path):
    model = tiny_classifier(input_shape=(32, 32, 3))
    images = random_inputs((8, 32, 32, 3)) * 60 + 120
    sizes = {}
    for quantize in ("none", "float16", "dynamic", "int8"):
        path = tmp_path / f"{quantize}.tflite"
        sizes[quantize] = export.to_tflite(model, path, quantize=quantize, representative_data=images)
        ops = export.tflite_op_names(path)
        assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), (quantize, ops)
    assert sizes["float16"] < sizes["none"] and sizes["dynamic"] < sizes["none"]
    with pytest.raises(ValueError, match="representative_data"):
        export.to_tflite(model, tmp_path / "x.tflite", quantize="int8")
    with pytest.raises(ValueError, match="quantize"):
        export.to_tflite(model, tmp_path / "x.tflite", quantize="int4")


@pytest.mark.slow
def test_quantized_tflite_agrees_with_keras_on_a_trained_model(trained_digits, tmp_path):
    import keras

    from keras_swin.data import classification as data_lib

    output, metrics = trained_digits  # swin_nano, 12 epochs (tests/conftest.py)
    assert metrics["test_accuracy"] > 0.8
    model = keras.saving.load_model(output / "best.keras", compile=False)
    splits = data_lib.load_digits(image_size=16, seed=0)
    test_images = np.stack([image for image, _ in splits.test])
    calibration = np.stack([image for image, _ in splits.train.take(100)])
    agreement = {}
    for quantize in ("none", "float16", "dynamic", "int8"):
        path = tmp_path / f"{quantize}.tflite"
        export.to_tflite(model, path, quantize=quantize, representative_data=calibration)
        agreement[quantize] = export.compare_tflite(model, path, test_images)
    assert agreement["none"]["max_abs_diff"] <= 1e-4, agreement
    assert agreement["float16"]["top1_agreement"] >= 0.99, agreement
    assert agreement["int8"]["top1_agreement"] >= 0.97, agreement


def test_cli_export_writes_both_formats_and_reports_agreement(tmp_path):
    model = tiny_classifier(input_shape=(32, 32, 3))
    model.save(tmp_path / "tiny.keras")
    options = ["--format", "all", "--output", tmp_path / "out", "--version", "2", "--quantize", "dynamic"]
    result = cli("export", tmp_path / "tiny.keras", *options)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "serving" / model.name / "2" / "saved_model.pb").is_file()
    tflite_path = tmp_path / "out" / f"{model.name}_dynamic.tflite"
    assert tflite_path.is_file()
    assert "MB; against Keras on 4 images: max abs diff" in result.stdout
    images = random_inputs((2, 32, 32, 3)) * 60 + 120
    assert export.compare_tflite(model, tflite_path, images)["max_abs_diff"] < 0.05
    missing = cli("export", tmp_path / "nothere.keras", *options)
    assert missing.returncode == 2 and "nothere.keras" in missing.stderr
