"""Measures keras_swin against Hugging Face's PyTorch Swin (V1 or V2) with the same weights.

Needs `torch` and `transformers` (the `test` extra); used by `keras-swin convert`.
"""

import re

import numpy as np

_OFFICIAL_TO_HF = (
    (r"^patch_embed\.proj\.", "swin.embeddings.patch_embeddings.projection."),
    (r"^patch_embed\.norm\.", "swin.embeddings.norm."),
    (r"^layers\.", "swin.encoder.layers."),
    (r"\.norm1\.", ".layernorm_before."),
    (r"\.norm2\.", ".layernorm_after."),
    (r"\.attn\.relative_position_bias_table$", ".attention.relative_position_bias.relative_position_bias_table"),
    (r"\.attn\.proj\.", ".attention.o_proj."),
    (r"^norm\.", "swin.layernorm."),
    (r"^head\.", "classifier."),
)


def official_to_huggingface(state):
    """Renames an official-layout state dict to transformers' (>= 5) SwinForImageClassification."""
    converted = {}
    for key, value in state.items():
        for pattern, replacement in _OFFICIAL_TO_HF:
            key = re.sub(pattern, replacement, key)
        match = re.match(r"^(.*)\.attn\.qkv\.(weight|bias)$", key)
        if match:
            prefix, kind = match.groups()
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), np.split(value, 3, axis=0)):
                converted[f"{prefix}.attention.{part}.{kind}"] = chunk
        else:
            converted[key] = value
    return converted


_OFFICIAL_TO_HF_V2 = (
    (r"^patch_embed\.proj\.", "swinv2.embeddings.patch_embeddings.projection."),
    (r"^patch_embed\.norm\.", "swinv2.embeddings.norm."),
    (r"^layers\.", "swinv2.encoder.layers."),
    (r"\.norm1\.", ".layernorm_before."),
    (r"\.norm2\.", ".layernorm_after."),
    (r"\.attn\.logit_scale$", ".attention.self.logit_scale"),
    (r"\.attn\.cpb_mlp\.", ".attention.self.continuous_position_bias_mlp."),
    (r"\.attn\.q_bias$", ".attention.self.query.bias"),
    (r"\.attn\.v_bias$", ".attention.self.value.bias"),
    (r"\.attn\.proj\.", ".attention.output.dense."),
    (r"\.mlp\.fc1\.", ".intermediate.dense."),
    (r"\.mlp\.fc2\.", ".output.dense."),
    (r"^norm\.", "swinv2.layernorm."),
    (r"^head\.", "classifier."),
)


def official_to_huggingface_v2(state):
    """Renames an official-layout Swin V2 state dict to transformers' Swinv2ForImageClassification."""
    converted = {}
    for key, value in state.items():
        for pattern, replacement in _OFFICIAL_TO_HF_V2:
            key = re.sub(pattern, replacement, key)
        if key.endswith(".attn.qkv.weight"):
            prefix = key[: -len(".attn.qkv.weight")]
            for part, chunk in zip(("query", "key", "value"), np.split(value, 3, axis=0)):
                converted[f"{prefix}.attention.self.{part}.weight"] = chunk
        else:
            converted[key] = value
    return converted


def _huggingface_reference_v2(model, state, classes):
    import torch
    from transformers import Swinv2Config, Swinv2ForImageClassification

    config = Swinv2Config(
        image_size=32 * model.window_size,
        patch_size=model.patch_size,
        embed_dim=model.embed_dim,
        depths=list(model.depths),
        num_heads=list(model.num_heads),
        window_size=model.window_size,
        pretrained_window_sizes=list(model.pretrained_window_sizes),
        mlp_ratio=model.mlp_ratio,
        num_labels=classes,
        layer_norm_eps=model.norm_epsilon,
    )
    reference = Swinv2ForImageClassification(config).eval()
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in official_to_huggingface_v2(state).items()}
    if "head.weight" not in state:
        tensors.update({k: v for k, v in reference.state_dict().items() if k.startswith("classifier.")})
    reference.load_state_dict(tensors, strict=True)
    return reference


def huggingface_reference(model, state):
    """A transformers SwinForImageClassification with `model`'s architecture and `state`."""
    import torch
    from transformers import SwinConfig, SwinForImageClassification

    from keras_swin.weights import resize_bias_table

    classes = state["head.weight"].shape[0] if "head.weight" in state else 1
    if type(model).__name__ == "SwinTransformerV2":
        return _huggingface_reference_v2(model, state, classes)
    side = 2 * model.window_size - 1
    state = {
        k: resize_bias_table(v, model.window_size)
        if k.endswith("relative_position_bias_table") and v.shape[0] != side * side
        else v
        for k, v in state.items()
    }
    config = SwinConfig(
        patch_size=model.patch_size,
        embed_dim=model.embed_dim,
        depths=list(model.depths),
        num_heads=list(model.num_heads),
        window_size=model.window_size,
        mlp_ratio=model.mlp_ratio,
        num_labels=classes,
        layer_norm_eps=model.norm_epsilon,
    )
    reference = SwinForImageClassification(config).eval()
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in official_to_huggingface(state).items()}
    if "head.weight" not in state:
        tensors.update({k: v for k, v in reference.state_dict().items() if k.startswith("classifier.")})
    reference.load_state_dict(tensors, strict=True)
    return reference


def measure_parity(model, state, image_size=224, seed=0):
    """Max abs differences between `model` and the reference built from `state` on random
    images: `{"features": final normalised map, "outputs": logits or probabilities}`."""
    import keras
    import torch

    from keras_swin.backbone import IMAGENET_MEAN, IMAGENET_STD

    rng = np.random.default_rng(seed)
    normalised = rng.standard_normal((2, image_size, image_size, 3)).astype("float32")
    pixels = normalised
    if model.include_preprocessing:
        pixels = normalised * 255.0 * np.array(IMAGENET_STD) + 255.0 * np.array(IMAGENET_MEAN)
        pixels = pixels.astype("float32")
    reference = huggingface_reference(model, state)
    pixel_values = torch.from_numpy(normalised.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        trunk = reference.swinv2 if hasattr(reference, "swinv2") else reference.swin
        reference_features = trunk(pixel_values=pixel_values).last_hidden_state.numpy()
        reference_logits = reference(pixel_values=pixel_values).logits
    extractor = keras.Model(model.input, [model.get_layer("final_norm").output, model.output])
    features, outputs = (keras.ops.convert_to_numpy(t) for t in extractor(pixels))
    result = {
        "features": float(np.abs(features.reshape(reference_features.shape) - reference_features).max())
    }
    if model.include_top and "head.weight" in state and state["head.weight"].shape[0] == model.classes:
        if model.classifier_activation == "softmax":
            reference_logits = torch.softmax(reference_logits, dim=-1)
        result["outputs"] = float(np.abs(outputs - reference_logits.numpy()).max())
    return result
