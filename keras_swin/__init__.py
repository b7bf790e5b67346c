"""keras_swin: the Swin Transformer for Keras 3."""

from keras_swin.backbone import SwinTransformer
from keras_swin.layers import DropPath, PatchEmbedding, PatchMerging, SwinBlock, WindowAttention
from keras_swin.models import SwinB, SwinL, SwinS, SwinT

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
    "__version__",
]
