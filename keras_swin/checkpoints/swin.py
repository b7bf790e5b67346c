"""Swin V1 (and the V2 trunk) checkpoints: the official Microsoft, timm (>= 0.9), Hugging Face
transformers and mmseg layouts, renamed to the official one (`to_official_layout`) and mapped
onto a `keras_swin.SwinTransformer` in one place (`official_variable_map`)."""

import re

import numpy as np

from keras_swin.checkpoints import presets
from keras_swin.checkpoints.files import (
    IGNORED_KEY_PATTERN,
    WeightsMismatchError,
    assign_checked,
    conv,
    dense_entries,
    identity,
    load_file_or_preset,
    logger,
    norm_entries,
    to_torch_layout,
)

# Keys that only one version has, to name a V1/V2 mix-up.
_V2_ONLY = re.compile(r"\.(logit_scale|cpb_mlp\.0\.weight|continuous_position_bias_mlp\.0\.weight)$")
_V1_ONLY = re.compile(r"\.relative_position_bias_table$")


def detect_layout(state_dict):
    """Returns "huggingface", "official", "timm" or "mmseg" for a Swin state dict."""
    keys = list(state_dict)
    if any("embeddings.patch_embeddings" in k for k in keys):
        return "huggingface"
    if any(k.startswith("patch_embed.projection.") for k in keys):
        return "mmseg"
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
    (r"\.attention\.self\.logit_scale$", ".attn.logit_scale"),
    (r"\.attention\.self\.continuous_position_bias_mlp\.", ".attn.cpb_mlp."),
    (r"\.attention\.o_proj\.", ".attn.proj."),
    (r"\.intermediate\.dense\.", ".mlp.fc1."),
    (r"\.output\.dense\.", ".mlp.fc2."),
    (r"^layernorm\.", "norm."),
    (r"^hidden_states_norms\.stage(\d+)\.", lambda m: f"norm{int(m.group(1)) - 1}."),
    (r"^classifier\.", "head."),
)
_HF_QKV = re.compile(r"^(.*)\.attention\.(?:self\.)?(query|key|value|q_proj|k_proj|v_proj)\.(weight|bias)$")


def _huggingface_to_official(state_dict):
    state = {}
    qkv_parts = {}
    for key, value in state_dict.items():
        key = re.sub(r"^swin(v2)?\.", "", key)
        for pattern, replacement in _HF_RENAMES:
            key = re.sub(pattern, replacement, key)
        match = _HF_QKV.match(key)
        if match:
            prefix, part, kind = match.groups()
            qkv_parts.setdefault((prefix, kind), {})[part[0]] = value
        else:
            state[key] = value
    for (prefix, kind), parts in qkv_parts.items():
        if kind == "bias" and set(parts) == {"q", "v"}:  # Swin V2: k has no bias
            state[f"{prefix}.attn.q_bias"] = parts["q"]
            state[f"{prefix}.attn.v_bias"] = parts["v"]
            continue
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


_MMSEG_RENAMES = (
    (r"^patch_embed\.projection\.", "patch_embed.proj."),
    (r"^stages\.", "layers."),
    (r"\.attn\.w_msa\.", ".attn."),
    (r"\.ffn\.layers\.0\.0\.", ".mlp.fc1."),
    (r"\.ffn\.layers\.1\.", ".mlp.fc2."),
)
# mmseg's PatchMerging gathers the 2x2 neighbourhood with nn.Unfold, which orders the 4C
# features channel-major with the offsets as (0,0), (0,1), (1,0), (1,1); the official order
# is offset-major with (0,0), (1,0), (0,1), (1,1).
_UNFOLD_TO_OFFICIAL = [0, 2, 1, 3]


def _unfold_to_official(value):
    """Reorders the 4C axis (the last) of a merging weight from mmseg's unfold order."""
    channels = value.shape[-1] // 4
    grouped = value.reshape(value.shape[:-1] + (channels, 4))[..., _UNFOLD_TO_OFFICIAL]
    return np.swapaxes(grouped, -1, -2).reshape(value.shape)


def _mmseg_to_official(state_dict):
    state = {}
    for key, value in state_dict.items():
        for pattern, replacement in _MMSEG_RENAMES:
            key = re.sub(pattern, replacement, key)
        if re.match(r"^layers\.\d+\.downsample\.(reduction\.weight|norm\.weight|norm\.bias)$", key):
            value = _unfold_to_official(value)
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
    elif layout == "mmseg":
        state = _mmseg_to_official(state)
    return state, layout


