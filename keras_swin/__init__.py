"""keras_swin: the Swin Transformer for Keras 3."""

from keras_swin.backbone import SwinTransformer
from keras_swin.layers import (
    AdaptiveAveragePooling2D,
    BilinearResize,
    DropPath,
    PatchEmbedding,
    PatchMerging,
    PatchMergingV2,
    SwinBlock,
    SwinBlockV2,
    WindowAttention,
    WindowAttentionV2,
)
from keras_swin.models import SwinB, SwinL, SwinS, SwinT
from keras_swin.swin_v2 import SwinTransformerV2, SwinV2B, SwinV2L, SwinV2S, SwinV2T
from keras_swin.upernet import UPerNet, UPerNetSwinB, UPerNetSwinL, UPerNetSwinS, UPerNetSwinT

__version__ = "0.1.0"

__all__ = [
    "SwinTransformer",
    "SwinT",
    "SwinS",
    "SwinB",
    "SwinL",
    "PatchEmbedding",
    "PatchMerging",
    "WindowAttention",
    "SwinBlock",
    "DropPath",
    "SwinTransformerV2",
    "SwinV2T",
    "SwinV2S",
    "SwinV2B",
    "SwinV2L",
    "WindowAttentionV2",
    "SwinBlockV2",
    "PatchMergingV2",
    "UPerNet",
    "UPerNetSwinT",
    "UPerNetSwinS",
    "UPerNetSwinB",
    "UPerNetSwinL",
    "AdaptiveAveragePooling2D",
    "BilinearResize",
    "__version__",
]
