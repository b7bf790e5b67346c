"""Training beyond the TensorFlow default: the JAX backend end to end, and two workers of a
`MultiWorkerMirroredStrategy` cluster on localhost."""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from harness import REPO_ROOT

TINY = ["--model", "swin_nano", "--epochs", "2", "--batch-size", "32", "--augment", "none", "--verbose", "0"]


def _train(args, env=None, timeout=900):
    return subprocess.Popen(
        [sys.executable, "-m", "keras_swin.cli", "train", *args], cwd=REPO_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
    )


@pytest.mark.slow
def test_jax_backend_trains_resumes_and_exports(tmp_path):
    """`KERAS_BACKEND=jax keras-swin train`: tf.data input, the AdamW recipe, checkpoints,
    metrics and plots in JAX; the export runs in a TensorFlow-backend subprocess."""
    out = tmp_path / "jax"
    process = _train([*TINY, "--output", str(out)], env={"KERAS_BACKEND": "jax"})
    stdout, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["tflite_bytes"] > 0
    for name in ("best.keras", "training_curves.png", "confusion_matrix.png", "history.csv",
                 "swin_nano.tflite", "serving/swin_nano/1/saved_model.pb", "backup"):
        assert (out / name).exists(), name
    assert len((out / "history.csv").read_text().splitlines()) == 3
    # --resume with more epochs continues from the backup, in JAX.
    process = _train([*TINY[:2], "--epochs", "3", *TINY[4:], "--output", str(out), "--resume", "--no-export"],
                     env={"KERAS_BACKEND": "jax"})
    _, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr[-3000:]
    assert len((out / "history.csv").read_text().splitlines()) == 4


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_train_in_step_and_only_the_chief_writes(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    out = tmp_path / "out"
    processes = [
        _train([*TINY, "--strategy", "multiworker", "--no-export", "--output", str(out)],
               env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})})
        for index in range(2)
    ]
    results = [process.communicate(timeout=900) for process in processes]
    for process, (_, stderr) in zip(processes, results):
        assert process.returncode == 0, stderr[-3000:]
    chief_out, worker_out = results[0][0], results[1][0]
    assert "test accuracy" in chief_out and "test accuracy" not in worker_out
    worker_weights = worker_out.split("final weights in ")[1].split()[0]
    assert not worker_weights.startswith(str(out))
    assert sorted(os.listdir(out)) == sorted(
        ["backup", "best.keras", "checkpoints", "confusion_matrix.png", "history.csv", "logs", "metrics.json",
         "training_curves.png"]
    )
    chief = keras.saving.load_model(out / "best.keras", safe_mode=True, compile=False)
    worker = keras.models.clone_model(chief)
    worker.load_weights(worker_weights)
    for a, b in zip(chief.weights, worker.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), err_msg=a.path)


def test_multiworker_without_tf_config_is_a_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    result = subprocess.run(
        [sys.executable, "-m", "keras_swin.cli", "train", *TINY, "--strategy", "multiworker",
         "--output", str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 2 and "needs TF_CONFIG" in result.stderr
