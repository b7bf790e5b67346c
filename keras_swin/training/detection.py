"""The detection recipe: keras-hub's RetinaNet (focal and Huber losses) on a Swin backbone, the
recipe's AdamW, schedule, clipping, mixed precision, resume and seed, COCO metrics from
pycocotools, box plots and export.

`keras-swin train --task detection` runs `train_detection(config, strategy)`.
"""

import contextlib
import io
import os

import keras
import numpy as np
import tensorflow as tf
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from keras_swin.configs import DETECTORS, V2_NAMES
from keras_swin.data import detection as detection_data
from keras_swin.models.retinanet import build_retinanet, detector_encoder
from keras_swin.models.swin import SwinTransformer, build_model
from keras_swin.models.swin_v2 import build_model_v2
from keras_swin.training import outputs, recipe
from keras_swin.training.segmentation import PALETTE

# Validation AP per epoch (history.csv) on at most this many validation images.
VALIDATION_AP_IMAGES = 100
# Boxes drawn in predictions.png (and by `keras-swin predict`) score at least this.
DISPLAY_SCORE = 0.5
COCO_STATS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")


def detector_settings(name):
    """The `configs.DETECTORS` entry of `name`; a ValueError naming the choices otherwise."""
    if name not in DETECTORS:
        raise ValueError(f"Unknown detector {name!r}; expected one of {list(DETECTORS)}.")
    return DETECTORS[name]


def create_detector(config, num_classes):
    """The RetinaNet for `config.model` with `num_classes` classes, its backbone from
    `--backbone-weights` (a classification checkpoint) when given."""
    settings = detector_settings(config.model)
    size = recipe.image_size_for(config)
    backbone_args = dict(pyramid_norm=True, include_final_norm=False, always_partition=True,
                         input_shape=(size, size, 3), weights=config.backbone_weights, remat=config.remat)
    variant = settings.get("variant")
    if variant is None:
        architecture = dict(settings["backbone"])
        if config.drop_path_rate is not None:
            architecture["drop_path_rate"] = config.drop_path_rate
        backbone = SwinTransformer(**architecture, **backbone_args, name=f"{config.model}_backbone")
    else:
        drop_path_rate = 0.2 if config.drop_path_rate is None else config.drop_path_rate
        factory = build_model_v2 if variant in V2_NAMES else build_model
        window = {} if variant in V2_NAMES else {"window_size": 7}
        backbone = factory(variant, include_top=False, drop_path_rate=drop_path_rate, name=f"{variant}_backbone",
                           **window, **backbone_args)
    model = build_retinanet(
        backbone, num_classes, image_size=size, min_level=settings["min_level"], max_level=settings["max_level"],
        anchor_size=settings["anchor_size"], aspect_ratios=settings["aspect_ratios"],
        head_conv_layers=settings["head_conv_layers"], name=config.model,
    )
    if config.weights:
        model.load_weights(config.weights)
    return model


def compile_detector(model, config, steps_per_epoch):
    """keras-hub's losses (focal cross-entropy, Huber on the box deltas) with the recipe's
    AdamW, schedule and clipping (`recipe.create_optimizer`).

    The optimizer takes the no-decay names of the Swin encoder: they are name fragments
    matched against every variable, and "bias" also covers the FPN's and heads' biases (their
    only variables besides kernels)."""
    model.compile(
        optimizer=recipe.create_optimizer(config, detector_encoder(model), steps_per_epoch),
        jit_compile=config.jit_compile,
    )
    recipe.build_optimizer(model)


# --------------------------------------------------------------------------- predictions


def detect(model, images, batch_size=16):
    """The detector's boxes on `images` `(N, H, W, 3)`: a list of N dicts of `boxes`
    `(n, 4)` yxyx pixels, `labels` int `(n,)` and `scores` `(n,)`, best first.

    keras-hub's decoder needs a static batch size (its NMS allocates by it; Keras feeds
    arrays with an unknown one), so the images go in as a dataset of whole batches, the
    last padded with black images. A call with another batch size than the model's previous
    one rebuilds Keras's predict function (Keras would otherwise retrace it with an unknown
    batch size)."""
    images = np.asarray(images, dtype="float32")
    count = len(images)
    batch = max(1, min(batch_size, count))
    padding = -count % batch
    if padding:
        images = np.concatenate([images, np.zeros((padding, *images.shape[1:]), "float32")])
    if getattr(model, "_detect_batch_size", None) != batch:  # also after a plain model.predict
        model.make_predict_function(force=True)
    model._detect_batch_size = batch
    batches = tf.data.Dataset.from_tensor_slices(images).batch(batch, drop_remainder=True)
    found = model.predict(batches, verbose=0)
    # keras-hub does not clip the decoded boxes; the SavedModel's are clipped the same way.
    limit = np.array(images.shape[1:3] * 2, "float32")
    results = []
    for i in range(count):
        n = int(found["num_detections"][i])
        results.append({
            "boxes": np.clip(np.asarray(found["boxes"][i, :n], "float32"), 0, limit),
            "labels": np.asarray(found["labels"][i, :n]).astype(int),
            "scores": np.asarray(found["confidence"][i, :n], "float32"),
        })
    return results


