"""RetinaNet object detection over any keras_swin backbone with `pyramid_outputs`.

keras-hub's `RetinaNetObjectDetector` does the detection: its `RetinaNetBackbone` (the
feature pyramid over the encoder's P3..P5, with P6/P7 added by strided convolutions), its
`AnchorGenerator`, its label encoder (IoU matching), focal and Huber losses, and its
`NonMaxSuppression` decoder. `build_retinanet` only puts them together for a Swin V1 or V2
backbone and sizes the anchors for the input. keras-hub's own Swin cannot do this: it has no
`pyramid_outputs` and fixes its input size.

keras-hub's limits, which the builder checks rather than patches:
- The FPN upsamples each level by exactly 2, so the image sides must be divisible by
  `2**max_level` (32 for P3..P5, 128 with P7).
- The anchor generator reads the image size from the static shape, so the detector is
  built for one size: the data pipelines and `keras-swin predict` resize (or pad) images
  to it, and the SavedModel takes that size.
- The FPN and head width is 256 (not a keras-hub argument); the number of head
  convolutions (`head_conv_layers`) is.
- Non-maximum suppression is class-agnostic (one box per place, of the top class).

keras-hub is the `hub` extra: it is imported when a detector is built, not with keras_swin.
"""

import math
import sys

import numpy as np

from keras_swin.configs import MAX_IMAGE_SIZE

HUB_INSTALL = 'pip install "keras-swin[hub]"'


def _keras_hub():
    # keras-hub takes seconds to import and is an optional extra: only detectors need it.
    try:
        import keras_hub
    except ImportError as error:
        raise ImportError(f"Object detection needs keras-hub: {HUB_INSTALL}.") from error
    return keras_hub


def is_detector(model):
    """True for a keras-hub `ObjectDetector` (a RetinaNet from `build_retinanet` included).

    A detector's class comes from keras-hub, so keras-hub is loaded whenever `model` is
    one: the check never imports it for a classifier or segmenter."""
    keras_hub = sys.modules.get("keras_hub")
    return keras_hub is not None and isinstance(model, keras_hub.models.ObjectDetector)


def _check_number(name, value, low, high=None, integer=False):
    kind = "an int" if integer else "a number"
    valid = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    valid = valid and (not integer or value == int(value)) and value >= low and (high is None or value <= high)
    if not valid:
        span = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"`{name}` must be {kind} {span}; received {name}={value!r}.")


def detector_image_size(backbone, image_size, max_level):
    """The (height, width) a detector over `backbone` is built for: the backbone's fixed
    input size, else `image_size`; each side divisible by `2**max_level` (keras-hub's FPN)."""
    fixed = tuple(backbone.input.shape[1:3])
    if image_size is not None:
        pair = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(pair) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) for s in pair):
            raise ValueError(f"`image_size` must be an int or a (height, width) pair of ints; received {image_size!r}.")
        if None not in fixed and tuple(fixed) != pair:
            raise ValueError(
                f"The backbone takes images of {fixed[0]}x{fixed[1]}; received image_size={pair[0]}x{pair[1]}. "
                "Omit `image_size` or build the backbone with input_shape=(None, None, 3)."
            )
    elif None in fixed:
        raise ValueError(
            "The backbone takes images of any size; pass `image_size`: keras-hub's anchor generator needs "
            "the detector built for one size."
        )
    else:
        pair = tuple(int(s) for s in fixed)
    multiple = 2**max_level
    for side in pair:
        if not 1 <= side <= MAX_IMAGE_SIZE or side % multiple:
            raise ValueError(
                f"RetinaNet up to P{max_level} needs image sides divisible by {multiple} (keras-hub's FPN "
                f"halves each level exactly), at most {MAX_IMAGE_SIZE}; received {pair[0]}x{pair[1]}. Resize or "
                f"pad the images to a multiple of {multiple}."
            )
    return pair


