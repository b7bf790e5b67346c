"""SwinUNETR checkpoints: MONAI's `SwinUNETR(spatial_dims=2)` state dicts, whole models or the
self-supervised encoder that MONAI's tutorials fine-tune from, mapped onto a
`keras_swin.SwinUNETR` in one place (`monai_variable_map`).

The self-supervised layout is the one `SwinUNETR.load_from` and the tutorials' loaders read:
keys under `module.` (DataParallel), with the encoder's keys bare (`module.patch_embed.*`,
`module.layers1.0.*`) or under `swin_vit.` / `swinViT.`. It loads into the encoder and
leaves the decoder as it is (freshly initialised in a new model).

A Swin V1 ImageNet classifier (official, timm, Hugging Face, mmseg or a keras_swin `.keras`)
also loads into the encoder where the shapes allow (`load_swin_classifier`): MONAI's Swin
blocks and patch mergings are the official ones, stage for stage; the patch embedding
differs in patch size (4 against 2) and the last merging has no counterpart."""

import os
import re

import keras

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
    saved_architecture,
)
from keras_swin.checkpoints.swin import bias_table_adapter, official_state, to_official_layout

ENCODER_PREFIX = "swinViT."
# A key of MONAI's Swin encoder once its prefix is gone: the patch embedding, a stage
# (`layers1.0.`..`layers4.0.`) or a SwinUNETR-V2 conv block (`layers1c.0.`..).
_ENCODER_KEY = re.compile(r"^(patch_embed\.|layers[1-4]c?\.0\.)")
_DECODER_KEY = re.compile(r"^(encoder(1|2|3|4|10)\.layer\.|decoder[1-5]\.|out\.conv\.)")
FULL_LAYOUT = "monai"
ENCODER_LAYOUT = "monai_ssl_encoder"
# A Swin classifier's keys (official/timm `layers.0.`, Hugging Face, mmseg), never MONAI's
# (`layers1.0.`).
_CLASSIFIER_KEY = re.compile(r"^(module\.)?(layers\.\d|patch_embed\.projection\.)|embeddings\.patch_embeddings")
# Official Swin block and merging keys -> MONAI's (`mlp.fc1` is MONAI's `mlp.linear1`).
_OFFICIAL_BLOCK = re.compile(r"^layers\.(\d+)\.(blocks\.\d+\.|downsample\.)(.*)$")
_MLP_NAMES = {"mlp.fc1.": "mlp.linear1.", "mlp.fc2.": "mlp.linear2."}
_SWIN_V2_KEY = re.compile(r"\.(logit_scale|cpb_mlp\.0\.weight)$")


def _renamed(key):
    """A MONAI key without DataParallel's `module.`, its encoder under `swinViT.`."""
    key = key[len("module."):] if key.startswith("module.") else key
    key = re.sub(r"^swin_vit\.", ENCODER_PREFIX, key)
    if _ENCODER_KEY.match(key):
        key = ENCODER_PREFIX + key
    return key


def to_monai_layout(state_dict):
    """`(state, layout)`: the keys of a MONAI SwinUNETR state dict renamed to
    `SwinUNETR.state_dict()`'s, and FULL_LAYOUT (a whole model) or ENCODER_LAYOUT (the
    encoder alone; other keys, such as the pretraining heads, are left out with a warning).
    Anything else is a WeightsMismatchError naming keys and shapes found."""
    state = {_renamed(k): v for k, v in state_dict.items() if not IGNORED_KEY_PATTERN.search(k)}
    encoder = {k: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)}
    embedding = encoder.get(f"{ENCODER_PREFIX}patch_embed.proj.weight")
    if embedding is None or not any(k.startswith(f"{ENCODER_PREFIX}layers1.0.blocks.") for k in encoder):
        found = [f"{k} {tuple(getattr(v, 'shape', ()))}" for k, v in list(state_dict.items())[:6]]
        raise WeightsMismatchError(
            "Unrecognised SwinUNETR checkpoint: expected MONAI's keys ('swinViT.patch_embed.proj.weight', "
            "'swinViT.layers1.0.blocks.0.*', 'encoder1.layer.*', 'decoder5.*', 'out.conv.conv.*', or the "
            f"self-supervised encoder's 'module.patch_embed.*', 'module.layers1.0.*'); found {found}."
        )
    if embedding.ndim != 4:
        raise WeightsMismatchError(
            f"'swinViT.patch_embed.proj.weight' has shape {tuple(embedding.shape)}: a {embedding.ndim - 2}D "
            f"SwinUNETR (MONAI's spatial_dims={embedding.ndim - 2}); keras_swin.SwinUNETR is MONAI's spatial_dims=2."
        )
    if any(_DECODER_KEY.match(k) for k in state):
        return state, FULL_LAYOUT
    others = sorted(set(state) - set(encoder))
    if others:
        logger.warning(
            "The self-supervised checkpoint holds %d keys outside the encoder, left out: %s%s",
            len(others), others[:6], " ..." if len(others) > 6 else "",
        )
    return encoder, ENCODER_LAYOUT