def _coco(images, annotations, class_names):
    dataset = {"images": images, "annotations": annotations,
               "categories": [{"id": k, "name": name} for k, name in enumerate(class_names)]}
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # "creating index..."
        coco.createIndex()
    return coco


def coco_metrics(boxes, labels, detections, class_names, image_size):
    """COCO's box metrics (pycocotools' `COCOeval`) of `detections` against the truth.

    Args:
        boxes: `(N, M, 4)` true boxes, yxyx pixels; rows with label -1 are padding.
        labels: `(N, M)` true class ids.
        detections: N dicts from `detect`.
        class_names: the K class names.
        image_size: (height, width) of the images (COCO's small / medium / large areas are
            in these pixels: below 32^2, to 96^2, above).

    Returns:
        `AP` (IoU 0.5:0.95), `AP50`, `AP75`, `AP_small`, `AP_medium`, `AP_large` (None where
        the truth has no object of that size) and `per_class_AP` {name: AP or None}, each at
        up to 100 detections per image; and `summary`, COCOeval's printed table.
    """
    height, width = image_size
    images = [{"id": i, "height": int(height), "width": int(width)} for i in range(len(boxes))]
    truth, found = [], []
    for i in range(len(boxes)):
        for (top, left, bottom, right), label in zip(boxes[i], labels[i]):
            if label < 0:
                continue
            w, h = float(right - left), float(bottom - top)
            # COCOeval treats an id of 0 as "unmatched": ids start at 1.
            truth.append({"id": len(truth) + 1, "image_id": i, "category_id": int(label),
                          "bbox": [float(left), float(top), w, h], "area": w * h, "iscrowd": 0})
        for (top, left, bottom, right), label, score in zip(
            detections[i]["boxes"], detections[i]["labels"], detections[i]["scores"]
        ):
            w, h = float(right - left), float(bottom - top)
            found.append({"id": len(found) + 1, "image_id": i, "category_id": int(label), "score": float(score),
                          "bbox": [float(left), float(top), w, h], "area": w * h, "iscrowd": 0})
    evaluation = COCOeval(_coco(images, truth, class_names), _coco(images, found, class_names), "bbox")
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    metrics = {name: (None if value < 0 else float(value)) for name, value in zip(COCO_STATS, evaluation.stats)}
    # precision: (IoU thresholds, recall points, classes, areas, max detections); area "all",
    # 100 detections; -1 where a class has no true box.
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for k, name in enumerate(class_names):
        values = precision[:, :, k]
        values = values[values > -1]
        per_class[name] = float(values.mean()) if values.size else None
    return {**metrics, "per_class_AP": per_class, "summary": summary.getvalue()}


class ValidationAP(keras.callbacks.Callback):
    """Adds `val_ap` and `val_ap50` (COCO AP and AP50 on up to `VALIDATION_AP_IMAGES`
    validation images, by `coco_metrics`) to each epoch's logs, before the CSV logger and
    the checkpoints read them."""

    def __init__(self, split, class_names, image_size, batch_size=16):
        super().__init__()
        images, boxes, labels = split
        self.images = images[:VALIDATION_AP_IMAGES]
        self.boxes, self.labels = boxes[: len(self.images)], labels[: len(self.images)]
        self.class_names, self.image_size, self.batch_size = class_names, image_size, batch_size

    def on_epoch_end(self, epoch, logs=None):
        metrics = coco_metrics(self.boxes, self.labels, detect(self.model, self.images, self.batch_size),
                               self.class_names, self.image_size)
        if logs is not None:
            logs["val_ap"] = metrics["AP"] if metrics["AP"] is not None else 0.0
            logs["val_ap50"] = metrics["AP50"] if metrics["AP50"] is not None else 0.0


# --------------------------------------------------------------------------- plots


