"""Swin V2 checkpoints: the V1 layouts and map (`checkpoints.swin`) plus V2's window checks
and presets."""

import re

import numpy as np

from keras_swin.checkpoints import presets
from keras_swin.checkpoints import swin as swin_checkpoints
from keras_swin.checkpoints.files import WeightsMismatchError, load_file_or_preset


def _divisor_from_table(table):
    """`(window, divisor)` of a Swin V2 `relative_coords_table` buffer `(1, 2M-1, 2M-1, 2)`:
    the largest coordinate is `log2((M-1) * 8 / divisor + 1) / 3`."""
    window = (table.shape[1] + 1) // 2
    largest = float(np.max(table[..., 0]))
    if window == 1 or largest <= 0:
        return window, None
    return window, round(8 * (window - 1) / (2.0 ** (3 * largest) - 1))


def check_v2_windows(model, state_dict):
    """Checks the windows that official and timm Swin V2 checkpoints record in their
    `relative_coords_table` buffers against `model`'s `window_size` and
    `pretrained_window_sizes`; a mismatch is an error naming both. (Hugging Face
    checkpoints do not store these buffers, so nothing can be checked there.)"""
    pattern = re.compile(r"layers\.(\d+)\.blocks\.\d+\.attn\.relative_coords_table$")
    for key, table in state_dict.items():
        match = pattern.search(key)
        if not match or table.ndim != 4:
            continue
        stage = int(match.group(1))
        window, divisor = _divisor_from_table(table)
        pretrained = model.pretrained_window_sizes[stage] if stage < len(model.depths) else 0
        expected = pretrained - 1 if pretrained > 0 else window - 1
        if window > model.window_size or (divisor is not None and divisor != expected):
            found_pretrained = 0 if divisor in (None, window - 1) else divisor + 1
            raise WeightsMismatchError(
                f"Swin V2 window mismatch at '{key}': the checkpoint was made with window {window} and "
                f"pretrained window {found_pretrained or 'none'}; the model has window_size="
                f"{model.window_size} and pretrained_window_sizes[{stage}]={pretrained}. Pass the "
                "checkpoint's values (window_size=..., pretrained_window_sizes=...)."
            )


def load_state(model, raw_state):
    """Checks the windows a V2 checkpoint records, then loads it as `checkpoints.swin` does."""
    check_v2_windows(model, raw_state)
    return swin_checkpoints.load_state(model, raw_state)


def load_weights(model, weights):
    """Loads `weights` (a file or a V2 preset name) into a `keras_swin.SwinTransformerV2`;
    returns the layout loaded."""
    return load_file_or_preset(model, weights, presets.resolve_v2_preset, load_state)
