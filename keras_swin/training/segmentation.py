"""The segmentation recipe: UPerNet on a Swin backbone or SwinUNETR, pixel cross-entropy that
ignores 255 (plus UPerNet's auxiliary head at 0.4; SwinUNETR: MONAI's Dice + cross-entropy), the classification recipe's AdamW, schedule, clipping,
mixed precision, XLA, resume and seed, IoU metrics, mask plots and export.

`keras-swin train --task segmentation` runs `train_segmentation(config, strategy)`.
"""

import os

import keras
import numpy as np

from keras_swin.configs import SMALL_SEGMENTERS, UNET_SEGMENTERS
from keras_swin.data import segmentation as segmentation_data
from keras_swin.data.segmentation import IGNORE_INDEX
from keras_swin.models.swin import SwinTransformer
from keras_swin.models.swin_unetr import SwinUNETR
from keras_swin.models.upernet import UPerNet, build_upernet
from keras_swin.training import recipe

AUXILIARY_WEIGHT = 0.4
# A fixed palette: background black, then distinct colours (repeating after 20 classes).
PALETTE = np.array(
    [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128],
     [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0], [170, 255, 195], [128, 128, 0],
     [255, 215, 180], [0, 0, 128]], dtype=np.uint8,
)
IGNORE_COLOUR = (128, 128, 128)


def create_swin_unetr(config, num_classes):
    """The SwinUNETR for `config.model`: RGB pixels in [0, 255] normalised in the model (the
    task's data are photographs), `--drop-path-rate` as MONAI's `dropout_path_rate`, and
    `--backbone-weights` (a Swin classifier checkpoint) into the encoder."""
    settings = {k: v for k, v in UNET_SEGMENTERS[config.model].items() if k != "image_size"}
    if config.drop_path_rate is not None:
        settings["dropout_path_rate"] = config.drop_path_rate
    model = SwinUNETR(in_channels=3, out_channels=num_classes, include_preprocessing=True, remat=config.remat,
                      name=config.model, **settings)
    if config.backbone_weights:
        model.load_checkpoint(config.backbone_weights)
    return model


def has_auxiliary_head(model):
    """True for a UPerNet built with the auxiliary head (a second output to train)."""
    return isinstance(model, UPerNet) and model.auxiliary_head


def create_segmenter(config, num_classes):
    """The UPerNet or SwinUNETR for `config.model` with `num_classes` classes."""
    auxiliary = config.auxiliary_head
    if config.model in UNET_SEGMENTERS:
        model = create_swin_unetr(config, num_classes)
    elif config.model in SMALL_SEGMENTERS:
        settings = SMALL_SEGMENTERS[config.model]
        backbone_settings = dict(settings["backbone"])
        if config.drop_path_rate is not None:
            backbone_settings["drop_path_rate"] = config.drop_path_rate
        backbone = SwinTransformer(
            **backbone_settings, pyramid_norm=True, include_final_norm=False, always_partition=True,
            remat=config.remat, weights=config.backbone_weights, name=f"{config.model}_backbone",
        )
        model = UPerNet(backbone, num_classes=num_classes, channels=settings["channels"],
                        detail_channels=settings.get("detail_channels", 0),
                        auxiliary_head=auxiliary, auxiliary_channels=settings["channels"], name=config.model)
    else:
        model = build_upernet(
            config.model.replace("upernet_", ""), num_classes=num_classes, backbone_weights=config.backbone_weights,
            auxiliary_head=auxiliary, drop_path_rate=0.3 if config.drop_path_rate is None else config.drop_path_rate,
            remat=config.remat, name=config.model,
        )
    if config.weights:
        model.load_checkpoint(config.weights)
    return model


def segmentation_loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE_INDEX)


