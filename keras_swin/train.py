"""`train(TrainConfig(...))`: what `keras-swin train` runs, dispatched on the task."""

from keras_swin.training import recipe
from keras_swin.training.classification import train_classifier
from keras_swin.training.detection import train_detection
from keras_swin.training.recipe import TrainConfig
from keras_swin.training.segmentation import train_segmentation

TASK_JOBS = {"classification": train_classifier, "segmentation": train_segmentation, "detection": train_detection}

__all__ = ["TrainConfig", "train"]


def train(config):
    """Trains, evaluates and exports the model that `config` describes (a classifier, with
    `task="segmentation"` a segmenter, with `task="detection"` a RetinaNet detector); returns
    the metrics dict."""
    with recipe.session(config) as (config, strategy):
        return TASK_JOBS[config.task](config, strategy)
