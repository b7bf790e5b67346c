"""Reading the files `keras-swin export` is given: a `.keras` model, a `.npy` of images (never
unpickled) and the class names a training run wrote beside its model."""

import json
import os
import zipfile

import keras
import numpy as np

# The model classes are registered for safe loading: this package imports keras_swin.models.


def load_model_file(path):
    """The model in the `.keras` file `path`; an OSError naming the path when it is missing, not
    a file, or not a readable `.keras` archive (Keras would say "File not found" for those)."""
    if not os.path.exists(path):
        raise OSError(f"No model file at '{path}'.")
    if not os.path.isfile(path):
        raise OSError(f"The model '{path}' is not a file; expected a .keras file.")
    if not path.endswith(".keras"):
        raise OSError(f"The model '{path}' must be a .keras file (saved by model.save('....keras')).")
    if not zipfile.is_zipfile(path):
        raise OSError(f"'{path}' is not a readable .keras file: not a zip archive "
                      "(truncated, or another kind of file).")
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # noqa: BLE001  (Keras raises many kinds for a damaged archive)
        raise OSError(f"'{path}' is not a readable .keras file: {type(error).__name__}: {error}") from error


def load_images_file(path, option="images"):
    """The array in the `.npy` file `path`, never unpickled; an OSError naming the path when it
    cannot be read as one array. Memory-mapped: only the images used are read."""
    if not os.path.isfile(path):
        raise OSError(f"No {option} file at '{path}'." if not os.path.exists(path)
                      else f"{option} '{path}' is not a file; expected a .npy of images (N, H, W, 3).")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as error:  # noqa: BLE001  (NumPy raises ValueError, EOFError, OSError, ...)
        reason = f"{type(error).__name__}: {error}"
        if isinstance(error, ValueError) and "object" in str(error).lower():
            reason = "it holds Python objects (a pickle), which are never loaded; save numbers (np.save)"
        raise OSError(f"{option} '{path}' is not a readable .npy array of images (N, H, W, 3): "
                      f"{reason}") from error
    if not isinstance(array, np.ndarray):
        array.close()
        raise OSError(f"{option} '{path}' is a .npz archive; expected a .npy of one array "
                      "of images (N, H, W, 3) (np.save).")
    return array


def class_names_beside(model_path, model):
    """The class names beside a classifier's `.keras` file, if any: `class_names.json` (what
    `keras-swin train` writes), else the `class_names` of `metrics.json` (runs of earlier versions)."""
    folder = os.path.dirname(os.path.abspath(model_path))
    paths = [p for p in (os.path.join(folder, n) for n in ("class_names.json", "metrics.json")) if os.path.isfile(p)]
    if not (paths and getattr(model, "include_top", False)):
        return None
    metrics_path = paths[0]
    try:
        with open(metrics_path) as f:
            metrics = json.load(f)
    except (OSError, ValueError) as error:
        raise OSError(f"'{metrics_path}' (read for the class names) is not readable JSON: {error}") from error
    names = metrics if isinstance(metrics, list) else metrics.get("class_names") if isinstance(metrics, dict) else None
    classes = model.output.shape[-1]
    if names is None:
        return None
    if not isinstance(names, list) or len(names) != classes or not all(isinstance(n, str) for n in names):
        raise ValueError(f"'{metrics_path}' must hold `class_names`, a list of {classes} strings (one per "
                         f"class of the model); received {str(names)[:200]}. Fix or remove that file.")
    return names
