"""SwinT / SwinS / SwinB / SwinL: keras.applications-style factories over SwinTransformer."""

from keras_swin.backbone import SwinTransformer

# Architecture table of the paper (Liu et al., 2021, section 3.3).
MODEL_CONFIGS = {
    "swin_t": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.2),
    "swin_s": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.3),
    "swin_b": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.5),
    "swin_l": dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), drop_path_rate=0.2),
}

BASE_DOCSTRING = """Instantiates the {variant} architecture (Liu et al., 2021).

    Reference: "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows",
    ICCV 2021. Works at any image size; `pyramid_outputs` holds the stride 4/8/16/32 maps.

    Args:
        include_top: bool, add global average pooling and a Dense classifier. Default True.
        weights: None (random initialisation) or a path to weights. Default None.
        input_shape: optional (H, W, 3); H and W may be None. Default (None, None, 3).
        input_tensor: optional Keras tensor to use as the image input.
        pooling: None, "avg" or "max", used when `include_top=False`.
        classes: int, number of classes with `include_top=True`. Default 1000.
        classifier_activation: str or None, activation of the classifier. Default "softmax".
        include_preprocessing: bool, take pixels in [0, 255] and normalise them with the
            ImageNet mean and std inside the model. Default True.
        window_size: int, attention window. Default 7.
        drop_path_rate: float in [0, 1), stochastic depth. Default {drop_path_rate}.
        pyramid_norm: bool, a LayerNorm on every `pyramid_outputs` level, as detection
            and segmentation backbones have. Default False.
        include_final_norm: bool, the final LayerNorm; a pyramid-only backbone can leave
            it out. Default True.
        always_partition: bool, keep the window and shift on maps smaller than the
            window, as detection and segmentation backbones do. Default False.
        name: str, the model name. Default "{name}".
        dtype: None (the global policy), a policy name such as "mixed_bfloat16", or a
            `keras.DTypePolicy`. Default None.

    Returns:
        A `keras_swin.SwinTransformer` (a functional `keras.Model`).
"""


def build_model(
    variant,
    include_top=True,
    weights=None,
    input_shape=None,
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    include_preprocessing=True,
    window_size=7,
    drop_path_rate=None,
    pyramid_norm=False,
    include_final_norm=True,
    always_partition=False,
    name=None,
    dtype=None,
    model_class=SwinTransformer,
    **version_kwargs,
):
    """Builds the named variant ("swin_t", "swin_s", "swin_b" or "swin_l"); see `SwinT`.
    `model_class` and `version_kwargs` build the same configuration with another model
    (Swin V2: `SwinTransformerV2` and its `pretrained_window_sizes`)."""
    if variant not in MODEL_CONFIGS:
        raise ValueError(f"Unknown model '{variant}'; expected one of {sorted(MODEL_CONFIGS)}.")
    config = dict(MODEL_CONFIGS[variant])
    if drop_path_rate is not None:
        config["drop_path_rate"] = drop_path_rate
    return model_class(
        **config,
        **version_kwargs,
        window_size=window_size,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing,
        pyramid_norm=pyramid_norm,
        include_final_norm=include_final_norm,
        always_partition=always_partition,
        input_shape=input_shape,
        input_tensor=input_tensor,
        weights=weights,
        name=name or variant,
        dtype=dtype,
    )


def SwinT(**kwargs):
    return build_model("swin_t", **kwargs)


def SwinS(**kwargs):
    return build_model("swin_s", **kwargs)


def SwinB(**kwargs):
    return build_model("swin_b", **kwargs)


def SwinL(**kwargs):
    return build_model("swin_l", **kwargs)


for _factory, _variant in ((SwinT, "swin_t"), (SwinS, "swin_s"), (SwinB, "swin_b"), (SwinL, "swin_l")):
    _factory.__doc__ = BASE_DOCSTRING.format(
        variant=_factory.__name__,
        drop_path_rate=MODEL_CONFIGS[_variant]["drop_path_rate"],
        name=_variant,
    )
