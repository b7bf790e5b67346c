"""UPerNet (Xiao et al., 2018) semantic segmentation over any backbone with `pyramid_outputs`,
and the Swin configurations of the Swin paper's ADE20K results (mmseg / Hugging Face)."""

import keras

from keras_swin.checkpoints import upernet as upernet_checkpoints
from keras_swin.configs import MODEL_CONFIGS, UPERNET_WINDOWS
from keras_swin.layers import AdaptiveAveragePooling2D, BilinearResize
from keras_swin.models.image_model import ImageModel, resolve_dtype_policy
from keras_swin.models.swin import build_model
from keras_swin.utils import check_rates

LEVELS = ("P2", "P3", "P4", "P5")


# --------------------------------------------------------------------------- decoder pieces
# Each piece adds layers to a functional graph; `UPerNet` composes them, and another decoder
# over `pyramid_outputs` can reuse them. Layer names are stable: the checkpoint mapping
# (`keras_swin.checkpoints.upernet`) finds the layers by them.


def conv_bn_relu(x, filters, kernel_size, prefix, policy, norm_epsilon=1e-5, strides=1):
    """mmseg's ConvModule: conv without bias (Kaiming normal, fan_out) + BatchNorm + ReLU."""
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer=keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal"),
        dtype=policy,
        name=f"{prefix}_conv",
    )(x)
    x = keras.layers.BatchNormalization(epsilon=norm_epsilon, momentum=0.9, dtype=policy, name=f"{prefix}_bn")(x)
    return keras.layers.ReLU(dtype=policy, name=f"{prefix}_relu")(x)


def pyramid_pooling(coarsest, pool_scales, channels, policy, norm_epsilon=1e-5):
    """The pyramid pooling module: the coarsest map and its adaptive average pools at each
    scale (1x1 conv, resized back), concatenated, then a 3x3 bottleneck."""
    pooled = [coarsest]
    for scale in pool_scales:
        branch = AdaptiveAveragePooling2D(scale, dtype=policy, name=f"ppm{scale}_pool")(coarsest)
        branch = conv_bn_relu(branch, channels, 1, f"ppm{scale}", policy, norm_epsilon)
        pooled.append(BilinearResize(dtype=policy, name=f"ppm{scale}_upsample")([branch, coarsest]))
    merged = keras.layers.Concatenate(dtype=policy, name="ppm_concat")(pooled)
    return conv_bn_relu(merged, channels, 3, "ppm_bottleneck", policy, norm_epsilon)


def feature_pyramid(features, top, channels, policy, norm_epsilon=1e-5):
    """The FPN: 1x1 laterals on the finer levels, the top-down path of resize-and-add from
    `top` (the pooled coarsest level), and a 3x3 conv on each finer level. Returns the maps,
    finest first."""
    laterals = [
        conv_bn_relu(feature, channels, 1, f"lateral{index}", policy, norm_epsilon)
        for index, feature in enumerate(features)
    ]
    laterals.append(top)
    for index in range(len(laterals) - 1, 0, -1):
        upsampled = BilinearResize(dtype=policy, name=f"topdown{index}_upsample")([laterals[index], laterals[index - 1]])
        laterals[index - 1] = keras.layers.Add(dtype=policy, name=f"topdown{index - 1}_add")(
            [laterals[index - 1], upsampled]
        )
    outputs = [
        conv_bn_relu(laterals[index], channels, 3, f"fpn{index}", policy, norm_epsilon)
        for index in range(len(features))
    ]
    return outputs + [laterals[-1]]


def fuse(maps, channels, policy, norm_epsilon=1e-5):
    """Every map resized to the finest, concatenated, and mixed by a 3x3 conv."""
    resized = [maps[0]] + [
        BilinearResize(dtype=policy, name=f"fuse{index}_upsample")([maps[index], maps[0]])
        for index in range(1, len(maps))
    ]
    fused = keras.layers.Concatenate(dtype=policy, name="fuse_concat")(resized)
    return conv_bn_relu(fused, channels, 3, "fuse", policy, norm_epsilon)


