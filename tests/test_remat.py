"""Gradient checkpointing (`remat=True`) on every family: the same gradients, outputs and
random stream as without it, on TensorFlow (eager and graph; XLA fits) and JAX; the blocks really
recompute in the backward pass and keep less for it; the inference graph is unchanged; the
config round-trips and old files load; `keras-swin train --remat` reaches the model."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_swin
from harness import LayerChecks, ModelChecks, random_inputs, run_python
from keras_swin.cli import build_parser
from keras_swin.layers import SwinBlock
from keras_swin.models.upernet import build_upernet
from keras_swin.training import classification, recipe
from keras_swin.training.recipe import TrainConfig

GRADIENT_TOLERANCE = 1e-5
# Dropout, attention dropout and stochastic depth all on: the recomputation must draw the
# forward pass's masks.
RANDOM = dict(dropout_rate=0.1, attention_dropout_rate=0.1, drop_path_rate=0.3)
# Small configs of each family, every stage with a shifted block where the map allows it,
# and sizes that are not multiples of the window.
V1 = dict(embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4, include_top=True, classes=3,
          classifier_activation=None, **RANDOM)
BACKBONE = dict(embed_dim=16, depths=(2, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4, pyramid_norm=True,
                include_final_norm=False, always_partition=True, **RANDOM)
UNETR = dict(in_channels=1, out_channels=2, feature_size=12, depths=(2, 1, 1, 1), num_heads=(3, 6, 12, 24),
             window_size=4, drop_rate=0.1, attn_drop_rate=0.1, dropout_path_rate=0.3)


def v1(remat=False, **kwargs):
    return keras_swin.SwinTransformer(**V1, remat=remat, **kwargs)


def v2(remat=False, **kwargs):
    return keras_swin.SwinTransformerV2(**V1, pretrained_window_sizes=(6, 0), remat=remat, **kwargs)


def upernet(remat=False, **kwargs):
    backbone = keras_swin.SwinTransformer(**BACKBONE, remat=remat, dtype=kwargs.get("dtype"))
    return keras_swin.UPerNet(backbone, num_classes=3, channels=16, **kwargs)


def swin_unetr(remat=False, **kwargs):
    return keras_swin.SwinUNETR(**UNETR, remat=remat, **kwargs)


FAMILIES = {
    "v1": (v1, (2, 30, 22, 3)),
    "v2": (v2, (2, 30, 22, 3)),
    "upernet": (upernet, (2, 64, 40, 3)),
    "swin_unetr": (swin_unetr, (1, 40, 36, 1)),
}


def _images(shape):
    return random_inputs(shape) * 50 + 120 if shape[-1] == 3 else random_inputs(shape)


def _blocks(model):
    return [layer for layer in model._flatten_layers() if isinstance(layer, SwinBlock)]


def _twins(factory):
    """A model without and one with remat, holding the same variables (seed states too)."""
    plain, checkpointed = factory(remat=False), factory(remat=True)
    # Seed generators are numbered globally, so their paths differ; the rest is the same.
    assert [(v.shape, v.dtype) for v in plain.variables] == [(v.shape, v.dtype) for v in checkpointed.variables]
    assert [v.path for v in plain.weights] == [v.path for v in checkpointed.weights]
    for source, target in zip(plain.variables, checkpointed.variables):
        target.assign(source)
    return plain, checkpointed


def _gradient_step(model, mode):
    """`step(images) -> (loss, gradients)` of one training-mode call, run "eager" or as a
    tf.function ("graph"); XLA training is in `test_swin_block_layer_checks`."""

    def step(x):
        with tf.GradientTape() as tape:
            outputs = model(x, training=True)
            loss = keras.ops.mean(keras.ops.square(keras.ops.cast(outputs, "float32") - 1.0))
        # The bias tables' gradients are IndexedSlices (they are gathered from).
        gradients = [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_variables)]
        return loss, gradients

    if mode == "graph":
        step = tf.function(step)

    def run(images):
        loss, gradients = step(tf.constant(images))
        return float(loss), [g.numpy() for g in gradients]

    return run


def _relative_difference(expected, got):
    """Max abs difference, in units of the tensor's largest gradient when that is above 1
    (graph optimisers fuse the recomputed ops in another order: a few float32 ulps of
    gradients as large as 12 were measured; eager runs are bitwise equal)."""
    return float(np.abs(expected - got).max()) / max(1.0, float(np.abs(expected).max()))


@pytest.mark.parametrize(
    "family, mode",
    [("v1", "eager"), ("v1", "graph"), ("v2", "graph"), ("upernet", "eager"), ("swin_unetr", "eager")],
)
def test_gradients_with_and_without_remat_agree(family, mode):
    """Same loss and gradients to 1e-5 with dropout and stochastic depth on, and the seed
    generators end in the same state: the recomputation drew the forward pass's masks and
    the random stream is the one without remat."""
    factory, shape = FAMILIES[family]
    plain, checkpointed = _twins(factory)
    images = _images(shape)
    plain_step, remat_step = _gradient_step(plain, mode), _gradient_step(checkpointed, mode)
    for step in range(2):  # the second step runs on the advanced seeds
        plain_loss, plain_gradients = plain_step(images)
        remat_loss, remat_gradients = remat_step(images)
        assert abs(plain_loss - remat_loss) <= GRADIENT_TOLERANCE, (step, plain_loss, remat_loss)
        worst = max(_relative_difference(a, b) for a, b in zip(plain_gradients, remat_gradients))
        assert worst <= GRADIENT_TOLERANCE, (step, worst)
        assert sum(np.any(g) for g in remat_gradients) == sum(np.any(g) for g in plain_gradients) > 0
    # The integer variables are the seed states.
    seeds = [(a.path, a.numpy(), b.numpy()) for a, b in zip(plain.variables, checkpointed.variables)
             if "int" in a.dtype]
    assert seeds and all(np.array_equal(a, b) for _, a, b in seeds), seeds


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_blocks_recompute_in_the_backward_pass(family, monkeypatch):
    """With remat every Swin block runs twice per gradient (forward, then again in the
    backward pass), without it once; a call outside training runs it once either way."""
    factory, shape = FAMILIES[family]
    images = tf.constant(_images(shape))
    runs = []
    for block_class in {type(block) for block in _blocks(factory())}:
        original = block_class._residual_branches

        def counted(self, x, training, original=original):
            runs.append(self.name)
            return original(self, x, training)

        monkeypatch.setattr(block_class, "_residual_branches", counted)
    for remat, per_gradient in ((False, 1), (True, 2)):
        model = factory(remat=remat)
        blocks = len(_blocks(model))
        del runs[:]
        with tf.GradientTape() as tape:
            loss = keras.ops.mean(model(images, training=True))
        tape.gradient(loss, model.trainable_variables)
        assert len(runs) == per_gradient * blocks, (remat, len(runs), blocks)
        del runs[:]
        model(images)
        model(images, training=False)
        assert len(runs) == 2 * blocks, (remat, len(runs), blocks)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_inference_graph_and_outputs_are_unchanged(family):
    """The inference graph (what predict and the SavedModel/TFLite exports trace) has the same
    ops with and without remat, and the outputs are the same."""
    factory, shape = FAMILIES[family]
    plain, checkpointed = _twins(factory)
    images = _images(shape)
    op_types = []
    for model in (plain, checkpointed):
        function = tf.function(lambda x, model=model: model(x, training=False))
        graph = function.get_concrete_function(tf.TensorSpec((None, None, None, shape[-1]))).graph
        op_types.append(sorted(op.type for op in graph.get_operations()))
    assert op_types[0] == op_types[1]
    expected = keras.ops.convert_to_numpy(plain(images))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(checkpointed(images)), expected)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_config_round_trip_and_keras_file(family, tmp_path):
    factory, shape = FAMILIES[family]
    checks = ModelChecks(lambda **kwargs: factory(remat=True, **kwargs), shape)
    checks.check_config_round_trip()
    checks.check_save_and_load(tmp_path)
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    blocks = _blocks(loaded)
    assert blocks and all(block.remat for block in blocks)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_configs_without_the_key_load_without_remat(family):
    """Files saved before `remat` existed have no such key: they load, without remat."""
    factory, _ = FAMILIES[family]
    model = factory(remat=True)
    config = json.loads(json.dumps(model.get_config()))
    owner = config["backbone"]["config"] if family == "upernet" else config
    assert owner.pop("remat") is True
    restored = type(model).from_config(config)
    blocks = _blocks(restored)
    assert blocks and not any(block.remat for block in blocks)


def test_mixed_precision_gradients_agree():
    """Under mixed_bfloat16 the weights reach the recomputation through their bfloat16
    casts: the same loss and gradients as without remat."""
    plain, checkpointed = _twins(lambda remat: v1(remat=remat, dtype="mixed_bfloat16"))
    images = _images((2, 30, 22, 3))
    (plain_loss, plain_gradients), (remat_loss, remat_gradients) = (
        _gradient_step(model, "eager")(images) for model in (plain, checkpointed)
    )
    assert plain_loss == remat_loss
    assert max(_relative_difference(a, b) for a, b in zip(plain_gradients, remat_gradients)) <= GRADIENT_TOLERANCE


def test_swin_block_layer_checks():
    """The layer's config round-trips, and a jit-compiled (XLA) fit step through the
    checkpointed block moves every weight."""
    checks = LayerChecks(
        SwinBlock, dict(num_heads=2, window_size=4, shift_size=2, drop_path_rate=0.2, remat=True), (2, 9, 7, 8)
    )
    checks.check_config_round_trip()
    checks.check_jit_fit_step()


def test_build_upernet_passes_remat_to_the_backbone():
    model = build_upernet("swin_t", num_classes=2, channels=8, input_shape=(64, 64, 3), remat=True)
    assert model.backbone.remat and model.backbone.get_config()["remat"] is True
    assert all(block.remat for block in _blocks(model.backbone))


def test_train_remat_flag_reaches_the_model(tmp_path):
    args = build_parser().parse_args(["train", "--remat", "--output", str(tmp_path / "run")])
    assert args.remat is True
    assert build_parser().parse_args(["train"]).remat is False
    config = TrainConfig(remat=True, output=str(tmp_path / "run"))
    model = classification.create_model(config, num_classes=3)
    assert model.remat and all(block.remat for block in _blocks(model))
    assert not classification.create_model(TrainConfig(output=str(tmp_path / "run")), num_classes=3).remat


def test_train_config_refuses_a_remat_that_is_not_a_bool(tmp_path):
    with pytest.raises(ValueError, match=r"--remat .*received remat='yes'"):
        recipe.check_config(TrainConfig(remat="yes", output=str(tmp_path / "run")))


def test_jax_gradients_agree_and_remat_keeps_less_for_the_backward_pass():
    """On JAX (jax.checkpoint), jit-compiled as Keras's trainer runs it: the same loss,
    gradients and updated seed states with and without remat, and far fewer bytes kept for
    the backward pass (the residuals of `jax.vjp`)."""
    out = run_python(
        f"""
        import json
        import jax, jax.numpy as jnp, numpy as np, keras
        assert keras.backend.backend() == "jax"
        import keras_swin
        keras.utils.set_random_seed(0)
        config = {V1!r}
        plain = keras_swin.SwinTransformer(**config, remat=False)
        remat = keras_swin.SwinTransformer(**config, remat=True)
        for source, target in zip(plain.variables, remat.variables):
            target.assign(source)
        x = np.random.RandomState(0).uniform(0, 255, (2, 30, 22, 3)).astype("float32")

        def results(model):
            non_trainable = [v.value for v in model.non_trainable_variables]

            def loss(trainable):
                y, updated = model.stateless_call(trainable, non_trainable, x, training=True)
                return jnp.mean(jnp.square(y - 1.0)), updated

            trainable = [v.value for v in model.trainable_variables]
            (value, updated), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(trainable)
            residuals = jax.eval_shape(lambda t: jax.vjp(lambda t: loss(t)[0], t)[1], trainable)
            kept = sum(int(np.prod(r.shape)) * r.dtype.itemsize for r in jax.tree_util.tree_leaves(residuals))
            return float(value), [np.asarray(g) for g in grads], [np.asarray(u) for u in updated], kept

        a, b = results(plain), results(remat)
        print("RESULT", json.dumps({{
            "loss": abs(a[0] - b[0]),
            "gradients": max(float(np.abs(g - h).max()) for g, h in zip(a[1], b[1])),
            "zero_gradients": sum(not np.any(h) for h in b[1]),
            "states_equal": all(np.array_equal(u, v) for u, v in zip(a[2], b[2])),
            "kept": [a[3], b[3]],
        }}))
        """,
        env={"KERAS_BACKEND": "jax"},
    )
    result = json.loads(out.split("RESULT")[-1])
    assert result["loss"] <= GRADIENT_TOLERANCE, result
    assert result["gradients"] <= GRADIENT_TOLERANCE, result
    assert result["zero_gradients"] == 0, result
    assert result["states_equal"], result
    plain_kept, remat_kept = result["kept"]
    assert remat_kept < 0.5 * plain_kept, result