@keras.saving.register_keras_serializable(package="keras_swin")
class DiceCrossEntropy(keras.losses.Loss):
    """Soft Dice plus pixel cross-entropy on logits `(batch, H, W, classes)` and class maps
    `(batch, H, W)`, as MONAI's `DiceCELoss(to_onehot_y=True, softmax=True)` (its defaults:
    Dice per image and class, background included, smoothing 1e-5, both terms weighted 1),
    with the pixels labelled `ignore_class` left out of both terms. Keras's `Dice` loss takes no
    ignored class and pools the whole batch, and MONAI's has no ignored class, hence this one.

    MONAI trains SwinUNETR with it: the Dice term weighs small classes up from the first step.
    """

    def __init__(self, ignore_class=IGNORE_INDEX, smooth=1e-5, name="dice_cross_entropy",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.ignore_class = ignore_class
        self.smooth = smooth

    def call(self, y_true, y_pred):
        labels = keras.ops.cast(y_true, "int32")
        if len(labels.shape) == len(y_pred.shape):
            labels = keras.ops.squeeze(labels, axis=-1)
        kept = keras.ops.not_equal(labels, self.ignore_class)
        valid = keras.ops.cast(kept, y_pred.dtype)[..., None]
        one_hot = keras.ops.one_hot(keras.ops.where(kept, labels, 0), y_pred.shape[-1], dtype=y_pred.dtype) * valid
        probabilities = keras.ops.softmax(y_pred, axis=-1) * valid
        spatial = (1, 2)
        overlap = keras.ops.sum(one_hot * probabilities, axis=spatial)
        total = keras.ops.sum(one_hot, axis=spatial) + keras.ops.sum(probabilities, axis=spatial)
        dice = 1.0 - (2.0 * overlap + self.smooth) / (total + self.smooth)
        pixel_ce = -keras.ops.sum(one_hot * keras.ops.log_softmax(y_pred, axis=-1), axis=(1, 2, 3))
        cross_entropy = pixel_ce / keras.ops.maximum(keras.ops.sum(valid, axis=(1, 2, 3)), 1.0)
        return keras.ops.mean(dice, axis=-1) + cross_entropy

    def get_config(self):
        return {**super().get_config(), "ignore_class": self.ignore_class, "smooth": self.smooth}


def compile_segmenter(model, config, steps_per_epoch, num_classes):
    """The recipe's AdamW and schedule (`recipe.create_optimizer`), the ignoring
    cross-entropy (UPerNet; its auxiliary head at 0.4) or Dice + cross-entropy (SwinUNETR),
    and the mean IoU metric on the main logits."""
    mean_iou = keras.metrics.MeanIoU(
        num_classes, ignore_class=IGNORE_INDEX, sparse_y_pred=False, name="mean_iou"
    )
    if has_auxiliary_head(model):
        loss = {"logits": segmentation_loss(), "auxiliary_logits": segmentation_loss()}
        loss_weights = {"logits": 1.0, "auxiliary_logits": AUXILIARY_WEIGHT}
        metrics = {"logits": [mean_iou]}
    elif isinstance(model, SwinUNETR):
        # MONAI's loss for SwinUNETR: on the digit scenes it left the background-only start
        # sooner than cross-entropy alone (docs/swin_unetr.md).
        loss, loss_weights, metrics = DiceCrossEntropy(), None, [mean_iou]
    else:
        loss, loss_weights, metrics = segmentation_loss(), None, [mean_iou]
    model.compile(
        optimizer=recipe.create_optimizer(config, model, steps_per_epoch),
        loss=loss,
        loss_weights=loss_weights,
        metrics=metrics,
        jit_compile=config.jit_compile,
    )
    recipe.build_optimizer(model)


def with_auxiliary_targets(dataset, model):
    """Feeds the mask to both outputs of a model with an auxiliary head."""
    if not has_auxiliary_head(model):
        return dataset
    return dataset.map(lambda images, masks: (images, {"logits": masks, "auxiliary_logits": masks}))


# --------------------------------------------------------------------------- metrics


def confusion_matrix(labels, predictions, num_classes):
    """`(num_classes, num_classes)` counts of (true, predicted) pixels; pixels labelled
    255 (ignore) are left out."""
    labels, predictions = np.asarray(labels).ravel(), np.asarray(predictions).ravel()
    keep = labels != IGNORE_INDEX
    if np.any(labels[keep] >= num_classes):
        raise ValueError(
            f"A mask has class id {int(labels[keep].max())}; expected ids below {num_classes} or 255 (ignore)."
        )
    return np.bincount(
        labels[keep].astype(np.int64) * num_classes + predictions[keep], minlength=num_classes * num_classes
    ).reshape(num_classes, num_classes)


def iou_metrics(matrix, class_names):
    """`mean_iou` (over the classes present in the labels or the predictions),
    `foreground_mean_iou` (the same without a class named "background"),
    `pixel_accuracy` and `per_class_iou` (None for a class seen nowhere)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    true_positive = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - true_positive
    iou = np.where(union > 0, true_positive / np.maximum(union, 1), np.nan)
    foreground = [i for i, name in enumerate(class_names) if name != "background"]
    return {
        "mean_iou": float(np.nanmean(iou)),
        "foreground_mean_iou": float(np.nanmean(iou[foreground])) if foreground else float("nan"),
        "pixel_accuracy": float(true_positive.sum() / max(matrix.sum(), 1)),
        "per_class_iou": {name: (None if np.isnan(v) else float(v)) for name, v in zip(class_names, iou)},
    }


def predict_masks(model, images, batch_size=32):
    """Class maps `(N, H, W)` of `model`'s main logits."""
    outputs = model.predict(images.astype("float32"), batch_size=batch_size, verbose=0)
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs
    return logits.argmax(-1)


def colourise(mask):
    """A class map as RGB with the fixed palette (ignore: grey)."""
    colours = PALETTE[np.asarray(mask) % len(PALETTE)]
    colours[np.asarray(mask) == IGNORE_INDEX] = IGNORE_COLOUR
    return colours


def plot_predictions(images, masks, predictions, class_names, path, count=8):
    import matplotlib  # a plotting back end is chosen before pyplot is imported

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = min(count, len(images))
    figure, axes = plt.subplots(3, count, figsize=(1.6 * count, 5.2), squeeze=False)
    for column in range(count):
        for row, (picture, title) in enumerate(
            ((images[column], "image"), (colourise(masks[column]), "true"), (colourise(predictions[column]), "predicted"))
        ):
            axis = axes[row][column]
            axis.imshow(picture.astype(np.uint8))
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(title)
    handles = [matplotlib.patches.Patch(color=PALETTE[i % len(PALETTE)] / 255, label=name)
               for i, name in enumerate(class_names)]
    figure.legend(handles=handles, loc="lower center", ncol=min(len(class_names), 11), fontsize=7)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    figure.savefig(path, dpi=100)
    plt.close(figure)


# --------------------------------------------------------------------------- the job


def train_segmentation(config, strategy):
    """Trains, evaluates and exports a Swin UPerNet or SwinUNETR segmenter. Returns the
    metrics dict."""
    size = recipe.image_size_for(config)
    splits = segmentation_data.load_segmentation_data(config.data, size, config.data_dir, config.seed)
    num_classes = len(splits.class_names)
    for name, (_, masks) in (("train", splits.train), ("validation", splits.validation), ("test", splits.test)):
        ids = masks[masks != IGNORE_INDEX]
        if ids.size and ids.max() >= num_classes:
            raise ValueError(f"{name} masks have class id {int(ids.max())}; expected below {num_classes} or 255.")
    train_ds = segmentation_data.make_segmentation_pipeline(
        splits.train, config.batch_size, training=True, augment=config.augment, seed=config.seed
    )
    validation_ds = segmentation_data.make_segmentation_pipeline(splits.validation, config.batch_size)
    steps_per_epoch = -(-len(splits.train[0]) // config.batch_size)

    with strategy.scope():
        model = create_segmenter(config, num_classes)
        compile_segmenter(model, config, steps_per_epoch, num_classes)
    train_ds, validation_ds = with_auxiliary_targets(train_ds, model), with_auxiliary_targets(validation_ds, model)
    monitor = {"val_mean_iou": "val_logits_mean_iou" if has_auxiliary_head(model) else "val_mean_iou"}.get(
        config.select, config.select
    )
    fit = recipe.fit_with_recipe(
        model, config, train_ds, validation_ds, steps_per_epoch, monitor=monitor
    )
    best = keras.saving.load_model(fit.best_path, safe_mode=True, compile=False)
    test_images, test_masks = splits.test
    predictions = predict_masks(best, test_images)
    matrix = confusion_matrix(test_masks, predictions, num_classes)
    metrics = recipe.run_metrics("segmentation", config, fit, best, splits.class_names,
                                 iou_metrics(matrix, splits.class_names), test_images=int(len(test_images)))
    output = os.path.abspath(config.output)
    recipe.plot_curves(recipe.history_from_csv(fit.history_path), os.path.join(output, "training_curves.png"),
                       "mean IoU", ("mean_iou", "val_mean_iou", "logits_mean_iou", "val_logits_mean_iou"))
    plot_predictions(test_images, test_masks, predictions, splits.class_names,
                     os.path.join(output, "predictions.png"))
    return recipe.finish_run(best, fit, output, config, metrics, image_size=(size, size))