def detail_branch(images, fused, detail_channels, channels, policy, norm_epsilon=1e-5):
    """A shallow branch on the image at 1/2 resolution, fused with the decoder's 1/4 map
    before the classifier (as DeepLabV3+ fuses low-level features): edges and thin strokes
    that a 1/4-resolution output blurs."""
    detail = keras.layers.Rescaling(1.0 / 255.0, dtype=policy, name="detail_rescale")(images)
    detail = conv_bn_relu(detail, detail_channels, 3, "detail1", policy, norm_epsilon, strides=2)
    detail = conv_bn_relu(detail, detail_channels, 3, "detail2", policy, norm_epsilon)
    upsampled = BilinearResize(dtype=policy, name="detail_upsample")([fused, detail])
    fused = keras.layers.Concatenate(dtype=policy, name="detail_concat")([upsampled, detail])
    return conv_bn_relu(fused, channels, 3, "detail_fuse", policy, norm_epsilon)


# --------------------------------------------------------------------------- heads


def classifier_head(x, num_classes, prefix, reference, dropout_rate, activation, policy):
    """Dropout, a 1x1 classifier and a float32 bilinear resize to `reference`'s size."""
    x = keras.layers.Dropout(dropout_rate, dtype=policy, name=f"{prefix}_dropout")(x)
    x = keras.layers.Conv2D(
        num_classes,
        1,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        dtype="float32",
        name=f"{prefix}_classifier",
    )(x)
    x = BilinearResize(dtype="float32", name=f"{prefix}_upsample")([x, reference])
    if activation is not None:
        x = keras.layers.Activation(activation, dtype="float32", name=f"{prefix}_{activation}")(x)
    return x


