"""The Swin Transformer block: (shifted) window attention and an MLP, each residual."""

import collections

import keras
from keras import ops

from keras_swin import ops as swin_ops
from keras_swin.layers.drop_path import DropPath, apply_if_active
from keras_swin.layers.initializers import dense_kernel_initializer
from keras_swin.layers.window_attention import WindowAttention
from keras_swin.utils import check_rates


class _CountingScope(keras.StatelessScope):
    """A `keras.StatelessScope` that also counts the updates of each variable (a seed
    generator's state is updated once per random draw)."""

    def __init__(self, state_mapping):
        super().__init__(state_mapping=state_mapping, initialize_variables=False)
        self.update_counts = collections.Counter()

    def add_update(self, update):
        self.update_counts[id(update[0])] += 1
        super().add_update(update)


@keras.saving.register_keras_serializable(package="keras_swin")
class SwinBlock(keras.layers.Layer):
    """LN -> (shifted) window attention -> DropPath residual -> LN -> MLP -> DropPath residual.

    The map is zero-padded to a multiple of the window, cyclically shifted toward the
    top-left by `shift_size` (when shifted), split into windows and attended with the
    -100 region mask built on the padded size. A map whose shorter side is at most
    `window_size` is attended as one window of that side, without a shift; the bias then
    comes from the same table at the same offsets, unless `always_partition` is set.
    Window, shift and mask are derived from the runtime shape, so one graph serves every
    input size.

    Args:
        num_heads: int, attention heads; must divide the channels.
        window_size: int, window side M. Default 7.
        shift_size: int, cyclic shift; 0 for regular blocks, M // 2 for shifted ones.
        mlp_ratio: float, MLP hidden width as a multiple of C. Default 4.0.
        qkv_bias: bool. Default True.
        dropout_rate: float in [0, 1), after the attention projection and MLP layers.
        attention_dropout_rate: float in [0, 1), on attention weights.
        drop_path_rate: float in [0, 1), stochastic depth of both residual branches.
        norm_epsilon: float, LayerNorm epsilon. Default 1e-5.
        always_partition: bool, keep `window_size` and the shift on maps smaller than the
            window (padding them to one window), as the detection and segmentation
            backbones do (official detection code, mmseg, Hugging Face `SwinBackbone`).
            Default False (the classification models' rule above).
        per_axis_window: bool, MONAI's rule (SwinUNETR's `get_window_size`): on each axis
            where the map is at most `window_size`, the window shrinks to the map and that
            axis is not shifted, while the other axis keeps the window and the shift. The
            bias of a shrunk window is then read as MONAI reads it (the attention's
            `truncated_bias_index`). Excludes `always_partition`. Default False.
        remat: bool, gradient checkpointing: in training, keep only the block's input for
            the backward pass and recompute its activations there (`keras.remat`), with the
            same dropout and stochastic-depth masks. Outputs and gradients are unchanged;
            inference (training falsy) runs the plain block. Default False.

    Input and output shape: `(B, H, W, C)`.
    """

    def __init__(
        self,
        num_heads,
        window_size=7,
        shift_size=0,
        mlp_ratio=4.0,
        qkv_bias=True,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        norm_epsilon=1e-5,
        always_partition=False,
        per_axis_window=False,
        remat=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(window_size) < 1:
            raise ValueError(f"`window_size` must be >= 1; received window_size={window_size}.")
        if not 0 <= int(shift_size) < int(window_size):
            raise ValueError(
                f"`shift_size` must be in [0, window_size={window_size}); "
                f"received shift_size={shift_size}."
            )
        if always_partition and per_axis_window:
            raise ValueError(
                "`always_partition` and `per_axis_window` are two rules for small maps; received "
                "both True, expected at most one."
            )
        if float(mlp_ratio) <= 0:
            raise ValueError(f"`mlp_ratio` must be > 0; received mlp_ratio={mlp_ratio}.")
        check_rates(
            dropout_rate=dropout_rate, attention_dropout_rate=attention_dropout_rate, drop_path_rate=drop_path_rate
        )
        self.num_heads = int(num_heads)
        self.window_size = int(window_size)
        self.shift_size = int(shift_size)
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.dropout_rate = float(dropout_rate)
        self.attention_dropout_rate = float(attention_dropout_rate)
        self.drop_path_rate = float(drop_path_rate)
        self.norm_epsilon = float(norm_epsilon)
        self.always_partition = bool(always_partition)
        self.per_axis_window = bool(per_axis_window)
        self.remat = bool(remat)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "SwinBlock expects a 4D input (batch, height, width, channels) with known "
                f"channels; received shape {tuple(input_shape)}."
            )
        channels = input_shape[-1]
        self.input_spec = keras.InputSpec(ndim=4, axes={-1: channels})
        policy = self.dtype_policy
        self.norm1 = keras.layers.LayerNormalization(
            epsilon=self.norm_epsilon, dtype=policy, name="norm1"
        )
        self.norm1.build(input_shape)
        self.attention = self._make_attention()
        self.attention.build((None, None, channels))
        self.drop_path = DropPath(self.drop_path_rate, dtype=policy, name="drop_path")
        self.norm2 = keras.layers.LayerNormalization(
            epsilon=self.norm_epsilon, dtype=policy, name="norm2"
        )
        self.norm2.build(input_shape)
        hidden = int(channels * self.mlp_ratio)
        self.mlp_fc1 = keras.layers.Dense(
            hidden, kernel_initializer=dense_kernel_initializer(), dtype=policy, name="mlp_fc1"
        )
        self.mlp_fc1.build(input_shape)
        self.mlp_fc2 = keras.layers.Dense(
            channels, kernel_initializer=dense_kernel_initializer(), dtype=policy, name="mlp_fc2"
        )
        self.mlp_fc2.build(tuple(input_shape[:-1]) + (hidden,))
        self.mlp_dropout = keras.layers.Dropout(self.dropout_rate, dtype=policy, name="mlp_dropout")

    def _make_attention(self):
        return WindowAttention(
            self.num_heads,
            window_size=self.window_size,
            qkv_bias=self.qkv_bias,
            attention_dropout_rate=self.attention_dropout_rate,
            projection_dropout_rate=self.dropout_rate,
            truncated_bias_index=self.per_axis_window,
            dtype=self.dtype_policy,
            name="attention",
        )

    def _window_and_shift(self, height, width):
        """`((window_h, window_w), (shift_h, shift_w))` on a `height x width` map."""
        if self.per_axis_window:
            return swin_ops.per_axis_window(height, width, self.window_size, self.shift_size)
        if self.always_partition:
            window, shift = swin_ops.constant_window(height, width, self.window_size, self.shift_size)
        else:
            window, shift = swin_ops.effective_window(height, width, self.window_size, self.shift_size)
        return (window, window), (shift, shift)

    def _attend(self, x, training):
        """Window attention on a normalised `(B, H, W, C)` map."""
        height, width = swin_ops.spatial_shape(x)
        window, shift = self._window_and_shift(height, width)
        x = swin_ops.pad_to_multiple(x, *window)
        padded_h, padded_w = swin_ops.spatial_shape(x)
        # With a static shape and no shift the mask is all zeros and is skipped.
        shifted = self.shift_size > 0 and not (swin_ops.is_static(*shift) and shift == (0, 0))
        mask = None
        if shifted:
            x = swin_ops.cyclic_shift(x, shift)
            mask = swin_ops.shifted_window_mask(padded_h, padded_w, window, shift)
        windows = swin_ops.window_partition(x, *window)
        windows = self.attention(windows, attention_mask=mask, window_shape=window, training=training)
        x = swin_ops.window_reverse(windows, *window, padded_h, padded_w)
        if shifted:
            x = swin_ops.reverse_cyclic_shift(x, shift)
        if swin_ops.is_static(height, width, padded_h, padded_w) and (padded_h, padded_w) == (height, width):
            return x  # nothing was padded: no crop (one op less per block in an eager call)
        return x[:, :height, :width]

    def _mlp(self, x, training):
        """The MLP on `(B, H, W, C)`, run on `(B * H * W, C)` rows: a 2D Dense is a plain
        matmul, which graph optimisers fuse with its bias add and GELU (a Dense on a 4D
        input goes through a reshaping tensordot that blocks that fusion)."""
        shape = ops.shape(x)
        rows = ops.reshape(x, (-1, x.shape[-1]))
        hidden = swin_ops.gelu(self.mlp_fc1(self.norm2(rows)))
        hidden = apply_if_active(self.mlp_dropout, hidden, training)
        hidden = apply_if_active(self.mlp_dropout, self.mlp_fc2(hidden), training)
        return ops.reshape(hidden, shape)

    def _residual_branches(self, x, training):
        """The block itself: the attention and MLP residual branches (V2 overrides it)."""
        attended = self._attend(self.norm1(x), training)
        x = x + apply_if_active(self.drop_path, attended, training)
        return x + apply_if_active(self.drop_path, self._mlp(x, training), training)

    def call(self, x, training=None):
        if self.remat and training:
            return self._checkpointed_branches(x, training)
        return self._residual_branches(x, training)

    def _checkpointed_branches(self, x, training):
        """`_residual_branches` under `keras.remat`: the backward pass gets only the block's
        input (and weights) and runs the block again to rebuild its activations.

        The checkpointed function is pure. The trainable weights come in as arguments, and
        the other variables (the seed states of dropout and stochastic depth) are read once,
        before it; a `StatelessScope` maps both. So the recomputation draws the very masks
        of the forward pass: a plain `keras.remat(self.call)` would not, since TensorFlow's
        `recompute_grad` re-reads seed states that the forward pass has advanced, and JAX's
        `checkpoint` cannot let the seed updates out of its trace. The seed generators then
        advance here, outside, by as many draws as the forward pass made, so the random
        stream is the one without remat.
        """
        trainable = self.trainable_variables
        tracked = {id(variable) for variable in trainable}
        # Read now (a copy: TensorFlow's conversion of a variable is the variable itself): the
        # recomputation must see these values, not the advanced ones.
        frozen = [
            (variable, ops.copy(variable.value))
            for variable in self.variables
            if id(variable) not in tracked
        ]
        updates = []

        def branches(inputs, *weights):
            with _CountingScope(list(zip(trainable, weights)) + frozen) as scope:
                outputs = self._residual_branches(inputs, training)
            updates.append(scope.update_counts)  # the forward pass's come first
            return outputs

        weights = [ops.convert_to_tensor(variable.value) for variable in trainable]
        outputs = keras.remat(branches)(x, *weights)
        for generator in self._seed_generators_in_block():
            for _ in range(updates[0][id(generator.state)]):
                generator.next()
        return outputs

    def _seed_generators_in_block(self):
        """The seed generators of the block's random layers (dropout, stochastic depth)."""
        layers = (
            self.drop_path,
            self.mlp_dropout,
            self.attention.attention_dropout,
            self.attention.projection_dropout,
        )
        return [layer.seed_generator for layer in layers if getattr(layer, "seed_generator", None) is not None]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "window_size": self.window_size,
            "shift_size": self.shift_size,
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "dropout_rate": self.dropout_rate,
            "attention_dropout_rate": self.attention_dropout_rate,
            "drop_path_rate": self.drop_path_rate,
            "norm_epsilon": self.norm_epsilon,
            "always_partition": self.always_partition,
            "per_axis_window": self.per_axis_window,
            "remat": self.remat,
        }
