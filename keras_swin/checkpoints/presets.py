"""Named pretrained weights: timm's published Swin checkpoints on the Hugging Face Hub.

`weights="imagenet"` (or a tag such as "in1k", "in22k", "in22k-ft-in1k") resolves through
`huggingface_hub`, which honours its cache (`HF_HUB_CACHE`/`HF_HOME`) and `HF_HUB_OFFLINE`.
"""

import hashlib
import os

from keras_swin.configs import MODEL_CONFIGS

# (variant, window) -> {tag: Hub repository of timm's safetensors checkpoint}.
PRESETS = {
    ("swin_t", 7): {
        "in1k": "timm/swin_tiny_patch4_window7_224.ms_in1k",
        "in22k": "timm/swin_tiny_patch4_window7_224.ms_in22k",
        "in22k-ft-in1k": "timm/swin_tiny_patch4_window7_224.ms_in22k_ft_in1k",
    },
    ("swin_s", 7): {
        "in1k": "timm/swin_small_patch4_window7_224.ms_in1k",
        "in22k": "timm/swin_small_patch4_window7_224.ms_in22k",
        "in22k-ft-in1k": "timm/swin_small_patch4_window7_224.ms_in22k_ft_in1k",
    },
    ("swin_b", 7): {
        "in1k": "timm/swin_base_patch4_window7_224.ms_in1k",
        "in22k": "timm/swin_base_patch4_window7_224.ms_in22k",
        "in22k-ft-in1k": "timm/swin_base_patch4_window7_224.ms_in22k_ft_in1k",
    },
    ("swin_b", 12): {
        "in1k": "timm/swin_base_patch4_window12_384.ms_in1k",
        "in22k": "timm/swin_base_patch4_window12_384.ms_in22k",
        "in22k-ft-in1k": "timm/swin_base_patch4_window12_384.ms_in22k_ft_in1k",
    },
    ("swin_l", 7): {
        "in22k": "timm/swin_large_patch4_window7_224.ms_in22k",
        "in22k-ft-in1k": "timm/swin_large_patch4_window7_224.ms_in22k_ft_in1k",
    },
    ("swin_l", 12): {
        "in22k": "timm/swin_large_patch4_window12_384.ms_in22k",
        "in22k-ft-in1k": "timm/swin_large_patch4_window12_384.ms_in22k_ft_in1k",
    },
}
CHECKPOINT_FILE = "model.safetensors"
# sha256 of CHECKPOINT_FILE per repository, verified after download where listed here.
# None are recorded yet: this project cannot reach the Hub to read them.
KNOWN_SHA256 = {}


def model_variant(model):
    """The factory name ("swin_t", ...) whose architecture `model` has, or None."""
    for variant, config in MODEL_CONFIGS.items():
        if (
            model.embed_dim == config["embed_dim"]
            and model.depths == config["depths"]
            and model.num_heads == config["num_heads"]
            and model.patch_size == 4
        ):
            return variant
    return None


def preset_repository(variant, window_size, name):
    """The Hub repository for a preset name; "imagenet" means in1k, else in22k-ft-in1k."""
    tags = PRESETS.get((variant, window_size))
    if tags is None:
        known = sorted(f"{v} window {w}" for v, w in PRESETS)
        raise ValueError(
            f"weights={name!r}: no pretrained weights for {variant or 'this architecture'} "
            f"with window {window_size}; presets exist for {known}, otherwise pass a file "
            "path (.weights.h5, .keras, .pth, .pt, .bin or .safetensors)."
        )
    tag = name
    if name == "imagenet":
        tag = "in1k" if "in1k" in tags else "in22k-ft-in1k"
    if tag not in tags:
        raise ValueError(
            f"Unknown weights '{name}' for {variant} window {window_size}; expected a file path "
            f"or one of {['imagenet'] + sorted(tags)}."
        )
    return tags[tag]


def verify_sha256(path, expected):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise OSError(
            f"Checksum mismatch for '{path}': expected sha256 {expected}, found "
            f"{digest.hexdigest()}."
        )


def download(repository, filenames):
    """The first of `filenames` that `huggingface_hub` finds for `repository` (in its cache
    or online); an OSError naming the repository when none can be had."""
    from huggingface_hub import hf_hub_download

    errors = []
    for filename in filenames:
        try:
            path = hf_hub_download(repository, filename, library_name="keras_swin")
            break
        except Exception as error:  # not in the cache, offline, not in the repository
            errors.append(f"{filename}: {error}")
    else:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        raise OSError(
            f"Could not get {' or '.join(filenames)} of '{repository}' from the Hugging Face Hub"
            f"{' (HF_HUB_OFFLINE is set and it is not in the cache)' if offline else ''}: "
            + "; ".join(errors)
        )
    if repository in KNOWN_SHA256:
        verify_sha256(path, KNOWN_SHA256[repository])
    return path


def resolve_preset(model, name):
    """Downloads (or finds in the cache) the Swin V1 checkpoint for preset `name`; returns its path."""
    return download(preset_repository(model_variant(model), model.window_size, name), [CHECKPOINT_FILE])


