"""The Swin V2 block: residual post-norm around V2 window attention and the MLP."""

import keras
from keras import ops

from keras_swin import ops as swin_ops
from keras_swin.layers.drop_path import apply_if_active
from keras_swin.layers.swin_block import SwinBlock
from keras_swin.layers.window_attention_v2 import WindowAttentionV2


@keras.saving.register_keras_serializable(package="keras_swin")
class SwinBlockV2(SwinBlock):
    """(Shifted) window attention -> LN -> DropPath residual, MLP -> LN -> DropPath residual.

    Swin V2's residual post-norm: `x = x + DropPath(LN(Attn(x)))`, then
    `x = x + DropPath(LN(MLP(x)))`. Windows, padding, shift and the -100 mask (added once,
    as in the official code and timm) are those of `SwinBlock`; the attention is
    `WindowAttentionV2`.

    Args:
        num_heads, window_size, shift_size, mlp_ratio, qkv_bias, dropout_rate,
        attention_dropout_rate, drop_path_rate, norm_epsilon, always_partition, remat: as in
            `SwinBlock`; `window_size` defaults to 8.
        pretrained_window_size: int, the pretraining window that scales the continuous
            position bias coordinates; 0 for none. Default 0.

    Input and output shape: `(B, H, W, C)`.
    """

    def __init__(self, num_heads, window_size=8, pretrained_window_size=0, **kwargs):
        super().__init__(num_heads, window_size=window_size, **kwargs)
        if int(pretrained_window_size) < 0 or int(pretrained_window_size) == 1:
            raise ValueError(
                "`pretrained_window_size` must be 0 (none) or >= 2; received "
                f"pretrained_window_size={pretrained_window_size}."
            )
        self.pretrained_window_size = int(pretrained_window_size)

    def _make_attention(self):
        return WindowAttentionV2(
            self.num_heads,
            window_size=self.window_size,
            pretrained_window_size=self.pretrained_window_size,
            qkv_bias=self.qkv_bias,
            attention_dropout_rate=self.attention_dropout_rate,
            projection_dropout_rate=self.dropout_rate,
            dtype=self.dtype_policy,
            name="attention",
        )

    def _mlp(self, x, training):
        shape = ops.shape(x)
        rows = ops.reshape(x, (-1, x.shape[-1]))
        hidden = swin_ops.gelu(self.mlp_fc1(rows))
        hidden = apply_if_active(self.mlp_dropout, hidden, training)
        hidden = apply_if_active(self.mlp_dropout, self.mlp_fc2(hidden), training)
        return ops.reshape(self.norm2(hidden), shape)

    def _residual_branches(self, x, training):
        x = x + apply_if_active(self.drop_path, self.norm1(self._attend(x, training)), training)
        return x + apply_if_active(self.drop_path, self._mlp(x, training), training)

    def get_config(self):
        return {**super().get_config(), "pretrained_window_size": self.pretrained_window_size}
