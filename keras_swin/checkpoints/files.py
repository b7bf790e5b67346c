"""Reading checkpoint files safely, and assigning checked weights all at once.

Every family's mapping (`swin.py`, `swin_v2.py`, `upernet.py`) renames a foreign state dict to
`{key: value}`, builds `{key: (variable, transform)}` for its model, and hands both to
`assign_checked`, which checks every key and shape before it writes any variable, so that a
model is never left half-loaded.
"""

import json
import logging
import os
import re
import zipfile

import keras
import numpy as np

logger = logging.getLogger("keras_swin")

KERAS_SUFFIXES = (".weights.h5", ".keras")
TORCH_SUFFIXES = (".pth", ".pt", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"
WEIGHTS_SUFFIXES = KERAS_SUFFIXES + TORCH_SUFFIXES + (SAFETENSORS_SUFFIX,)
# Buffers that reference checkpoints carry; they are recomputed, never loaded.
IGNORED_KEY_PATTERN = re.compile(
    r"(relative_position_index|attn_mask|num_batches_tracked|relative_coords_table|k_bias)$"
)


class WeightsMismatchError(ValueError):
    """A checkpoint does not fit the model: names the key, the shapes and the layout."""


def linear(weight):
    """A PyTorch `nn.Linear` weight `(out, in)` as a Keras Dense kernel `(in, out)`."""
    return weight.T


def conv(weight):
    """A PyTorch conv weight `(out, in, kh, kw)` as a Keras Conv2D kernel `(kh, kw, in, out)`."""
    return np.transpose(weight, (2, 3, 1, 0))


def identity(value):
    return value


def to_torch_layout(variable, transform):
    """A Keras variable's value in the PyTorch layout that `transform` reads (its inverse):
    a Dense kernel `(in, out)` as `(out, in)`, a Conv2D kernel `(kh, kw, in, out)` as
    `(out, in, kh, kw)`, anything else as it is."""
    value = np.asarray(keras.ops.convert_to_numpy(variable.value))
    if transform is linear:
        return value.T
    if transform is conv:
        return np.transpose(value, (3, 2, 0, 1))
    return value


def norm_entries(prefix, layer):
    """`{key: (variable, transform)}` of a LayerNorm under PyTorch's `prefix.weight/.bias`."""
    return {f"{prefix}.weight": (layer.gamma, identity), f"{prefix}.bias": (layer.beta, identity)}


def dense_entries(prefix, layer):
    """`{key: (variable, transform)}` of a Dense layer as a PyTorch `nn.Linear` at `prefix`."""
    entries = {f"{prefix}.weight": (layer.kernel, linear)}
    if layer.use_bias:
        entries[f"{prefix}.bias"] = (layer.bias, identity)
    return entries


def is_weights_file(weights):
    """True when `weights` names a file by its suffix (else it is a preset name)."""
    return os.fspath(weights).endswith(WEIGHTS_SUFFIXES)


def check_weights_path(path):
    """An OSError unless `path` is an existing, readable file (a folder or a missing file
    is named as such)."""
    if os.path.isdir(path):
        raise OSError(f"Weights '{path}' is a directory; expected a weights file "
                      f"({', '.join(WEIGHTS_SUFFIXES)}).")
    if not os.path.isfile(path):
        raise OSError(f"No weights file at '{path}'.")
    if not os.access(path, os.R_OK):
        raise OSError(f"Weights file '{path}' is not readable (permission denied).")


def _read_file(path):
    if path.endswith(SAFETENSORS_SUFFIX):
        from safetensors.numpy import load_file  # safetensors needs no torch

        try:
            return load_file(path)
        except Exception as error:  # a bad header or a truncated file
            raise OSError(f"'{path}' is not a readable safetensors file: {type(error).__name__}: {error}") from None
    if path.endswith(TORCH_SUFFIXES):
        import torch  # only PyTorch checkpoints need it

        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # truncated archives, refused pickles, text files
            raise OSError(
                f"'{path}' is not a readable PyTorch checkpoint (expected a torch.save archive of tensors; "
                f"torch.load(weights_only=True) said {type(error).__name__}: {str(error).splitlines()[0][:200]})."
            ) from None
    raise ValueError(f"Unsupported weights file '{path}'; expected one of {WEIGHTS_SUFFIXES}.")


def read_state_dict(path):
    """Reads a PyTorch or safetensors checkpoint into `{name: np.ndarray}`.

    `.pth/.pt/.bin` go through `torch.load(weights_only=True)`, which refuses pickles that
    would run code; `.safetensors` needs no torch. A wrapping `{"model": ...}` or
    `{"state_dict": ...}` dict (official checkpoints) is unwrapped. A tensor holding NaN or
    infinity is refused (it would make every output NaN).
    """
    path = os.fspath(path)
    check_weights_path(path)
    state = _read_file(path)
    for wrapper in ("model", "state_dict", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise OSError(f"'{path}' does not hold a state dict; found {type(state).__name__}.")
    arrays = {}
    for key, value in state.items():
        if not hasattr(value, "shape"):
            raise OSError(f"'{path}' holds {type(value).__name__} at '{key}'; expected tensors only.")
        array = value.detach().float().numpy() if hasattr(value, "detach") else np.asarray(value)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = int(np.size(array) - np.isfinite(array).sum())
            raise WeightsMismatchError(
                f"'{path}': tensor '{key}' holds {bad} NaN or infinite values of {array.size}; expected finite "
                "weights (the checkpoint is damaged)."
            )
        arrays[key] = array
    return arrays


def assign_checked(mapping, state, layout, model_name, adapt=None):
    """Assigns `state[key]` to every variable of `mapping` (`{key: (variable, transform)}`)
    after checking every key and shape, so that a mismatch leaves the model untouched.

    `adapt(key, value, expected_shape)` may reshape a value first (bias-table resizing).
    """
    missing = sorted(set(mapping) - set(state))
    unexpected = sorted(set(state) - set(mapping))
    if missing or unexpected:
        raise WeightsMismatchError(
            f"Checkpoint ({layout} layout) does not match model '{model_name}': "
            f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}, "
            f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}."
        )
    values = {}
    for key, (variable, transform) in mapping.items():
        value = transform(state[key])
        expected = tuple(variable.shape)
        if adapt is not None:
            value = adapt(key, value, expected)
        if tuple(value.shape) != expected:
            raise WeightsMismatchError(
                f"Shape mismatch for '{key}' ({layout} layout) -> '{variable.path}': "
                f"expected {expected}, found {tuple(value.shape)}."
            )
        values[key] = value
    for key, (variable, _) in mapping.items():
        variable.assign(values[key].astype(variable.dtype))


