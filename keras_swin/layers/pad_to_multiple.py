"""Zero padding of a map up to a multiple of a size, decided at run time."""

import keras

from keras_swin import ops as swin_ops


@keras.saving.register_keras_serializable(package="keras_swin")
class PadToMultiple(keras.layers.Layer):
    """Zero-pads `(B, H, W, C)` at the bottom and right so that H and W are multiples of
    `multiple` (a U-Net whose levels halve the map `n` times needs `2**n`). The padding is
    computed from the runtime shape, so one graph serves every input size.

    Args:
        multiple: int >= 1.

    Input shape: `(B, H, W, C)`.
    Output shape: `(B, ceil(H / multiple) * multiple, ceil(W / multiple) * multiple, C)`.
    """

    def __init__(self, multiple, **kwargs):
        super().__init__(**kwargs)
        if int(multiple) < 1:
            raise ValueError(f"`multiple` must be >= 1; received multiple={multiple}.")
        self.multiple = int(multiple)

    def call(self, x):
        return swin_ops.pad_to_multiple(x, self.multiple, self.multiple)

    def compute_output_shape(self, input_shape):
        def up(size):
            return None if size is None else -(-size // self.multiple) * self.multiple

        return (input_shape[0], up(input_shape[1]), up(input_shape[2])) + tuple(input_shape[3:])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}