def draw_detections(images, detections, class_names, min_score=DISPLAY_SCORE, line_thickness=1, font_scale=0.35):
    """`images` `(N, H, W, 3)` with each detection's box and label drawn by
    `keras.visualization.draw_bounding_boxes`, one colour a class (the segmentation
    palette without its background black); boxes scoring below `min_score` are left out.
    `detections`: dicts of `boxes` (yxyx pixels), `labels` and optional `scores`."""
    drawn = np.asarray(images).astype("uint8").copy()
    count = max([len(d["labels"]) for d in detections] + [1])
    for k in range(len(class_names)):
        colour = tuple(int(c) for c in PALETTE[1 + k % (len(PALETTE) - 1)])
        boxes = -np.ones((len(drawn), count, 4), "float32")
        labels = -np.ones((len(drawn), count), "int32")
        scores = np.zeros((len(drawn), count), "float32")
        for i, found in enumerate(detections):
            score = np.asarray(found.get("scores", np.ones(len(found["labels"]))))
            keep = (np.asarray(found["labels"]) == k) & (score >= min_score)
            n = int(keep.sum())
            boxes[i, :n], labels[i, :n], scores[i, :n] = np.asarray(found["boxes"])[keep], k, score[keep]
        if (labels >= 0).any():
            with_scores = {"boxes": boxes, "labels": labels}
            if any("scores" in d for d in detections):
                with_scores["confidences"] = scores
            drawn = keras.visualization.draw_bounding_boxes(
                drawn, with_scores, "yxyx", class_mapping=dict(enumerate(class_names)), color=colour,
                line_thickness=line_thickness, text_thickness=1, font_scale=font_scale,
            )
    return drawn


def truth_as_detections(boxes, labels):
    """True boxes `(N, M, 4)` and labels `(N, M)` as `detect`'s dicts (padding dropped)."""
    return [{"boxes": b[l >= 0], "labels": l[l >= 0].astype(int)} for b, l in zip(boxes, labels)]


def plot_predictions(images, boxes, labels, detections, class_names, path, count=8):
    """A grid of `count` test images: the true boxes above, the detections (score >= 0.5)
    below, each class in its palette colour."""
    import matplotlib  # a plotting back end is chosen before pyplot is imported

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = min(count, len(images))
    rows = (("true", draw_detections(images[:count], truth_as_detections(boxes[:count], labels[:count]),
                                     class_names)),
            (f"predicted (score >= {DISPLAY_SCORE})", draw_detections(images[:count], detections[:count],
                                                                      class_names)))
    figure, axes = plt.subplots(2, count, figsize=(2.0 * count, 4.6), squeeze=False)
    for row, (title, pictures) in enumerate(rows):
        for column in range(count):
            axis = axes[row][column]
            axis.imshow(pictures[column])
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(title, fontsize=8)
    handles = [matplotlib.patches.Patch(color=PALETTE[1 + k % (len(PALETTE) - 1)] / 255, label=name)
               for k, name in enumerate(class_names[:40])]
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 10), fontsize=7)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    figure.savefig(path, dpi=100)
    plt.close(figure)


# --------------------------------------------------------------------------- the job


def train_detection(config, strategy):
    """Trains, evaluates (COCO AP on the test split) and exports a Swin RetinaNet. Returns
    the metrics dict."""
    size = recipe.image_size_for(config)
    splits = detection_data.load_detection_data(config.data, size, config.data_dir, config.seed)
    detection_data.check_labels(splits)
    num_classes = len(splits.class_names)
    train_ds = detection_data.make_detection_pipeline(
        splits.train, config.batch_size, training=True, augment=config.augment, seed=config.seed
    )
    validation_ds = detection_data.make_detection_pipeline(splits.validation, config.batch_size)
    steps_per_epoch = -(-len(splits.train[0]) // config.batch_size)

    with strategy.scope():
        model = create_detector(config, num_classes)
        compile_detector(model, config, steps_per_epoch)
    validation_ap = ValidationAP(splits.validation, splits.class_names, (size, size))
    fit = recipe.fit_with_recipe(model, config, train_ds, validation_ds, steps_per_epoch,
                                 extra_callbacks=[validation_ap])
    best = keras.saving.load_model(fit.best_path, safe_mode=True, compile=False)
    test_images, test_boxes, test_labels = splits.test
    detections = detect(best, test_images)
    coco = coco_metrics(test_boxes, test_labels, detections, splits.class_names, (size, size))
    summary = coco.pop("summary")
    metrics = recipe.run_metrics("detection", config, fit, best, splits.class_names, coco, image_size=size,
                                 test_images=int(len(test_images)), clipped_boxes=splits.clipped_boxes)
    output = os.path.abspath(config.output)
    recipe.plot_curves(recipe.history_from_csv(fit.history_path), os.path.join(output, "training_curves.png"),
                       "validation COCO AP", ("val_ap", "val_ap50"))
    plot_predictions(test_images, test_boxes, test_labels, detections, splits.class_names,
                     os.path.join(output, "predictions.png"))
    print(summary, end="", flush=True)
    outputs.write_json(os.path.join(output, "class_names.json"), splits.class_names)
    return recipe.finish_run(best, fit, output, config, metrics, image_size=(size, size),
                             class_names=splits.class_names)