def load_file_or_preset(model, weights, resolve_preset, load_state):
    """The loading every family shares: a preset name becomes a file through
    `resolve_preset(model, name)`; a Keras file (`.weights.h5`, `.keras`) is loaded by Keras;
    any other file is read with `read_state_dict` and given to `load_state(model, state)`.
    Returns the layout loaded ("keras" or what `load_state` returns)."""
    weights = os.fspath(weights)
    if os.path.isdir(weights):
        check_weights_path(weights)
    if not is_weights_file(weights):
        weights = resolve_preset(model, weights)
    if weights.endswith(KERAS_SUFFIXES):
        check_weights_path(weights)
        load_keras_weights(model, weights)
        return "keras"
    return load_state(model, read_state_dict(weights))


def saved_architecture(path):
    """The model config stored in a `.keras` file, or None (a `.weights.h5` has none)."""
    if not path.endswith(".keras"):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json")).get("config")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise OSError(f"'{path}' is not a readable .keras file: {type(error).__name__}: {error}") from None


def _differences(saved, ours, prefix=""):
    """`key: file value, model value` for every config entry that differs (nested dicts
    such as an UPerNet's backbone are compared entry by entry)."""
    found = []
    for key in sorted(set(saved) | set(ours)):
        if key in ("name", "trainable", "dtype"):
            continue
        mine, theirs = ours.get(key), saved.get(key)
        if isinstance(mine, dict) and isinstance(theirs, dict):
            found += _differences(theirs.get("config", theirs), mine.get("config", mine), f"{prefix}{key}.")
        elif json.dumps(theirs, default=str) != json.dumps(mine, default=str):
            found.append(f"{prefix}{key}: {theirs!r} in the file, {mine!r} in the model")
    return found


def _shape_differences(path, model):
    """How the weight shapes of a `.weights.h5` file and of `model` differ, as sentences."""
    import h5py  # installed with Keras, which writes these files with it

    stored = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: stored.append(tuple(item.shape)) if isinstance(item, h5py.Dataset) else None)
    ours = [tuple(v.shape) for v in model.weights]
    only_file = sorted(set(stored) - set(ours))
    only_model = sorted(set(ours) - set(stored))
    if len(stored) == len(ours) and not only_file and not only_model:
        return []
    return [f"the file holds {len(stored)} weights, the model {len(ours)}"
            + (f"; shapes only in the file: {only_file[:4]}" if only_file else "")
            + (f"; shapes only in the model: {only_model[:4]}" if only_model else "")]


def load_keras_weights(model, path):
    """`model.load_weights(path)`, with an error that says how the architectures differ
    where Keras reports "A total of N objects could not be loaded" followed by pages of
    tensor values, and a check that every loaded weight is finite."""
    saved = saved_architecture(path)
    try:
        model.load_weights(path)
    except (ValueError, KeyError) as error:
        differences = _differences(saved, model.get_config()) if saved else _shape_differences(path, model)
        detail = "; ".join(differences[:6]) if differences else str(error).strip().splitlines()[0][:300]
        raise WeightsMismatchError(
            f"'{path}' holds another architecture than model '{model.name}' ({type(model).__name__}): {detail}."
        ) from None
    except OSError as error:
        raise OSError(f"'{path}' is not a readable Keras weights file: {error}") from None
    for variable in model.weights:
        if "float" in str(variable.dtype) and not np.isfinite(keras.ops.convert_to_numpy(variable.value)).all():
            raise WeightsMismatchError(
                f"'{path}': weight '{variable.path}' holds NaN or infinite values; expected finite weights."
            )
