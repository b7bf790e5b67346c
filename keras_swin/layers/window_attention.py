"""Multi-head self-attention inside windows, with a learned relative position bias."""

import keras
from keras import ops

from keras_swin import ops as swin_ops
from keras_swin.layers.drop_path import apply_if_active
from keras_swin.layers.initializers import dense_kernel_initializer
from keras_swin.utils import check_rates


def _pair(value, name):
    if isinstance(value, int):
        value = (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) < 1:
        raise ValueError(
            f"`{name}` must be an int >= 1 or a pair of them; received {name}={value}."
        )
    return value


def attend(layer, logits, value, attention_mask, training):
    """The end of a window attention layer (V1 or V2): adds the window mask to the float32
    logits `(B * windows, heads, N, N)`, applies the softmax to `value`
    `(B * windows, heads, N, head_dim)`, then `layer`'s dropouts and output projection.

    Returns:
        `(B * windows, N, C)`.
    """
    tokens = ops.shape(logits)[-1]
    channels = layer.num_heads * value.shape[-1]
    if attention_mask is not None:
        num_windows = ops.shape(attention_mask)[0]
        logits = ops.reshape(logits, (-1, num_windows, layer.num_heads, tokens, tokens))
        logits = logits + ops.cast(attention_mask, "float32")[None, :, None]
        logits = ops.reshape(logits, (-1, layer.num_heads, tokens, tokens))
    weights = ops.cast(ops.softmax(logits, axis=-1), layer.compute_dtype)
    weights = apply_if_active(layer.attention_dropout, weights, training)

    out = ops.matmul(weights, value)
    out = ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (-1, channels))
    out = apply_if_active(layer.projection_dropout, layer.projection(out), training)
    return ops.reshape(out, (-1, tokens, channels))


def set_attention_arguments(layer, num_heads, window_size, qkv_bias, attention_dropout_rate, projection_dropout_rate):
    """Checks and stores the constructor arguments that V1 and V2 window attention share."""
    if int(num_heads) < 1:
        raise ValueError(f"`num_heads` must be >= 1; received num_heads={num_heads}.")
    check_rates(attention_dropout_rate=attention_dropout_rate, projection_dropout_rate=projection_dropout_rate)
    layer.num_heads = int(num_heads)
    layer.window_size = _pair(window_size, "window_size")
    layer.qkv_bias = bool(qkv_bias)
    layer.attention_dropout_rate = float(attention_dropout_rate)
    layer.projection_dropout_rate = float(projection_dropout_rate)


def check_attention_input(layer, input_shape):
    """The channels of a window attention input `(batch * windows, tokens, channels)`, after
    checking that they are known and that the heads divide them; sets the input spec and
    `head_dim`."""
    if len(input_shape) != 3 or input_shape[-1] is None:
        raise ValueError(
            f"{type(layer).__name__} expects a 3D input (batch * windows, tokens, channels) with "
            f"known channels; received shape {tuple(input_shape)}."
        )
    channels = input_shape[-1]
    if channels % layer.num_heads:
        raise ValueError(
            f"`num_heads` must divide the channels: received num_heads={layer.num_heads} "
            f"for {channels} channels; expected a divisor of {channels}."
        )
    layer.input_spec = keras.InputSpec(ndim=3, axes={-1: channels})
    layer.head_dim = channels // layer.num_heads
    return channels


@keras.saving.register_keras_serializable(package="keras_swin")
class WindowAttention(keras.layers.Layer):
    """Window multi-head self-attention with a relative position bias (Swin, eq. 4).

    `softmax(q k^T * head_dim^-0.5 + B + mask) v`, followed by an output projection. B is
    gathered from a learned table of shape `((2*Mh - 1) * (2*Mw - 1), num_heads)` with a
    constant index. The logits, bias, mask and softmax are computed in float32, also under
    mixed precision.

    Args:
        num_heads: int, number of attention heads; must divide the channels.
        window_size: int or (Mh, Mw), the window the bias table is made for.
        qkv_bias: bool, use a bias in the fused qkv projection. Default True.
        attention_dropout_rate: float in [0, 1), dropout on attention weights.
        projection_dropout_rate: float in [0, 1), dropout after the output projection.
        truncated_bias_index: bool, read the bias of a window smaller than `window_size`
            as MONAI's SwinUNETR does: the first N rows and columns of the full window's
            index (`ops.truncated_position_index`), instead of each token pair's offset
            from the centre of the table. Default False.

    Call arguments:
        x: `(B * num_windows, N, C)` tokens of each window, N = window_h * window_w.
        attention_mask: optional float `(num_windows, N, N)`, added to the logits of each window.
        window_shape: optional `(window_h, window_w)` actually attended over (ints or int
            tensors), at most `window_size`; the bias then comes from the centre of the
            table (or, with `truncated_bias_index`, its first rows). Defaults to
            `window_size`.

    Output shape: `(B * num_windows, N, C)`.
    """

    def __init__(
        self,
        num_heads,
        window_size=7,
        qkv_bias=True,
        attention_dropout_rate=0.0,
        projection_dropout_rate=0.0,
        truncated_bias_index=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        set_attention_arguments(self, num_heads, window_size, qkv_bias, attention_dropout_rate, projection_dropout_rate)
        self.truncated_bias_index = bool(truncated_bias_index)

    def build(self, input_shape):
        channels = check_attention_input(self, input_shape)
        self.scale = self.head_dim**-0.5
        window_h, window_w = self.window_size
        self.relative_position_bias_table = self.add_weight(
            name="relative_position_bias_table",
            shape=((2 * window_h - 1) * (2 * window_w - 1), self.num_heads),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        )
        self.qkv = keras.layers.Dense(
            3 * channels,
            use_bias=self.qkv_bias,
            kernel_initializer=dense_kernel_initializer(),
            dtype=self.dtype_policy,
            name="qkv",
        )
        self.qkv.build(input_shape)
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
        """The bias for a `window_h x window_w` window: float32 `(heads, N, N)`."""
        table_h, table_w = self.window_size
        tokens = window_h * window_w
        if self.truncated_bias_index:
            index = swin_ops.truncated_position_index(tokens, table_h, table_w)
        else:
            index = swin_ops.relative_position_index(window_h, window_w, table_h, table_w)
        table = ops.cast(self.relative_position_bias_table, "float32")
        bias = ops.take(table, ops.reshape(index, (-1,)), axis=0)
        bias = ops.reshape(bias, (tokens, tokens, self.num_heads))
        return ops.transpose(bias, (2, 0, 1))

    def call(self, x, attention_mask=None, window_shape=None, training=None):
        window_h, window_w = window_shape if window_shape is not None else self.window_size
        tokens = ops.shape(x)[1]
        channels = x.shape[-1]
        # Dense layers on 2D rows: a plain matmul that fuses with its bias add.
        qkv = self.qkv(ops.reshape(x, (-1, channels)))
        qkv = ops.reshape(qkv, (-1, tokens, 3, self.num_heads, self.head_dim))
        qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))
        query, key, value = qkv[0], qkv[1], qkv[2]

        query = query * ops.cast(self.scale, query.dtype)
        logits = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2)))
        logits = ops.cast(logits, "float32") + self.relative_position_bias(window_h, window_w)
        return attend(self, logits, value, attention_mask, training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "window_size": list(self.window_size),
            "qkv_bias": self.qkv_bias,
            "attention_dropout_rate": self.attention_dropout_rate,
            "projection_dropout_rate": self.projection_dropout_rate,
            "truncated_bias_index": self.truncated_bias_index,
        }
