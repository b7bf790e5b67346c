"""Swin Transformer V2 (Liu et al., CVPR 2022): the generic model and SwinV2T/S/B/L."""

import keras

from keras_swin.checkpoints import presets
from keras_swin.checkpoints import swin_v2 as swin_v2_checkpoints
from keras_swin.checkpoints.files import is_weights_file
from keras_swin.configs import MODEL_CONFIGS, V2_NAMES
from keras_swin.layers import PatchMergingV2, SwinBlockV2
from keras_swin.models.swin import NO_DECAY_NAMES, SwinTransformer, build_model

# V2's continuous position bias MLP and attention temperature are left out of weight decay, as
# in the official and timm recipes (timm's `no_weight_decay`: cpb_mlp, logit_scale).
NO_DECAY_NAMES_V2 = NO_DECAY_NAMES + ("cpb_fc1", "cpb_fc2", "logit_scale")


@keras.saving.register_keras_serializable(package="keras_swin")
class SwinTransformerV2(SwinTransformer):
    """Swin Transformer V2 as a functional Keras model.

    The V1 architecture with V2's blocks (`SwinBlockV2`: cosine attention, continuous
    position bias, residual post-norm) and patch merging (`PatchMergingV2`: reduction,
    then norm). Everything else, including `pyramid_outputs`, `include_top`, `pooling`,
    preprocessing, `dtype` and the input checks, is as in `SwinTransformer`.

    Args:
        pretrained_window_sizes: per-stage ints, the pretraining window that scales each
            stage's position-bias coordinates (0: none). Default all 0. For example, the
            `192to256` fine-tunes use window 16 with (12, 12, 12, 6).
        window_size: int. Default 8.
        name: str. Default "swin_transformer_v2".
        The other arguments are those of `keras_swin.SwinTransformer`.
    """

    def __init__(self, *args, pretrained_window_sizes=None, window_size=8, name="swin_transformer_v2", **kwargs):
        depths = kwargs.get("depths", (2, 2, 6, 2))
        sizes = tuple(0 for _ in depths) if pretrained_window_sizes is None else pretrained_window_sizes
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) != len(depths) or any(s < 0 or s == 1 for s in sizes):
            raise ValueError(
                "`pretrained_window_sizes` must have one int per stage, each 0 (none) or >= 2; "
                f"received pretrained_window_sizes={tuple(pretrained_window_sizes)} for "
                f"{len(depths)} stages (depths={tuple(depths)})."
            )
        # Read by _make_block while SwinTransformer.__init__ builds the graph (and by the
        # weight loader it may call), so it is set first.
        self._pretrained_window_sizes = sizes
        super().__init__(*args, window_size=window_size, name=name, **kwargs)

    @property
    def pretrained_window_sizes(self):
        return self._pretrained_window_sizes

    def _make_block(self, stage, num_heads, **kwargs):
        return SwinBlockV2(num_heads, pretrained_window_size=self._pretrained_window_sizes[stage], **kwargs)

    def _make_merging(self, **kwargs):
        return PatchMergingV2(**kwargs)

    def checkpoint_version(self):
        return 2

    def load_checkpoint(self, weights):
        """Loads `weights` with the V2 mapping and window checks
        (`keras_swin.checkpoints.swin_v2.load_weights`); returns the layout loaded."""
        return swin_v2_checkpoints.load_weights(self, weights)

    def no_weight_decay(self):
        return NO_DECAY_NAMES_V2

    def get_config(self):
        return {**super().get_config(), "pretrained_window_sizes": list(self.pretrained_window_sizes)}


BASE_DOCSTRING = """Instantiates the {variant} architecture (Swin Transformer V2, Liu et al., 2022).

    Reference: "Swin Transformer V2: Scaling Up Capacity and Resolution", CVPR 2022. Works
    at any image size; `pyramid_outputs` holds the stride 4/8/16/32 maps.

    Args:
        include_top: bool, add global average pooling and a Dense classifier. Default True.
        weights: None, a path to weights (Keras, Hugging Face, timm or official), or a
            preset name ("imagenet", "in1k", ...; see `keras_swin.checkpoints.presets`). Default None.
        input_shape: optional (H, W, 3); H and W may be None. Default (None, None, 3).
        input_tensor: optional Keras tensor to use as the image input.
        pooling: None, "avg" or "max", used when `include_top=False`.
        classes: int, number of classes with `include_top=True`. Default 1000.
        classifier_activation: str or None. Default "softmax".
        include_preprocessing: bool, pixels in [0, 255] normalised with the ImageNet mean
            and std inside the model. Default True.
        window_size: int, attention window. Default 8, or the preset's window.
        pretrained_window_sizes: per-stage pretraining windows (0: none). Default all 0,
            or the preset's (e.g. (12, 12, 12, 6) for the `12to16` fine-tunes).
        drop_path_rate: float in [0, 1). Default {drop_path_rate}.
        pyramid_norm, include_final_norm, always_partition, remat: as in `SwinT`.
        name: str. Default "{name}".
        dtype: None (the global policy), a policy name or a `keras.DTypePolicy`.

    Returns:
        A `keras_swin.SwinTransformerV2`.
"""


def build_model_v2(variant, weights=None, window_size=None, pretrained_window_sizes=None, name=None, **kwargs):
    """Builds the named V2 variant ("swinv2_t", "swinv2_s", "swinv2_b" or "swinv2_l"); the
    other arguments are `build_model`'s (see `SwinV2T`). A preset name for `weights` supplies
    its window and pretrained windows unless they are given."""
    if variant not in V2_NAMES:
        raise ValueError(f"Unknown model '{variant}'; expected one of {sorted(V2_NAMES)}.")
    if isinstance(weights, str) and not is_weights_file(weights):
        _, preset_window, preset_pretrained, _ = presets.v2_preset(variant, weights, window_size)
        window_size = window_size or preset_window
        if pretrained_window_sizes is None:
            pretrained_window_sizes = preset_pretrained
    return build_model(
        V2_NAMES[variant],
        weights=weights,
        window_size=window_size or 8,
        name=name or variant,
        model_class=SwinTransformerV2,
        pretrained_window_sizes=pretrained_window_sizes,
        **kwargs,
    )


def SwinV2T(**kwargs):
    return build_model_v2("swinv2_t", **kwargs)


def SwinV2S(**kwargs):
    return build_model_v2("swinv2_s", **kwargs)


def SwinV2B(**kwargs):
    return build_model_v2("swinv2_b", **kwargs)


def SwinV2L(**kwargs):
    return build_model_v2("swinv2_l", **kwargs)


for _factory, _variant in ((SwinV2T, "swinv2_t"), (SwinV2S, "swinv2_s"), (SwinV2B, "swinv2_b"), (SwinV2L, "swinv2_l")):
    _factory.__doc__ = BASE_DOCSTRING.format(
        variant=_factory.__name__,
        drop_path_rate=MODEL_CONFIGS[V2_NAMES[_variant]]["drop_path_rate"],
        name=_variant,
    )
