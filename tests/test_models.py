"""SwinTransformer and the SwinT/S/B/L factories."""

import json

import keras
import numpy as np
import pytest

import keras_swin
from harness import ModelChecks, random_inputs, run_python

TINY = dict(
    patch_size=4, embed_dim=16, depths=(2, 2, 2), num_heads=(1, 2, 4), window_size=4,
    drop_path_rate=0.1,
)
# The harness's classifier: two stages of a regular and a shifted block; its 30x22 images
# make 15x11 maps (padded to the window, shifted) and 8x6 maps.
HARNESS = dict(patch_size=2, embed_dim=8, depths=(2, 2), num_heads=(1, 2), window_size=4, drop_path_rate=0.0)


def tiny(**kwargs):
    return keras_swin.SwinTransformer(**{**TINY, **kwargs})


def harness_classifier(**kwargs):
    return keras_swin.SwinTransformer(**HARNESS, include_top=True, classes=3, classifier_activation=None, **kwargs)


@pytest.fixture(scope="module")
def classifier_checks():
    return ModelChecks.classifier(harness_classifier, (2, 30, 22, 3))  # classes=3 (harness_classifier)


@pytest.mark.parametrize("check", ModelChecks.CHECKS)
def test_model_harness(classifier_checks, check, tmp_path):
    classifier_checks.run(check, tmp_path)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_backbone_outputs_the_compute_dtype(policy):
    """Without the float32 head the features, every pyramid level included, stay in the
    compute dtype; the weights in float32."""
    backbone = keras_swin.SwinTransformer(**HARNESS, dtype=policy)
    features = keras.Model(backbone.input, [backbone.output, backbone.pyramid_outputs])(
        random_inputs((2, 30, 22, 3)) * 50 + 120
    )
    compute = policy.split("_")[1]
    assert keras.backend.standardize_dtype(features[0].dtype) == compute
    assert {level: keras.backend.standardize_dtype(v.dtype) for level, v in features[1].items()} == {
        "P2": compute, "P3": compute
    }
    assert {w.dtype for w in backbone.weights} == {"float32"}


@pytest.mark.parametrize(
    "factory, expected",
    [
        (keras_swin.SwinT, 28_288_354),
        (keras_swin.SwinS, 49_606_258),
        (keras_swin.SwinB, 87_768_224),
        (keras_swin.SwinL, 196_532_476),
    ],
)
def test_parameter_counts(factory, expected):
    assert factory().count_params() == expected


