"""SwinUNETR (Hatamizadeh et al., 2022) in 2D: a Swin encoder whose five hidden states feed a
U-Net decoder of residual conv blocks, exact against MONAI's
`monai.networks.nets.SwinUNETR(spatial_dims=2)`."""

import keras
import numpy as np

from keras_swin.checkpoints import swin_unetr as swin_unetr_checkpoints
from keras_swin.configs import IMAGENET_MEAN, IMAGENET_STD
from keras_swin.layers import (
    CropToReference,
    PadToMultiple,
    PatchEmbedding,
    PatchMerging,
    SwinBlock,
    UnetResidualBlock,
)
from keras_swin.layers.initializers import conv_bias_initializer, conv_kernel_initializer
from keras_swin.models.image_model import ImageModel, resolve_dtype_policy
from keras_swin.utils import check_rates, check_stages

PATCH_SIZE = 2
# The patch embedding and four patch mergings halve the map five times.
STRIDE = PATCH_SIZE * 2**4
NUM_STAGES = 4
NORMS = ("instance", "batch")
# MONAI's two downsampling modules. In 2D both run the same code (MONAI's `PatchMerging`
# hands 4D inputs to `PatchMergingV2.forward`): the 2x2 neighbourhood in the official Swin
# order, LayerNorm(4C), a bias-free Linear to 2C, which is keras_swin's `PatchMerging`.
DOWNSAMPLES = ("merging", "mergingv2")
LEVELS = ("P1", "P2", "P3", "P4", "P5")
NO_DECAY_NAMES = ("bias", "gamma", "beta", "relative_position_bias_table")


def _check_arguments(in_channels, out_channels, feature_size, depths, num_heads, window_size, norm_name, downsample):
    sizes = {"in_channels": in_channels, "out_channels": out_channels, "feature_size": feature_size}
    for arg_name, value in sizes.items():
        if int(value) < 1:
            raise ValueError(f"`{arg_name}` must be >= 1; received {arg_name}={value}.")
    if len(depths) != NUM_STAGES or len(num_heads) != NUM_STAGES:
        raise ValueError(
            f"`depths` and `num_heads` must have {NUM_STAGES} entries, one per stage (the decoder takes "
            f"five hidden states); received depths={depths} and num_heads={num_heads}."
        )
    check_stages(depths, num_heads, feature_size, "feature_size")
    if isinstance(window_size, (tuple, list)) or int(window_size) < 1:
        raise ValueError(f"`window_size` must be an int >= 1 (a square window); received window_size={window_size!r}.")
    if norm_name not in NORMS:
        raise ValueError(f"`norm_name` must be one of {NORMS}; received norm_name={norm_name!r}.")
    if downsample not in DOWNSAMPLES:
        raise ValueError(f"`downsample` must be one of {DOWNSAMPLES}; received downsample={downsample!r}.")


# --------------------------------------------------------------------------- encoder and decoder pieces
# Each piece adds layers to a functional graph. Layer names are stable: the checkpoint mapping
# (`keras_swin.checkpoints.swin_unetr`) finds the layers by them.


