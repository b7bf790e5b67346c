"""Hardening of training and checkpoint loading: what a hostile run of `keras-swin train`
found (issue "Hardening II"): crashes, lost work and bad input accepted in silence."""

import json
import os
import warnings

import keras
import numpy as np
import pytest
from safetensors.numpy import save_file

import keras_swin
from harness import run_python
from keras_swin.checkpoints.files import WeightsMismatchError
from keras_swin.train import TrainConfig, train
from keras_swin.training import outputs, recipe
from keras_swin.training.classification import create_model

# The smallest classifier on the embedded digits, without XLA (its compile costs more than it
# saves on a few steps).
NANO = dict(model="swin_nano", epochs=2, batch_size=128, warmup_epochs=0, jit_compile=False, export=False, verbose=0)


def nano(tmp_path, **overrides):
    return TrainConfig(**{**NANO, "output": str(tmp_path / "run"), **overrides})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One finished two-epoch run, shared by the tests that only read or resume it."""
    config = nano(tmp_path_factory.mktemp("finished"))
    return config, train(config)


# --------------------------------------------------------------------------- crashes


def test_layer_decay_trains_and_applies_each_layers_learning_rate(tmp_path):
    config = nano(tmp_path, layer_decay=0.5, weight_decay=0.0, epochs=1)
    model = create_model(config, num_classes=10)
    optimizer = recipe.create_optimizer(config, model, steps_per_epoch=4)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", jit_compile=False)
    images = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    labels = keras.utils.to_categorical(np.arange(8) % 10, 10)
    before = {v.path: keras.ops.convert_to_numpy(v.value).copy() for v in model.trainable_variables}
    model.fit(images, labels, epochs=1, batch_size=8, verbose=0)  # crashed: ResourceVariable has no .path
    depth = sum(model.depths) + 1  # the blocks, then the final norm and head
    variables = {v.path: v for v in model.trainable_variables}
    embedding, head = variables["patch_embedding/projection/kernel"], variables["predictions/kernel"]
    assert optimizer.lr_scale(embedding) == pytest.approx(0.5**depth)
    assert optimizer.lr_scale(head) == 1.0
    # Adam's first step moves each weight by about lr * scale (m / sqrt(v) = sign(g)).
    step = {path: np.abs(keras.ops.convert_to_numpy(v.value) - before[path]).max() for path, v in variables.items()}
    assert step["predictions/kernel"] == pytest.approx(config.learning_rate, rel=0.05)
    assert step["patch_embedding/projection/kernel"] == pytest.approx(config.learning_rate * 0.5**depth, rel=0.05)


def test_a_pipeline_without_examples_never_trains_or_writes_a_model(tmp_path):
    import tensorflow as tf

    config = nano(tmp_path)
    model = create_model(config, num_classes=10)
    empty = tf.data.Dataset.from_tensor_slices(
        (np.zeros((0, 16, 16, 3), "float32"), np.zeros((0, 10), "float32"))).batch(4)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    recipe.check_config(config)
    with pytest.raises(ValueError, match="Nothing to train on: the training split gives 0 batches"):
        recipe.fit_with_recipe(model, config, empty, empty, steps_per_epoch=0)
    assert not os.path.exists(os.path.join(config.output, "best.keras"))


# --------------------------------------------------------------------------- lost work

KILL_DURING_SECOND_BACKUP = """
import os, signal, keras
from keras_swin.train import TrainConfig, train
save_weights = keras.Model.save_weights
saves = []

def dying(self, filepath, *args, **kwargs):
    if "backup" in str(filepath):
        saves.append(filepath)
        if len(saves) == 2:  # the second epoch's backup: write part of it, then die
            with open(filepath, "wb") as f:
                f.write(b"\\x89HDF\\r\\n")
            os.kill(os.getpid(), signal.SIGKILL)
    return save_weights(self, filepath, *args, **kwargs)

