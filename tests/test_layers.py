"""Every public layer through the shared harness, plus the behaviour each layer pins."""

import numpy as np
import pytest
from keras import ops

from harness import LayerChecks, random_inputs
from keras_swin import DropPath, PatchEmbedding, PatchMerging, SwinBlock, WindowAttention

LAYER_CASES = {
    "PatchEmbedding": LayerChecks(
        PatchEmbedding, dict(patch_size=4, embed_dim=16), (2, 18, 23, 3), (None, None, 3)
    ),
    "PatchMerging": LayerChecks(PatchMerging, dict(norm_epsilon=1e-5), (2, 7, 10, 8), (None, None, 8)),
    "WindowAttention": LayerChecks(
        WindowAttention, dict(num_heads=2, window_size=(3, 4)), (4, 12, 8), (12, 8)
    ),
    "SwinBlock": LayerChecks(
        SwinBlock, dict(num_heads=2, window_size=4, shift_size=2), (2, 9, 13, 8), (None, None, 8)
    ),
    "SwinBlock_regular": LayerChecks(
        SwinBlock, dict(num_heads=2, window_size=4, shift_size=0), (2, 8, 12, 8), (8, 12, 8)
    ),
    "DropPath": LayerChecks(DropPath, dict(rate=0.25, seed=3), (4, 5, 6), (5, 6)),
}


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_layer_harness(name, tmp_path):
    LAYER_CASES[name].run_all(tmp_path)


def test_patch_embedding_pads_to_patch_multiple():
    layer = PatchEmbedding(patch_size=4, embed_dim=8, use_norm=False)
    x = random_inputs((1, 5, 9, 3))
    out = layer(x)
    assert out.shape == (1, 2, 3, 8)
    # The padded bottom-right patch sees zeros: equal to convolving the explicitly padded image.
    padded = np.zeros((1, 8, 12, 3), "float32")
    padded[:, :5, :9] = x
    expected = layer.projection(padded)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_patch_embedding_starts_like_the_official_conv():
    # The official code leaves PatchEmbed's Conv2d at PyTorch's default: weights and bias
    # uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)]. (Linear layers use trunc_normal 0.02.)
    layer = PatchEmbedding(patch_size=4, embed_dim=256)
    layer.build((None, 32, 32, 3))
    bound = 1.0 / np.sqrt(4 * 4 * 3)
    kernel = ops.convert_to_numpy(layer.projection.kernel)
    bias = ops.convert_to_numpy(layer.projection.bias)
    assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
    np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3.0), rtol=0.05)
    assert bias.std() > bound / 3.0


def test_patch_merging_official_order():
    layer = PatchMerging()
    x = random_inputs((1, 4, 6, 3))
    layer.build(x.shape)
    layer.norm.gamma.assign(np.ones(12))
    layer.reduction.kernel.assign(np.eye(12, 6))  # keep the first 6 of the 12 channels
    merged = np.asarray(layer.norm(ops.concatenate(
        [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], axis=-1
    )))
    np.testing.assert_allclose(layer(x), merged[..., :6], atol=1e-6)


def test_patch_merging_pads_odd_sizes():
    x = random_inputs((2, 5, 7, 4))
    layer = PatchMerging(output_dim=6)
    out = layer(x)
    assert out.shape == (2, 3, 4, 6)
    padded = np.zeros((2, 6, 8, 4), "float32")
    padded[:, :5, :7] = x
    np.testing.assert_allclose(out, layer(padded), atol=1e-6)