def check_arguments(model, state):
    """A WeightsMismatchError naming the argument when the checkpoint was made for another
    `in_channels`, `feature_size` or `out_channels` than `model`."""
    feature_size, in_channels = state[f"{ENCODER_PREFIX}patch_embed.proj.weight"].shape[:2]
    found = {"in_channels": in_channels, "feature_size": feature_size}
    if "out.conv.conv.weight" in state:
        found["out_channels"] = state["out.conv.conv.weight"].shape[0]
    for name, value in found.items():
        if int(value) != getattr(model, name):
            raise WeightsMismatchError(
                f"The checkpoint was made for {name}={int(value)}; model '{model.name}' has "
                f"{name}={getattr(model, name)}. Build the model with {name}={int(value)}."
            )


def monai_variable_map(model):
    """`{MONAI key: (keras variable, transform)}` for every weight of a SwinUNETR."""
    mapping = {}

    def add_norm(prefix, layer):
        mapping.update(norm_entries(prefix, layer))

    def add_dense(prefix, layer):
        mapping.update(dense_entries(prefix, layer))

    def add_residual_block(prefix, block):
        for index, (conv_layer, norm) in enumerate(
            ((block.conv1, block.norm1), (block.conv2, block.norm2), (block.conv3, block.norm3)), start=1
        ):
            if conv_layer is None:
                continue
            mapping[f"{prefix}.conv{index}.conv.weight"] = (conv_layer.kernel, conv)
            if norm is not None:  # BatchNorm; the instance norm has no weights
                add_norm(f"{prefix}.norm{index}", norm)
                mapping[f"{prefix}.norm{index}.running_mean"] = (norm.moving_mean, identity)
                mapping[f"{prefix}.norm{index}.running_var"] = (norm.moving_variance, identity)

    embedding = model.get_layer("patch_embedding")
    mapping["swinViT.patch_embed.proj.weight"] = (embedding.projection.kernel, conv)
    mapping["swinViT.patch_embed.proj.bias"] = (embedding.projection.bias, identity)
    for stage, depth in enumerate(model.depths):
        prefix = f"swinViT.layers{stage + 1}.0"
        if model.use_v2:
            add_residual_block(f"swinViT.layers{stage + 1}c.0.layer", model.get_layer(f"stage{stage + 1}_conv_block"))
        for index in range(depth):
            block = model.get_layer(f"stage{stage + 1}_block{index + 1}")
            block_prefix = f"{prefix}.blocks.{index}"
            add_norm(f"{block_prefix}.norm1", block.norm1)
            mapping[f"{block_prefix}.attn.relative_position_bias_table"] = (
                block.attention.relative_position_bias_table,
                identity,
            )
            add_dense(f"{block_prefix}.attn.qkv", block.attention.qkv)
            add_dense(f"{block_prefix}.attn.proj", block.attention.projection)
            add_norm(f"{block_prefix}.norm2", block.norm2)
            add_dense(f"{block_prefix}.mlp.linear1", block.mlp_fc1)
            add_dense(f"{block_prefix}.mlp.linear2", block.mlp_fc2)
        merging = model.get_layer(f"stage{stage + 1}_merging")
        add_norm(f"{prefix}.downsample.norm", merging.norm)
        add_dense(f"{prefix}.downsample.reduction", merging.reduction)
    for name in ("encoder1", "encoder2", "encoder3", "encoder4", "encoder10"):
        add_residual_block(f"{name}.layer", model.get_layer(name))
    for level in range(1, 6):
        upsample = model.get_layer(f"decoder{level}_upsample")
        # A ConvTranspose2d weight (in, out, kh, kw) goes to Keras's (kh, kw, out, in) with
        # the same permutation as a Conv2d weight.
        mapping[f"decoder{level}.transp_conv.conv.weight"] = (upsample.kernel, conv)
        add_residual_block(f"decoder{level}.conv_block", model.get_layer(f"decoder{level}_block"))
    output_conv = model.get_layer("output_conv")
    mapping["out.conv.conv.weight"] = (output_conv.kernel, conv)
    mapping["out.conv.conv.bias"] = (output_conv.bias, identity)
    return mapping


def load_state(model, raw_state):
    """Renames a read MONAI state dict and assigns it to `model` after checking every key
    and shape (the encoder's alone for the self-supervised layout); returns the layout. A
    Swin classifier's state dict (official, timm, Hugging Face or mmseg keys) goes to
    `load_swin_classifier`."""
    if any(_CLASSIFIER_KEY.search(key) for key in raw_state):
        state, layout = to_official_layout(
            {k[len("module."):] if k.startswith("module.") else k: v for k, v in raw_state.items()}
        )
        return load_swin_classifier(model, state, layout)
    state, layout = to_monai_layout(raw_state)
    check_arguments(model, state)
    mapping = monai_variable_map(model)
    if layout == ENCODER_LAYOUT:
        mapping = {k: v for k, v in mapping.items() if k.startswith(ENCODER_PREFIX)}
        logger.info("Self-supervised SwinUNETR encoder: the decoder of '%s' keeps its weights.", model.name)
    assign_checked(mapping, state, f"MONAI SwinUNETR ({layout})", model.name)
    return layout


