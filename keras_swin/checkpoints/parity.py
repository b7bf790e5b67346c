"""Measures keras_swin against Hugging Face's PyTorch Swin (V1 or V2) with the same weights.

Needs `torch` and `transformers` (the `test` extra); used by `keras-swin convert`.
"""

import re

import numpy as np

from keras_swin.checkpoints.swin import resize_bias_table
from keras_swin.configs import IMAGENET_MEAN, IMAGENET_STD

# Official -> transformers (>= 5) names: the rows both versions share, then each version's.
_OFFICIAL_TO_HF = (
    (r"^patch_embed\.proj\.", "{trunk}.embeddings.patch_embeddings.projection."),
    (r"^patch_embed\.norm\.", "{trunk}.embeddings.norm."),
    (r"^layers\.", "{trunk}.encoder.layers."),
    (r"\.norm1\.", ".layernorm_before."),
    (r"\.norm2\.", ".layernorm_after."),
    (r"^norm\.", "{trunk}.layernorm."),
    (r"^head\.", "classifier."),
)
_OFFICIAL_TO_HF_VERSION = {
    1: (
        (r"\.attn\.relative_position_bias_table$", ".attention.relative_position_bias.relative_position_bias_table"),
        (r"\.attn\.proj\.", ".attention.o_proj."),
    ),
    2: (
        (r"\.attn\.logit_scale$", ".attention.self.logit_scale"),
        (r"\.attn\.cpb_mlp\.", ".attention.self.continuous_position_bias_mlp."),
        (r"\.attn\.q_bias$", ".attention.self.query.bias"),
        (r"\.attn\.v_bias$", ".attention.self.value.bias"),
        (r"\.attn\.proj\.", ".attention.output.dense."),
        (r"\.mlp\.fc1\.", ".intermediate.dense."),
        (r"\.mlp\.fc2\.", ".output.dense."),
    ),
}
# Where the fused qkv goes: V1 has q/k/v projections with biases, V2 query/key/value weights
# (its q and v biases are separate keys, and k has none).
_QKV_PARTS = {1: ("attention.q_proj", "attention.k_proj", "attention.v_proj"),
              2: ("attention.self.query", "attention.self.key", "attention.self.value")}


def official_to_huggingface(state, version=1):
    """Renames an official-layout Swin state dict to transformers' (>= 5)
    `SwinForImageClassification` (version 1) or `Swinv2ForImageClassification` (version 2)."""
    trunk = "swin" if version == 1 else "swinv2"
    rules = [(p, r.format(trunk=trunk)) for p, r in _OFFICIAL_TO_HF] + list(_OFFICIAL_TO_HF_VERSION[version])
    converted = {}
    for key, value in state.items():
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
        match = re.match(r"^(.*)\.attn\.qkv\.(weight|bias)$", key)
        if match:
            prefix, kind = match.groups()
            for part, chunk in zip(_QKV_PARTS[version], np.split(value, 3, axis=0)):
                converted[f"{prefix}.{part}.{kind}"] = chunk
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
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in official_to_huggingface(state, version=2).items()}
    if "head.weight" not in state:
        tensors.update({k: v for k, v in reference.state_dict().items() if k.startswith("classifier.")})
    reference.load_state_dict(tensors, strict=True)
    return reference


def huggingface_reference(model, state):
    """A transformers SwinForImageClassification with `model`'s architecture and `state`."""
    import torch
    from transformers import SwinConfig, SwinForImageClassification

    classes = state["head.weight"].shape[0] if "head.weight" in state else 1
    if model.checkpoint_version() == 2:
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
