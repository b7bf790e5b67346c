"""Reading checkpoint files safely, and assigning checked weights all at once.

Every family's mapping (`swin.py`, `swin_v2.py`, `upernet.py`) renames a foreign state dict to
`{key: value}`, builds `{key: (variable, transform)}` for its model, and hands both to
`assign_checked`, which checks every key and shape before it writes any variable, so that a
model is never left half-loaded.
"""

import logging
import os
import re

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


def is_weights_file(weights):
    """True when `weights` names a file by its suffix (else it is a preset name)."""
    return os.fspath(weights).endswith(WEIGHTS_SUFFIXES)


def read_state_dict(path):
    """Reads a PyTorch or safetensors checkpoint into `{name: np.ndarray}`.

    `.pth/.pt/.bin` go through `torch.load(weights_only=True)`, which refuses pickles that
    would run code; `.safetensors` needs no torch. A wrapping `{"model": ...}` or
    `{"state_dict": ...}` dict (official checkpoints) is unwrapped.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise OSError(f"No weights file at '{path}'.")
    try:
        if path.endswith(SAFETENSORS_SUFFIX):
            from safetensors.numpy import load_file

            state = load_file(path)
        elif path.endswith(TORCH_SUFFIXES):
            import torch

            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise ValueError(
                f"Unsupported weights file '{path}'; expected one of "
                f"{WEIGHTS_SUFFIXES}."
            )
    except (ValueError, ImportError):
        raise
    except Exception as error:  # truncated archives, refused pickles, bad headers
        raise OSError(f"Could not read weights file '{path}': {error}") from error
    for wrapper in ("model", "state_dict", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise OSError(f"'{path}' does not hold a state dict; found {type(state).__name__}.")
    return {
        key: value.detach().float().numpy() if hasattr(value, "detach") else np.asarray(value)
        for key, value in state.items()
    }


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
    if not is_weights_file(weights):
        weights = resolve_preset(model, weights)
    if weights.endswith(KERAS_SUFFIXES):
        if not os.path.isfile(weights):
            raise OSError(f"No weights file at '{weights}'.")
        model.load_weights(weights)
        return "keras"
    return load_state(model, read_state_dict(weights))
