"""`keras-swin predict MODEL.keras IMAGES_OR_FOLDER --output DIR`: a trained model on a user's
own image files, for every task.

Per image: the top-k classes (classifier), a colour mask PNG and a class-id PNG (segmenter),
or the boxes as JSON and an overlay PNG (detector); and one `predictions.json` for all. Images
are resized to the model's input size (bilinear, as the SavedModel's `serving_bytes` does);
masks and boxes are mapped back to each image's own size. A file that cannot be read or
decoded is named and skipped, and the others still run.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_swin import export
from keras_swin.data.classification import IMAGE_EXTENSIONS, read_rgb
from keras_swin.models.retinanet import detector_size, is_detector
from keras_swin.training import outputs
from keras_swin.training.detection import DISPLAY_SCORE, detect, draw_detections
from keras_swin.training.segmentation import colourise

PREDICTIONS = "predictions.json"


def image_files(inputs):
    """The image files named by `inputs` (files, or folders whose image files are taken in
    name order, not recursively), and `[(path, reason)]` for the inputs that are neither."""
    files, missing = [], []
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            names = sorted(os.listdir(item))
            files += [os.path.join(item, n) for n in names
                      if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS and os.path.isfile(os.path.join(item, n))]
        elif os.path.isfile(item):
            files.append(item)
        else:
            missing.append((item, "no such file or folder"))
    return files, missing


def model_kind(model):
    """"detector", "segmenter" or "classifier"; a ValueError for a model with nothing to predict."""
    if is_detector(model):
        return "detector"
    if export.is_segmenter(model):
        return "segmenter"
    if getattr(model, "include_top", False):
        return "classifier"
    raise ValueError(f"'{model.name}' is a backbone (no classifier head, segmenter or detector): it has no "
                     "predictions to write. Pass a trained classifier, segmenter or detector .keras file.")


def class_names_for(model_path, count):
    """The `count` class names a training run wrote beside `model_path` (`class_names.json`,
    else `metrics.json`'s `class_names`), else "0".."count-1"."""
    folder = os.path.dirname(os.path.abspath(model_path))
    for name in ("class_names.json", "metrics.json"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            data = outputs.read_json(path, "the class names")
            names = data if isinstance(data, list) else data.get("class_names") if isinstance(data, dict) else None
            if isinstance(names, list) and len(names) == count and all(isinstance(n, str) for n in names):
                return names
    return [str(i) for i in range(count)]


def _unique_stem(path, taken):
    stem = os.path.splitext(os.path.basename(path))[0]
    candidate, number = stem, 2
    while candidate in taken:
        candidate, number = f"{stem}_{number}", number + 1
    taken.add(candidate)
    return candidate


def _write_png(path, array):
    from PIL import Image

    outputs.replace_atomically(path, lambda temporary: Image.fromarray(array).save(temporary, format="PNG"))


def _write_json(path, value):
    outputs.write_json(path, value)


def _resize(image, size):
    return tf.image.resize(image.astype("float32"), size, method="bilinear").numpy()


def _classify(run, batch, class_names, top_k):
    probabilities = np.asarray(run(tf.constant(batch))["probabilities"])
    results = []
    for row in probabilities:
        order = np.argsort(-row)[:top_k]
        results.append({"top_k": [{"index": int(i), "class": class_names[i], "score": float(row[i])} for i in order]})
    return results


def _segment(run, batch, originals, stems, class_names, output):
    class_maps = np.asarray(run(tf.constant(batch))["class_map"])
    results = []
    for class_map, original, stem in zip(class_maps, originals, stems):
        height, width = original.shape[:2]
        resized = tf.image.resize(class_map[..., None], (height, width), method="nearest").numpy()[..., 0]
        mask_name, classes_name = f"{stem}_mask.png", f"{stem}_classes.png"
        _write_png(os.path.join(output, mask_name), colourise(resized).astype(np.uint8))
        ids = resized.astype(np.uint8 if len(class_names) <= 256 else np.uint16)
        _write_png(os.path.join(output, classes_name), ids)
        counts = np.bincount(resized.ravel(), minlength=len(class_names)) / resized.size
        results.append({"mask": mask_name, "class_map": classes_name,
                        "class_fractions": {name: float(f) for name, f in zip(class_names, counts) if f > 0}})
    return results


def _detect(model, batch, originals, stems, class_names, output, min_score):
    height, width = detector_size(model)
    results = []
    for found, original, stem in zip(detect(model, batch, batch_size=len(batch)), originals, stems):
        keep = found["scores"] >= min_score
        scale = np.array([original.shape[0] / height, original.shape[1] / width] * 2, "float32")
        boxes = found["boxes"][keep] * scale
        labels, scores = found["labels"][keep], found["scores"][keep]
        detections = [{"box": [round(float(v), 2) for v in box], "class": class_names[label], "index": int(label),
                       "score": float(score)} for box, label, score in zip(boxes, labels, scores)]
        boxes_name, overlay_name = f"{stem}_boxes.json", f"{stem}_overlay.png"
        _write_json(os.path.join(output, boxes_name), {"box_format": "yxyx pixels", "detections": detections})
        overlay = draw_detections(original[None], [{"boxes": boxes, "labels": labels, "scores": scores}], class_names,
                                  min_score=min_score, line_thickness=2, font_scale=0.5)[0]
        _write_png(os.path.join(output, overlay_name), overlay)
        results.append({"boxes": boxes_name, "overlay": overlay_name, "detections": detections})
    return results


def predict(model_path, inputs, output, top_k=5, min_score=DISPLAY_SCORE, image_size=None, batch_size=16,
            progress=True):
    """Runs the `.keras` model at `model_path` on the image files `inputs` (files or folders)
    and writes its predictions into the folder `output`.

    Args:
        model_path: a classifier, segmenter or detector `.keras` file (`keras-swin train`'s
            `best.keras`); class names come from the `class_names.json` or `metrics.json`
            beside it.
        inputs: image files (JPEG, PNG, BMP, GIF, WebP, JPEG XL) and folders of them.
        output: the folder to write into (created when missing).
        top_k: int >= 1, classes listed per image by a classifier.
        min_score: float in [0, 1], the lowest score of a detection written (default 0.5).
        image_size: the size images are resized to for a model of any input size (default
            224); a model of a fixed size takes that size.
        batch_size: int >= 1, images per model call.
        progress: show a progress bar for more than one image.

    Returns:
        The dict written to `predictions.json`: `model`, `task`, `image_size`, `images` (per
        image: `file`, its `height` and `width`, and the task's results) and `skipped`
        (`file` and `error` of each input that could not be read).
    """
    for option, value in (("--top-k", top_k), ("--batch-size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{option} must be an int >= 1; received {value!r}.")
    if isinstance(min_score, bool) or not (isinstance(min_score, (int, float)) and 0 <= min_score <= 1):
        raise ValueError(f"--min-score must be a number in [0, 1]; received {min_score!r}.")
    output = os.fspath(output)
    if os.path.exists(output) and not os.path.isdir(output):
        raise OSError(f"--output '{output}' is a file; expected a folder (created when missing).")
    model = export.load_model_file(os.fspath(model_path))
    kind = model_kind(model)
    files, skipped = image_files(inputs)
    if not files and not skipped:
        raise ValueError(f"No image files ({', '.join(IMAGE_EXTENSIONS)}) in {list(map(str, inputs))}.")
    os.makedirs(output, exist_ok=True)
    if kind == "detector":
        size = detector_size(model)
        class_names = class_names_for(model_path, model.num_classes)
    else:
        size = export.serving_image_size(model, image_size)
        classes = model.output.shape[-1] if kind == "classifier" else export.segmentation_logits(model).output.shape[-1]
        class_names = class_names_for(model_path, int(classes))
    skipped = [{"file": path, "error": reason} for path, reason in skipped]
    # The serving outputs (probabilities, class_map); a detector runs keras-hub's predict.
    run = None if kind == "detector" else export.named_outputs(model)
    records, taken = [], set()
    bar = keras.utils.Progbar(len(files), unit_name="image") if progress and len(files) > 1 else None
    for start in range(0, len(files), batch_size):
        chunk, originals = [], []
        for path in files[start:start + batch_size]:
            try:
                originals.append(read_rgb(path))
                chunk.append(path)
            except (OSError, ValueError) as error:  # unreadable or undecodable: named, then skipped
                skipped.append({"file": path, "error": str(error)})
        if chunk:
            batch = np.stack([_resize(image, size) for image in originals])
            stems = [_unique_stem(path, taken) for path in chunk]
            if kind == "classifier":
                results = _classify(run, batch, class_names, min(top_k, len(class_names)))
            elif kind == "segmenter":
                results = _segment(run, batch, originals, stems, class_names, output)
            else:
                results = _detect(model, batch, originals, stems, class_names, output, min_score)
            for path, original, result in zip(chunk, originals, results):
                records.append({"file": path, "height": int(original.shape[0]), "width": int(original.shape[1]),
                                **result})
        if bar is not None:
            bar.add(len(files[start:start + batch_size]))
    summary = {"model": os.path.abspath(os.fspath(model_path)), "task": kind, "image_size": list(size),
               "class_names": class_names, "images": records, "skipped": skipped}
    _write_json(os.path.join(output, PREDICTIONS), summary)
    return summary


def skipped_message(summary):
    """The error for the inputs `predict` skipped (None when it skipped none)."""
    skipped = summary["skipped"]
    if not skipped:
        return None
    listed = "; ".join(f"{s['file']}: {s['error']}" for s in skipped[:10])
    more = f"; and {len(skipped) - 10} more" if len(skipped) > 10 else ""
    return (f"{len(skipped)} of {len(skipped) + len(summary['images'])} inputs could not be read and were "
            f"skipped (the others' predictions are written): {listed}{more}")
