"""Hardening: bad images are refused by every model, dtype policies survive saving, the
Makefile's set-ups are split, and pyramid-only training warns about nothing."""

import os
import subprocess
import warnings

import keras
import numpy as np
import pytest

import keras_swin
from harness import REPO_ROOT, random_inputs

SMALL = dict(embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=4)


def _model(kind):
    if kind == "backbone":
        return keras_swin.SwinTransformer(**SMALL, include_top=False)
    if kind == "classifier":
        return keras_swin.SwinTransformer(**SMALL, include_top=True, classes=3, include_preprocessing=False)
    pyramid = keras_swin.SwinTransformer(
        embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
        pyramid_norm=True, include_final_norm=False, always_partition=True,
    )
    return keras_swin.UPerNet(pyramid, num_classes=3, channels=8)


def _expected_shape(kind, size):
    if kind == "backbone":  # two stages of patch 4: stride 8, 2 * 16 channels
        return (2, -(-size[0] // 8), -(-size[1] // 8), 32)
    return (2, 3) if kind == "classifier" else (2,) + size + (3,)


BAD_IMAGES = [
    (np.zeros((1, 32, 32, 1), "float32"), r"3 channels \(RGB\).*received 1 channel in shape \(1, 32, 32, 1\).*grayscale"),
    (np.zeros((1, 32, 32, 4), "float32"), r"3 channels \(RGB\).*received 4 channels in shape \(1, 32, 32, 4\)"),
    (np.zeros((32, 32, 3), "float32"), r"rank 4 \(batch, height, width, 3\); received rank 3 with shape \(32, 32, 3\)"),
]


@pytest.mark.parametrize("kind", ["backbone", "classifier", "segmenter"])
def test_bad_images_are_value_errors_in_call_predict_fit_and_evaluate(kind):
    model = _model(kind)
    model.compile(optimizer="sgd", loss="mse")
    for images, message in BAD_IMAGES:
        with pytest.raises(ValueError, match=message):
            model(images)
        with pytest.raises(ValueError, match="predict: .*" + message):
            model.predict(images, verbose=0)
        target = np.zeros(len(images), "float32")  # never reached: the images are refused first
        with pytest.raises(ValueError, match="fit: .*" + message):
            model.fit(images, target, epochs=1, verbose=0)
        with pytest.raises(ValueError, match="evaluate: .*" + message):
            model.evaluate(images, target, verbose=0)
    # Good images still work, at two sizes, after the refusals: predict gives the model's
    # outputs, of the model's shape.
    for size in ((32, 32), (37, 45)):
        images = random_inputs((2,) + size + (3,)) * 50 + 120
        predicted = model.predict(images, verbose=0)
        assert predicted.shape == _expected_shape(kind, size)
        assert np.all(np.isfinite(predicted))
        np.testing.assert_allclose(predicted, keras.ops.convert_to_numpy(model(images)), atol=1e-4)


def test_bad_images_in_a_dataset_are_refused_before_the_first_step():
    import tensorflow as tf

    model = _model("classifier")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    gray = tf.data.Dataset.from_tensor_slices((np.zeros((4, 32, 32, 1), "float32"), np.zeros(4))).batch(2)
    with pytest.raises(ValueError, match=r"fit: .*received 1 channel in shape \(None, 32, 32, 1\)"):
        model.fit(gray, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="fit\\(validation_data\\)"):
        model.fit(np.zeros((2, 32, 32, 3)), np.zeros(2), validation_data=gray, epochs=1, verbose=0)


def _layer_policies(model):
    """`{layer path: policy name}` over every computing layer, nested ones included."""
    return {
        layer.path: layer.dtype_policy.name
        for layer in model._flatten_layers(include_self=False)
        if not isinstance(layer, keras.layers.InputLayer)
    }


def test_dtype_reaches_every_layer_and_is_recorded():
    model = keras_swin.SwinTransformer(**SMALL, include_top=True, classes=3, dtype="mixed_bfloat16")
    assert model.get_config()["dtype"]["config"]["name"] == "mixed_bfloat16"
    policies = _layer_policies(model)
    assert policies.pop("predictions") == "float32"  # the classifier head stays float32
    assert set(policies.values()) == {"mixed_bfloat16"}, policies
    factory = keras_swin.SwinT(include_top=False, dtype=keras.DTypePolicy("mixed_float16"))
    assert set(_layer_policies(factory).values()) == {"mixed_float16"}
    assert set(_layer_policies(keras_swin.UPerNetSwinT(dtype="mixed_bfloat16")).values()) >= {"mixed_bfloat16"}
    with pytest.raises(ValueError, match="dtype='bfloat17'"):
        keras_swin.SwinTransformer(**SMALL, dtype="bfloat17")


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "float32"])
def test_keras_file_keeps_dtypes_and_outputs_under_another_global_policy(policy, tmp_path):
    """A keras-hub-style wrapper (a functional model on pyramid_outputs) built under one
    global policy and reloaded under another."""
    other = "float32" if policy != "float32" else "mixed_bfloat16"
    keras.config.set_dtype_policy(policy)
    backbone = keras_swin.SwinTransformer(**SMALL, include_top=False)
    inputs = keras.Input((None, None, 3))
    features = keras.Model(backbone.input, backbone.pyramid_outputs)(inputs)
    head = keras.layers.Conv2D(4, 1, name="head")(features["P3"])
    wrapper = keras.Model(inputs, head)
    images = random_inputs((1, 48, 40, 3)) * 40 + 120
    wrapper.save(tmp_path / "wrapper.keras")
    backbone.save(tmp_path / "backbone.keras")
    expected = {"wrapper": wrapper(images), "backbone": backbone(images)}
    keras.config.set_dtype_policy(other)
    for name in ("wrapper", "backbone"):
        model = keras.saving.load_model(tmp_path / f"{name}.keras", safe_mode=True)
        # The computing layers: ours (at every depth) and the wrapper's head.
        policies = {layer.dtype_policy.name for layer in model._flatten_layers()
                    if type(layer).__module__.startswith("keras_swin") or layer.name == "head"}
        assert policies == {policy}, (name, policies)
        got = keras.ops.convert_to_numpy(keras.ops.cast(model(images), "float32"))
        diff = np.abs(got - keras.ops.convert_to_numpy(keras.ops.cast(expected[name], "float32"))).max()
        assert diff == 0.0 if policy != "float32" else diff <= 1e-6, (name, diff)


