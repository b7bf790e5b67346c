"""The JAX backend: training end to end, and UPerNet and Swin V2 equal to TensorFlow."""

import json
import subprocess

import keras
import numpy as np
import pytest

import keras_swin
from harness import cli_process, random_inputs, run_python

TINY = ["--model", "swin_nano", "--epochs", "2", "--batch-size", "32", "--augment", "none", "--verbose", "0"]


def _train(args):
    """`KERAS_BACKEND=jax keras-swin train ARGS` on part of the digits (harness.use_few_digits)."""
    return cli_process("train", *args, few_digits=True, env={"KERAS_BACKEND": "jax"},
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_jax_backend_trains_resumes_and_exports(tmp_path):
    """`KERAS_BACKEND=jax keras-swin train`: tf.data input, the AdamW recipe, checkpoints,
    metrics and plots in JAX; the export runs in a TensorFlow-backend subprocess."""
    out = tmp_path / "jax"
    process = _train([*TINY, "--output", str(out)])
    stdout, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["tflite_bytes"] > 0
    for name in ("best.keras", "training_curves.png", "confusion_matrix.png", "history.csv",
                 "swin_nano.tflite", "serving/swin_nano/1/saved_model.pb", "backup"):
        assert (out / name).exists(), name
    assert len((out / "history.csv").read_text().splitlines()) == 3
    # --resume with more epochs continues from the backup, in JAX.
    process = _train([*TINY[:2], "--epochs", "3", *TINY[4:], "--output", str(out), "--resume", "--no-export"])
    _, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr[-3000:]
    assert len((out / "history.csv").read_text().splitlines()) == 4


@pytest.mark.parametrize("kind", ["upernet", "swin_v2"])
def test_jax_backend_matches_tensorflow_for_upernet_and_v2(kind, tmp_path):
    if kind == "upernet":
        backbone = keras_swin.SwinTransformer(
            embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
            pyramid_norm=True, include_final_norm=False, always_partition=True,
        )
        model = keras_swin.UPerNet(backbone, num_classes=4, channels=16, auxiliary_head=True)
    else:
        model = keras_swin.SwinTransformerV2(embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4,
                                             pretrained_window_sizes=(6, 0), include_top=True, classes=5)
    images = random_inputs((2, 45, 61, 3)) * 50 + 120
    expected = model(images)
    expected = expected["logits"] if isinstance(expected, dict) else expected
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", keras.ops.convert_to_numpy(expected))
    out = run_python(
        f"""
        import numpy as np, keras
        assert keras.backend.backend() == "jax"
        import keras_swin
        model = keras.saving.load_model({str(tmp_path / "model.keras")!r}, safe_mode=True)
        x = np.load({str(tmp_path / "x.npy")!r})
        model.predict(np.zeros((1, 64, 64, 3), "float32"), verbose=0)  # another size first
        y = model.predict(x, verbose=0)
        y = y["logits"] if isinstance(y, dict) else y
        print("maxdiff", float(np.abs(y - np.load({str(tmp_path / "y.npy")!r})).max()))
        """,
        env={"KERAS_BACKEND": "jax"},
    )
    assert float(out.split("maxdiff")[-1]) <= 1e-4