keras.Model.save_weights = dying
train(TrainConfig(**{config}))
"""


def test_resume_after_a_kill_during_the_backup_write(tmp_path):
    config = nano(tmp_path, epochs=3)
    fields = {k: getattr(config, k) for k in NANO} | {"output": config.output, "epochs": 3}
    with pytest.raises(AssertionError, match="subprocess failed"):  # it was killed
        run_python(KILL_DURING_SECOND_BACKUP.replace("{config}", repr(fields)))
    backup = os.path.join(config.output, "backup")
    metadata = json.load(open(os.path.join(backup, "training_metadata.json")))
    assert metadata["epoch"] == 1  # the first epoch's complete backup is still the current one
    metrics = train(nano(tmp_path, epochs=3, resume=True))
    assert metrics["timed_epochs"] == 2  # epochs 2 and 3, after the restored first
    assert json.load(open(os.path.join(backup, "training_metadata.json")))["epoch"] == 3
    assert not [name for name in os.listdir(backup) if name.startswith(".partial-")]


def test_an_output_holding_an_earlier_run_is_refused_or_replaced(finished_run, tmp_path):
    config, _ = finished_run
    with pytest.raises(OSError, match=r"holds an earlier run's outputs \(.*best\.keras.*\)\. Pass --resume"):
        recipe.check_config(TrainConfig(**{**NANO, "output": config.output}))
    other = tmp_path / "other"
    other.mkdir()
    (other / "serving").mkdir()
    (other / "swin_nano.tflite").write_bytes(b"old")
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OSError, match=r"serving, swin_nano\.tflite"):
        recipe.check_config(nano(other, output=str(other)))
    metrics = train(nano(other, output=str(other), overwrite=True, epochs=1))
    assert metrics["timed_epochs"] == 1
    assert not (other / "serving").exists() and not (other / "swin_nano.tflite").exists()
    assert (other / "notes.txt").read_text() == "mine"  # only the run's own outputs go


def test_metrics_json_is_written_last(tmp_path, monkeypatch):
    def failing_export(*args, **kwargs):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(recipe, "export_outputs", failing_export)
    with pytest.raises(OSError, match="injected"):
        train(nano(tmp_path, epochs=1, export=True))
    assert os.path.exists(os.path.join(tmp_path, "run", "best.keras"))
    assert not os.path.exists(os.path.join(tmp_path, "run", "metrics.json"))


def test_metrics_json_is_strict_json(tmp_path):
    path = tmp_path / "metrics.json"
    outputs.write_json(path, {"loss": float("nan"), "per_class": {"a": float("inf")}, "ok": 1.5})
    assert json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"bare {name}")) == {
        "loss": None, "per_class": {"a": None}, "ok": 1.5}


def test_resume_without_an_earlier_run_is_refused(tmp_path):
    with pytest.raises(OSError, match="holds no earlier run to resume"):
        recipe.check_config(nano(tmp_path, resume=True))


def test_resume_with_another_architecture_names_the_difference(finished_run):
    config, _ = finished_run
    with pytest.raises(ValueError, match=r"trained another architecture.*model: 'swin_nano' there, 'swin_digits' now"):
        train(TrainConfig(**{**NANO, "output": config.output, "model": "swin_digits", "resume": True}))


def test_finished_run_summary(finished_run):
    config, metrics = finished_run
    assert metrics["output"] == config.output and metrics["timed_epochs"] == 2
    written = json.load(open(os.path.join(config.output, "metrics.json")))
    assert written["test_accuracy"] == metrics["test_accuracy"]
    assert json.load(open(os.path.join(config.output, "run.json")))["model"] == "swin_nano"


def test_validation_never_runs_out_of_data(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(nano(tmp_path, epochs=2))
    assert not [w for w in caught if "ran out of data" in str(w.message)]


# --------------------------------------------------------------------------- accepted in silence


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("learning_rate", float("nan"), r"--learning-rate must be a number in \(0, inf\); received nan"),
        ("learning_rate", float("inf"), "--learning-rate must be a number"),
        ("learning_rate", -1.0, "--learning-rate must be a number"),
        ("learning_rate", 0.0, "--learning-rate must be a number"),
        ("warmup_epochs", -5, r"--warmup-epochs must be an integer in \[0, inf\); received -5"),
        ("label_smoothing", 5.0, r"--label-smoothing must be a number in \[0, 1\); received 5.0"),
        ("clipnorm", 0.0, r"--clipnorm must be a number in \(0, inf\)"),
        ("clipnorm", -1.0, "--clipnorm must be a number"),
        ("weight_decay", -1.0, r"--weight-decay must be a number in \[0, inf\)"),
        ("image_size", 0, r"--image-size must be an integer in \[1, 4096\]; received 0"),
        ("image_size", -4, "--image-size must be an integer"),
        ("image_size", 100000, r"--image-size must be an integer in \[1, 4096\]; received 100000"),
        ("drop_path_rate", 1.0, "--drop-path-rate must be a number"),
        ("layer_decay", 0.0, r"--layer-decay must be a number in \(0, 1\]"),
        ("epochs", 0, "--epochs must be an integer"),
        ("batch_size", 0, "--batch-size must be an integer"),
        ("version", 0, "--version must be an integer"),
    ],
)
def test_numbers_out_of_range_are_refused(tmp_path, option, value, message):
    with pytest.raises(ValueError, match=message):
        recipe.check_config(nano(tmp_path, **{option: value}))


def test_resume_and_overwrite_together_are_refused(tmp_path):
    with pytest.raises(ValueError, match="pass one of them"):
        recipe.check_config(nano(tmp_path, resume=True, overwrite=True))


def test_an_output_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(OSError, match="is a file; expected a folder"):
        recipe.check_config(nano(tmp_path, output=str(path)))


# --------------------------------------------------------------------------- weights files


@pytest.fixture(scope="module")
def tiny_models():
    def tiny(embed_dim):
        return keras_swin.SwinTransformer(patch_size=2, embed_dim=embed_dim, depths=(1,), num_heads=(1,),
                                          window_size=4, include_top=True, classes=3, input_shape=(16, 16, 3))

    return tiny(8), tiny(16)


def test_weights_of_another_architecture_say_how_they_differ(tiny_models, tmp_path):
    small, large = tiny_models
    small.save(tmp_path / "small.keras")
    small.save_weights(tmp_path / "small.weights.h5")
    with pytest.raises(WeightsMismatchError, match="holds another architecture.*embed_dim: 8 in the file, 16 in the model"):
        large.load_checkpoint(str(tmp_path / "small.keras"))
    with pytest.raises(WeightsMismatchError, match=r"shapes only in the file: \[\(2, 2, 3, 8\)"):
        large.load_checkpoint(str(tmp_path / "small.weights.h5"))


def test_unreadable_weights_files_say_what_they_are(tiny_models, tmp_path):
    model = tiny_models[0]
    (tmp_path / "fake.pth").write_text("not a checkpoint")
    with pytest.raises(OSError, match="'.*fake.pth' is not a readable PyTorch checkpoint"):
        model.load_checkpoint(str(tmp_path / "fake.pth"))
    with pytest.raises(OSError, match="is a directory; expected a weights file"):
        model.load_checkpoint(str(tmp_path))
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(OSError, match="is not a readable safetensors file"):
        model.load_checkpoint(str(tmp_path / "bad.safetensors"))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_tensors_are_refused(tiny_models, tmp_path, bad):
    model = tiny_models[0]
    state = {"patch_embed.proj.weight": np.full((8, 3, 2, 2), bad, "float32")}
    save_file(state, tmp_path / "bad.safetensors")
    before = [keras.ops.convert_to_numpy(v.value).copy() for v in model.weights]
    with pytest.raises(WeightsMismatchError, match="'patch_embed.proj.weight' holds 96 NaN or infinite values of 96"):
        model.load_checkpoint(str(tmp_path / "bad.safetensors"))
    assert all(np.array_equal(b, keras.ops.convert_to_numpy(v.value)) for b, v in zip(before, model.weights))


@pytest.mark.parametrize("shape, message", [((0, 16, 16, 3), "received 0 images"), ((2, 0, 16, 3), "at least 1x1 pixel")])
def test_empty_batches_and_zero_sized_images_are_refused(tiny_models, shape, message):
    model = tiny_models[0]
    images = np.zeros(shape, "float32")
    for call in (model, model.predict):  # a raw shape error and an UnboundLocalError before
        with pytest.raises(ValueError, match=message):
            call(images)


def test_overwrite_removes_a_detectors_anchors_and_nothing_of_the_users(tmp_path):
    """`--overwrite` removes what a run wrote, a detector's `<name>_anchors.npy` included
    (a stale one would pair with the new .tflite), and leaves other files alone."""
    for name in ("metrics.json", "retinanet.tflite", "retinanet_anchors.npy", "notes.txt", "anchors.csv"):
        (tmp_path / name).write_text("x")
    assert outputs.remove_earlier_outputs(str(tmp_path)) == ["metrics.json", "retinanet.tflite",
                                                             "retinanet_anchors.npy"]
    assert sorted(os.listdir(tmp_path)) == ["anchors.csv", "notes.txt"]
