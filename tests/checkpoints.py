"""Official Microsoft and timm checkpoints, made in the tests by renaming the keys of a
Hugging Face model by hand (independently of keras_swin.weights)."""

import re

import numpy as np

_HF_TO_OFFICIAL = (
    ("embeddings.patch_embeddings.projection.", "patch_embed.proj."),
    ("embeddings.norm.", "patch_embed.norm."),
    ("encoder.layers.", "layers."),
    (".layernorm_before.", ".norm1."),
    (".layernorm_after.", ".norm2."),
    (".attention.relative_position_bias.relative_position_bias_table", ".attn.relative_position_bias_table"),
    (".attention.o_proj.", ".attn.proj."),
    (".mlp.fc1.", ".mlp.fc1."),
    ("layernorm.", "norm."),
    ("classifier.", "head."),
)


def official_state_dict(hf_state, with_buffers=True):
    """The official layout: fused qkv, downsample at the end of stage N, `head.*`, buffers."""
    state = {}
    for hf_key, value in hf_state.items():
        key = hf_key[len("swin."):] if hf_key.startswith("swin.") else hf_key
        for old, new in _HF_TO_OFFICIAL:
            if key.startswith(old) or (old.startswith(".") and old in key):
                key = key.replace(old, new, 1)
        if ".attention.k_proj." in key or ".attention.v_proj." in key:
            continue
        if ".attention.q_proj." in key:
            parts = [hf_state[hf_key.replace("q_proj", p)] for p in ("q_proj", "k_proj", "v_proj")]
            key = key.replace(".attention.q_proj.", ".attn.qkv.")
            value = np.concatenate(parts, axis=0)
        state[key] = value
    if with_buffers:
        for key in list(state):
            if key.endswith("attn.relative_position_bias_table"):
                side = int(np.sqrt(state[key].shape[0]) + 1) // 2
                state[key.replace("relative_position_bias_table", "relative_position_index")] = (
                    np.zeros((side * side, side * side), np.int64)
                )
                state[key.replace("attn.relative_position_bias_table", "attn_mask")] = np.zeros(
                    (4, side * side, side * side), np.float32
                )
    return state


def timm_state_dict(official_state):
    """timm >= 0.9: downsample at the start of stage N + 1, `head.fc.*`."""
    state = {}
    for key, value in official_state.items():
        key = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) + 1}.downsample", key)
        key = re.sub(r"^head\.", "head.fc.", key)
        state[key] = value
    return state


def _official_to_unfold(value):
    """Official 2x2 merging order -> mmseg's nn.Unfold order, on the last (4C) axis."""
    channels = value.shape[-1] // 4
    grouped = value.reshape(value.shape[:-1] + (4, channels))[..., [0, 2, 1, 3], :]
    return np.swapaxes(grouped, -1, -2).reshape(value.shape)


_OFFICIAL_TO_MMSEG = (
    (r"^patch_embed\.proj\.", "patch_embed.projection."),
    (r"^layers\.", "stages."),
    (r"\.attn\.", ".attn.w_msa."),
    (r"\.mlp\.fc1\.", ".ffn.layers.0.0."),
    (r"\.mlp\.fc2\.", ".ffn.layers.1."),
)


def mmseg_upernet_state_dict(hf_state):
    """An mmseg UPerNet checkpoint from a Hugging Face one: `backbone.stages.*` with
    `attn.w_msa`, `ffn.layers`, unfold-ordered patch merging and `norm{i}`; ConvModule
    `bn`, `conv_seg`; BatchNorm statistics and buffers as mmseg saves them."""
    backbone = {}
    for key, value in hf_state.items():
        if not key.startswith("backbone."):
            continue
        key = key[len("backbone."):]
        match = re.match(r"^hidden_states_norms\.stage(\d+)\.(.*)$", key)
        if match:
            backbone[f"norm{int(match.group(1)) - 1}.{match.group(2)}"] = value
        elif key.startswith("swin.layernorm."):
            continue  # transformers 5 keeps an unused final norm; mmseg has none
        else:
            backbone[key] = value
    official = official_state_dict(backbone)
    state = {}
    for key, value in official.items():
        if re.match(r"^layers\.\d+\.downsample\.(reduction|norm)\.", key):
            value = _official_to_unfold(value)
        for pattern, replacement in _OFFICIAL_TO_MMSEG:
            key = re.sub(pattern, replacement, key)
        state[f"backbone.{key}"] = value
    for key, value in hf_state.items():
        if key.startswith(("decode_head.", "auxiliary_head.")):
            key = key.replace(".batch_norm.", ".bn.").replace(".classifier.", ".conv_seg.")
            state[key] = value
    return state