# UPerNet on ADE20K (150 classes), converted from mmseg by Hugging Face; the backbone
# window of each is the one in `keras_swin.configs.UPERNET_WINDOWS`.
UPERNET_PRESETS = {
    ("swin_t", 7): "openmmlab/upernet-swin-tiny",
    ("swin_s", 7): "openmmlab/upernet-swin-small",
    ("swin_b", 12): "openmmlab/upernet-swin-base",
    ("swin_l", 12): "openmmlab/upernet-swin-large",
}
UPERNET_PRESET_NAMES = ("ade20k",)


def resolve_upernet_preset(model, name):
    """The checkpoint path of UPerNet preset `name` ("ade20k") for `model`'s backbone."""
    if name not in UPERNET_PRESET_NAMES:
        raise ValueError(
            f"Unknown UPerNet weights {name!r}; expected a file path (.weights.h5, .keras, .pth, "
            f".pt, .bin or .safetensors) or one of {list(UPERNET_PRESET_NAMES)}."
        )
    backbone = model.backbone
    key = (model_variant(backbone), getattr(backbone, "window_size", None))
    if key not in UPERNET_PRESETS:
        raise ValueError(
            f"weights={name!r}: no ADE20K UPerNet for a {key[0] or 'custom'} backbone with window "
            f"{key[1]}; presets exist for {sorted(f'{v} window {w}' for v, w in UPERNET_PRESETS)}."
        )
    return download(UPERNET_PRESETS[key], ["model.safetensors", "pytorch_model.bin"])


# Swin V2: (variant, tag) -> [(Hub repository, window, pretrained windows, image size)]; the
# first entry of a tag is the default when the model's window is not given.
V2_PRESETS = {
    ("swinv2_t", "in1k"): [
        ("timm/swinv2_tiny_window8_256.ms_in1k", 8, (0, 0, 0, 0), 256),
        ("timm/swinv2_tiny_window16_256.ms_in1k", 16, (0, 0, 0, 0), 256),
    ],
    ("swinv2_s", "in1k"): [
        ("timm/swinv2_small_window8_256.ms_in1k", 8, (0, 0, 0, 0), 256),
        ("timm/swinv2_small_window16_256.ms_in1k", 16, (0, 0, 0, 0), 256),
    ],
    ("swinv2_b", "in1k"): [
        ("timm/swinv2_base_window8_256.ms_in1k", 8, (0, 0, 0, 0), 256),
        ("timm/swinv2_base_window16_256.ms_in1k", 16, (0, 0, 0, 0), 256),
    ],
    ("swinv2_b", "in22k"): [("timm/swinv2_base_window12_192.ms_in22k", 12, (0, 0, 0, 0), 192)],
    ("swinv2_b", "in22k-ft-in1k"): [
        ("timm/swinv2_base_window12to16_192to256.ms_in22k_ft_in1k", 16, (12, 12, 12, 6), 256),
        ("timm/swinv2_base_window12to24_192to384.ms_in22k_ft_in1k", 24, (12, 12, 12, 6), 384),
    ],
    ("swinv2_l", "in22k"): [("timm/swinv2_large_window12_192.ms_in22k", 12, (0, 0, 0, 0), 192)],
    ("swinv2_l", "in22k-ft-in1k"): [
        ("timm/swinv2_large_window12to16_192to256.ms_in22k_ft_in1k", 16, (12, 12, 12, 6), 256),
        ("timm/swinv2_large_window12to24_192to384.ms_in22k_ft_in1k", 24, (12, 12, 12, 6), 384),
    ],
}


def v2_preset(variant, name, window_size=None):
    """The V2 preset entry `(repository, window, pretrained windows, image size)` for a
    name ("imagenet" means in1k where it exists, else in22k-ft-in1k) and, if given, a
    window; a ValueError listing what exists otherwise."""
    tags = sorted(tag for v, tag in V2_PRESETS if v == variant)
    tag = name
    if name == "imagenet":
        tag = "in1k" if "in1k" in tags else "in22k-ft-in1k"
    entries = V2_PRESETS.get((variant, tag))
    if entries is None:
        raise ValueError(
            f"Unknown weights {name!r} for {variant or 'this architecture'}; expected a file path "
            f"or one of {['imagenet'] + tags}."
        )
    for entry in entries:
        if window_size is None or entry[1] == window_size:
            return entry
    raise ValueError(
        f"weights={name!r}: no {variant} preset with window {window_size}; it exists for windows "
        f"{[e[1] for e in entries]}."
    )


def resolve_v2_preset(model, name):
    """The checkpoint path of Swin V2 preset `name` for `model`'s variant and window."""
    variant = model_variant(model)
    variant = variant and variant.replace("swin_", "swinv2_")
    repository, window, pretrained, _ = v2_preset(variant, name, model.window_size)
    if tuple(model.pretrained_window_sizes) != pretrained:
        raise ValueError(
            f"weights={name!r} ({repository}) was fine-tuned with pretrained_window_sizes={pretrained}; "
            f"the model has {tuple(model.pretrained_window_sizes)}."
        )
    return download(repository, [CHECKPOINT_FILE])
