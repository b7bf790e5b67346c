"""The files of a training run, written so that no kill or failure leaves a half-written file
that looks complete: the output folder's checks (writable, not another run's), JSON written
to a temporary name and renamed, the run record that `--resume` checks, and a backup
callback whose every save is atomic.
"""

import json
import math
import os
import shutil
import tempfile

import keras

# What a run writes into --output (files and folders); an --output holding any of them holds
# an earlier run.
RUN_OUTPUTS = (
    "run.json", "metrics.json", "best.keras", "history.csv", "training_curves.png", "confusion_matrix.png",
    "predictions.png", "class_names.json", "backup", "checkpoints", "logs", "serving",
)
RUN_RECORD = "run.json"


def earlier_outputs(output):
    """The names in `output` that an earlier run wrote (its .tflite files and a detector's
    `<name>_anchors.npy` beside its .tflite included)."""
    if not os.path.isdir(output):
        return []
    return sorted(name for name in os.listdir(output)
                  if name in RUN_OUTPUTS or name.endswith((".tflite", "_anchors.npy")))


def remove_earlier_outputs(output):
    """Removes what an earlier run wrote into `output` (and nothing else); returns the names."""
    names = earlier_outputs(output)
    for name in names:
        path = os.path.join(output, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    return names


def check_output(output, resume, overwrite):
    """Checks that `output` is a writable folder that this run may write into: empty of
    earlier runs, or this run's own with `resume`, or cleared with `overwrite`."""
    if os.path.exists(output) and not os.path.isdir(output):
        raise OSError(f"--output {output!r} is a file; expected a folder (or a path that does not exist yet).")
    try:
        os.makedirs(output, exist_ok=True)
        # A probe file of its own: several workers may check the same --output at once.
        with tempfile.TemporaryFile(dir=output):
            pass
    except OSError as error:
        raise OSError(f"--output {output!r} is not writable: {error}") from error
    found = earlier_outputs(output)
    if resume:
        for folder in (output, os.path.join(output, "checkpoints")):
            remove_partial_files(folder)
        if not os.path.isfile(os.path.join(output, "backup", "training_metadata.json")):
            raise OSError(
                f"--resume: --output {output!r} holds no earlier run to resume (no backup/training_metadata.json"
                f"{'; it holds ' + ', '.join(found) if found else ''}). Check the path, or drop --resume to start a new run."
            )
    elif found and not overwrite:
        raise OSError(
            f"--output {output!r} holds an earlier run's outputs ({', '.join(found)}). Pass --resume to continue "
            "that run, --overwrite to replace its outputs, or another --output."
        )


def _finite(value):
    """`value` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def replace_atomically(path, write):
    """Calls `write(temporary_path)`, then renames the result to `path`: a reader sees the
    old file or the whole new one, never a part. On failure the temporary file is removed.
    The temporary name ends as `path` does, since Keras picks a file's format by its suffix."""
    path = os.path.abspath(path)
    temporary = os.path.join(os.path.dirname(path), f".partial-{os.getpid()}-{os.path.basename(path)}")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def remove_partial_files(folder):
    """Removes the temporary files that a killed `replace_atomically` left in `folder`."""
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.startswith(".partial-"):
                os.remove(os.path.join(folder, name))


def write_json(path, value):
    """Writes `value` as strict JSON (non-finite floats become null), atomically."""
    text = json.dumps(_finite(value), indent=2, allow_nan=False)

    def write(temporary):
        with open(temporary, "w") as f:
            f.write(text)

    replace_atomically(path, write)


def read_json(path, what):
    """Reads a JSON file this package wrote; an OSError naming `what` and the path if it is
    missing, empty or not JSON."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise OSError(f"Could not read {what} '{path}': {error}") from error


def check_run_record(output, record):
    """On `--resume`: the run in `output` must be of the same task, model and architecture
    as this one; a ValueError naming what differs otherwise. (Files of the earlier layout
    have no record: they resume unchecked.)"""
    path = os.path.join(output, RUN_RECORD)
    if not os.path.exists(path):
        return
    earlier = read_json(path, "the run record")
    differences = [
        f"{key}: {earlier.get(key)!r} there, {record[key]!r} now"
        for key in record
        if key != "model_config" and earlier.get(key) != record[key]
    ]
    earlier_config, config = earlier.get("model_config", {}), record["model_config"]
    differences += [
        f"model_config.{key}: {earlier_config.get(key)!r} there, {config.get(key)!r} now"
        for key in sorted(set(earlier_config) | set(config))
        if earlier_config.get(key) != config.get(key)
    ]
    if differences:
        raise ValueError(
            f"--resume: the run in {output!r} trained another architecture, so its backup cannot be "
            f"restored into this one ({'; '.join(differences[:6])}). Resume with the same settings, or "
            "start a new run with --overwrite or another --output."
        )


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose every save is atomic.

    Why not Keras's own: it rewrites `latest.weights.h5` and `training_metadata.json` in
    place, so a kill during the write leaves a 0-byte or truncated file that `--resume`
    cannot read (and `double_checkpoint=True` still leaves an empty metadata file, which
    raises a JSON error, not the OSError it falls back on). Here each epoch's weights go to
    a new file, renamed into place when complete, and the metadata, written the same way
    and naming that file, is the commit point: a kill at any moment leaves the previous
    epoch's complete pair. Backups of the earlier layout (`latest.weights.h5`, no file
    name in the metadata) still restore.
    """

    def _metadata(self):
        if not os.path.exists(self._training_metadata_path):
            return None
        return read_json(self._training_metadata_path, "the training backup's metadata")

    def _load_model(self):
        remove_partial_files(self.backup_dir)  # what a killed save left
        metadata = self._metadata()
        if metadata is None:
            return
        weights = os.path.join(self.backup_dir, metadata.get("weights", "latest.weights.h5"))
        if os.path.exists(weights):
            if self.model.optimizer is not None and not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)
            try:
                self.model.load_weights(weights)
            except ValueError as error:
                raise ValueError(
                    f"--resume: the backup '{weights}' does not fit this model (was it trained with other "
                    f"settings?): {str(error).splitlines()[0][:300]}"
                ) from None
        self.model._initial_epoch = int(metadata["epoch"])

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        previous = self._metadata() or {}
        name = f"epoch{self._current_epoch}-batch{self._last_batch_seen}.weights.h5"
        replace_atomically(os.path.join(self.backup_dir, name), lambda temporary: self.model.save_weights(temporary))
        write_json(self._training_metadata_path,
                   {"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights": name})
        stale = previous.get("weights", "latest.weights.h5")
        if stale != name and os.path.exists(os.path.join(self.backup_dir, stale)):
            os.remove(os.path.join(self.backup_dir, stale))


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` that writes each `.keras` file under a temporary
    name and renames it into place (Keras's writes in place: a kill mid-save left a
    truncated `best.keras` or `last.keras`)."""

    def _save_model(self, epoch, batch, logs):
        filepath = self._get_file_path(epoch, batch, logs)
        if self._should_save_model(epoch, batch, logs, filepath):
            os.makedirs(os.path.dirname(os.path.abspath(filepath)), exist_ok=True)
            replace_atomically(filepath, lambda temporary: self.model.save(temporary, overwrite=True))
