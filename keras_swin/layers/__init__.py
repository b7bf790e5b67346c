"""Serializable Swin and dense-prediction layers."""

from keras_swin.layers.adaptive_pooling import AdaptiveAveragePooling2D
from keras_swin.layers.bilinear_resize import BilinearResize
from keras_swin.layers.crop_to_reference import CropToReference
from keras_swin.layers.drop_path import DropPath
from keras_swin.layers.pad_to_multiple import PadToMultiple
from keras_swin.layers.patch_embedding import PatchEmbedding
from keras_swin.layers.patch_merging import PatchMerging
from keras_swin.layers.patch_merging_v2 import PatchMergingV2
from keras_swin.layers.swin_block import SwinBlock
from keras_swin.layers.swin_block_v2 import SwinBlockV2
from keras_swin.layers.unet_residual_block import UnetResidualBlock
from keras_swin.layers.window_attention import WindowAttention
from keras_swin.layers.window_attention_v2 import WindowAttentionV2

__all__ = [
    "AdaptiveAveragePooling2D",
    "BilinearResize",
    "CropToReference",
    "DropPath",
    "PadToMultiple",
    "PatchEmbedding",
    "PatchMerging",
    "PatchMergingV2",
    "SwinBlock",
    "SwinBlockV2",
    "UnetResidualBlock",
    "WindowAttention",
    "WindowAttentionV2",
]
