"""The configuration of a training run (`TrainConfig`, what `keras-swin train` takes), the
defaults by task and by model, and the checks that refuse a bad configuration before any
work starts."""

import dataclasses
import math
import os

from keras_swin.configs import (
    DETECTOR_NAMES,
    DETECTORS,
    MAX_IMAGE_SIZE,
    MODEL_NAMES,
    SEGMENTER_NAMES,
    SMALL_CONFIGS,
    SMALL_SEGMENTERS,
    UNET_SEGMENTERS,
)
from keras_swin.data.detection import AUGMENTS as DETECTION_AUGMENTS
from keras_swin.training import outputs

SELECT_OPTIONS = ("last", "val_loss", "val_accuracy", "val_mean_iou", "val_ap50")
TASKS = ("classification", "segmentation", "detection")
STRATEGIES = ("auto", "mirrored", "multiworker")

# The defaults that depend on the task; a field left at None takes them.
TASK_DEFAULTS = {
    "classification": dict(
        data="digits", model="swin_digits", output="saved_models/swin_digits", augment="light",
        epochs=100, batch_size=64, learning_rate=2e-3, warmup_epochs=3, jit_compile=True, auxiliary_head=False,
    ),
    "segmentation": dict(
        data="digit-scenes", model="upernet_swin_scenes", output="saved_models/upernet_swin_scenes",
        # Without XLA: on 64x64 scenes its compilation (about a minute) costs more than it saves.
        # The auxiliary head (as in mmseg's UPerNet recipes) shortened the early plateau in
        # which the model predicts only background, and steadied validation IoU. AdamW 8e-3
        # ends that plateau sooner than 4e-3 (1.5e-3: none in 9 epochs; 1.2e-2: unstable).
        augment="none", epochs=18, batch_size=32, learning_rate=8e-3, warmup_epochs=2, jit_compile=False,
        auxiliary_head=True,
    ),
    # keras-hub's RetinaNet (FPN and heads 256 wide) on the digit scenes at 128x128; settings
    # chosen on the validation scenes (docs/detection.md).
    "detection": dict(
        data="digit-scenes", model="retinanet_swin_scenes", output="saved_models/retinanet_swin_scenes",
        augment="zoom-translate", epochs=6, batch_size=16, learning_rate=1e-3, warmup_epochs=1, jit_compile=False,
        auxiliary_head=False,
    ),
}
# Defaults of one model that differ from its task's; a field left at None takes them first.
# SwinUNETR has no auxiliary head (its decoder ends at full resolution). On the digit scenes it
# left the background-only start sooner with batch 16 and AdamW 1.2e-2 than with UPerNet's 32
# and 8e-3 (validation mean IoU after 6 epochs: 0.42, against 0.25 with batch 16 and 4e-3 and
# 0.23 with batch 32 and 8e-3); 12 epochs reached 0.83, and 0.88 with its Dice + cross-entropy
# loss (docs/swin_unetr.md).
MODEL_DEFAULTS = {
    name: dict(output=f"saved_models/{name}", auxiliary_head=False, batch_size=16, learning_rate=1.2e-2, epochs=12)
    for name in UNET_SEGMENTERS
}