def test_window_attention_matches_definition():
    layer = WindowAttention(num_heads=2, window_size=(2, 3))
    x = random_inputs((3, 6, 8))
    layer.build(x.shape)
    table = np.random.RandomState(1).standard_normal((15, 2)).astype("float32")
    layer.relative_position_bias_table.assign(table)
    mask = np.where(np.random.RandomState(2).rand(3, 6, 6) > 0.5, -100.0, 0.0).astype("float32")
    out = np.asarray(layer(x, attention_mask=mask))

    qkv = x @ np.asarray(layer.qkv.kernel) + np.asarray(layer.qkv.bias)
    q, k, v = np.split(qkv.reshape(3, 6, 3, 2, 4), 3, axis=2)
    q, k, v = (t[:, :, 0].transpose(0, 2, 1, 3) for t in (q, k, v))
    coords = [(r, c) for r in range(2) for c in range(3)]
    bias = np.zeros((2, 6, 6), "float32")
    for i, (ri, ci) in enumerate(coords):
        for j, (rj, cj) in enumerate(coords):
            bias[:, i, j] = table[(ri - rj + 1) * 5 + (ci - cj + 2)]
    logits = q @ k.transpose(0, 1, 3, 2) * 4**-0.5 + bias + mask[:, None]
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    attended = (weights @ v).transpose(0, 2, 1, 3).reshape(3, 6, 8)
    expected = attended @ np.asarray(layer.projection.kernel) + np.asarray(layer.projection.bias)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_window_attention_mixed_precision_survives_large_logits():
    layer = WindowAttention(num_heads=1, window_size=2, dtype="mixed_float16")
    x = random_inputs((1, 4, 4)) * 30.0
    mask = np.full((1, 4, 4), -100.0, "float32")
    out = layer(x, attention_mask=mask)
    assert np.all(np.isfinite(ops.convert_to_numpy(ops.cast(out, "float32"))))


def test_drop_path_is_per_sample_and_training_only():
    layer = DropPath(rate=0.5, seed=1)
    x = np.ones((64, 3, 4), "float32")
    np.testing.assert_array_equal(layer(x), x)  # inference: identity
    out = np.asarray(layer(x, training=True))
    per_sample = out.reshape(64, -1)
    # Each sample is either all zeros or all scaled by 1 / (1 - rate).
    assert set(np.unique(per_sample)) <= {0.0, 2.0}
    assert np.all(per_sample.min(1) == per_sample.max(1))
    assert 10 < (per_sample[:, 0] == 0).sum() < 54


@pytest.mark.parametrize(
    "factory, kwargs, message",
    [
        (lambda **k: WindowAttention(**k), dict(num_heads=0), "num_heads"),
        (lambda **k: WindowAttention(**k), dict(num_heads=2, window_size=0), "window_size"),
        (lambda **k: WindowAttention(**k), dict(num_heads=2, attention_dropout_rate=1.0), "attention_dropout_rate"),
        (lambda **k: SwinBlock(**k), dict(num_heads=2, window_size=0), "window_size"),
        (lambda **k: SwinBlock(**k), dict(num_heads=2, window_size=4, shift_size=4), "shift_size"),
        (lambda **k: SwinBlock(**k), dict(num_heads=2, drop_path_rate=-0.1), "drop_path_rate"),
        (lambda **k: DropPath(**k), dict(rate=1.0), "rate"),
        (lambda **k: PatchEmbedding(**k), dict(patch_size=0), "patch_size"),
    ],
)
def test_bad_constructor_arguments(factory, kwargs, message):
    with pytest.raises(ValueError, match=message):
        factory(**kwargs)


def test_heads_must_divide_channels():
    with pytest.raises(ValueError, match="num_heads.*divide.*10 channels"):
        SwinBlock(num_heads=3, window_size=4)(random_inputs((1, 8, 8, 10)))


@pytest.mark.parametrize("layer", [SwinBlock(2, 4), PatchMerging(), PatchEmbedding(4, 8)])
def test_rank_must_be_four(layer):
    with pytest.raises(ValueError, match="4D input"):
        layer(random_inputs((2, 8, 8)))


def test_wrong_channel_count_after_build():
    layer = SwinBlock(num_heads=2, window_size=4)
    layer(random_inputs((1, 8, 8, 8)))
    with pytest.raises(ValueError, match="axis -1"):
        layer(random_inputs((1, 8, 8, 6)))