@keras.saving.register_keras_serializable(package="keras_swin")
class UPerNet(ImageModel):
    """UPerNet: a pyramid pooling module on the coarsest level, an FPN, and a fused
    classifier, with an optional auxiliary FCN head, as in mmseg's `UPerHead`/`FCNHead`
    and Hugging Face's `UperNetForSemanticSegmentation`.

    Every conv (except the classifiers) is conv (no bias) + BatchNorm (eps `norm_epsilon`)
    + ReLU. Resizing is bilinear with half-pixel centres (PyTorch `align_corners=False`)
    to the exact size of the finer map, so any input size works in one graph.

    Args:
        backbone: a Keras model with `pyramid_outputs` "P2".."P5" (for example
            `keras_swin.SwinT(include_top=False, pyramid_norm=True)`); its config is stored
            in this model's, so it nests through Keras serialization. Gradient
            checkpointing is the backbone's (`SwinTransformer(remat=True)`).
        num_classes: int, classes of the per-pixel classifier.
        channels: int, decoder width. Default 512.
        pool_scales: tuple of ints, adaptive pooling bins of the pyramid pooling module.
            Default (1, 2, 3, 6).
        dropout_rate: float in [0, 1), dropout before the classifiers. Default 0.1.
        auxiliary_head: bool, add the FCN head on P4 as a second output (used in
            training, loss weight 0.4 in the recipe). Default False.
        auxiliary_channels: int, width of the auxiliary head. Default 256.
        detail_channels: int, 0 (UPerNet as published; the default) or the width of a
            shallow detail branch: two conv-BN-ReLU layers on the image at 1/2 resolution,
            concatenated with the upsampled fused decoder map and mixed by a 3x3
            conv-BN-ReLU before the classifier (a DeepLabV3+-style low-level skip). It
            sharpens thin strokes and edges that the 1/4-resolution output blurs; the small
            scene segmenter of `keras-swin train` uses 16.
        norm_epsilon: float, BatchNorm epsilon. Default 1e-5.
        activation: None (logits), "softmax" or "sigmoid", applied to the outputs.
        weights: None, a path to a Keras, Hugging Face or mmseg checkpoint, or "ade20k"
            (see `keras_swin.checkpoints.upernet.load_upernet_weights`).
        name: str. Default "upernet".
        dtype: None (the global policy), a policy name or a `keras.DTypePolicy`. The
            classifiers and the final resize compute in float32.

    Input shape: `(B, H, W, 3)`, as the backbone takes it; any other rank or channel
        count is a ValueError.
    Output: logits `(B, H, W, num_classes)`; with `auxiliary_head=True` a dict
        `{"logits": ..., "auxiliary_logits": ...}` of two such tensors.
    """

    def __init__(
        self,
        backbone,
        num_classes,
        channels=512,
        pool_scales=(1, 2, 3, 6),
        dropout_rate=0.1,
        auxiliary_head=False,
        auxiliary_channels=256,
        detail_channels=0,
        norm_epsilon=1e-5,
        activation=None,
        weights=None,
        name="upernet",
        dtype=None,
        **kwargs,
    ):
        if isinstance(backbone, dict):
            backbone = keras.saving.deserialize_keras_object(backbone)
        pyramid = getattr(backbone, "pyramid_outputs", None)
        if not isinstance(backbone, keras.Model) or not isinstance(pyramid, dict) or not set(
            LEVELS
        ) <= set(pyramid):
            raise ValueError(
                "`backbone` must be a keras.Model with `pyramid_outputs` holding "
                f"{list(LEVELS)}; received {type(backbone).__name__} with pyramid_outputs="
                f"{sorted(pyramid) if isinstance(pyramid, dict) else pyramid}."
            )
        pool_scales = tuple(int(s) for s in pool_scales)
        if not pool_scales or min(pool_scales) < 1:
            raise ValueError(f"`pool_scales` must be ints >= 1; received pool_scales={pool_scales}.")
        for arg_name, value in (
            ("num_classes", num_classes),
            ("channels", channels),
            ("auxiliary_channels", auxiliary_channels),
        ):
            if int(value) < 1:
                raise ValueError(f"`{arg_name}` must be >= 1; received {arg_name}={value}.")
        check_rates(dropout_rate=dropout_rate)
        if activation not in (None, "softmax", "sigmoid"):
            raise ValueError(
                f"`activation` must be None, 'softmax' or 'sigmoid'; received activation={activation!r}."
            )
        if int(detail_channels) < 0:
            raise ValueError(
                f"`detail_channels` must be >= 0 (0: no detail branch); received detail_channels={detail_channels}."
            )
        policy = resolve_dtype_policy(dtype)
        channels, num_classes, detail_channels = int(channels), int(num_classes), int(detail_channels)

        # === Functional graph ===
        extractor = keras.Model(
            backbone.inputs, {level: pyramid[level] for level in LEVELS}, name=f"{backbone.name}_pyramid"
        )
        inputs = keras.Input(shape=tuple(backbone.input.shape[1:]), name="images")
        features = extractor(inputs)
        top = pyramid_pooling(features["P5"], pool_scales, channels, policy, norm_epsilon)
        maps = feature_pyramid([features[level] for level in LEVELS[:-1]], top, channels, policy, norm_epsilon)
        fused = fuse(maps, channels, policy, norm_epsilon)
        if detail_channels:
            fused = detail_branch(inputs, fused, detail_channels, channels, policy, norm_epsilon)
        logits = classifier_head(fused, num_classes, "decode", inputs, dropout_rate, activation, policy)
        if auxiliary_head:
            auxiliary = conv_bn_relu(features["P4"], int(auxiliary_channels), 3, "auxiliary", policy, norm_epsilon)
            auxiliary = classifier_head(auxiliary, num_classes, "auxiliary", inputs, dropout_rate, activation, policy)
            model_outputs = {"logits": logits, "auxiliary_logits": auxiliary}
        else:
            model_outputs = logits
        super().__init__(inputs=inputs, outputs=model_outputs, name=name, **kwargs)
        self.dtype_policy = policy

        # === Config ===
        self.backbone = backbone
        self.num_classes = num_classes
        self.channels = channels
        self.pool_scales = pool_scales
        self.dropout_rate = float(dropout_rate)
        self.auxiliary_head = bool(auxiliary_head)
        self.auxiliary_channels = int(auxiliary_channels)
        self.detail_channels = detail_channels
        self.norm_epsilon = float(norm_epsilon)
        self.activation = activation

        if weights is not None:
            self.load_checkpoint(weights)

    def load_checkpoint(self, weights):
        """Loads `weights` (a file or "ade20k") with UPerNet's mapping
        (`keras_swin.checkpoints.upernet.load_upernet_weights`); returns the layout loaded."""
        return upernet_checkpoints.load_upernet_weights(self, weights)

    def no_weight_decay(self):
        """The backbone's no-decay variables, and the decoder's biases and BatchNorms."""
        backbone_names = self.backbone.no_weight_decay() if hasattr(self.backbone, "no_weight_decay") else ()
        return tuple(dict.fromkeys(backbone_names + ("bias", "gamma", "beta")))

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "channels": self.channels,
            "pool_scales": list(self.pool_scales),
            "dropout_rate": self.dropout_rate,
            "auxiliary_head": self.auxiliary_head,
            "auxiliary_channels": self.auxiliary_channels,
            "detail_channels": self.detail_channels,
            "norm_epsilon": self.norm_epsilon,
            "activation": self.activation,
        }


