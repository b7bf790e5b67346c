"""Every named architecture and CPU-sized configuration, as data. Imports nothing of ours.

The models, the checkpoint presets, the training recipe and the CLI read their tables here, so
that a name means the same architecture everywhere.
"""

# The largest image side any model, loader or exporter accepts: a 4096x4096 float32 batch of
# one is 200 MB; larger sides ran every resize out of memory.
MAX_IMAGE_SIZE = 4096

# ImageNet normalisation of pixels in [0, 1]; the models scale it by 255 for pixels in [0, 255].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Architecture table of the paper (Liu et al., 2021, section 3.3); Swin V2 uses the same sizes.
MODEL_CONFIGS = {
    "swin_t": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.2),
    "swin_s": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.3),
    "swin_b": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.5),
    "swin_l": dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), drop_path_rate=0.2),
}
V2_NAMES = {f"swinv2_{variant[5:]}": variant for variant in MODEL_CONFIGS}

# The ADE20K configurations of mmseg and openmmlab/upernet-swin-* (window 12 for B and L,
# whose backbones were pretrained at 384 on ImageNet-22K; drop path 0.3 throughout).
UPERNET_WINDOWS = {"swin_t": 7, "swin_s": 7, "swin_b": 12, "swin_l": 12}

# Small classifiers for CPUs and small images.
SMALL_CONFIGS = {
    "swin_digits": dict(
        # The digits are 8x8: at 16x16 a patch-2 token is one original pixel. Measured
        # alternatives are in docs/experiments.md (32x32 input: 95.8% and 2.5x the training time).
        patch_size=2, embed_dim=48, depths=(2, 4, 2), num_heads=(3, 6, 12), window_size=4,
        drop_path_rate=0.1, image_size=16,
    ),
    "swin_nano": dict(
        patch_size=2, embed_dim=32, depths=(1, 1), num_heads=(2, 4), window_size=4,
        drop_path_rate=0.0, image_size=16,
    ),
}
MODEL_NAMES = tuple(SMALL_CONFIGS) + tuple(MODEL_CONFIGS)

# Small segmenters for CPUs and small scenes.
SMALL_SEGMENTERS = {
    # Chosen on the validation scenes (docs/experiments.md). The detail branch (a 1/2-resolution
    # skip from the image) raised test mean IoU from 0.83 to 0.88 with the same recipe: the
    # 1/4-resolution output alone blurs the thin strokes.
    "upernet_swin_scenes": dict(
        backbone=dict(patch_size=4, embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), window_size=4,
                      drop_path_rate=0.0),
        channels=48,
        detail_channels=16,
        image_size=64,
    ),
    "upernet_swin_nano": dict(
        backbone=dict(patch_size=2, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
                      drop_path_rate=0.0),
        channels=16,
        image_size=32,
    ),
}
# SwinUNETR (MONAI's argument names) for `keras-swin train --task segmentation`: a CPU-sized
# config for the digit scenes and MONAI's two usual widths (feature_size 24 and 48, the
# BTCV and BraTS models of MONAI's tutorials). The training data are RGB photographs, so the
# recipe builds them with the ImageNet normalisation in the model.
UNET_SEGMENTERS = {
    "swin_unetr_scenes": dict(
        feature_size=12, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), window_size=4, image_size=64,
    ),
    "swin_unetr_small": dict(
        feature_size=24, depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24), window_size=7, image_size=256,
    ),
    "swin_unetr_base": dict(
        feature_size=48, depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24), window_size=7, image_size=256,
    ),
}
LARGE_SEGMENTERS = tuple(f"upernet_{variant}" for variant in MODEL_CONFIGS)
SEGMENTER_NAMES = tuple(SMALL_SEGMENTERS) + LARGE_SEGMENTERS + tuple(UNET_SEGMENTERS)

# Detectors for `keras-swin train --task detection`: keras-hub's RetinaNet over a Swin backbone
# (`keras_swin.models.retinanet`). `image_size` must be divisible by 2**max_level (32 for
# P3..P5). keras-hub fixes the FPN and head width at 256; `head_conv_layers` (keras-hub's
# `pre_logits_num_conv_layers`, 4 in the paper) is the knob that sets the CPU cost.
# `anchor_size` scales the anchors to each level's stride (side 2**level * anchor_size):
# 4 (keras-hub's default, 32 px on P3) suits COCO at 512-1024 px.
DETECTORS = {
    # The digit scenes (64x64, digits of 12-28 px) resized to 128: digits of 24-56 px, whose
    # smallest match P3's 24 px anchors (stride 8).
    "retinanet_swin_scenes": dict(
        backbone=dict(patch_size=4, embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), window_size=4,
                      drop_path_rate=0.0),
        image_size=128, min_level=3, max_level=5, anchor_size=3.0, aspect_ratios=(1.0, 2.0), head_conv_layers=0,
    ),
    "retinanet_swin_nano": dict(
        backbone=dict(patch_size=4, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
                      drop_path_rate=0.0),
        image_size=64, min_level=3, max_level=5, anchor_size=3.0, aspect_ratios=(1.0, 2.0), head_conv_layers=0,
    ),
    **{
        f"retinanet_{variant}": dict(variant=variant, image_size=512, min_level=3, max_level=5, anchor_size=4.0,
                                     aspect_ratios=(0.5, 1.0, 2.0), head_conv_layers=4)
        for variant in ("swin_t", "swin_s", "swin_b", "swin_l", "swinv2_t", "swinv2_s", "swinv2_b", "swinv2_l")
    },
}
DETECTOR_NAMES = tuple(DETECTORS)
