"""Swin V2 window attention: cosine attention with a learned temperature and a continuous
position bias from a small MLP over log-spaced relative coordinates."""

import math

import keras
from keras import ops

from keras_swin import ops as swin_ops
from keras_swin.layers.initializers import dense_kernel_initializer
from keras_swin.layers.window_attention import attend, check_attention_input, set_attention_arguments

# The temperature exp(logit_scale) is clamped at 100, as in the reference code.
MAX_LOGIT_SCALE = math.log(100.0)
CPB_HIDDEN = 512


@keras.saving.register_keras_serializable(package="keras_swin")
class WindowAttentionV2(keras.layers.Layer):
    """Window multi-head self-attention of Swin V2 (Liu et al., 2022).

    `softmax(cos(q, k) * exp(min(logit_scale, ln 100)) + 16 * sigmoid(B) + mask) v`, then an
    output projection. q and k are L2-normalised per head; `logit_scale` is a learned
    `(heads, 1, 1)` weight initialised to ln 10. B comes from the continuous position bias
    MLP (Dense 2->512 with bias, ReLU, Dense 512->heads without bias) applied to the
    log-spaced relative coordinates of the window attended over, gathered with the
    relative position index. The coordinate table is a constant computed from the runtime
    window, not a weight. The fused qkv projection has no bias of its own; its bias is
    `concat(q_bias, 0, v_bias)`. Logits, bias, mask and softmax are float32.

    Args:
        num_heads: int, attention heads; must divide the channels.
        window_size: int or (Mh, Mw), the largest window attended over.
        pretrained_window_size: int or (Ph, Pw), the window of pretraining that scales the
            coordinates; 0 means `window_size`'s own (the runtime window). Default 0.
        qkv_bias: bool, learn `q_bias` and `v_bias`. Default True.
        attention_dropout_rate: float in [0, 1), dropout on attention weights.
        projection_dropout_rate: float in [0, 1), dropout after the output projection.

    Call arguments:
        x: `(B * num_windows, N, C)`, N = window_h * window_w.
        attention_mask: optional float `(num_windows, N, N)`, added once to the logits.
        window_shape: optional `(window_h, window_w)` attended over (ints or int tensors).
            Defaults to `window_size`.

    Output shape: `(B * num_windows, N, C)`.
    """

    def __init__(
        self,
        num_heads,
        window_size=8,
        pretrained_window_size=0,
        qkv_bias=True,
        attention_dropout_rate=0.0,
        projection_dropout_rate=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        set_attention_arguments(self, num_heads, window_size, qkv_bias, attention_dropout_rate, projection_dropout_rate)
        pretrained = (pretrained_window_size,) * 2 if isinstance(pretrained_window_size, int) else pretrained_window_size
        pretrained = tuple(int(p) for p in pretrained)
        if len(pretrained) != 2 or min(pretrained) < 0 or 1 in pretrained:
            raise ValueError(
                "`pretrained_window_size` must be 0 (none) or >= 2, as an int or a pair; received "
                f"pretrained_window_size={pretrained_window_size}."
            )
        self.pretrained_window_size = pretrained

    def build(self, input_shape):
        channels = check_attention_input(self, input_shape)
        self.logit_scale = self.add_weight(
            name="logit_scale",
            shape=(self.num_heads, 1, 1),
            initializer=keras.initializers.Constant(math.log(10.0)),
        )
        if self.qkv_bias:
            self.q_bias = self.add_weight(name="q_bias", shape=(channels,), initializer="zeros")
            self.v_bias = self.add_weight(name="v_bias", shape=(channels,), initializer="zeros")
        self.qkv = keras.layers.Dense(
            3 * channels,
            use_bias=False,
            kernel_initializer=dense_kernel_initializer(),
            dtype=self.dtype_policy,
            name="qkv",
        )
        self.qkv.build(input_shape)
        self.cpb_fc1 = keras.layers.Dense(
            CPB_HIDDEN, activation="relu", kernel_initializer=dense_kernel_initializer(),
            dtype="float32", name="cpb_fc1",
        )
        self.cpb_fc1.build((None, 2))
        self.cpb_fc2 = keras.layers.Dense(
            self.num_heads, use_bias=False, kernel_initializer=dense_kernel_initializer(),
            dtype="float32", name="cpb_fc2",
        )
        self.cpb_fc2.build((None, CPB_HIDDEN))
        self.projection = keras.layers.Dense(
            channels,
            kernel_initializer=dense_kernel_initializer(),
            dtype=self.dtype_policy,
            name="projection",
        )
        self.projection.build(input_shape)
        self.attention_dropout = keras.layers.Dropout(
            self.attention_dropout_rate, dtype=self.dtype_policy, name="attention_dropout"
        )
        self.projection_dropout = keras.layers.Dropout(
            self.projection_dropout_rate, dtype=self.dtype_policy, name="projection_dropout"
        )

    def relative_position_bias(self, window_h, window_w):
        """`16 * sigmoid(B)` for a `window_h x window_w` window: float32 `(heads, N, N)`."""
        coordinates = swin_ops.log_spaced_coordinates(window_h, window_w, *self.pretrained_window_size)
        table = self.cpb_fc2(self.cpb_fc1(coordinates))
        index = swin_ops.relative_position_index(window_h, window_w)
        tokens = window_h * window_w
        bias = ops.take(table, ops.reshape(index, (-1,)), axis=0)
        bias = ops.transpose(ops.reshape(bias, (tokens, tokens, self.num_heads)), (2, 0, 1))
        return 16.0 * ops.sigmoid(bias)

    def call(self, x, attention_mask=None, window_shape=None, training=None):
        window_h, window_w = window_shape if window_shape is not None else self.window_size
        tokens = ops.shape(x)[1]
        channels = x.shape[-1]
        qkv = self.qkv(ops.reshape(x, (-1, channels)))
        if self.qkv_bias:
            q_bias, v_bias = ops.convert_to_tensor(self.q_bias), ops.convert_to_tensor(self.v_bias)
            bias = ops.concatenate([q_bias, ops.zeros_like(q_bias), v_bias])
            qkv = qkv + ops.cast(bias, qkv.dtype)
        qkv = ops.reshape(qkv, (-1, tokens, 3, self.num_heads, self.head_dim))
        qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))
        query, key, value = qkv[0], qkv[1], qkv[2]

        def normalise(t):
            # t / max(|t|, 1e-12) as PyTorch's F.normalize, with the clamp inside the square
            # root so that zero vectors (padded tokens) get a zero gradient, not NaN.
            t = ops.cast(t, "float32")
            return t / ops.sqrt(ops.maximum(ops.sum(t * t, axis=-1, keepdims=True), 1e-24))

        logits = ops.matmul(normalise(query), ops.transpose(normalise(key), (0, 1, 3, 2)))
        scale = ops.exp(ops.minimum(ops.cast(self.logit_scale, "float32"), MAX_LOGIT_SCALE))
        logits = logits * scale + self.relative_position_bias(window_h, window_w)
        return attend(self, logits, value, attention_mask, training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "window_size": list(self.window_size),
            "pretrained_window_size": list(self.pretrained_window_size),
            "qkv_bias": self.qkv_bias,
            "attention_dropout_rate": self.attention_dropout_rate,
            "projection_dropout_rate": self.projection_dropout_rate,
        }