def build_retinanet(
    backbone,
    num_classes,
    image_size=None,
    min_level=3,
    max_level=5,
    anchor_size=4.0,
    num_scales=3,
    aspect_ratios=(0.5, 1.0, 2.0),
    head_conv_layers=4,
    confidence_threshold=0.05,
    iou_threshold=0.5,
    max_detections=100,
    name=None,
):
    """keras-hub's RetinaNet on a keras_swin backbone (Swin V1 or V2, any pyramid model).

    The usual backbone is built with `pyramid_norm=True` (a LayerNorm per level, as the
    official detection backbones have, so that their checkpoints load) and
    `include_final_norm=False`, `always_partition=True`; `keras_swin.SwinT(...)` and the
    other factories take those arguments.

    Args:
        backbone: a model with `pyramid_outputs` "P2".."P5" (a `keras_swin.SwinTransformer`
            or `SwinTransformerV2` with 4 stages); its input may be of any size.
        num_classes: int >= 1, object classes (no background class).
        image_size: int or (height, width): the size the detector is built for, each side
            divisible by `2**max_level`; default the backbone's fixed input size.
        min_level, max_level: ints, the pyramid levels with heads (3..5 by default; 6 and 7
            are added by strided convolutions).
        anchor_size: float > 0, anchor side relative to the level's stride: the anchors of
            level l have sides `2**l * anchor_size * 2**(i / num_scales)`, i < num_scales.
            keras-hub's default 4 (32-50 px on P3) suits COCO images at 512-1024 px; use the
            smallest object's side / 8 for smaller objects.
        num_scales: int >= 1, anchor scales per level.
        aspect_ratios: sequence of floats > 0. keras-hub makes anchors of height
            `sqrt(r) * side` and width `side / sqrt(r)`: 2.0 is a tall anchor.
        head_conv_layers: int >= 0, 3x3 convolutions (256 filters) in each head before its
            output (keras-hub's `pre_logits_num_conv_layers`; 4 in the paper).
        confidence_threshold: float in [0, 1], the lowest score kept by the decoder. 0.05
            (as COCO evaluations use) keeps low-scoring boxes for the AP computation;
            filter the outputs for display.
        iou_threshold: float in [0, 1], non-maximum suppression's overlap.
        max_detections: int >= 1, boxes kept per image.
        name: str, default "retinanet_" + the backbone's name.

    Returns:
        A `keras_hub.models.RetinaNetObjectDetector` taking images `(B, H, W, 3)` (pixels in
        [0, 255] for a backbone with `include_preprocessing=True`), trained with
        `fit(images, {"boxes": (B, N, 4) yxyx pixels, "labels": (B, N)})` (padding rows:
        label -1); `predict` returns `boxes` (yxyx pixels), `labels`, `confidence` and
        `num_detections`. Saves to `.keras` and loads with `safe_mode=True`.
    """
    keras_hub = _keras_hub()
    pyramid = getattr(backbone, "pyramid_outputs", None)
    if not isinstance(pyramid, dict) or not pyramid:
        raise ValueError(
            f"`backbone` must have `pyramid_outputs` (a dict of 'P2'..'P5' feature maps); received a "
            f"{type(backbone).__name__} without them."
        )
    _check_number("num_classes", num_classes, 1, integer=True)
    _check_number("min_level", min_level, 1, 7, integer=True)
    _check_number("max_level", max_level, min_level, 7, integer=True)
    _check_number("anchor_size", anchor_size, 1e-3)
    _check_number("num_scales", num_scales, 1, integer=True)
    _check_number("head_conv_layers", head_conv_layers, 0, integer=True)
    _check_number("confidence_threshold", confidence_threshold, 0, 1)
    _check_number("iou_threshold", iou_threshold, 0, 1)
    _check_number("max_detections", max_detections, 1, integer=True)
    aspect_ratios = [float(r) for r in aspect_ratios]
    if not aspect_ratios or min(aspect_ratios) <= 0:
        raise ValueError(f"`aspect_ratios` must be positive numbers; received {aspect_ratios}.")
    # keras-hub builds P6/P7 from P5; the levels it reads from the encoder must exist.
    needed = [f"P{level}" for level in range(min_level, min(max_level, 5) + 1)]
    missing = [level for level in needed if level not in pyramid]
    if missing:
        raise ValueError(
            f"RetinaNet on P{min_level}..P{max_level} reads the backbone's {needed}; it has {sorted(pyramid)} "
            f"(missing {missing}). Use a backbone with 4 stages, or lower max_level/raise min_level."
        )
    height, width = detector_image_size(backbone, image_size, max_level)
    image_shape = (height, width, 3)
    pyramid_backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=backbone, min_level=min_level, max_level=max_level, use_p5=False, image_shape=image_shape,
    )
    anchors = keras_hub.layers.AnchorGenerator(
        "yxyx", min_level=min_level, max_level=max_level, num_scales=num_scales,
        aspect_ratios=aspect_ratios, anchor_size=float(anchor_size),
    )
    decoder = keras_hub.layers.NonMaxSuppression(
        bounding_box_format="yxyx", from_logits=True, confidence_threshold=float(confidence_threshold),
        iou_threshold=float(iou_threshold), max_detections=int(max_detections),
    )
    return keras_hub.models.RetinaNetObjectDetector(
        backbone=pyramid_backbone, num_classes=int(num_classes), bounding_box_format="yxyx",
        anchor_generator=anchors, prediction_decoder=decoder,  # keras-hub's label encoder: IoU 0.5 / 0.4
        pre_logits_num_conv_layers=int(head_conv_layers), name=name or f"retinanet_{backbone.name}",
    )


def detector_encoder(detector):
    """The image encoder (the Swin backbone) inside a RetinaNet from `build_retinanet`."""
    return detector.backbone.image_encoder


def detector_size(detector):
    """(height, width) the detector takes."""
    return tuple(int(s) for s in detector.input.shape[1:3])


def anchor_boxes(detector):
    """The detector's anchors, `(num_anchors, 4)` yxyx pixels in the order of its raw
    `bbox_regression` / `cls_logits` rows (for decoding the raw outputs elsewhere)."""
    height, width = detector_size(detector)
    levels = detector.anchor_generator(np.zeros((1, height, width, 3), "float32"))
    return np.concatenate([np.asarray(levels[level]) for level in levels], axis=0).astype("float32")