UPERNET_DOCSTRING = """UPerNet with a {variant} backbone, as in the Swin paper's ADE20K results.

    The backbone is `keras_swin.{variant}(include_top=False, pyramid_norm=True,
    include_final_norm=False, always_partition=True)`, as mmseg's; the decoder is
    `keras_swin.UPerNet`.

    Args:
        num_classes: int, per-pixel classes. Default 150 (ADE20K).
        weights: None, a path to a Keras, Hugging Face (`openmmlab/upernet-swin-{size}`) or
            mmseg checkpoint, or "ade20k" (the openmmlab checkpoint through
            `huggingface_hub`). Default None.
        backbone_weights: None, or the weights of an ImageNet Swin classifier (a path or a
            preset name such as "imagenet") for the backbone; the decoder stays freshly
            initialised, the usual start of segmentation training. Default None.
        input_shape: optional (H, W, 3); H and W may be None. Default (None, None, 3).
        include_preprocessing: bool, pixels in [0, 255] normalised inside the model.
            Default True.
        auxiliary_head: bool, add the auxiliary FCN head on P4 as a second output.
            Default False.
        window_size: int. Default {window_size}.
        drop_path_rate: float. Default 0.3.
        remat: bool, gradient checkpointing of the backbone's Swin blocks in training
            (`SwinTransformer(remat=True)`): less memory, more compute, the same outputs
            and gradients. Default False.
        channels: int, decoder width. Default 512.
        dropout_rate: float. Default 0.1.
        activation: None (logits), "softmax" or "sigmoid". Default None.
        name: str. Default "upernet_{variant_name}".
        dtype: None (the global policy), a policy name or a `keras.DTypePolicy`.

    Returns:
        A `keras_swin.UPerNet`.
"""


def build_upernet(
    variant,
    num_classes=150,
    weights=None,
    backbone_weights=None,
    input_shape=None,
    include_preprocessing=True,
    auxiliary_head=False,
    window_size=None,
    drop_path_rate=0.3,
    remat=False,
    channels=512,
    dropout_rate=0.1,
    activation=None,
    name=None,
    dtype=None,
):
    """Builds UPerNet over the named Swin variant ("swin_t", ...); see `UPerNetSwinT`."""
    if variant not in MODEL_CONFIGS:
        raise ValueError(f"Unknown model '{variant}'; expected one of {sorted(MODEL_CONFIGS)}.")
    backbone = build_model(
        variant,
        include_top=False,
        weights=backbone_weights,
        input_shape=input_shape,
        include_preprocessing=include_preprocessing,
        window_size=window_size or UPERNET_WINDOWS[variant],
        drop_path_rate=drop_path_rate,
        pyramid_norm=True,
        include_final_norm=False,
        always_partition=True,
        remat=remat,
        name=f"{variant}_backbone",
        dtype=dtype,
    )
    return UPerNet(
        backbone,
        num_classes=num_classes,
        channels=channels,
        dropout_rate=dropout_rate,
        auxiliary_head=auxiliary_head,
        activation=activation,
        weights=weights,
        name=name or f"upernet_{variant}",
        dtype=dtype,
    )


def UPerNetSwinT(**kwargs):
    return build_upernet("swin_t", **kwargs)


def UPerNetSwinS(**kwargs):
    return build_upernet("swin_s", **kwargs)


def UPerNetSwinB(**kwargs):
    return build_upernet("swin_b", **kwargs)


def UPerNetSwinL(**kwargs):
    return build_upernet("swin_l", **kwargs)


for _factory, _variant, _size in (
    (UPerNetSwinT, "swin_t", "tiny"),
    (UPerNetSwinS, "swin_s", "small"),
    (UPerNetSwinB, "swin_b", "base"),
    (UPerNetSwinL, "swin_l", "large"),
):
    _factory.__doc__ = UPERNET_DOCSTRING.format(
        variant=_factory.__name__.replace("UPerNet", ""),
        size=_size,
        window_size=UPERNET_WINDOWS[_variant],
        variant_name=_variant,
    )