@dataclasses.dataclass
class TrainConfig:
    task: str = "classification"
    data: str = None
    data_dir: str = None
    model: str = None
    weights: str = None
    backbone_weights: str = None
    auxiliary_head: bool = None
    image_size: int = None
    epochs: int = None
    batch_size: int = None
    learning_rate: float = None
    min_learning_rate: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: int = None
    label_smoothing: float = 0.1
    clipnorm: float = 5.0  # clips the global gradient norm, as the official code does
    drop_path_rate: float = None
    layer_decay: float = None
    freeze_backbone_epochs: int = 0
    augment: str = None
    flip: bool = False
    random_resized_crop: bool = False
    mixup: bool = False
    cutmix: bool = False
    mixed_precision: str = "off"
    jit_compile: bool = None
    # Gradient checkpointing of every Swin block (the models' `remat=True`): less memory, more time.
    remat: bool = False
    # Which weights become best.keras: "last" (the final epoch, at the end of the cosine
    # schedule), or the epoch with the lowest "val_loss" / highest "val_accuracy".
    select: str = "last"
    strategy: str = "auto"
    seed: int = 0
    output: str = None
    resume: bool = False
    # Replace an earlier run's outputs in --output (without it, such an --output is refused).
    overwrite: bool = False
    export: bool = True
    version: int = 1
    verbose: int = 1

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"--task must be one of {list(TASKS)}; received {self.task!r}.")
        model = TASK_DEFAULTS[self.task]["model"] if self.model is None else self.model
        for name, value in {**TASK_DEFAULTS[self.task], **MODEL_DEFAULTS.get(model, {})}.items():
            if getattr(self, name) is None:
                setattr(self, name, value)


def _check_detection(config):
    """The options `--task detection` refuses or bounds."""
    if config.model not in DETECTOR_NAMES:
        kind = ("a segmentation-only model" if config.model in SEGMENTER_NAMES
                else "a classification-only model" if config.model in MODEL_NAMES else "unknown")
        raise ValueError(f"--task detection needs a detector; {config.model!r} is {kind}. Expected one of "
                         f"{list(DETECTOR_NAMES)}.")
    refused = {"--freeze-backbone-epochs": config.freeze_backbone_epochs, "--layer-decay": config.layer_decay,
               "--auxiliary-head": config.auxiliary_head}
    given = [option for option, value in refused.items() if value]
    if given:
        raise ValueError(f"{', '.join(given)}: not for --task detection (classification or UPerNet options).")
    if config.select in ("val_accuracy", "val_mean_iou"):
        raise ValueError(f"--select {config.select} is for another task; use val_ap50 (or val_loss, last) for "
                         "detection.")
    multiple = 2 ** DETECTORS[config.model]["max_level"]
    if config.image_size is not None and config.image_size % multiple:
        raise ValueError(f"--image-size for {config.model} must be divisible by {multiple} (keras-hub's FPN up to "
                         f"P{DETECTORS[config.model]['max_level']}); received {config.image_size}.")


def check_config(config):
    if config.task == "detection":
        _check_detection(config)
    elif config.task == "segmentation":
        if config.model not in SEGMENTER_NAMES:
            kind = "a classification-only model" if config.model in MODEL_NAMES else "unknown"
            raise ValueError(
                f"--task segmentation needs a segmentation model; {config.model!r} is {kind}. Expected one "
                f"of {list(SEGMENTER_NAMES)}."
            )
        if config.freeze_backbone_epochs:
            raise ValueError("--freeze-backbone-epochs is for classification; received it with --task segmentation.")
        if config.select in ("val_accuracy", "val_ap50"):
            raise ValueError(f"--select {config.select} is for another task; use val_mean_iou for segmentation.")
        if config.model in UNET_SEGMENTERS and (config.auxiliary_head or config.layer_decay):
            raise ValueError(
                f"--auxiliary-head and --layer-decay are for UPerNet; {config.model!r} is a SwinUNETR (its "
                f"decoder has no auxiliary head and its layers no Swin depth order). Received "
                f"auxiliary_head={config.auxiliary_head}, layer_decay={config.layer_decay}."
            )
    elif config.model not in MODEL_NAMES:
        kind = (" (a segmentation model: add --task segmentation)" if config.model in SEGMENTER_NAMES
                else " (a detector: add --task detection)" if config.model in DETECTOR_NAMES else "")
        raise ValueError(f"Unknown model {config.model!r}{kind}; expected one of {list(MODEL_NAMES)}.")
    elif config.select in ("val_mean_iou", "val_ap50") or config.backbone_weights or config.auxiliary_head:
        raise ValueError(
            "--select val_mean_iou / val_ap50, --backbone-weights and --auxiliary-head are for --task segmentation "
            "or detection."
        )
    augments = {"segmentation": ("none", "flip-scale-crop"), "detection": DETECTION_AUGMENTS}.get(
        config.task, ("light", "randaugment", "none"))
    if config.augment not in augments:
        raise ValueError(f"--augment for --task {config.task} must be one of {list(augments)}; received {config.augment!r}.")
    if config.mixed_precision not in ("off", "float16", "bfloat16"):
        raise ValueError(
            f"--mixed-precision must be off, float16 or bfloat16; received {config.mixed_precision!r}."
        )
    if not isinstance(config.remat, bool):
        raise ValueError(f"--remat is a switch, True or False; received remat={config.remat!r}.")
    if config.select not in SELECT_OPTIONS:
        raise ValueError(f"--select must be one of {list(SELECT_OPTIONS)}; received {config.select!r}.")
    if config.strategy not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {list(STRATEGIES)}; received {config.strategy!r}.")
    if config.freeze_backbone_epochs and not config.weights:
        raise ValueError("--freeze-backbone-epochs needs --weights (a pretrained backbone).")
    _check_numbers(config)
    if config.resume and config.overwrite:
        raise ValueError("--resume continues the run in --output and --overwrite replaces it; pass one of them.")
    outputs.check_output(os.path.abspath(config.output), config.resume, config.overwrite)


