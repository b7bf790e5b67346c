"""SwinTransformer, the functional Swin model with multi-scale `pyramid_outputs`, and the
keras.applications-style factories SwinT / SwinS / SwinB / SwinL over it."""

import keras
import numpy as np

from keras_swin.checkpoints import swin as swin_checkpoints
from keras_swin.configs import IMAGENET_MEAN, IMAGENET_STD, MODEL_CONFIGS
from keras_swin.cpu import prefers_xla
from keras_swin.layers import PatchEmbedding, PatchMerging, SwinBlock
from keras_swin.models.image_model import ImageModel, check_input_shape, image_input, resolve_dtype_policy
from keras_swin.utils import check_rates, check_stages

POOLINGS = (None, "avg", "max")
# Variables that the official and timm recipes leave out of weight decay (timm's
# `no_weight_decay`): biases, norm scales and offsets, and the relative position bias tables.
NO_DECAY_NAMES = ("bias", "gamma", "beta", "relative_position_bias_table")


def _check_architecture(embed_dim, depths, num_heads, window_size, pooling, include_top, include_final_norm, classes):
    if len(depths) != len(num_heads) or not depths:
        raise ValueError(
            "`depths` and `num_heads` must be non-empty and of the same length; received "
            f"depths={depths} ({len(depths)} stages) and num_heads={num_heads} "
            f"({len(num_heads)} stages)."
        )
    check_stages(depths, num_heads, embed_dim, "embed_dim")
    if int(window_size) < 1:
        raise ValueError(f"`window_size` must be >= 1; received window_size={window_size}.")
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {POOLINGS}; received pooling={pooling!r}.")
    if include_top and not include_final_norm:
        raise ValueError(
            "The classifier needs the final norm: received include_top=True with "
            "include_final_norm=False; expected include_final_norm=True."
        )
    if include_top and int(classes) < 1:
        raise ValueError(f"`classes` must be >= 1 with include_top=True; received {classes}.")


class SwinStage:
    """The layers of one stage: its blocks (regular and shifted windows alternating), an
    optional LayerNorm on its pyramid output, and the patch merging after it (None for the
    last stage). Calling it on a map returns `(pyramid level, input of the next stage)`."""

    def __init__(self, blocks, output_norm, merging):
        self.blocks, self.output_norm, self.merging = blocks, output_norm, merging

    def __call__(self, x):
        for block in self.blocks:
            x = block(x)
        level = self.output_norm(x) if self.output_norm is not None else x
        return level, (self.merging(x) if self.merging is not None else x)


