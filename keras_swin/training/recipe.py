"""The training recipe every task shares: `TrainConfig` and its checks, AdamW with each model
family's no-decay set and optional layer-wise LR decay, warmup-cosine, clipping, the
distribution strategy, the fit loop with its outputs (backup, checkpoints, history, logs,
best.keras), the training curves and the export of the result.

Each task (`training.classification`, `training.segmentation`) builds its data and model and
calls `fit_with_recipe`; `keras_swin.train.train` dispatches on `TrainConfig.task`.
"""

import contextlib
import csv
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from keras_swin import export
from keras_swin.training import multiworker, outputs

# The run's configuration and its checks live in training/config.py; the tasks and the CLI
# read them from here, with the recipe.
from keras_swin.training.config import (  # noqa: F401  (re-exported)
    MODEL_DEFAULTS,
    SELECT_OPTIONS,
    STRATEGIES,
    TASK_DEFAULTS,
    TASKS,
    TrainConfig,
    check_config,
    image_size_for,
)

logger = logging.getLogger("keras_swin")


def layerwise_multipliers(model, layer_decay):
    """Learning-rate multipliers `decay ** (depth - layer_id)`: the embedding gets the
    smallest, each block one more step, the final norm and head 1."""
    num_layers = sum(model.depths) + 1
    multipliers = {}
    block_index = 0
    for layer in model.layers:
        if layer.name == "patch_embedding":
            layer_id = 0
        elif "_block" in layer.name:
            block_index += 1
            layer_id = block_index
        elif "_merging" in layer.name:
            layer_id = block_index
        else:
            layer_id = num_layers
        for variable in layer.trainable_weights:
            multipliers[variable.path] = layer_decay ** (num_layers - layer_id)
    return multipliers


@keras.saving.register_keras_serializable(package="keras_swin")
class LayerwiseAdamW(keras.optimizers.AdamW):
    """AdamW whose learning rate is scaled per variable by `lr_multipliers[variable.path]`.

    The scales are looked up once, in `build`, by the Keras variables' paths: `update_step`
    may receive the backend's own variable (a `tf.Variable` under a `tf.distribute` or XLA
    step), which has no `.path`, so it finds its scale by the variable's index instead.
    """

    def __init__(self, lr_multipliers=None, **kwargs):
        super().__init__(**kwargs)
        self.lr_multipliers = dict(lr_multipliers or {})
        self._lr_scales = []

    def build(self, var_list):
        super().build(var_list)
        self._lr_scales = [float(self.lr_multipliers.get(v.path, 1.0)) for v in var_list]

    def lr_scale(self, variable):
        """The multiplier applied to `variable`'s learning rate."""
        return self._lr_scales[self._get_variable_index(variable)]

    def update_step(self, gradient, variable, learning_rate):
        super().update_step(gradient, variable, learning_rate * self.lr_scale(variable))

    def get_config(self):
        return {**super().get_config(), "lr_multipliers": self.lr_multipliers}


def create_optimizer(config, model, steps_per_epoch):
    """AdamW with warmup-cosine and clipping; the model family's `no_weight_decay()` names
    (biases, norms, position-bias tables and, for Swin V2, its cpb MLP and logit scale) are
    not decayed."""
    total_steps = max(1, config.epochs * steps_per_epoch)
    warmup_steps = min(config.warmup_epochs * steps_per_epoch, total_steps - 1)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.min_learning_rate,
        decay_steps=total_steps - warmup_steps,
        alpha=config.min_learning_rate / config.learning_rate,
        warmup_target=config.learning_rate,
        warmup_steps=warmup_steps,
    )
    # The official optimiser: AdamW eps 1e-8, gradients clipped by their global norm.
    kwargs = dict(
        learning_rate=schedule,
        weight_decay=config.weight_decay,
        epsilon=1e-8,
        global_clipnorm=config.clipnorm,
    )
    if config.layer_decay:
        optimizer = LayerwiseAdamW(layerwise_multipliers(model, config.layer_decay), **kwargs)
    else:
        optimizer = keras.optimizers.AdamW(**kwargs)
    optimizer.exclude_from_weight_decay(var_names=list(model.no_weight_decay()))
    return optimizer


