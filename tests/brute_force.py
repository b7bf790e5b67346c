"""Brute-force NumPy definitions of shifted-window attention, written from the paper's
definition (token pairs and window membership in original coordinates), with no cyclic
shift, window partition or region trick. Independent of keras_swin.ops."""

import math

import numpy as np

_erf = np.vectorize(math.erf)


def shifted_window_ids(height, width, window, shift):
    """For every token of a padded map, the shifted window it belongs to.

    Windows start at `shift + k * window`; the partial windows this leaves at the top and
    left (`[0, shift)`) and at the bottom and right edges are windows of their own.
    """
    rows = (np.arange(height) - shift) // window
    cols = (np.arange(width) - shift) // window
    return rows[:, None] * (width // window + 2) + cols[None, :]


def brute_force_mask(height, width, window, shift):
    """(num_windows, N, N) with 0 where two tokens of a cyclically shifted window may attend
    (same shifted window in original coordinates) and -100 elsewhere."""
    ids = shifted_window_ids(height, width, window, shift)
    masks = []
    for top in range(0, height, window):
        for left in range(0, width, window):
            # Token (i, j) of this batched window came from ((top+i+shift) % H, ...).
            origin = [
                ids[(top + i + shift) % height, (left + j + shift) % width]
                for i in range(window)
                for j in range(window)
            ]
            same = np.equal.outer(origin, origin)
            masks.append(np.where(same, 0.0, -100.0))
    return np.stack(masks).astype("float32")


def layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def swin_block(x, weights, num_heads, window_size, shift_size):
    """One Swin block on `(H, W, C)` by definition: every query attends to the keys of its
    shifted window, with the bias of their offset read from the table made for
    `window_size`.

    `weights` holds numpy arrays: norm1_gamma/beta, qkv_kernel/bias, table, proj_kernel/bias,
    norm2_gamma/beta, fc1_kernel/bias, fc2_kernel/bias.
    """
    height, width, channels = x.shape
    window, shift = window_size, shift_size
    if min(height, width) <= window_size:
        window, shift = min(height, width), 0
    padded_h = -(-height // window) * window
    padded_w = -(-width // window) * window
    normed = np.zeros((padded_h, padded_w, channels))
    normed[:height, :width] = layer_norm(x, weights["norm1_gamma"], weights["norm1_beta"])

    head_dim = channels // num_heads
    tokens = normed.reshape(-1, channels)
    qkv = tokens @ weights["qkv_kernel"] + weights["qkv_bias"]
    q, k, v = (qkv[:, i * channels : (i + 1) * channels].reshape(-1, num_heads, head_dim) for i in range(3))
    ids = shifted_window_ids(padded_h, padded_w, window, shift).reshape(-1)
    rows, cols = np.divmod(np.arange(padded_h * padded_w), padded_w)
    table_side = 2 * window_size - 1
    out = np.zeros((padded_h * padded_w, num_heads, head_dim))
    for query in range(padded_h * padded_w):
        keys = np.nonzero(ids == ids[query])[0]
        offset = (rows[query] - rows[keys] + window_size - 1) * table_side + (
            cols[query] - cols[keys] + window_size - 1
        )
        logits = np.einsum("hd,khd->hk", q[query], k[keys]) * head_dim**-0.5
        logits = logits + weights["table"][offset].T
        attention = np.exp(logits - logits.max(-1, keepdims=True))
        attention /= attention.sum(-1, keepdims=True)
        out[query] = np.einsum("hk,khd->hd", attention, v[keys])
    attended = out.reshape(padded_h, padded_w, channels)[:height, :width]
    x = x + attended @ weights["proj_kernel"] + weights["proj_bias"]
    hidden = layer_norm(x, weights["norm2_gamma"], weights["norm2_beta"])
    hidden = hidden @ weights["fc1_kernel"] + weights["fc1_bias"]
    hidden = 0.5 * hidden * (1.0 + _erf(hidden / np.sqrt(2.0)))
    return x + hidden @ weights["fc2_kernel"] + weights["fc2_bias"]
