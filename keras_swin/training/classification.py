"""The classification job: a Swin classifier on digits, an image folder or a
tensorflow-datasets dataset, trained with the shared recipe, evaluated (accuracy, per-class
accuracy, confusion matrix) and exported."""

import os

import keras
import numpy as np

from keras_swin.configs import SMALL_CONFIGS
from keras_swin.data import classification as data_lib
from keras_swin.models.swin import SwinTransformer, build_model
from keras_swin.training import outputs, recipe


def create_model(config, num_classes):
    """The classifier for `config.model` with `num_classes` outputs."""
    size = recipe.image_size_for(config)
    common = dict(
        include_top=True, classes=num_classes, input_shape=(size, size, 3), remat=config.remat, name=config.model,
    )
    if config.model in SMALL_CONFIGS:
        settings = {k: v for k, v in SMALL_CONFIGS[config.model].items() if k != "image_size"}
        if config.drop_path_rate is not None:
            settings["drop_path_rate"] = config.drop_path_rate
        model = SwinTransformer(**settings, **common)
    else:
        model = build_model(config.model, drop_path_rate=config.drop_path_rate, **common)
    if config.weights:
        model.load_checkpoint(config.weights)
    return model


def compile_model(model, config, steps_per_epoch):
    """Compiles `model` with the recipe: `create_optimizer`, label-smoothed cross-entropy."""
    model.compile(
        optimizer=recipe.create_optimizer(config, model, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        # An instance, not "accuracy": Keras would create its variables in the first trace.
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit_compile,
    )
    recipe.build_optimizer(model)


def _set_backbone_trainable(model, trainable):
    for layer in model.layers:
        if layer.name != "predictions":
            layer.trainable = trainable


def _plot_confusion(matrix, class_names, path):
    import matplotlib  # a plotting back end is chosen before pyplot is imported

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4, 0.5 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(class_names)), class_names, rotation=90)
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (row, col), count in np.ndenumerate(matrix):
        axis.text(col, row, int(count), ha="center", va="center", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _evaluate(model, dataset, num_classes):
    labels, predictions = [], []
    for images, one_hot in dataset:
        predictions.append(np.argmax(model.predict_on_batch(images.numpy()), axis=-1))
        labels.append(np.argmax(one_hot.numpy(), axis=-1))
    labels, predictions = np.concatenate(labels), np.concatenate(predictions)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def train_classifier(config, strategy):
    """Trains, evaluates and exports a Swin classifier; returns the metrics dict."""
    output = os.path.abspath(config.output)
    size = recipe.image_size_for(config)
    splits = data_lib.load_data(config.data, size, config.data_dir, config.seed)
    num_classes = len(splits.class_names)
    train_ds = data_lib.make_pipeline(
        splits.train, num_classes, config.batch_size, training=True, image_size=size,
        augment=config.augment, flip=config.flip, resized_crop=config.random_resized_crop,
        mixup=config.mixup, cutmix=config.cutmix, seed=config.seed,
    )
    validation_ds = data_lib.make_pipeline(splits.validation, num_classes, config.batch_size)
    test_ds = data_lib.make_pipeline(splits.test, num_classes, config.batch_size)
    steps_per_epoch = recipe.count_batches(train_ds)

    with strategy.scope():
        model = create_model(config, num_classes)
        if config.freeze_backbone_epochs:
            _set_backbone_trainable(model, False)
        compile_model(model, config, steps_per_epoch)

    def unfreeze(model):
        _set_backbone_trainable(model, True)
        compile_model(model, config, steps_per_epoch)

    fit = recipe.fit_with_recipe(model, config, train_ds, validation_ds, steps_per_epoch, unfreeze=unfreeze)

    best = keras.saving.load_model(fit.best_path, safe_mode=True, compile=False)
    best.compile(loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
    test_loss, test_accuracy = best.evaluate(test_ds, verbose=0)
    matrix = _evaluate(best, test_ds, num_classes)
    per_class = {
        name: float(matrix[i, i] / max(1, matrix[i].sum())) for i, name in enumerate(splits.class_names)
    }
    results = {"test_accuracy": float(test_accuracy), "test_loss": float(test_loss), "per_class_accuracy": per_class}
    metrics = recipe.run_metrics("classification", config, fit, best, splits.class_names, results,
                                 skipped_files=splits.skipped_files)
    recipe.plot_curves(recipe.history_from_csv(fit.history_path), os.path.join(output, "training_curves.png"),
                       "accuracy", ("accuracy", "val_accuracy"))
    _plot_confusion(matrix, splits.class_names, os.path.join(output, "confusion_matrix.png"))

    # `keras-swin export` reads the class names from here (the export in a subprocess too).
    outputs.write_json(os.path.join(output, "class_names.json"), splits.class_names)
    return recipe.finish_run(best, fit, output, config, metrics, class_names=splits.class_names)
