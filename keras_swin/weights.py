"""Loading Swin weights: Keras files, and PyTorch checkpoints in the official Microsoft,
timm (>= 0.9) and Hugging Face transformers layouts (.pth/.pt/.bin/.safetensors).

Every foreign layout is first renamed to the official one (`to_official_layout`), then
mapped onto the Keras variables in one place (`official_to_keras`). All keys and shapes
are checked before any variable is written, so a model is never left half-loaded.
"""

import logging
import os
import re

import numpy as np

logger = logging.getLogger("keras_swin")

KERAS_SUFFIXES = (".weights.h5", ".keras")
TORCH_SUFFIXES = (".pth", ".pt", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"
# Buffers that reference checkpoints carry; they are recomputed, never loaded.
IGNORED_KEY_PATTERN = re.compile(r"(relative_position_index|attn_mask|num_batches_tracked)$")


class WeightsMismatchError(ValueError):
    """A checkpoint does not fit the model: names the key, the shapes and the layout."""


# --------------------------------------------------------------------------- reading


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
                f"{KERAS_SUFFIXES + TORCH_SUFFIXES + (SAFETENSORS_SUFFIX,)}."
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


# --------------------------------------------------------------------------- layouts


def detect_layout(state_dict):
    """Returns "huggingface", "official" or "timm" for a Swin state dict."""
    keys = list(state_dict)
    if any("embeddings.patch_embeddings" in k for k in keys):
        return "huggingface"
    if not any(k.startswith("patch_embed.") for k in keys):
        raise WeightsMismatchError(
            "Unrecognised checkpoint layout: expected official/timm keys 'patch_embed.*' or "
            f"Hugging Face keys '*embeddings.patch_embeddings*'; found e.g. {keys[:5]}."
        )
    if any(k.startswith("head.fc.") for k in keys):
        return "timm"
    if any(k.startswith("head.") for k in keys):
        return "official"
    # No head: official checkpoints merge at the end of stage N, timm at the start.
    return "official" if any(k.startswith("layers.0.downsample.") for k in keys) else "timm"


_HF_RENAMES = (
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^embeddings\.norm\.", "patch_embed.norm."),
    (r"^encoder\.layers\.", "layers."),
    (r"\.layernorm_before\.", ".norm1."),
    (r"\.layernorm_after\.", ".norm2."),
    (r"\.attention\.self\.relative_position_bias_table$", ".attn.relative_position_bias_table"),
    (
        r"\.attention\.relative_position_bias\.relative_position_bias_table$",
        ".attn.relative_position_bias_table",
    ),
    (r"\.attention\.output\.dense\.", ".attn.proj."),
    (r"\.attention\.o_proj\.", ".attn.proj."),
    (r"\.intermediate\.dense\.", ".mlp.fc1."),
    (r"\.output\.dense\.", ".mlp.fc2."),
    (r"^layernorm\.", "norm."),
    (r"^classifier\.", "head."),
)
_HF_QKV = re.compile(r"^(.*)\.attention\.(?:self\.)?(query|key|value|q_proj|k_proj|v_proj)\.(weight|bias)$")


def _huggingface_to_official(state_dict):
    state = {}
    qkv_parts = {}
    for key, value in state_dict.items():
        key = key[len("swin.") :] if key.startswith("swin.") else key
        for pattern, replacement in _HF_RENAMES:
            key = re.sub(pattern, replacement, key)
        match = _HF_QKV.match(key)
        if match:
            prefix, part, kind = match.groups()
            qkv_parts.setdefault((prefix, kind), {})[part[0]] = value
        else:
            state[key] = value
    for (prefix, kind), parts in qkv_parts.items():
        if set(parts) != {"q", "k", "v"}:
            raise WeightsMismatchError(
                f"Hugging Face layout: '{prefix}.attention' has {sorted(parts)} {kind}s; "
                "expected query, key and value."
            )
        state[f"{prefix}.attn.qkv.{kind}"] = np.concatenate(
            [parts["q"], parts["k"], parts["v"]], axis=0
        )
    return state


def _timm_to_official(state_dict):
    state = {}
    for key, value in state_dict.items():
        key = re.sub(
            r"^layers\.(\d+)\.downsample\.",
            lambda m: f"layers.{int(m.group(1)) - 1}.downsample.",
            key,
        )
        key = re.sub(r"^head\.fc\.", "head.", key)
        state[key] = value
    return state


def to_official_layout(state_dict):
    """Renames any supported layout to the official one; returns `(state, layout)`."""
    layout = detect_layout(state_dict)
    state = {k: v for k, v in state_dict.items() if not IGNORED_KEY_PATTERN.search(k)}
    if layout == "huggingface":
        state = _huggingface_to_official(state)
    elif layout == "timm":
        state = _timm_to_official(state)
    return state, layout


# --------------------------------------------------------------------------- mapping


def _linear(weight):
    return weight.T


def _conv(weight):
    return np.transpose(weight, (2, 3, 1, 0))


def _identity(value):
    return value


def official_variable_map(model):
    """`{official key: (keras variable, transform)}` for every weight of a SwinTransformer."""
    mapping = {}

    def add_norm(prefix, layer):
        mapping[f"{prefix}.weight"] = (layer.gamma, _identity)
        mapping[f"{prefix}.bias"] = (layer.beta, _identity)

    def add_dense(prefix, layer):
        mapping[f"{prefix}.weight"] = (layer.kernel, _linear)
        if layer.use_bias:
            mapping[f"{prefix}.bias"] = (layer.bias, _identity)

    embedding = model.get_layer("patch_embedding")
    mapping["patch_embed.proj.weight"] = (embedding.projection.kernel, _conv)
    mapping["patch_embed.proj.bias"] = (embedding.projection.bias, _identity)
    add_norm("patch_embed.norm", embedding.norm)
    for stage, depth in enumerate(model.depths):
        for index in range(depth):
            block = model.get_layer(f"stage{stage + 1}_block{index + 1}")
            prefix = f"layers.{stage}.blocks.{index}"
            add_norm(f"{prefix}.norm1", block.norm1)
            add_dense(f"{prefix}.attn.qkv", block.attention.qkv)
            mapping[f"{prefix}.attn.relative_position_bias_table"] = (
                block.attention.relative_position_bias_table,
                _identity,
            )
            add_dense(f"{prefix}.attn.proj", block.attention.projection)
            add_norm(f"{prefix}.norm2", block.norm2)
            add_dense(f"{prefix}.mlp.fc1", block.mlp_fc1)
            add_dense(f"{prefix}.mlp.fc2", block.mlp_fc2)
        if stage < len(model.depths) - 1:
            merging = model.get_layer(f"stage{stage + 1}_merging")
            add_norm(f"layers.{stage}.downsample.norm", merging.norm)
            add_dense(f"layers.{stage}.downsample.reduction", merging.reduction)
    add_norm("norm", model.get_layer("final_norm"))
    if model.include_top:
        add_dense("head", model.get_layer("predictions"))
    return mapping


def _cubic_weights(t, a=-0.75):
    """Cubic convolution weights for the 4 taps at offsets -1, 0, 1, 2 (PyTorch's a=-0.75)."""

    def near(x):
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def _bicubic_matrix(in_size, out_size):
    """`(out_size, in_size)` matrix of bicubic resampling, half-pixel centres, edge clamp,
    matching `torch.nn.functional.interpolate(mode="bicubic", align_corners=False)`."""
    scale = in_size / out_size
    source = (np.arange(out_size) + 0.5) * scale - 0.5
    base = np.floor(source).astype(int)
    weights = _cubic_weights(source - base)
    matrix = np.zeros((out_size, in_size))
    for tap in range(4):
        columns = np.clip(base - 1 + tap, 0, in_size - 1)
        np.add.at(matrix, (np.arange(out_size), columns), weights[:, tap])
    return matrix


def resize_bias_table(table, window_size):
    """Bicubically resizes a `((2M-1)**2, heads)` bias table to window `window_size`, as
    the official fine-tuning at a new window does."""
    old_side = int(round(np.sqrt(table.shape[0])))
    new_side = 2 * window_size - 1
    if old_side * old_side != table.shape[0]:
        raise WeightsMismatchError(
            f"Cannot resize a non-square relative position bias table of {table.shape[0]} rows."
        )
    grid = table.reshape(old_side, old_side, -1).astype(np.float64)
    matrix = _bicubic_matrix(old_side, new_side)
    resized = np.einsum("ij,jkh,lk->ilh", matrix, grid, matrix)
    return resized.reshape(new_side * new_side, -1).astype(np.float32)


def official_to_keras(model, state, layout="official"):
    """Checks `state` (official layout) against `model`, then assigns every weight.

    The classifier head is skipped when the model has none, and left at its fresh
    initialisation (with a warning) when the class count differs. Bias tables made for
    another window are resized bicubically.
    """
    mapping = official_variable_map(model)
    head_keys = {"head.weight", "head.bias"}
    if not model.include_top:
        state = {k: v for k, v in state.items() if k not in head_keys}
    elif "head.weight" in state and state["head.weight"].shape[0] != model.classes:
        logger.warning(
            "Checkpoint head has %d classes but the model has %d: the head is freshly "
            "initialised.",
            state["head.weight"].shape[0],
            model.classes,
        )
        state = {k: v for k, v in state.items() if k not in head_keys}
        mapping = {k: v for k, v in mapping.items() if k not in head_keys}

    missing = sorted(set(mapping) - set(state))
    unexpected = sorted(set(state) - set(mapping))
    if missing or unexpected:
        raise WeightsMismatchError(
            f"Checkpoint ({layout} layout) does not match model '{model.name}': "
            f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}, "
            f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}."
        )
    values = {}
    for key, (variable, transform) in mapping.items():
        value = transform(state[key])
        expected = tuple(variable.shape)
        if key.endswith("relative_position_bias_table") and value.shape != expected:
            if value.shape[1] == expected[1]:
                value = resize_bias_table(value, model.window_size)
        if tuple(value.shape) != expected:
            raise WeightsMismatchError(
                f"Shape mismatch for '{key}' ({layout} layout) -> '{variable.path}': "
                f"expected {expected}, found {tuple(value.shape)}."
            )
        values[key] = value
    for key, (variable, _) in mapping.items():
        variable.assign(values[key].astype(variable.dtype))


def load_weights(model, weights):
    """Loads `weights` into a SwinTransformer.

    Args:
        model: a built `keras_swin.SwinTransformer`.
        weights: path to a `.weights.h5`/`.keras` file, a PyTorch checkpoint
            (`.pth/.pt/.bin`) or `.safetensors`, or a preset name (see
            `keras_swin.presets`).

    Returns:
        The layout that was loaded ("keras", "official", "timm" or "huggingface").
    """
    weights = os.fspath(weights)
    if not weights.endswith(KERAS_SUFFIXES + TORCH_SUFFIXES + (SAFETENSORS_SUFFIX,)):
        from keras_swin.presets import resolve_preset

        weights = resolve_preset(model, weights)
    if weights.endswith(KERAS_SUFFIXES):
        if not os.path.isfile(weights):
            raise OSError(f"No weights file at '{weights}'.")
        model.load_weights(weights)
        return "keras"
    state, layout = to_official_layout(read_state_dict(weights))
    official_to_keras(model, state, layout)
    return layout