def swin_encoder(images, feature_size, depths, num_heads, window_size, use_v2, policy, drop_rate=0.0,
                 attn_drop_rate=0.0, dropout_path_rate=0.0, qkv_bias=True, mlp_ratio=4.0, remat=False):
    """MONAI's `SwinTransformer` on `images` (H and W multiples of 32): a 2x2 patch
    embedding without norm, then four stages, each (with `use_v2`) a residual conv block,
    Swin blocks under MONAI's window rule (`SwinBlock(per_axis_window=True)`) and a patch
    merging. Returns the five hidden states, before their norm: the embedding and every
    stage's merged output, `feature_size * 2**i` channels at stride `2**(i + 1)`. With
    `remat`, each Swin block is checkpointed in training (`SwinBlock(remat=True)`)."""
    x = PatchEmbedding(PATCH_SIZE, feature_size, use_norm=False, name="patch_embedding", dtype=policy)(images)
    if drop_rate:
        x = keras.layers.Dropout(drop_rate, name="embedding_dropout", dtype=policy)(x)
    hidden_states = [x]
    block_rates = np.linspace(0.0, dropout_path_rate, sum(depths)).tolist()
    for stage, (depth, heads) in enumerate(zip(depths, num_heads)):
        if use_v2:
            # MONAI's V2 conv block is instance-normed whatever `norm_name` says.
            x = UnetResidualBlock(x.shape[-1], norm="instance", name=f"stage{stage + 1}_conv_block", dtype=policy)(x)
        for index in range(depth):
            x = SwinBlock(
                heads,
                window_size=window_size,
                shift_size=0 if index % 2 == 0 else window_size // 2,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                dropout_rate=drop_rate,
                attention_dropout_rate=attn_drop_rate,
                drop_path_rate=block_rates[sum(depths[:stage]) + index],
                per_axis_window=True,
                remat=remat,
                name=f"stage{stage + 1}_block{index + 1}",
                dtype=policy,
            )(x)
        x = PatchMerging(name=f"stage{stage + 1}_merging", dtype=policy)(x)
        hidden_states.append(x)
    return hidden_states


def unetr_up_block(x, skip, filters, prefix, norm, policy):
    """MONAI's `UnetrUpBlock`: a 2x2 stride-2 transposed conv (no bias) to `filters`, the
    skip concatenated after it, and a residual conv block."""
    x = keras.layers.Conv2DTranspose(
        filters,
        2,
        strides=2,
        use_bias=False,
        kernel_initializer=conv_kernel_initializer(),
        dtype=policy,
        name=f"{prefix}_upsample",
    )(x)
    x = keras.layers.Concatenate(dtype=policy, name=f"{prefix}_concat")([x, skip])
    return UnetResidualBlock(filters, norm=norm, name=f"{prefix}_block", dtype=policy)(x)