def build_optimizer(model):
    """Creates the compiled optimizer's variables now, in the model's distribution strategy.

    Why: without a strategy, Keras (3.15, TensorFlow backend) leaves them to the first trace
    of the train function, and a tf.function that creates variables is traced twice. The
    first step of the digit-scene SwinUNETR took 17.8 s, 10.3 s with the optimizer built
    (2-core AMD EPYC, AVX2). Models with a loss per output (UPerNet's auxiliary head, the
    RetinaNet) still trace twice: Keras creates each output's loss tracker in the first trace.
    """
    if model.optimizer.built:
        return
    if keras.backend.backend() == "tensorflow":
        with model.distribute_strategy.scope():
            model.optimizer.build(model.trainable_variables)
    else:
        model.optimizer.build(model.trainable_variables)


def strategy_for(config):
    """The `tf.distribute` strategy that `config.strategy` names (TensorFlow backend; on
    JAX and PyTorch only "auto", which places the model on the default device, and
    "multiworker" on JAX, which `train` sets up through Keras's distribution API)."""
    if config.strategy == "multiworker":
        # Keras's distribution API on JAX (keras_swin.multiworker), set up by `train`.
        return tf.distribute.get_strategy()
    if config.strategy != "auto" and keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"--strategy {config.strategy} needs the TensorFlow backend; KERAS_BACKEND is "
            f"{keras.backend.backend()!r} (use --strategy auto)."
        )
    if config.strategy == "mirrored":
        # All GPUs when there are any, else every logical CPU device.
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    return tf.distribute.get_strategy()


def plot_curves(history, path, metric, metric_keys):
    """Saves the loss curves and one metric's (training and validation) side by side."""
    import matplotlib  # a plotting back end is chosen before pyplot is imported

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, keys, title in ((axes[0], ("loss", "val_loss"), "loss"), (axes[1], metric_keys, metric)):
        for key in keys:
            if key in history:
                axis.plot(np.arange(1, len(history[key]) + 1), history[key], label=key)
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def history_from_csv(path):
    history = {}
    if not os.path.exists(path):
        return history
    with open(path) as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key != "epoch":
                    history.setdefault(key, []).append(float(value))
    return history


# `export_outputs` itself, in a TensorFlow-backend process (the backend is fixed at import),
# for a run trained on another backend.
_EXPORT_IN_TENSORFLOW = """
import json, sys
from keras_swin import export
from keras_swin.training.recipe import export_outputs
arguments = json.loads(sys.argv[1])
model = export.load_model_file(arguments.pop("best_path"))
export_outputs(model, None, **{**arguments, "image_size": arguments["image_size"] and tuple(arguments["image_size"])})
"""