def official_variable_map(model):
    """`{official key: (keras variable, transform)}` for every weight of a SwinTransformer."""
    mapping = {}

    def add_norm(prefix, layer):
        mapping.update(norm_entries(prefix, layer))

    def add_dense(prefix, layer):
        mapping.update(dense_entries(prefix, layer))

    embedding = model.get_layer("patch_embedding")
    mapping["patch_embed.proj.weight"] = (embedding.projection.kernel, conv)
    mapping["patch_embed.proj.bias"] = (embedding.projection.bias, identity)
    add_norm("patch_embed.norm", embedding.norm)
    for stage, depth in enumerate(model.depths):
        for index in range(depth):
            block = model.get_layer(f"stage{stage + 1}_block{index + 1}")
            prefix = f"layers.{stage}.blocks.{index}"
            add_norm(f"{prefix}.norm1", block.norm1)
            attention = block.attention
            add_dense(f"{prefix}.attn.qkv", attention.qkv)
            if hasattr(attention, "logit_scale"):  # Swin V2
                mapping[f"{prefix}.attn.logit_scale"] = (attention.logit_scale, identity)
                add_dense(f"{prefix}.attn.cpb_mlp.0", attention.cpb_fc1)
                add_dense(f"{prefix}.attn.cpb_mlp.2", attention.cpb_fc2)
                if attention.qkv_bias:
                    mapping[f"{prefix}.attn.q_bias"] = (attention.q_bias, identity)
                    mapping[f"{prefix}.attn.v_bias"] = (attention.v_bias, identity)
            else:
                mapping[f"{prefix}.attn.relative_position_bias_table"] = (
                    attention.relative_position_bias_table,
                    identity,
                )
            add_dense(f"{prefix}.attn.proj", attention.projection)
            add_norm(f"{prefix}.norm2", block.norm2)
            add_dense(f"{prefix}.mlp.fc1", block.mlp_fc1)
            add_dense(f"{prefix}.mlp.fc2", block.mlp_fc2)
        if stage < len(model.depths) - 1:
            merging = model.get_layer(f"stage{stage + 1}_merging")
            add_norm(f"layers.{stage}.downsample.norm", merging.norm)
            add_dense(f"layers.{stage}.downsample.reduction", merging.reduction)
        if getattr(model, "pyramid_norm", False):
            add_norm(f"norm{stage}", model.pyramid_norm_layers[stage])
    if getattr(model, "include_final_norm", True):
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


def official_state(model):
    """The weights of a Swin V1 `SwinTransformer` as an official-layout state dict of NumPy
    arrays (the inverse of `official_variable_map`)."""
    return {key: to_torch_layout(variable, transform) for key, (variable, transform) in
            official_variable_map(model).items()}


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
    mapping, state = match_backbone(model, state)
    assign_checked(mapping, state, layout, model.name, bias_table_adapter(model.window_size))


def check_version(model, state):
    """A Swin V1 checkpoint for a V2 model (or the reverse) is an error that says so. The
    model declares its version through `checkpoint_version()` (1 or 2)."""
    model_v2 = model.checkpoint_version() == 2
    checkpoint_v2 = any(_V2_ONLY.search(k) for k in state)
    checkpoint_v1 = any(_V1_ONLY.search(k) for k in state)
    if model_v2 and checkpoint_v1 and not checkpoint_v2:
        raise WeightsMismatchError(
            f"This is a Swin V1 checkpoint (it has relative_position_bias_table keys), but "
            f"'{model.name}' is a Swin V2 model; load it into keras_swin.SwinTransformer (SwinT, ...)."
        )
    if not model_v2 and checkpoint_v2 and not checkpoint_v1:
        raise WeightsMismatchError(
            f"This is a Swin V2 checkpoint (it has logit_scale and cpb_mlp keys), but "
            f"'{model.name}' is a Swin V1 model; load it into keras_swin.SwinTransformerV2 (SwinV2T, ...)."
        )


def match_backbone(model, state):
    """`(mapping, state)` of a SwinTransformer and an official-layout state, with the
    parts that one of them lacks by design left out: the head of a headless model or of
    another class count, the final norm of a pyramid-only backbone, and pyramid norms
    that a classification checkpoint does not have (they start fresh, as in mmseg)."""
    check_version(model, state)
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

    if not getattr(model, "include_final_norm", True):
        state = {k: v for k, v in state.items() if k not in ("norm.weight", "norm.bias")}
    pyramid_keys = {k for k in mapping if re.match(r"^norm\d+\.", k)}
    if pyramid_keys and not pyramid_keys & set(state):
        logger.warning(
            "The checkpoint has no pyramid norms (norm0..norm%d): they are freshly initialised.",
            len(model.depths) - 1,
        )
        mapping = {k: v for k, v in mapping.items() if k not in pyramid_keys}
    elif not pyramid_keys and any(re.match(r"^norm\d+\.", k) for k in state):
        logger.warning("The model has no pyramid norms: the checkpoint's norm0.. are skipped.")
        state = {k: v for k, v in state.items() if not re.match(r"^norm\d+\.", k)}
    return mapping, state


def bias_table_adapter(window_size):
    """An `assign_checked` adapter that resizes bias tables made for another window."""

    def adapt(key, value, expected):
        if key.endswith("relative_position_bias_table") and value.shape != expected:
            if value.shape[1] == expected[1]:
                return resize_bias_table(value, window_size)
        return value

    return adapt


def load_state(model, raw_state):
    """Renames a read state dict to the official layout and assigns it; returns the layout."""
    state, layout = to_official_layout(raw_state)
    official_to_keras(model, state, layout)
    return layout


def load_weights(model, weights):
    """Loads `weights` into a Swin V1 `SwinTransformer`.

    Args:
        model: a built `keras_swin.SwinTransformer`.
        weights: path to a `.weights.h5`/`.keras` file, a PyTorch checkpoint
            (`.pth/.pt/.bin`) or `.safetensors`, or a preset name (see
            `keras_swin.checkpoints.presets`).

    Returns:
        The layout that was loaded ("keras", "official", "timm", "huggingface" or "mmseg").
    """
    return load_file_or_preset(model, weights, presets.resolve_preset, load_state)
