"""The model families: Swin V1 (`swin`), Swin V2 (`swin_v2`), UPerNet (`upernet`) and SwinUNETR
(`swin_unetr`), each a functional `keras.Model` over `image_model.ImageModel`."""

from keras_swin.models.image_model import ImageModel
from keras_swin.models.retinanet import build_retinanet
from keras_swin.models.swin import SwinB, SwinL, SwinS, SwinT, SwinTransformer, build_model
from keras_swin.models.swin_unetr import SwinUNETR
from keras_swin.models.swin_v2 import SwinTransformerV2, SwinV2B, SwinV2L, SwinV2S, SwinV2T, build_model_v2
from keras_swin.models.upernet import UPerNet, UPerNetSwinB, UPerNetSwinL, UPerNetSwinS, UPerNetSwinT, build_upernet

__all__ = [
    "ImageModel",
    "SwinTransformer",
    "SwinT",
    "SwinS",
    "SwinB",
    "SwinL",
    "build_model",
    "SwinTransformerV2",
    "SwinV2T",
    "SwinV2S",
    "SwinV2B",
    "SwinV2L",
    "build_model_v2",
    "UPerNet",
    "UPerNetSwinT",
    "UPerNetSwinS",
    "UPerNetSwinB",
    "UPerNetSwinL",
    "build_upernet",
    "SwinUNETR",
    "build_retinanet",
]