def _dry_run(target, venv, extra_files=()):
    for name in extra_files:
        path = os.path.join(venv, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").close()
    result = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_demo_installs_only_what_the_demo_needs(tmp_path):
    fresh = _dry_run("demo", str(tmp_path / "fresh"))
    assert "-m venv" in fresh and '-e ".[train,export]"' in fresh and "[test]" not in fresh
    assert "keras-swin train" in fresh
    tests = _dry_run("test", str(tmp_path / "fresh"))
    assert '-e ".[test]"' in tests and "pytest" in tests
    # After `make demo`, `make test` still installs the test stack (and not the other way).
    after_demo = _dry_run("test", str(tmp_path / "demo"), ["bin/python", ".installed-demo"])
    assert '-e ".[test]"' in after_demo and "-m venv" not in after_demo
    after_test = _dry_run("demo", str(tmp_path / "test"), ["bin/python", ".installed-test"])
    assert '-e ".[train,export]"' in after_test


def test_pyramid_only_training_warns_about_no_missing_gradient():
    model = _model("segmenter")
    # Without XLA: the warning comes from tracing the step, which XLA would only follow by its compilation.
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)
    labels = np.random.default_rng(0).integers(0, 3, (2, 32, 32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(random_inputs((2, 32, 32, 3)), labels, epochs=1, verbose=0)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "Gradients do not exist" in m], messages
    assert not [w.name for w in model.backbone.weights if "final_norm" in w.path]


def test_training_on_tf_data_does_not_warn_about_shuffle(tmp_path, few_digits):
    from keras_swin.train import TrainConfig, train

    config = TrainConfig(model="swin_nano", batch_size=32, augment="none", jit_compile=False, export=False,
                         verbose=0, epochs=1, output=str(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(config)
    assert not [str(w.message) for w in caught if "shuffle" in str(w.message)]