@keras.saving.register_keras_serializable(package="keras_swin")
class SwinTransformer(ImageModel):
    """Swin Transformer (Liu et al., 2021) as a functional Keras model.

    The model embeds 4x4 patches, runs `len(depths)` stages of Swin blocks (regular and
    shifted windows alternating) with patch merging between stages, and applies a final
    LayerNorm; optionally pooling and a classifier head follow.

    `pyramid_outputs` maps "P2".."P{n+1}" to each stage's output (before the next patch
    merging and before the final norm) in NHWC: stride `patch_size * 2**i`, channels
    `embed_dim * 2**i`, size `ceil(H / stride) x ceil(W / stride)`.

    Args:
        patch_size: int, patch side. Default 4.
        embed_dim: int, channels C of the first stage. Default 96.
        depths: sequence of ints, blocks per stage. Default (2, 2, 6, 2).
        num_heads: sequence of ints, heads per stage. Default (3, 6, 12, 24).
        window_size: int, attention window M. Default 7.
        mlp_ratio: float. Default 4.0.
        qkv_bias: bool. Default True.
        dropout_rate: float in [0, 1). Default 0.
        attention_dropout_rate: float in [0, 1). Default 0.
        drop_path_rate: float in [0, 1), stochastic depth of the last block; it grows
            linearly from 0 over the blocks. Default 0.2.
        norm_epsilon: float. Default 1e-5.
        include_top: bool, add pooling and a Dense classifier. Default False.
        pooling: None, "avg" or "max"; pooling of the final map when `include_top=False`.
        classes: int, classifier outputs. Default 1000.
        classifier_activation: str or None. Default "softmax".
        include_preprocessing: bool, inputs are pixels in [0, 255] normalised in the
            model with the ImageNet mean and std. Default True.
        pyramid_norm: bool, give every `pyramid_outputs` level its own LayerNorm, as the
            detection and segmentation backbones do (official `norm0..norm3`, mmseg
            `backbone.norm{i}`, Hugging Face `hidden_states_norms`). Default False.
        always_partition: bool, keep the window and the shift on maps smaller than the
            window, as the detection and segmentation backbones (mmseg, Hugging Face
            `SwinBackbone`) do; the classifiers shrink the window to the map instead.
            Default False.
        include_final_norm: bool, apply the final LayerNorm to the last stage. A backbone
            used only for its pyramid (UPerNet, detectors) leaves it out, so that it has
            no weights without gradients. Requires `include_top=False`. Default True.
        remat: bool, gradient checkpointing of every Swin block (`SwinBlock(remat=True)`,
            through `keras.remat`): in training, each block keeps only its input for the
            backward pass and recomputes its activations there, with the same dropout and
            stochastic-depth masks. Less memory for more compute; outputs, gradients and
            the inference graph (predict, export) are unchanged. Default False.
        input_shape: (H, W, 3); H and W may be None. Default (None, None, 3).
        input_tensor: optional Keras tensor to build the model on.
        weights: None, a path to weights or a preset name (see `keras_swin.checkpoints.swin`).
        name: str.
        dtype: None, a dtype policy name (e.g. "mixed_bfloat16") or a
            `keras.DTypePolicy`, used by every layer; None means the global policy. The
            classifier head always computes in float32.

    Input shape: `(B, H, W, 3)`; any other rank or channel count is a ValueError.
    Output shape: `(B, classes)` with a head; `(B, 8C)` with pooling; otherwise the
        normalised final map `(B, ceil(H/32), ceil(W/32), 8C)` (for 4 stages), which is
        the last pyramid level when `include_final_norm=False`.
    """

    def __init__(
        self,
        patch_size=4,
        embed_dim=96,
        depths=(2, 2, 6, 2),
        num_heads=(3, 6, 12, 24),
        window_size=7,
        mlp_ratio=4.0,
        qkv_bias=True,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.2,
        norm_epsilon=1e-5,
        include_top=False,
        pooling=None,
        classes=1000,
        classifier_activation="softmax",
        include_preprocessing=True,
        pyramid_norm=False,
        include_final_norm=True,
        always_partition=False,
        remat=False,
        input_shape=None,
        input_tensor=None,
        weights=None,
        name="swin_transformer",
        dtype=None,
        **kwargs,
    ):
        depths = tuple(int(d) for d in depths)
        num_heads = tuple(int(h) for h in num_heads)
        _check_architecture(embed_dim, depths, num_heads, window_size, pooling, include_top, include_final_norm, classes)
        check_rates(
            dropout_rate=dropout_rate, attention_dropout_rate=attention_dropout_rate, drop_path_rate=drop_path_rate
        )
        if input_tensor is not None and input_shape is None:
            input_shape = tuple(input_tensor.shape[1:])
        input_shape = check_input_shape(input_shape, 3)
        policy = resolve_dtype_policy(dtype)

        # === Layers ===
        preprocessing = (
            keras.layers.Normalization(
                mean=[255.0 * m for m in IMAGENET_MEAN],
                variance=[(255.0 * s) ** 2 for s in IMAGENET_STD],
                name="preprocessing",
                dtype=policy,
            )
            if include_preprocessing
            else None
        )
        patch_embedding = PatchEmbedding(
            patch_size, embed_dim, norm_epsilon=norm_epsilon, name="patch_embedding", dtype=policy
        )
        stages = self._make_stages(
            depths, num_heads, window_size, drop_path_rate, pyramid_norm, policy,
            mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, dropout_rate=dropout_rate,
            attention_dropout_rate=attention_dropout_rate, norm_epsilon=norm_epsilon,
            always_partition=always_partition, remat=bool(remat),
        )
        final_norm = (
            keras.layers.LayerNormalization(epsilon=norm_epsilon, name="final_norm", dtype=policy)
            if include_final_norm
            else None
        )

        # === Functional graph ===
        inputs = image_input(input_shape, input_tensor)
        x = preprocessing(inputs) if preprocessing is not None else inputs
        x = patch_embedding(x)
        if dropout_rate:
            x = keras.layers.Dropout(dropout_rate, name="embedding_dropout", dtype=policy)(x)
        pyramid_outputs = {}
        for stage, swin_stage in enumerate(stages):
            level, x = swin_stage(x)
            pyramid_outputs[f"P{stage + 2}"] = level
        x = final_norm(x) if final_norm is not None else level
        x = self._head(x, include_top, pooling, classes, classifier_activation, policy)
        super().__init__(inputs=inputs, outputs=x, name=name, **kwargs)
        self.dtype_policy = policy

        # === Config ===
        self.patch_size = int(patch_size)
        self.embed_dim = int(embed_dim)
        self.depths = depths
        self.num_heads = num_heads
        self.window_size = int(window_size)
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.dropout_rate = float(dropout_rate)
        self.attention_dropout_rate = float(attention_dropout_rate)
        self.drop_path_rate = float(drop_path_rate)
        self.norm_epsilon = float(norm_epsilon)
        self.include_top = bool(include_top)
        self.pooling = pooling
        self.classes = int(classes)
        self.classifier_activation = classifier_activation
        self.include_preprocessing = bool(include_preprocessing)
        self.pyramid_norm = bool(pyramid_norm)
        # The norms of P2..P{n} are not on the path to the model's output, so the functional
        # graph does not hold them; tracking them here keeps them in `weights` and in
        # saved files.
        self.pyramid_norm_layers = [stage.output_norm for stage in stages if stage.output_norm is not None]
        self.include_final_norm = bool(include_final_norm)
        self.always_partition = bool(always_partition)
        self.remat = bool(remat)
        self.image_shape = input_shape
        self.pyramid_outputs = pyramid_outputs

        if weights is not None:
            self.load_checkpoint(weights)

    def _make_stages(self, depths, num_heads, window_size, drop_path_rate, pyramid_norm, policy, **block_kwargs):
        """One `SwinStage` per stage; stochastic depth grows linearly over all blocks."""
        block_rates = np.linspace(0.0, drop_path_rate, sum(depths)).tolist()
        norm_epsilon = block_kwargs["norm_epsilon"]
        stages = []
        for stage, (depth, heads) in enumerate(zip(depths, num_heads)):
            blocks = [
                self._make_block(
                    stage,
                    heads,
                    window_size=window_size,
                    shift_size=0 if index % 2 == 0 else window_size // 2,
                    drop_path_rate=block_rates[sum(depths[:stage]) + index],
                    name=f"stage{stage + 1}_block{index + 1}",
                    dtype=policy,
                    **block_kwargs,
                )
                for index in range(depth)
            ]
            merging = (
                self._make_merging(norm_epsilon=norm_epsilon, name=f"stage{stage + 1}_merging", dtype=policy)
                if stage < len(depths) - 1
                else None
            )
            output_norm = (
                keras.layers.LayerNormalization(
                    epsilon=norm_epsilon, name=f"stage{stage + 1}_output_norm", dtype=policy
                )
                if pyramid_norm
                else None
            )
            stages.append(SwinStage(blocks, output_norm, merging))
        return stages

    @staticmethod
    def _head(x, include_top, pooling, classes, classifier_activation, policy):
        """Pooling and the classifier (include_top), or the optional pooling of a backbone."""
        if include_top:
            x = keras.layers.GlobalAveragePooling2D(name="avg_pool", dtype=policy)(x)
            return keras.layers.Dense(
                classes,
                activation=classifier_activation,
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                # Probabilities stay float32 under mixed precision.
                dtype="float32",
                name="predictions",
            )(x)
        if pooling == "avg":
            return keras.layers.GlobalAveragePooling2D(name="avg_pool", dtype=policy)(x)
        if pooling == "max":
            return keras.layers.GlobalMaxPooling2D(name="max_pool", dtype=policy)(x)
        return x

    def _make_block(self, stage, num_heads, **kwargs):
        """The block of a stage (Swin V2 overrides it)."""
        return SwinBlock(num_heads, **kwargs)

    def _make_merging(self, **kwargs):
        """The patch merging after a stage (Swin V2 overrides it)."""
        return PatchMerging(**kwargs)

    def checkpoint_version(self):
        """The Swin version whose checkpoint layout this model takes (V2 overrides it)."""
        return 1

    def load_checkpoint(self, weights):
        """Loads `weights` (a file or a preset name) with this family's checkpoint mapping
        (`keras_swin.checkpoints.swin.load_weights`); returns the layout loaded."""
        return swin_checkpoints.load_weights(self, weights)

    def no_weight_decay(self):
        """Name fragments of the variables that the recipe does not decay."""
        return NO_DECAY_NAMES

    def _resolve_auto_jit_compile(self):
        """What `jit_compile="auto"` (the default of `compile`, `fit` and `predict`) means.

        On a TensorFlow CPU the Keras default is no XLA; for this model the faster path
        depends on the precision and the CPU (`keras_swin.cpu.prefers_xla`, measured in
        benchmarks/RESULTS.md and PROFILE.md). In float32, XLA, which fuses the LayerNorm,
        bias, mask and residual element-wise work that otherwise makes one memory pass per
        op. In float16 and bfloat16, oneDNN's graph where the CPU has native bf16 kernels
        (AVX-512 BF16, AMX), else XLA. Other devices and backends keep Keras's choice.
        """
        if keras.backend.backend() == "tensorflow" and not self._distribute_strategy:
            import tensorflow as tf  # the TensorFlow backend is running, so this is loaded

            cpu_only = not [d for d in tf.config.list_physical_devices() if d.device_type != "CPU"]
            if cpu_only:
                return prefers_xla(self.dtype_policy.compute_dtype)
        return super()._resolve_auto_jit_compile()

    def get_config(self):
        return {
            **super().get_config(),
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
            "depths": list(self.depths),
            "num_heads": list(self.num_heads),
            "window_size": self.window_size,
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "dropout_rate": self.dropout_rate,
            "attention_dropout_rate": self.attention_dropout_rate,
            "drop_path_rate": self.drop_path_rate,
            "norm_epsilon": self.norm_epsilon,
            "include_top": self.include_top,
            "pooling": self.pooling,
            "classes": self.classes,
            "classifier_activation": self.classifier_activation,
            "include_preprocessing": self.include_preprocessing,
            "pyramid_norm": self.pyramid_norm,
            "include_final_norm": self.include_final_norm,
            "always_partition": self.always_partition,
            "remat": self.remat,
            "input_shape": list(self.image_shape),
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
        remat: bool, gradient checkpointing of every Swin block in training: less memory,
            more compute, the same outputs and gradients. Default False.
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
    remat=False,
    name=None,
    dtype=None,
    model_class=None,
    **version_kwargs,
):
    """Builds the named variant ("swin_t", "swin_s", "swin_b" or "swin_l"); see `SwinT`.
    `model_class` and `version_kwargs` build the same configuration with another model
    (Swin V2: `SwinTransformerV2` and its `pretrained_window_sizes`)."""
    if variant not in MODEL_CONFIGS:
        raise ValueError(f"Unknown model '{variant}'; expected one of {sorted(MODEL_CONFIGS)}.")
    model_class = model_class or SwinTransformer
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
        remat=remat,
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
