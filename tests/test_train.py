"""Training: data sources, the recipe, mixed precision, distribution, resume and the CLI."""

import csv
import json
import os
import signal
import subprocess
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from folders import write_image_folder
from harness import cli, cli_process, run_python, use_few_digits
from keras_swin.data import classification as data_lib
from keras_swin.models.swin import NO_DECAY_NAMES
from keras_swin.train import TrainConfig, train
from keras_swin.training.classification import compile_model, create_model
from keras_swin.training.recipe import create_optimizer

NANO = dict(model="swin_nano", batch_size=32, augment="none", jit_compile=False, export=False, verbose=0)


def test_image_folder_skips_corrupt_files_and_converts_to_rgb(tmp_path):
    write_image_folder(tmp_path)
    splits = data_lib.load_folder(str(tmp_path), image_size=16, seed=0)
    assert splits.skipped_files == 1
    assert splits.class_names == ["cat", "dog", "owl"]
    examples = [e for d in (splits.train, splits.validation, splits.test) for e in d]
    assert len(examples) == 30
    assert all(image.shape == (16, 16, 3) and image.dtype == tf.float32 for image, _ in examples)
    test_labels = sorted(int(label) for _, label in splits.test)
    assert test_labels == [0, 0, 1, 1, 2, 2]  # stratified 20%


def test_folder_too_small_to_split_is_a_clear_error(tmp_path):
    write_image_folder(tmp_path, classes=("a", "b", "c", "d"), per_class=4)
    # 16 readable images: the 10% validation split would hold 2 images for 4 classes.
    with pytest.raises(ValueError, match=r"too few for a stratified 70%/10%/20% split.*at least 40 images"):
        data_lib.load_folder(str(tmp_path), image_size=16)


def test_tfds_source_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        splits = data_lib.load_data("tfds:mnist", image_size=16)
        image, label = next(iter(splits.train))
    assert splits.class_names == [str(i) for i in range(10)]
    assert image.shape == (16, 16, 3) and label.dtype == tf.int32


def test_digits_are_the_real_sklearn_digits():
    splits = data_lib.load_digits(image_size=32, seed=3)
    sizes = [sum(1 for _ in d) for d in (splits.train, splits.validation, splits.test)]
    assert sum(sizes) == 1797 and sizes[2] == 360
    images = np.stack([image for image, _ in splits.test])
    assert images.shape[1:] == (32, 32, 3) and 0 <= images.min() and images.max() <= 255.0


def test_weight_decay_excludes_biases_norms_and_bias_tables():
    config = TrainConfig(**NANO)
    model = create_model(config, num_classes=3)
    optimizer = create_optimizer(config, model, steps_per_epoch=10)
    optimizer.build(model.trainable_variables)
    decayed = {v.path for v in model.trainable_variables if optimizer._use_weight_decay(v)}
    for variable in model.trainable_variables:
        excluded = any(name in variable.name for name in NO_DECAY_NAMES)
        assert (variable.path in decayed) != excluded, variable.path
    assert any("relative_position_bias_table" in v.path for v in model.trainable_variables)
    assert any(p.endswith("qkv/kernel") for p in decayed)


def test_optimizer_is_the_official_adamw():
    config = TrainConfig(**NANO, clipnorm=5.0)
    optimizer = create_optimizer(config, create_model(config, num_classes=3), steps_per_epoch=10)
    assert optimizer.epsilon == 1e-8 and optimizer.weight_decay == config.weight_decay
    # One global gradient norm over all variables (torch's clip_grad_norm_), not per variable.
    assert optimizer.global_clipnorm == 5.0 and optimizer.clipnorm is None


def test_the_recipe_traces_the_train_step_once():
    # Keras would create the optimizer's variables in the first trace, and TensorFlow would
    # then trace the train step a second time (recipe.build_optimizer).
    config = TrainConfig(**NANO, epochs=1, learning_rate=1e-3, warmup_epochs=0)
    model = create_model(config, num_classes=3)
    compile_model(model, config, steps_per_epoch=2)
    assert model.optimizer.built
    traces = []
    train_step = model.train_step
    model.train_step = lambda data: traces.append(1) or train_step(data)
    images = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    model.fit(images, np.eye(3)[np.arange(8) % 3], batch_size=4, epochs=2, verbose=0)
    assert len(traces) == 1