def _module_groups(keys):
    """The modules that `keys` belong to, shortened to their first three name parts."""
    return sorted({".".join(key.split(".")[:3]) for key in keys})


def _monai_key(official_key):
    """The MONAI encoder key of an official Swin key, or None for the parts SwinUNETR's
    encoder does not have (the patch-embedding norm, the final norm, the head)."""
    match = _OFFICIAL_BLOCK.match(official_key)
    if match:
        stage, part, rest = match.groups()
        for official, monai in _MLP_NAMES.items():
            rest = rest.replace(official, monai)
        return f"{ENCODER_PREFIX}layers{int(stage) + 1}.0.{part}{rest}"
    if official_key.startswith("patch_embed.proj."):
        return ENCODER_PREFIX + official_key
    return None


def load_swin_classifier(model, state, layout):
    """Loads the encoder of a SwinUNETR from a Swin V1 classifier (`state` in the official
    layout): the Swin blocks and the patch mergings where the shapes allow (the same width:
    `feature_size` equal to the classifier's `embed_dim`; bias tables of another window
    resized bicubically). The patch embedding loads only if its patch size matches (the
    ImageNet models embed 4x4 patches, SwinUNETR 2x2). What is and is not loaded is logged in
    one line. Returns "swin_<layout>"."""
    if any(_SWIN_V2_KEY.search(key) for key in state):
        raise WeightsMismatchError(
            f"This is a Swin V2 checkpoint (logit_scale and cpb_mlp keys); the encoder of '{model.name}' is "
            "Swin V1 (MONAI's SwinUNETR): load a Swin V1 classifier (SwinT, ...)."
        )
    width = int(state["patch_embed.proj.weight"].shape[0])
    if width != model.feature_size:
        raise WeightsMismatchError(
            f"The Swin checkpoint ({layout} layout) has embed_dim={width}; model '{model.name}' has "
            f"feature_size={model.feature_size}. Build the SwinUNETR with feature_size={width} to load its encoder."
        )
    mapping = monai_variable_map(model)
    renamed = {_monai_key(key): value for key, value in state.items() if _monai_key(key) in mapping}
    embedding = f"{ENCODER_PREFIX}patch_embed.proj.weight"
    if tuple(conv(renamed[embedding]).shape) != tuple(mapping[embedding][0].shape):
        renamed = {k: v for k, v in renamed.items() if not k.startswith(f"{ENCODER_PREFIX}patch_embed.")}
    assign_checked({k: mapping[k] for k in renamed}, renamed, f"Swin {layout}", model.name,
                   bias_table_adapter(model.window_size))
    logger.info(
        "Swin classifier (%s layout) into the encoder of '%s': loaded %d of the model's %d weights (the Swin "
        "blocks and patch mergings both have); freshly initialised: %s; not used from the checkpoint: %s.",
        layout, model.name, len(renamed), len(mapping), ", ".join(_module_groups(set(mapping) - set(renamed))),
        ", ".join(_module_groups(k for k in state if _monai_key(k) not in renamed)) or "nothing",
    )
    return f"swin_{layout}"


def resolve_preset(model, name):
    raise ValueError(
        f"SwinUNETR has no preset weights; received weights={name!r}. Expected a file: a MONAI checkpoint "
        "(.pt, .pth, .bin, .safetensors) or a Keras file (.keras, .weights.h5)."
    )


def load_weights(model, weights):
    """Loads `weights` into a `keras_swin.SwinUNETR`.

    Args:
        model: the SwinUNETR.
        weights: a `.weights.h5`/`.keras` file, or a MONAI checkpoint (`.pt/.pth/.bin` read
            with `torch.load(weights_only=True)`, or `.safetensors`): a state dict, or a dict
            holding one under "state_dict" (or "model"), of a whole `SwinUNETR(spatial_dims=2)`
            or of the self-supervised encoder (see the module docstring).

            A Swin V1 classifier loads into the encoder where the shapes allow (see
            `load_swin_classifier`): a checkpoint in the official, timm, Hugging Face or
            mmseg layout, or a keras_swin `.keras` file of a `SwinTransformer`.

    Returns:
        The layout loaded: "keras", FULL_LAYOUT, ENCODER_LAYOUT or "swin_<layout>".
    """
    path = os.fspath(weights)
    architecture = saved_architecture(path) if path.endswith(".keras") and os.path.isfile(path) else None
    # A keras_swin Swin classifier (its config has the backbone's `embed_dim`, a SwinUNETR's
    # has `feature_size`): rebuilt from its file and read in the official layout.
    if architecture is not None and "embed_dim" in architecture and "feature_size" not in architecture:
        classifier = keras.saving.load_model(path, safe_mode=True, compile=False)
        if not hasattr(classifier, "checkpoint_version") or classifier.checkpoint_version() != 1:
            raise WeightsMismatchError(
                f"'{path}' holds a {type(classifier).__name__}; the encoder of '{model.name}' loads a Swin V1 "
                "classifier (keras_swin.SwinTransformer) or a SwinUNETR."
            )
        return load_swin_classifier(model, official_state(classifier), "keras_swin")
    return load_file_or_preset(model, weights, resolve_preset, load_state)
