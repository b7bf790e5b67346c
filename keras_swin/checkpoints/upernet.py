"""UPerNet checkpoints: Hugging Face (`UperNetForSemanticSegmentation`) and mmseg layouts, the
backbone through its own family's mapping and the decoder mapped here."""

import re

from keras_swin.checkpoints import presets
from keras_swin.checkpoints import swin as swin_checkpoints
from keras_swin.checkpoints.files import (
    IGNORED_KEY_PATTERN,
    WeightsMismatchError,
    assign_checked,
    conv,
    identity,
    load_file_or_preset,
    logger,
)


# mmseg names (ConvModule's `bn`, `conv_seg`) -> Hugging Face names, the ones mapped below.
_MMSEG_DECODER_RENAMES = ((r"\.bn\.", ".batch_norm."), (r"\.conv_seg\.", ".classifier."))


def detect_upernet_layout(state_dict):
    """"huggingface" or "mmseg" for an UPerNet state dict (`backbone.*`, `decode_head.*`)."""
    keys = list(state_dict)
    if any(k.startswith("decode_head.conv_seg.") for k in keys):
        return "mmseg"
    if any(k.startswith("decode_head.classifier.") for k in keys):
        return "huggingface"
    raise WeightsMismatchError(
        "Unrecognised UPerNet checkpoint: expected 'decode_head.classifier.*' (Hugging Face) or "
        f"'decode_head.conv_seg.*' (mmseg); found e.g. {keys[:5]}. A Swin classification "
        "checkpoint goes to the backbone: pass it as `backbone_weights`."
    )


def upernet_variable_map(model):
    """`{Hugging Face decoder key: (keras variable, transform)}` for UPerNet's heads."""
    mapping = {}

    def add_conv_module(prefix, layer_prefix):
        conv_layer = model.get_layer(f"{layer_prefix}_conv")
        norm = model.get_layer(f"{layer_prefix}_bn")
        mapping[f"{prefix}.conv.weight"] = (conv_layer.kernel, conv)
        for name, variable in (
            ("weight", norm.gamma),
            ("bias", norm.beta),
            ("running_mean", norm.moving_mean),
            ("running_var", norm.moving_variance),
        ):
            mapping[f"{prefix}.batch_norm.{name}"] = (variable, identity)

    def add_classifier(prefix, layer_name):
        layer = model.get_layer(layer_name)
        mapping[f"{prefix}.weight"] = (layer.kernel, conv)
        mapping[f"{prefix}.bias"] = (layer.bias, identity)

    for index, scale in enumerate(model.pool_scales):
        add_conv_module(f"decode_head.psp_modules.{index}.1", f"ppm{scale}")
    add_conv_module("decode_head.bottleneck", "ppm_bottleneck")
    for index in range(3):
        add_conv_module(f"decode_head.lateral_convs.{index}", f"lateral{index}")
        add_conv_module(f"decode_head.fpn_convs.{index}", f"fpn{index}")
    add_conv_module("decode_head.fpn_bottleneck", "fuse")
    add_classifier("decode_head.classifier", "decode_classifier")
    if model.auxiliary_head:
        add_conv_module("auxiliary_head.convs.0", "auxiliary")
        add_classifier("auxiliary_head.classifier", "auxiliary_classifier")
    return mapping


def upernet_to_keras(model, state_dict):
    """Checks a Hugging Face or mmseg UPerNet state dict against `model` (backbone and
    heads together), then assigns every weight, BatchNorm statistics included. Returns
    the layout."""
    layout = detect_upernet_layout(state_dict)
    state_dict = {k: v for k, v in state_dict.items() if not IGNORED_KEY_PATTERN.search(k)}
    backbone_state = {k[len("backbone."):]: v for k, v in state_dict.items() if k.startswith("backbone.")}
    decoder_state = {}
    for key, value in state_dict.items():
        if key.startswith("backbone."):
            continue
        if layout == "mmseg":
            for pattern, replacement in _MMSEG_DECODER_RENAMES:
                key = re.sub(pattern, replacement, key)
        decoder_state[key] = value
    if not backbone_state:
        raise WeightsMismatchError(f"UPerNet checkpoint ({layout} layout) has no 'backbone.*' keys.")
    backbone_state, backbone_layout = swin_checkpoints.to_official_layout(backbone_state)
    if not model.auxiliary_head and any(k.startswith("auxiliary_head.") for k in decoder_state):
        logger.info("The model has no auxiliary head: the checkpoint's auxiliary_head.* are skipped.")
        decoder_state = {k: v for k, v in decoder_state.items() if not k.startswith("auxiliary_head.")}
    mapping = upernet_variable_map(model)
    for prefix in ("decode_head.classifier", "auxiliary_head.classifier"):
        found = decoder_state.get(f"{prefix}.weight")
        if found is not None and prefix + ".weight" in mapping and found.shape[0] != model.num_classes:
            logger.warning(
                "Checkpoint %s has %d classes but the model has %d: it is freshly initialised.",
                prefix,
                found.shape[0],
                model.num_classes,
            )
            decoder_state = {k: v for k, v in decoder_state.items() if not k.startswith(prefix + ".")}
            mapping = {k: v for k, v in mapping.items() if not k.startswith(prefix + ".")}
    backbone = model.backbone
    backbone_mapping, backbone_state = swin_checkpoints.match_backbone(backbone, backbone_state)
    full_mapping = {f"backbone.{k}": v for k, v in backbone_mapping.items()}
    full_mapping.update(mapping)
    full_state = {f"backbone.{k}": v for k, v in backbone_state.items()}
    full_state.update(decoder_state)
    assign_checked(
        full_mapping,
        full_state,
        f"{layout} UPerNet, backbone {backbone_layout}",
        model.name,
        swin_checkpoints.bias_table_adapter(backbone.window_size),
    )
    return layout


def load_upernet_weights(model, weights):
    """Loads `weights` into a `keras_swin.UPerNet` with a Swin backbone.

    Args:
        model: the UPerNet.
        weights: a `.weights.h5`/`.keras` file, a Hugging Face `UperNetForSemanticSegmentation`
            or mmseg checkpoint (`.pth/.pt/.bin/.safetensors`), or "ade20k".

    Returns:
        The layout that was loaded ("keras", "huggingface" or "mmseg").
    """
    return load_file_or_preset(model, weights, presets.resolve_upernet_preset, upernet_to_keras)
