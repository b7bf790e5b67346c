"""`keras-swin train --strategy multiworker`: Keras's distribution API on JAX over
`jax.distributed`, with two worker processes on localhost."""

import csv
import json
import os
import re
import socket
import subprocess

import keras
import pytest

from harness import cli_process
from keras_swin.training import multiworker
from keras_swin.train import TrainConfig, train

# --verbose 2: one line of metrics per epoch, so that the workers' histories can be compared.
TINY = ["--model", "swin_nano", "--epochs", "2", "--batch-size", "32", "--augment", "none", "--verbose", "2",
        "--no-export", "--strategy", "multiworker"]


def epoch_logs(stdout):
    """`[{metric: value}]`, one per epoch, from the lines Keras prints with verbose=2
    ("13/13 - 2s - 150ms/step - accuracy: 0.1010 - loss: 2.3019 - val_accuracy: ...")."""
    return [{name: float(value) for name, value in re.findall(r" - (\w+): ([-+.0-9e]+)", line)}
            for line in stdout.splitlines() if re.match(r"^\d+/\d+ - ", line)]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_workers_train_in_step_and_only_the_chief_writes(tmp_path):
    port = _free_port()
    out = tmp_path / "out"
    processes = []
    for worker in (0, 1):
        scratch = tmp_path / f"tmp{worker}"
        scratch.mkdir()
        env = {
            "KERAS_BACKEND": "jax", "PYTHONUNBUFFERED": "1", "TMPDIR": str(scratch),
            "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}", "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
            "KERAS_DISTRIBUTION_PROCESS_ID": str(worker),
        }
        # On part of the digits (harness.use_few_digits): the test is about the workers' steps.
        processes.append(cli_process("train", *TINY, "--output", out, few_digits=True, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    try:
        for process in processes:
            results.append(process.communicate(timeout=900))
    finally:
        for process in processes:
            process.kill()
    for process, (stdout, stderr) in zip(processes, results):
        assert process.returncode == 0, stdout[-2000:] + stderr[-4000:]

    digests = [re.findall(r"worker (\d) of 2: weights sha256 ([0-9a-f]{64})", stdout) for stdout, _ in results]
    assert [d[0][0] for d in digests] == ["0", "1"]
    assert digests[0][0][1] == digests[1][0][1], "the workers' weights differ after training"
    # Both ran the same global steps: identical training histories, epoch by epoch.
    histories = [epoch_logs(stdout) for stdout, _ in results]
    assert len(histories[0]) == 2 and {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(histories[0][0])
    assert histories[0] == histories[1], histories

    # The chief wrote the outputs; the other worker's files went to its own temporary directory,
    # which is gone, and nothing else of it is left.
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["test_accuracy"] <= 1
    for name in ("best.keras", "history.csv", "training_curves.png", "checkpoints/last.keras"):
        assert (out / name).exists(), name
    assert len((out / "history.csv").read_text().splitlines()) == 3
    worker_dir = re.search(r"this worker's files go to (\S+)", results[1][0]).group(1)
    assert worker_dir.startswith(str(tmp_path / "tmp1")) and not os.path.exists(worker_dir)
    assert os.listdir(tmp_path / "tmp1") == []
    assert "files go to" not in results[0][0]
    # The chief's history.csv is the history both printed, and best.keras (the final weights,
    # --select last) holds the weights whose digest both reported.
    with open(out / "history.csv") as f:
        logged = list(csv.DictReader(f))
    for row, printed in zip(logged, histories[0]):
        for name, value in printed.items():
            assert float(row[name]) == pytest.approx(value, rel=1e-3, abs=1e-4), (name, row[name], value)
    reloaded = keras.saving.load_model(out / "best.keras", compile=False)
    assert multiworker.weights_digest(reloaded) == digests[0][0][1]


def _environ(**values):
    return {key: str(value) for key, value in values.items()}


def test_cluster_from_keras_variables_and_tf_config():
    cluster = multiworker.cluster_from_environment(_environ(
        KERAS_DISTRIBUTION_JOB_ADDRESSES="10.0.0.1:1234,10.0.0.2:2345", KERAS_DISTRIBUTION_NUM_PROCESSES=2,
        KERAS_DISTRIBUTION_PROCESS_ID=1,
    ))
    assert cluster == multiworker.Cluster("10.0.0.1:1234", 2, 1) and not cluster.is_chief
    tf_config = {"cluster": {"worker": ["host-a:2222", "host-b:2222", "host-c:2222"]},
                 "task": {"type": "worker", "index": 0}}
    cluster = multiworker.cluster_from_environment({"TF_CONFIG": json.dumps(tf_config)})
    assert cluster == multiworker.Cluster("host-a:2222", 3, 0) and cluster.is_chief


@pytest.mark.parametrize(
    "environ, message",
    [
        ({}, "none is set"),
        (_environ(KERAS_DISTRIBUTION_JOB_ADDRESSES="h:1", KERAS_DISTRIBUTION_NUM_PROCESSES=2),
         "KERAS_DISTRIBUTION_PROCESS_ID unset"),
        (_environ(KERAS_DISTRIBUTION_JOB_ADDRESSES="h:1", KERAS_DISTRIBUTION_NUM_PROCESSES="two",
                  KERAS_DISTRIBUTION_PROCESS_ID=0), "must be an integer; received 'two'"),
        (_environ(KERAS_DISTRIBUTION_JOB_ADDRESSES="h:1", KERAS_DISTRIBUTION_NUM_PROCESSES=2,
                  KERAS_DISTRIBUTION_PROCESS_ID=2), r"process id 2 is not in \[0, 2\)"),
        (_environ(KERAS_DISTRIBUTION_JOB_ADDRESSES="localhost", KERAS_DISTRIBUTION_NUM_PROCESSES=2,
                  KERAS_DISTRIBUTION_PROCESS_ID=0), "must be host:port; received 'localhost'"),
        ({"TF_CONFIG": "{not json"}, "TF_CONFIG must be JSON"),
        ({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:1"]},
                                   "task": {"type": "worker", "index": 0}})}, "may only hold a 'worker' cluster"),
    ],
)
def test_cluster_errors_name_the_problem(environ, message):
    with pytest.raises(ValueError, match=message):
        multiworker.cluster_from_environment(environ)


def test_multiworker_refuses_what_it_cannot_do(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "127.0.0.1:1")
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "0")
    config = TrainConfig(model="swin_nano", epochs=1, batch_size=32, strategy="multiworker", output=str(tmp_path))
    # This suite runs on the TensorFlow backend, whose trainer cannot train under
    # MultiWorkerMirroredStrategy; the error says to use JAX, before any work.
    assert keras.backend.backend() == "tensorflow"
    with pytest.raises(ValueError, match="runs on the JAX backend"):
        train(config)
    assert not os.listdir(tmp_path)
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match="--resume is not supported"):
        multiworker.check_multiworker_config(TrainConfig(model="swin_nano", strategy="multiworker", resume=True))
    with pytest.raises(ValueError, match="--batch-size 33 .* divisible by the number of workers, 2"):
        multiworker.check_multiworker_config(TrainConfig(model="swin_nano", strategy="multiworker", batch_size=33))
