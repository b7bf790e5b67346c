"""Training on several processes or machines: `keras-swin train --strategy multiworker`.

The engine is Keras's own distribution API on the JAX backend: `keras.distribution.initialize`
(which starts `jax.distributed`) and `keras.distribution.DataParallel` over every device of
every process. Each process builds the same tf.data pipeline from the same seed; Keras
shards each global batch across the processes, and the gradients are all-reduced, so every
process holds the same weights after each step.

Why not `tf.distribute.MultiWorkerMirroredStrategy`: Keras 3.15's TensorFlow trainer
fails under it with one replica per worker (it averages the first input batch over the
replicas to build the model, and reduces scalar logs along an axis they do not have).

The cluster comes from Keras's variables (`KERAS_DISTRIBUTION_JOB_ADDRESSES`, the
coordinator's `host:port` first; `KERAS_DISTRIBUTION_NUM_PROCESSES`;
`KERAS_DISTRIBUTION_PROCESS_ID`) or, when those are unset, from a `TF_CONFIG` with a
"worker" cluster (the first worker's address is the coordinator).
"""

import dataclasses
import hashlib
import json
import os

import keras
import numpy as np

KERAS_VARIABLES = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                   "KERAS_DISTRIBUTION_PROCESS_ID")


@dataclasses.dataclass(frozen=True)
class Cluster:
    coordinator: str
    num_processes: int
    process_id: int

    @property
    def is_chief(self):
        return self.process_id == 0


def cluster_from_environment(environ=None):
    """The `Cluster` that the environment describes; ValueError when it describes none,
    or describes one inconsistently."""
    environ = os.environ if environ is None else environ
    given = [name for name in KERAS_VARIABLES if environ.get(name)]
    if given:
        missing = [name for name in KERAS_VARIABLES if name not in given]
        if missing:
            raise ValueError(f"--strategy multiworker: {', '.join(missing)} unset; expected all of "
                             f"{', '.join(KERAS_VARIABLES)} (received {', '.join(given)}).")
        coordinator = environ["KERAS_DISTRIBUTION_JOB_ADDRESSES"].split(",")[0].strip()
        num_processes = _integer(environ, "KERAS_DISTRIBUTION_NUM_PROCESSES")
        process_id = _integer(environ, "KERAS_DISTRIBUTION_PROCESS_ID")
    elif environ.get("TF_CONFIG"):
        try:
            tf_config = json.loads(environ["TF_CONFIG"])
            workers = list(tf_config["cluster"]["worker"])
            task = tf_config["task"]
            kind, process_id = task["type"], int(task["index"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                "--strategy multiworker: TF_CONFIG must be JSON like "
                '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}; '
                f"received {environ['TF_CONFIG']!r} ({error})."
            ) from None
        if kind != "worker" or set(tf_config["cluster"]) - {"worker"}:
            raise ValueError(
                "--strategy multiworker: TF_CONFIG may only hold a 'worker' cluster and a 'worker' task; "
                f"received cluster {sorted(tf_config['cluster'])} and task type {kind!r}."
            )
        coordinator, num_processes = workers[0] if workers else "", len(workers)
    else:
        raise ValueError(
            "--strategy multiworker needs the cluster: set KERAS_DISTRIBUTION_JOB_ADDRESSES (the "
            "coordinator's host:port), KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID, "
            "or TF_CONFIG; none is set."
        )
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(f"--strategy multiworker: process id {process_id} is not in [0, {num_processes}) "
                         f"for {num_processes} processes.")
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--strategy multiworker: the coordinator address must be host:port; "
                         f"received {coordinator!r}.")
    return Cluster(coordinator, num_processes, process_id)


def _integer(environ, name):
    try:
        return int(environ[name])
    except ValueError:
        raise ValueError(f"--strategy multiworker: {name} must be an integer; received {environ[name]!r}.") from None


def check_multiworker_config(config):
    """Refuses settings that the multi-worker path cannot honour, before any work."""
    if keras.backend.backend() != "jax":
        raise ValueError(
            "--strategy multiworker runs on the JAX backend (KERAS_BACKEND=jax); KERAS_BACKEND is "
            f"{keras.backend.backend()!r}. Keras 3.15's TensorFlow trainer cannot train under "
            "MultiWorkerMirroredStrategy."
        )
    if config.resume:
        raise ValueError("--resume is not supported with --strategy multiworker: only the chief keeps a "
                         "backup, so the other workers could not restore the same state.")
    cluster = cluster_from_environment()
    if config.batch_size % cluster.num_processes:
        raise ValueError(f"--batch-size {config.batch_size} (the global batch) must be divisible by the "
                         f"number of workers, {cluster.num_processes}.")
    return cluster


def start(cluster):
    """Joins the cluster (blocks until every process has) and makes Keras data parallel
    over all devices of all processes."""
    import jax

    keras.distribution.initialize(cluster.coordinator, cluster.num_processes, cluster.process_id)
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))


def stop():
    """Back to single-process computation (the chief then evaluates and exports alone)."""
    keras.distribution.set_distribution(None)


def whole_batches(dataset, batch_size):
    """`dataset` with its last, partial batch dropped: Keras splits each global batch
    evenly across the workers, which a short batch cannot be."""
    return dataset.rebatch(batch_size, drop_remainder=True)


def weights_digest(model):
    """SHA-256 of the model's weights (names and values), to compare workers."""
    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(variable.path.encode())
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable.value)).tobytes())
    return digest.hexdigest()


def report_weights(model):
    """Prints this worker's weights digest, so that the workers' logs can be compared."""
    import jax  # the multi-worker path runs on the JAX backend only

    print(f"worker {jax.process_index()} of {jax.process_count()}: weights sha256 {weights_digest(model)}", flush=True)