@keras.saving.register_keras_serializable(package="keras_swin")
class SwinUNETR(ImageModel):
    """SwinUNETR (Hatamizadeh et al., 2022) for 2D images, as MONAI's
    `SwinUNETR(spatial_dims=2)`, with MONAI's argument names.

    The Swin encoder embeds 2x2 patches (no norm) and runs four stages of Swin blocks
    (regular and shifted windows alternating), each followed by a patch merging. Its five
    hidden states (the embedding and each stage's output) go through a LayerNorm without
    learned scale or offset (`normalize=True`, MONAI's `proj_out`). The decoder runs a
    residual conv block (`UnetResidualBlock`) on the image and on the first three hidden
    states, one on the last, then five up blocks (2x2 transposed conv, the skip
    concatenated, a residual block) back to the image size, and a 1x1 conv to the logits.

    Swin blocks follow MONAI's rule on small maps: on each axis where the map is at most
    `window_size`, the window shrinks to the map and that axis is not shifted, and the bias
    is read as MONAI reads it (`SwinBlock(per_axis_window=True)`).

    MONAI requires H and W divisible by 32; this model takes any size in one graph: the
    image is zero-padded at the bottom and right to a multiple of 32 and the logits are
    cropped back, so it equals MONAI run on the zero-padded image, cropped.

    `pyramid_outputs` maps "P1".."P5" to the hidden states the decoder takes (normalised
    when `normalize=True`), NHWC: stride `2**n`, `feature_size * 2**(n - 1)` channels, size
    that of the padded image divided by the stride. "P2".."P5" serve a decoder such as
    `keras_swin.UPerNet`.

    Args:
        in_channels: int, channels of the input images (1 for CT or MRI, 4 for four MRI
            sequences, ...). Images are taken as they are, already normalised, unless
            `include_preprocessing=True`.
        out_channels: int, channels of the logits (classes).
        feature_size: int, channels C of the first stage. Default 24.
        depths: 4 ints, Swin blocks per stage. Default (2, 2, 2, 2).
        num_heads: 4 ints, heads per stage; each divides its stage's width
            `feature_size * 2**i`. Default (3, 6, 12, 24).
        window_size: int, attention window M. Default 7.
        norm_name: "instance" or "batch", the decoder's norm (see `UnetResidualBlock`).
            Default "instance".
        normalize: bool, the parameter-free LayerNorm on each hidden state. Default True.
        use_v2: bool, SwinUNETR-V2: a residual conv block (instance norm) at the start of
            each stage. Default False.
        downsample: "merging" or "mergingv2", MONAI's downsampling modules, which are the
            same in 2D. Default "merging".
        drop_rate: float in [0, 1), dropout after the patch embedding, the attention
            projections and the MLP layers. Default 0.
        attn_drop_rate: float in [0, 1), dropout on attention weights. Default 0.
        dropout_path_rate: float in [0, 1), stochastic depth of the last block, growing
            linearly from 0 over the blocks. Default 0.
        qkv_bias: bool. Default True.
        mlp_ratio: float. Default 4.0.
        include_preprocessing: bool, take RGB pixels in [0, 255] and normalise them with the
            ImageNet mean and std in the model, as the other keras_swin models do (for
            photographs, such as the digit scenes; needs `in_channels=3`). Default False:
            images are taken as MONAI takes them, already normalised.
        remat: bool, gradient checkpointing of every Swin block of the encoder in training
            (MONAI's `use_checkpoint`, through `keras.remat`): each block keeps only its
            input for the backward pass and recomputes its activations there. Less memory
            for more compute; outputs, gradients and the inference graph are unchanged.
            Default False.
        weights: None, or a path to weights: a Keras file, or a MONAI checkpoint (a whole
            SwinUNETR, or the self-supervised encoder of MONAI's tutorials, which leaves the
            decoder freshly initialised); see `keras_swin.checkpoints.swin_unetr`.
        name: str. Default "swin_unetr".
        dtype: None (the global policy), a policy name such as "mixed_bfloat16", or a
            `keras.DTypePolicy`. The output conv and crop compute in float32.

    Input shape: `(B, H, W, in_channels)`, any H and W; any other rank or channel count is
        a ValueError.
    Output shape: logits `(B, H, W, out_channels)`.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        feature_size=24,
        depths=(2, 2, 2, 2),
        num_heads=(3, 6, 12, 24),
        window_size=7,
        norm_name="instance",
        normalize=True,
        use_v2=False,
        downsample="merging",
        drop_rate=0.0,
        attn_drop_rate=0.0,
        dropout_path_rate=0.0,
        qkv_bias=True,
        mlp_ratio=4.0,
        include_preprocessing=False,
        remat=False,
        weights=None,
        name="swin_unetr",
        dtype=None,
        **kwargs,
    ):
        depths = tuple(int(d) for d in depths)
        num_heads = tuple(int(h) for h in num_heads)
        _check_arguments(in_channels, out_channels, feature_size, depths, num_heads, window_size, norm_name, downsample)
        check_rates(drop_rate=drop_rate, attn_drop_rate=attn_drop_rate, dropout_path_rate=dropout_path_rate)
        if include_preprocessing and int(in_channels) != 3:
            raise ValueError(
                "`include_preprocessing=True` normalises RGB pixels with the ImageNet mean and std and needs "
                f"in_channels=3; received in_channels={in_channels}."
            )
        in_channels, out_channels, feature_size = int(in_channels), int(out_channels), int(feature_size)
        window_size = int(window_size)
        policy = resolve_dtype_policy(dtype)

        # === Functional graph ===
        inputs = keras.Input(shape=(None, None, in_channels), name="images")
        x = inputs
        if include_preprocessing:
            x = keras.layers.Normalization(
                mean=[255.0 * m for m in IMAGENET_MEAN],
                variance=[(255.0 * s) ** 2 for s in IMAGENET_STD],
                name="preprocessing",
                dtype=policy,
            )(x)
        padded = PadToMultiple(STRIDE, name="pad", dtype=policy)(x)
        hidden_states = swin_encoder(
            padded, feature_size, depths, num_heads, window_size, use_v2, policy, drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate, dropout_path_rate=dropout_path_rate, qkv_bias=qkv_bias,
            mlp_ratio=mlp_ratio, remat=bool(remat),
        )
        if normalize:
            hidden_states = [
                keras.layers.LayerNormalization(
                    epsilon=1e-5, center=False, scale=False, name=f"hidden{index}_norm", dtype=policy
                )(state)
                for index, state in enumerate(hidden_states)
            ]

        def residual_block(x, filters, block_name):
            return UnetResidualBlock(filters, norm=norm_name, name=block_name, dtype=policy)(x)

        # MONAI's module names: encoder1 on the image, encoder2..4 on hidden states 0..2,
        # encoder10 on the last; hidden state 3 is decoder5's skip as it is.
        skips = [
            residual_block(padded, feature_size, "encoder1"),
            residual_block(hidden_states[0], feature_size, "encoder2"),
            residual_block(hidden_states[1], 2 * feature_size, "encoder3"),
            residual_block(hidden_states[2], 4 * feature_size, "encoder4"),
            hidden_states[3],
        ]
        x = residual_block(hidden_states[4], 16 * feature_size, "encoder10")
        for level in range(NUM_STAGES, -1, -1):
            filters = feature_size * 2 ** max(level - 1, 0)
            x = unetr_up_block(x, skips[level], filters, f"decoder{level + 1}", norm_name, policy)
        logits = keras.layers.Conv2D(
            out_channels,
            1,
            kernel_initializer=conv_kernel_initializer(),
            bias_initializer=conv_bias_initializer(feature_size),
            # Logits stay float32 under mixed precision.
            dtype="float32",
            name="output_conv",
        )(x)
        logits = CropToReference(name="crop", dtype="float32")([logits, inputs])
        super().__init__(inputs=inputs, outputs=logits, name=name, **kwargs)
        self.dtype_policy = policy

        # === Config ===
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.feature_size = feature_size
        self.depths = depths
        self.num_heads = num_heads
        self.window_size = window_size
        self.norm_name = norm_name
        self.normalize = bool(normalize)
        self.use_v2 = bool(use_v2)
        self.downsample = downsample
        self.drop_rate = float(drop_rate)
        self.attn_drop_rate = float(attn_drop_rate)
        self.dropout_path_rate = float(dropout_path_rate)
        self.qkv_bias = bool(qkv_bias)
        self.mlp_ratio = float(mlp_ratio)
        self.include_preprocessing = bool(include_preprocessing)
        self.remat = bool(remat)
        self.pyramid_outputs = dict(zip(LEVELS, hidden_states))

        if weights is not None:
            self.load_checkpoint(weights)

    @property
    def input_channels(self):
        """The channels that ImageModel's input checks expect."""
        return self.in_channels

    def load_checkpoint(self, weights):
        """Loads `weights` (a file) with this family's mapping
        (`keras_swin.checkpoints.swin_unetr.load_weights`); returns the layout loaded."""
        return swin_unetr_checkpoints.load_weights(self, weights)

    def no_weight_decay(self):
        """Name fragments of the variables that the recipe does not decay: biases, norm
        scales and offsets (BatchNorm's with norm_name="batch"), the bias tables."""
        return NO_DECAY_NAMES

    def get_config(self):
        return {
            **super().get_config(),
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "feature_size": self.feature_size,
            "depths": list(self.depths),
            "num_heads": list(self.num_heads),
            "window_size": self.window_size,
            "norm_name": self.norm_name,
            "normalize": self.normalize,
            "use_v2": self.use_v2,
            "downsample": self.downsample,
            "drop_rate": self.drop_rate,
            "attn_drop_rate": self.attn_drop_rate,
            "dropout_path_rate": self.dropout_path_rate,
            "qkv_bias": self.qkv_bias,
            "mlp_ratio": self.mlp_ratio,
            "include_preprocessing": self.include_preprocessing,
            "remat": self.remat,
        }