def _check_number(option, value, low, high, low_open=False, high_open=False, integer=False):
    """A ValueError naming `option` unless `value` is a finite number in the range."""
    kind = "an integer" if integer else "a number"
    try:
        number = float(value)
        valid = math.isfinite(number) and (not integer or number == int(number))
    except (TypeError, ValueError):
        valid = False
    if valid:
        valid = (number > low if low_open else number >= low) and (
            high is None or (number < high if high_open else number <= high)
        )
    if not valid:
        interval = f"{'(' if low_open else '['}{low}, {'inf' if high is None else high}{')' if high_open or high is None else ']'}"
        raise ValueError(f"--{option.replace('_', '-')} must be {kind} in {interval}; received {value!r}.")


def _check_numbers(config):
    """Every number a user can type: finite and in its range (NaN, Inf, negative rates and
    zero clip norms trained silently before)."""
    _check_number("epochs", config.epochs, 1, None, integer=True)
    _check_number("batch_size", config.batch_size, 1, None, integer=True)
    _check_number("learning_rate", config.learning_rate, 0, None, low_open=True)
    _check_number("min_learning_rate", config.min_learning_rate, 0, config.learning_rate)
    _check_number("weight_decay", config.weight_decay, 0, None)
    _check_number("warmup_epochs", config.warmup_epochs, 0, None, integer=True)
    _check_number("label_smoothing", config.label_smoothing, 0, 1, high_open=True)
    _check_number("clipnorm", config.clipnorm, 0, None, low_open=True)
    if config.drop_path_rate is not None:
        _check_number("drop_path_rate", config.drop_path_rate, 0, 1, high_open=True)
    if config.layer_decay is not None:
        _check_number("layer_decay", config.layer_decay, 0, 1, low_open=True)
    if config.image_size is not None:
        _check_number("image_size", config.image_size, 1, MAX_IMAGE_SIZE, integer=True)
    _check_number("freeze_backbone_epochs", config.freeze_backbone_epochs, 0, config.epochs, integer=True, high_open=True)
    _check_number("seed", config.seed, 0, 2**32 - 1, integer=True)
    _check_number("version", config.version, 1, None, integer=True)


def image_size_for(config):
    """The training image size: `--image-size`, else the model's own (the small models' and
    SwinUNETR's, `keras_swin.configs`), else 224 for a classifier and 512 for a segmenter."""
    if config.image_size is not None:
        return config.image_size
    if config.task == "detection":
        return DETECTORS[config.model]["image_size"]
    small = {**SMALL_SEGMENTERS, **UNET_SEGMENTERS} if config.task == "segmentation" else SMALL_CONFIGS
    if "image_size" in small.get(config.model, {}):
        return small[config.model]["image_size"]
    return 512 if config.task == "segmentation" else 224