_HF_V2_TO_OFFICIAL = (
    (r"^swinv2\.embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^swinv2\.embeddings\.norm\.", "patch_embed.norm."),
    (r"^swinv2\.encoder\.layers\.", "layers."),
    (r"\.layernorm_before\.", ".norm1."),
    (r"\.layernorm_after\.", ".norm2."),
    (r"\.attention\.self\.logit_scale$", ".attn.logit_scale"),
    (r"\.attention\.self\.continuous_position_bias_mlp\.", ".attn.cpb_mlp."),
    (r"\.attention\.self\.query\.bias$", ".attn.q_bias"),
    (r"\.attention\.self\.value\.bias$", ".attn.v_bias"),
    (r"\.attention\.output\.dense\.", ".attn.proj."),
    (r"\.intermediate\.dense\.", ".mlp.fc1."),
    (r"\.output\.dense\.", ".mlp.fc2."),
    (r"^swinv2\.layernorm\.", "norm."),
    (r"^classifier\.", "head."),
)


def official_v2_state_dict(hf_model):
    """The official Swin V2 layout from a Hugging Face Swinv2ForImageClassification: fused
    bias-free qkv with q_bias/v_bias, cpb_mlp, downsample at the end of stage N, `head.*`,
    and the relative_coords_table / relative_position_index buffers the official code saves."""
    hf_state = {k: v.detach().numpy() for k, v in hf_model.state_dict().items()}
    state = {}
    for key, value in hf_state.items():
        if ".attention.self.key." in key or ".attention.self.value.weight" in key:
            continue
        if ".attention.self.query.weight" in key:
            value = np.concatenate(
                [hf_state[key.replace("query", part)] for part in ("query", "key", "value")], axis=0
            )
            key = key.replace(".attention.self.query.weight", ".attn.qkv.weight")
        for pattern, replacement in _HF_V2_TO_OFFICIAL:
            key = re.sub(pattern, replacement, key)
        state[key] = value
    for stage, layer in enumerate(hf_model.swinv2.encoder.layers):
        for index, block in enumerate(layer.blocks):
            attention = block.attention.self
            prefix = f"layers.{stage}.blocks.{index}.attn"
            state[f"{prefix}.relative_coords_table"] = attention.relative_coords_table.numpy()
            state[f"{prefix}.relative_position_index"] = attention.relative_position_index.numpy()
    return state


def timm_v2_state_dict(official_state):
    """timm's Swin V2: downsample at the start of stage N + 1, `head.fc.*`, a zero k_bias buffer."""
    state = timm_state_dict(official_state)
    for key in list(state):
        if key.endswith(".attn.q_bias"):
            state[key.replace("q_bias", "k_bias")] = np.zeros_like(state[key])
    return state


HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_snapshot(hub, repository):
    """The snapshot folder of `repository` ("owner/name") in a Hugging Face cache at `hub`,
    laid out as huggingface_hub leaves it after a download (`refs/main` naming a commit,
    `snapshots/<commit>/`); the caller writes the checkpoint files into it."""
    repo = hub / f"models--{repository.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(HUB_COMMIT)
    snapshot = repo / "snapshots" / HUB_COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


def parity_reported(stdout):
    """`{"features": ..., "outputs": ...}` from the parity line that `keras-swin convert` prints."""
    line = stdout.split("(max abs diff, fp32): ")[1].splitlines()[0]
    return {name: float(value) for name, value in (item.strip().split(" ") for item in line.split(","))}