@pytest.mark.parametrize("height, width", [(224, 224), (256, 320), (100, 150), (33, 47)])
def test_swin_t_pyramid_shapes(height, width):
    model = keras_swin.SwinT(include_top=False)
    extractor = keras.Model(model.input, model.pyramid_outputs)
    features = extractor(random_inputs((1, height, width, 3)))
    for level, stride, channels in (("P2", 4, 96), ("P3", 8, 192), ("P4", 16, 384), ("P5", 32, 768)):
        expected = (1, -(-height // stride), -(-width // stride), channels)
        assert tuple(features[level].shape) == expected, level
    # The same shapes symbolically, for a model built at that size.
    fixed = keras_swin.SwinT(include_top=False, input_shape=(height, width, 3))
    assert {k: tuple(v.shape[1:]) for k, v in fixed.pyramid_outputs.items()} == {
        k: tuple(v.shape[1:]) for k, v in features.items()
    }
    assert tuple(fixed.output.shape[1:]) == tuple(features["P5"].shape[1:])


def test_outputs_by_head_and_pooling():
    x = random_inputs((2, 64, 64, 3)) * 50 + 120
    assert tiny(include_top=True, classes=5).predict(x, verbose=0).shape == (2, 5)
    assert tiny(pooling="avg")(x).shape == (2, 64)
    assert tiny(pooling="max")(x).shape == (2, 64)
    assert tiny()(x).shape == (2, 4, 4, 64)
    probabilities = tiny(include_top=True, classes=5)(x)
    np.testing.assert_allclose(np.sum(probabilities, axis=-1), 1.0, rtol=1e-5)
    assert set(tiny(include_top=True).pyramid_outputs) == {"P2", "P3", "P4"}


def test_preprocessing_is_imagenet_normalisation():
    pixels = random_inputs((1, 32, 32, 3)) * 40 + 120
    with_pre = tiny(include_preprocessing=True)
    without = tiny(include_preprocessing=False)
    without.set_weights(with_pre.get_weights())
    normalised = (pixels / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(with_pre(pixels), without(normalised.astype("float32")), atol=1e-4)


def test_fixed_and_dynamic_models_agree():
    dynamic = tiny(include_top=True, input_shape=(None, None, 3))
    fixed = tiny(include_top=True, input_shape=(50, 70, 3))
    fixed.set_weights(dynamic.get_weights())
    x = random_inputs((2, 50, 70, 3)) * 50 + 120
    np.testing.assert_allclose(fixed(x), dynamic(x), atol=1e-5)
    np.testing.assert_allclose(fixed.predict(x, verbose=0), dynamic.predict(x, verbose=0), atol=1e-5)


def test_factory_config_round_trip():
    model = keras_swin.SwinT(include_top=False, pooling="avg", window_size=8, drop_path_rate=0.1)
    config = model.get_config()
    assert config["window_size"] == 8 and config["drop_path_rate"] == 0.1
    assert config["embed_dim"] == 96 and config["depths"] == [2, 2, 6, 2]
    assert keras_swin.SwinTransformer.from_config(config).count_params() == model.count_params()


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_keras_backends_match_tensorflow(backend, tmp_path):
    model = tiny(include_top=True, classes=5, classifier_activation=None)
    x = random_inputs((2, 45, 61, 3)) * 50 + 120
    model.save_weights(tmp_path / "tiny.weights.h5")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.asarray(model(x)))
    (tmp_path / "config.json").write_text(json.dumps(model.get_config()))
    out = run_python(
        f"""
        import json, numpy as np, keras
        assert keras.backend.backend() == {backend!r}
        import keras_swin
        config = json.load(open({str(tmp_path / "config.json")!r}))
        model = keras_swin.SwinTransformer.from_config(config)
        model.load_weights({str(tmp_path / "tiny.weights.h5")!r})
        y = keras.ops.convert_to_numpy(model(np.load({str(tmp_path / "x.npy")!r})))
        print("maxdiff", float(np.abs(y - np.load({str(tmp_path / "y.npy")!r})).max()))
        """,
        env={"KERAS_BACKEND": backend},
    )
    assert float(out.split("maxdiff")[-1]) <= 1e-4


def test_tflite_conversion_builtins_only():
    import tensorflow as tf

    model = keras_swin.SwinT(input_shape=(224, 224, 3))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    flatbuffer = converter.convert()
    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    ops_used = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not any("Flex" in name or name == "CUSTOM" for name in ops_used), ops_used
    x = random_inputs((1, 224, 224, 3)) * 50 + 120
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(out, model(x), atol=1e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(depths=(2, 2), num_heads=(1, 2, 4)), "same length"),
        (dict(num_heads=(3, 2, 4)), r"num_heads\[0\]"),
        (dict(window_size=0), "window_size"),
        (dict(drop_path_rate=1.0), "drop_path_rate"),
        (dict(attention_dropout_rate=-0.5), "attention_dropout_rate"),
        (dict(pooling="mean"), "pooling"),
        (dict(input_shape=(32, 32, 1)), "3 channels"),
        (dict(input_shape=(32, 32)), "input_shape"),
        (dict(input_shape=(0, 32, 3)), "at least 1x1"),
    ],
)
def test_bad_model_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny(**kwargs)


def test_bad_input_rank_at_call():
    with pytest.raises(ValueError):
        tiny()(random_inputs((32, 32, 3)))


def test_xla_is_the_cpu_default_in_float32_on_a_native_bf16_cpu(monkeypatch):
    import tensorflow as tf

    from keras_swin import cpu

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("the CPU default; with a GPU Keras's own choice applies")
    monkeypatch.setattr(cpu, "instruction_set", lambda: "avx512_bf16")  # other CPUs: tests/test_cpu.py
    model = tiny(include_top=True, classes=3)
    model.compile(loss="sparse_categorical_crossentropy")  # jit_compile="auto"
    assert model.jit_compile is True
    keras.config.set_dtype_policy("mixed_bfloat16")
    half = tiny(include_top=True, classes=3)
    half.compile(loss="sparse_categorical_crossentropy")
    assert half.jit_compile is False
    explicit = tiny(include_top=True, classes=3)
    explicit.compile(loss="sparse_categorical_crossentropy", jit_compile=True)
    assert explicit.jit_compile is True


def test_predict_on_arrays_and_tensors_matches_call():
    import tensorflow as tf

    model = tiny(include_top=True, classes=5, classifier_activation=None)
    x = random_inputs((5, 40, 36, 3)) * 50 + 120
    expected = np.asarray(model(x))
    np.testing.assert_allclose(model.predict(x, batch_size=2, verbose=0), expected, atol=1e-4)
    np.testing.assert_allclose(model.predict(tf.constant(x), verbose=0), expected, atol=1e-4)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(3)
    np.testing.assert_allclose(model.predict(dataset, verbose=0), expected, atol=1e-4)