def export_outputs(model, best_path, output, name, version, image_size=None, class_names=None):
    """Writes the SavedModel (`serving/<name>/<version>/`) and `<name>.tflite` of a trained
    model; returns the TFLite size in bytes. Export is a TensorFlow step: on another
    backend the same two exports run on `best_path` in a TensorFlow-backend subprocess."""
    tflite_path = os.path.join(output, f"{name}.tflite")
    if keras.backend.backend() == "tensorflow":
        export.to_saved_model(model, os.path.join(output, "serving"), name=name, version=version,
                              class_names=class_names, image_size=image_size)
        return export.to_tflite(model, tflite_path, image_size=image_size)
    arguments = dict(best_path=best_path, output=output, name=name, version=version,
                     image_size=list(image_size) if image_size else None, class_names=class_names)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run([sys.executable, "-c", _EXPORT_IN_TENSORFLOW, json.dumps(arguments)],
                            capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise OSError(f"Export (TensorFlow backend, in a subprocess) failed: {result.stderr[-2000:]}")
    return os.path.getsize(tflite_path)


def run_metrics(task, config, fit, model, class_names, results, **details):
    """The metrics.json of a run, the same header for every task: what ran (task, output,
    model, data), the task's `results`, how long and how big, the class names, then the
    task's `details`."""
    return {"task": task, "output": config.output, "model": config.model, "data": config.data, **results,
            "train_seconds": round(fit.train_seconds, 1), "timed_epochs": fit.timed_epochs,
            "epochs": config.epochs, "parameters": int(model.count_params()), "class_names": class_names,
            **details}


def finish_run(model, fit, output, config, metrics, **export_kwargs):
    """The end of every task's run: the exports (unless --no-export), then metrics.json, last,
    so that a run with a metrics.json is complete, exports included. Returns `metrics`."""
    if config.export:
        metrics["tflite_bytes"] = export_outputs(model, fit.best_path, output, config.model, config.version,
                                                 **export_kwargs)
    outputs.write_json(os.path.join(output, "metrics.json"), metrics)
    return metrics


@dataclasses.dataclass
class FitResult:
    train_seconds: float  # the time of the epochs this process ran
    timed_epochs: int  # how many: all of them, or those after the epoch a --resume restored
    best_path: str
    history_path: str


def run_record(config, model):
    """What `--resume` checks against the run it continues (outputs.RUN_RECORD)."""
    model_config = {k: v for k, v in model.get_config().items() if k not in ("name", "trainable")}
    return json.loads(json.dumps({"task": config.task, "model": config.model, "model_config": model_config}))


def fit_with_recipe(model, config, train_ds, validation_ds, steps_per_epoch, monitor=None, unfreeze=None,
                    extra_callbacks=()):
    """Fits a compiled `model` for `config.epochs` of `steps_per_epoch` batches with the
    outputs every task shares:
    `run.json` (what --resume checks), `backup/` (every save atomic: `--resume` loses at
    most the epoch in progress, even after a kill during a save), `checkpoints/last.keras`,
    `history.csv`, TensorBoard `logs/`, and `best.keras` (the final weights, or the best
    epoch of `monitor` for `--select val_*`).

    With `freeze_backbone_epochs`, the first epochs run as compiled, then
    `unfreeze(model)` makes the backbone trainable and recompiles, and training goes on.
    `extra_callbacks` (a task's own, e.g. detection's validation AP) run before the others.

    Returns:
        A `FitResult`.
    """
    output = os.path.abspath(config.output)
    monitor = monitor or config.select
    record = run_record(config, model)
    if config.resume:
        outputs.check_run_record(output, record)
    else:
        outputs.write_json(os.path.join(output, outputs.RUN_RECORD), record)
    best_path = os.path.join(output, "best.keras")
    history_path = os.path.join(output, "history.csv")
    csv_logger = keras.callbacks.CSVLogger(history_path, append=config.resume)
    # A task's own callbacks (detection's validation AP) run first: their logs reach the
    # CSV logger and the checkpoints.
    callbacks = [
        *extra_callbacks,
        outputs.AtomicBackupAndRestore(os.path.join(output, "backup"), delete_checkpoint=False),
        outputs.AtomicModelCheckpoint(os.path.join(output, "checkpoints", "last.keras")),
        csv_logger,
        keras.callbacks.TensorBoard(os.path.join(output, "logs")),
    ]
    if config.select != "last":
        # A resumed run must beat the best epoch logged before the interruption.
        mode = "min" if config.select == "val_loss" else "max"
        logged = history_from_csv(history_path).get(monitor) if config.resume else None
        best_logged = (min if mode == "min" else max)(logged) if logged else None
        callbacks.append(
            outputs.AtomicModelCheckpoint(
                best_path, monitor=monitor, mode=mode, save_best_only=True, initial_value_threshold=best_logged,
            )
        )
    os.makedirs(os.path.join(output, "checkpoints"), exist_ok=True)

    if config.strategy == "multiworker":
        train_ds = multiworker.whole_batches(train_ds, config.batch_size)
        validation_ds = multiworker.whole_batches(validation_ds, config.batch_size)
        steps_per_epoch = count_batches(train_ds)
        if steps_per_epoch < 1:
            raise ValueError(f"--strategy multiworker needs at least one whole global batch of {config.batch_size} "
                             "training images; there are fewer.")
    validation_steps = count_batches(validation_ds)
    if steps_per_epoch < 1 or validation_steps < 1:
        raise ValueError(
            f"Nothing to train on: the training split gives {steps_per_epoch} batches and the validation split "
            f"{validation_steps}; expected at least 1 each (were all images unreadable?)."
        )
    # One iterator for the whole run: re-creating the training iterator every epoch left
    # both cores idle for seconds in about a third of the epochs (2-core CPU, TF 2.21).
    # Validation repeats too and is read for exactly one pass each epoch, so Keras never
    # reaches its end (which it reported as "Your input ran out of data" after every epoch).
    train_ds = train_ds.repeat()
    fit_args = dict(validation_data=validation_ds.repeat(), validation_steps=validation_steps,
                    steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=config.verbose, shuffle=False)
    start = time.perf_counter()
    phase_one = config.freeze_backbone_epochs
    timed_epochs = 0
    # The datasets are shuffled by their pipelines; Keras warns if fit is asked to as well.
    if phase_one:
        timed_epochs += len(model.fit(train_ds, epochs=phase_one, **fit_args).epoch)
        unfreeze(model)
        csv_logger.append = True  # the second fit adds its epochs to the first one's
    timed_epochs += len(model.fit(train_ds, epochs=config.epochs, initial_epoch=phase_one, **fit_args).epoch)
    train_seconds = time.perf_counter() - start
    if config.select == "last":
        outputs.replace_atomically(best_path, model.save)
    if config.strategy == "multiworker":
        # Saving gathers the weights with a collective, so every worker saves (the others
        # into a temporary directory); evaluation and export then run on each alone.
        multiworker.report_weights(model)
        multiworker.stop()
    return FitResult(train_seconds, timed_epochs, best_path, history_path)


def count_batches(dataset):
    """The number of batches of a finite `tf.data` dataset (counted when tf.data cannot tell)."""
    count = int(dataset.cardinality())
    if count < 0:
        count = int(dataset.reduce(0, lambda total, _: total + 1))
    return count


@contextlib.contextmanager
def session(config):
    """Checks `config`, joins the cluster for `--strategy multiworker`, seeds, sets the
    precision policy, and yields `(config, strategy)` for the task to train with; restores
    the float32 policy and removes a non-chief worker's temporary outputs afterwards."""
    check_config(config)
    worker_output = None
    chief = True
    if config.strategy == "multiworker":
        cluster = multiworker.check_multiworker_config(config)
        multiworker.start(cluster)
        chief = cluster.is_chief
        if not chief:
            # Only the chief writes the outputs; the others train in step, into a
            # temporary directory that is removed at the end.
            worker_output = tempfile.mkdtemp(prefix=f"keras-swin-worker{cluster.process_id}-")
            config = dataclasses.replace(config, output=worker_output, export=False)
            print(f"worker {cluster.process_id} of {cluster.num_processes}: the chief writes the outputs; "
                  f"this worker's files go to {worker_output} (removed at the end)", flush=True)
    if config.overwrite and chief:
        replaced = outputs.remove_earlier_outputs(os.path.abspath(config.output))
        if replaced:
            print(f"--overwrite: removed the earlier run's {', '.join(replaced)} from {config.output}", flush=True)
    strategy = strategy_for(config)
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision != "off":
        keras.mixed_precision.set_global_policy(f"mixed_{config.mixed_precision}")
    try:
        yield config, strategy
    finally:
        if config.mixed_precision != "off":
            keras.mixed_precision.set_global_policy("float32")
        if worker_output:
            shutil.rmtree(worker_output, ignore_errors=True)