def test_layerwise_decay_multipliers():
    from keras_swin.training.recipe import layerwise_multipliers

    model = create_model(TrainConfig(**NANO), num_classes=3)
    multipliers = layerwise_multipliers(model, 0.5)
    embedding = [v for k, v in multipliers.items() if k.startswith("patch_embedding")]
    head = [v for k, v in multipliers.items() if k.startswith("predictions")]
    assert set(embedding) == {0.5**3} and set(head) == {1.0}


def test_short_fit_lowers_loss_and_is_deterministic(tmp_path, few_digits):
    config = dict(NANO, epochs=4, learning_rate=3e-3, warmup_epochs=1)
    first = train(TrainConfig(**config, output=str(tmp_path / "a")))
    second = train(TrainConfig(**config, output=str(tmp_path / "b")))
    with open(tmp_path / "a" / "history.csv") as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert losses[-1] < losses[0]
    assert first["test_loss"] == second["test_loss"]


def test_select_keeps_the_final_or_the_lowest_validation_loss_weights(tmp_path, few_digits):
    config = dict(NANO, epochs=2)
    train(TrainConfig(**config, select="last", output=str(tmp_path / "last")))
    best = keras.saving.load_model(tmp_path / "last" / "best.keras", compile=False)
    final = keras.saving.load_model(tmp_path / "last" / "checkpoints" / "last.keras", compile=False)
    for kept, last in zip(best.weights, final.weights):
        np.testing.assert_array_equal(kept.numpy(), last.numpy())

    # A learning rate this high makes the validation loss rise again before the end on these few
    # digits (at 0.06 it no longer did once GELU became 0.5x(1 + erf): 2.27, 2.68, 2.28, 2.26).
    unstable = dict(config, epochs=4, learning_rate=0.1, warmup_epochs=3)
    train(TrainConfig(**unstable, select="val_loss", output=str(tmp_path / "loss")))
    with open(tmp_path / "loss" / "history.csv") as f:
        losses = [float(row["val_loss"]) for row in csv.DictReader(f)]
    lowest = min(losses)
    assert losses[-1] > lowest, losses
    splits = data_lib.load_digits(image_size=16, seed=0)
    validation = data_lib.make_pipeline(splits.validation, 10, batch_size=32)
    best = keras.saving.load_model(tmp_path / "loss" / "best.keras", compile=False)
    best.compile(loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
    np.testing.assert_allclose(best.evaluate(validation, verbose=0), lowest, rtol=1e-4)
    kept = [w.numpy() for w in best.weights]

    # Resumed for one more epoch that cannot beat the earlier best: best.keras stays. At the
    # same learning rate the fifth epoch came to beat it (2.2404 < 2.2510) after a numerics change, so the
    # resumed epoch runs at 3.0, where AdamW steps move weights by up to about 3.
    wrecked = dict(unstable, epochs=5, learning_rate=3.0)
    train(TrainConfig(**wrecked, select="val_loss", resume=True, output=str(tmp_path / "loss")))
    with open(tmp_path / "loss" / "history.csv") as f:
        losses = [float(row["val_loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 5 and losses[-1] > lowest, losses
    best = keras.saving.load_model(tmp_path / "loss" / "best.keras", compile=False)
    for weight, before in zip(best.weights, kept):
        np.testing.assert_array_equal(weight.numpy(), before)

    with pytest.raises(ValueError, match="--select must be one of"):
        train(TrainConfig(**config, select="median", output=str(tmp_path / "bad")))


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_mixed_precision_fit_has_no_nan(tmp_path, precision, monkeypatch):
    # float16 has no CPU kernels (it is emulated, about 10x slower than float32): few images.
    use_few_digits(monkeypatch.setattr, {"train": 128, "validation": 32, "test": 32})
    metrics = train(TrainConfig(**dict(NANO, epochs=2), mixed_precision=precision, output=str(tmp_path)))
    assert keras.config.dtype_policy().name == "float32"  # restored afterwards
    with open(tmp_path / "history.csv") as f:
        assert all(np.isfinite(float(row["loss"])) for row in csv.DictReader(f))
    assert np.isfinite(metrics["test_loss"])


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    out = run_python(
        f"""
        import sys
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        sys.path.insert(0, "tests")
        import harness
        harness.use_few_digits()
        from keras_swin.train import TrainConfig, train
        from keras_swin.training.recipe import strategy_for
        config = TrainConfig(model="swin_nano", epochs=1, batch_size=32, augment="none", jit_compile=False,
                             export=False, verbose=0, strategy="mirrored", output={str(tmp_path)!r})
        print("replicas", strategy_for(config).num_replicas_in_sync)
        print("accuracy", train(config)["test_accuracy"])
        """
    )
    assert "replicas 2" in out
    assert 0.0 <= float(out.split("accuracy")[-1]) <= 1.0


def _epochs_logged(path):
    if not path.exists():
        return 0
    with open(path) as f:
        return sum(1 for _ in csv.DictReader(f))


def test_resume_after_kill_finishes_all_epochs(tmp_path, few_digits):
    args = ["train", "--model", "swin_nano", "--epochs", "6", "--batch-size", "16", "--augment", "none",
            "--no-jit-compile", "--no-export", "--verbose", "0", "--output", str(tmp_path)]
    process = cli_process(*args, few_digits=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while _epochs_logged(tmp_path / "history.csv") < 2 and time.time() < deadline:
        assert process.poll() is None, "training ended before it could be killed"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = _epochs_logged(tmp_path / "history.csv")
    assert 2 <= done < 6
    result = cli(*args, "--resume")  # here, on the same part of the digits (few_digits)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "history.csv") as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
    # Nothing before the kill is redone except, at most, the epoch it interrupted.
    assert epochs[-1] == 5 and len(epochs) <= 7 and sorted(set(epochs)) == list(range(6))


def test_cli_end_to_end_writes_every_output(tmp_path, few_digits):
    result = cli("train", "--model", "swin_nano", "--epochs", "2", "--batch-size", "64",
                 "--output", str(tmp_path), "--verbose", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test accuracy:" in result.stdout and "training time:" in result.stdout
    for name in ("best.keras", "metrics.json", "training_curves.png", "confusion_matrix.png",
                 "history.csv", "swin_nano.tflite", "serving/swin_nano/1/saved_model.pb",
                 "checkpoints/last.keras"):
        assert (tmp_path / name).is_file(), name
    assert os.listdir(tmp_path / "logs")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["per_class_accuracy"]) == {str(i) for i in range(10)}
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["test_loss"] > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "imagenet21k"], "Unknown dataset"),
        (["--model", "swin_xxl"], "invalid choice"),
        (["--data", "{empty}"], "at least 2 classes"),
        (["--data", "{single}"], "at least 2 classes"),
        (["--output", "/proc/keras_swin_out"], "not writable"),
    ],
)
def test_bad_input_exits_nonzero_with_a_message(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "single" / "only").mkdir(parents=True)
    tf.io.write_file(str(tmp_path / "single" / "only" / "a.png"), tf.io.encode_png(np.zeros((4, 4, 3), np.uint8)))
    args = [a.format(empty=tmp_path / "empty", single=tmp_path / "single") for a in args]
    if "--output" not in args:
        args += ["--output", str(tmp_path / "out")]
    result = cli("train", "--model", "swin_nano", "--epochs", "1", *args)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]


def test_frozen_backbone_phase_then_the_whole_model(tmp_path, few_digits):
    """--freeze-backbone-epochs: the backbone keeps its loaded weights for the first
    epochs, then everything trains."""
    pretrained = create_model(TrainConfig(**NANO), num_classes=10)
    pretrained.save_weights(tmp_path / "nano.weights.h5")
    config = TrainConfig(**dict(NANO, epochs=2), weights=str(tmp_path / "nano.weights.h5"),
                         freeze_backbone_epochs=1, output=str(tmp_path / "out"))
    train(config)
    history = (tmp_path / "out" / "history.csv").read_text().splitlines()
    assert len(history) == 3
    trained = keras.saving.load_model(tmp_path / "out" / "best.keras", safe_mode=True, compile=False)
    embedding = trained.get_layer("patch_embedding").projection.kernel
    assert np.any(keras.ops.convert_to_numpy(embedding)
                  != keras.ops.convert_to_numpy(pretrained.get_layer("patch_embedding").projection.kernel))
