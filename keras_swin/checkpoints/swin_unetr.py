"""SwinUNETR checkpoints: MONAI's `SwinUNETR(spatial_dims=2)` state dicts, whole models or the
self-supervised encoder that MONAI's tutorials fine-tune from, mapped onto a
`keras_swin.SwinUNETR` in one place (`monai_variable_map`).

The self-supervised layout is the one `SwinUNETR.load_from` and the tutorials' loaders read:
keys under `module.` (DataParallel), with the encoder's keys bare (`module.patch_embed.*`,
`module.layers1.0.*`) or under `swin_vit.` / `swinViT.`. It loads into the encoder and
leaves the decoder as it is (freshly initialised in a new model)."""

import re

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
)

ENCODER_PREFIX = "swinViT."
# A key of MONAI's Swin encoder once its prefix is gone: the patch embedding, a stage
# (`layers1.0.`..`layers4.0.`) or a SwinUNETR-V2 conv block (`layers1c.0.`..).
_ENCODER_KEY = re.compile(r"^(patch_embed\.|layers[1-4]c?\.0\.)")
_DECODER_KEY = re.compile(r"^(encoder(1|2|3|4|10)\.layer\.|decoder[1-5]\.|out\.conv\.)")
FULL_LAYOUT = "monai"
ENCODER_LAYOUT = "monai_ssl_encoder"


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
    and shape (the encoder's alone for the self-supervised layout); returns the layout."""
    state, layout = to_monai_layout(raw_state)
    check_arguments(model, state)
    mapping = monai_variable_map(model)
    if layout == ENCODER_LAYOUT:
        mapping = {k: v for k, v in mapping.items() if k.startswith(ENCODER_PREFIX)}
        logger.info("Self-supervised SwinUNETR encoder: the decoder of '%s' keeps its weights.", model.name)
    assign_checked(mapping, state, f"MONAI SwinUNETR ({layout})", model.name)
    return layout


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

    Returns:
        The layout loaded: "keras", FULL_LAYOUT or ENCODER_LAYOUT.
    """
    return load_file_or_preset(model, weights, resolve_preset, load_state)
