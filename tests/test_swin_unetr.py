"""SwinUNETR (2D): parity against MONAI's `SwinUNETR(spatial_dims=2)` (logits, hidden states and
parameter counts, every option), MONAI's window rule and bias reading, the instance norm,
checkpoints (whole models, the self-supervised encoder, refusals), any input size in one
graph, TFLite builtins, serialization and argument checks."""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
from monai.networks.nets import SwinUNETR as MonaiSwinUNETR
from monai.networks.nets.swin_unetr import WindowAttention as MonaiWindowAttention
from monai.networks.nets.swin_unetr import compute_mask, get_window_size
from safetensors.numpy import save_file

from checkpoints import timm_state_dict
from harness import LayerChecks, ModelChecks, random_inputs
from keras_swin import export
from keras_swin import ops as swin_ops
from keras_swin.checkpoints.files import WeightsMismatchError
from keras_swin.checkpoints.swin import official_state
from keras_swin.checkpoints.swin_unetr import ENCODER_LAYOUT, FULL_LAYOUT, load_state
from keras_swin.configs import IMAGENET_MEAN, IMAGENET_STD
from keras_swin.layers import CropToReference, PadToMultiple, UnetResidualBlock
from keras_swin.models.swin import SwinTransformer
from keras_swin.models.swin_unetr import SwinUNETR

TOLERANCE = 1e-4
# Small enough for two CPU cores, with every stage shifted (depth 2) and MONAI's default heads.
SMALL = dict(in_channels=1, out_channels=3, feature_size=12, depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24))


def monai_reference(seed=0, **config):
    """A random MONAI SwinUNETR in eval mode whose biases, norms, bias tables and BatchNorm
    statistics are moved off their initial values, so that a wrong mapping shows."""
    torch.manual_seed(seed)
    model = MonaiSwinUNETR(spatial_dims=2, **config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or "norm" in name or "relative_position_bias_table" in name:
                param.add_(torch.randn_like(param) * 0.5)
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0.0, 0.5)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
    return model


def monai_state(model):
    return {key: value.detach().numpy() for key, value in model.state_dict().items()}


def nchw(images):
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def monai_logits(model, images):
    with torch.no_grad():
        return model(nchw(images)).numpy().transpose(0, 2, 3, 1)


def monai_hidden_states(model, images):
    with torch.no_grad():
        states = model.swinViT(nchw(images), model.normalize)
    return [state.numpy().transpose(0, 2, 3, 1) for state in states]


def converted(reference, **config):
    model = SwinUNETR(**config)
    assert load_state(model, monai_state(reference)) == FULL_LAYOUT
    return model


def max_diff(got, expected):
    return float(np.abs(keras.ops.convert_to_numpy(got) - expected).max())


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def check_parity(model, reference, images):
    diff = max_diff(model(images), monai_logits(reference, images))
    assert diff <= TOLERANCE, diff
    assert trainable_count(model) == sum(p.numel() for p in reference.parameters())


@pytest.fixture(scope="module")
def small_pair():
    reference = monai_reference(**SMALL)
    return reference, converted(reference, **SMALL)


# --------------------------------------------------------------------------- MONAI's rules


@pytest.mark.parametrize("size", [(56, 56), (7, 7), (4, 7), (7, 4), (6, 10), (10, 6), (1, 1), (3, 100)])
def test_per_axis_window_is_monais_get_window_size(size):
    expected = get_window_size(size, (7, 7), (3, 3))
    window, shift = swin_ops.per_axis_window(*size, 7, 3)
    assert (window, shift) == expected
    dynamic = swin_ops.per_axis_window(*(tf.constant(s) for s in size), 7, 3)
    assert tuple(tuple(int(v) for v in pair) for pair in dynamic) == expected


@pytest.mark.parametrize("window", [(7, 7), (4, 7), (7, 4), (4, 6), (1, 3)])
def test_truncated_bias_index_is_monais(window):
    monai_index = MonaiWindowAttention(12, 3, (7, 7)).relative_position_index.numpy()
    tokens = window[0] * window[1]
    index = keras.ops.convert_to_numpy(swin_ops.truncated_position_index(tokens, 7, 7))
    np.testing.assert_array_equal(index, monai_index[:tokens, :tokens])


@pytest.mark.parametrize("padded, window, shift", [((14, 21), (7, 7), (3, 3)), ((14, 6), (7, 6), (3, 0)),
                                                   ((4, 21), (4, 7), (0, 3))])
def test_shifted_window_mask_per_axis_is_monais(padded, window, shift):
    expected = compute_mask(list(padded), window, shift, "cpu").numpy()
    mask = keras.ops.convert_to_numpy(swin_ops.shifted_window_mask(*padded, window, shift))
    np.testing.assert_array_equal(mask, expected)


def test_instance_normalize_is_torch_instance_norm_on_a_zero_padded_map():
    x = np.zeros((2, 64, 96, 5), "float32")
    x[:, :50, :70] = random_inputs((2, 50, 70, 5)) * 0.3 + 0.1
    expected = torch.nn.functional.instance_norm(nchw(x), eps=1e-5).numpy().transpose(0, 2, 3, 1)
    assert max_diff(swin_ops.instance_normalize(x), expected) <= 1e-5


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("size", [(64, 64), (96, 160), (160, 96)])
def test_parity_small_config(small_pair, size):
    reference, model = small_pair
    check_parity(model, reference, random_inputs((2,) + size + (1,)))


def test_parity_feature_size_24_at_128():
    config = dict(in_channels=4, out_channels=2, feature_size=24)
    reference = monai_reference(seed=1, **config)
    check_parity(converted(reference, **config), reference, random_inputs((1, 128, 128, 4), seed=1))


@pytest.mark.parametrize(
    "options",
    [dict(use_v2=True), dict(norm_name="batch"), dict(downsample="mergingv2"), dict(normalize=False)],
    ids=["use_v2", "batch", "mergingv2", "unnormalized"],
)
def test_parity_options(options):
    config = {**SMALL, **options}
    reference = monai_reference(seed=2, **config)
    check_parity(converted(reference, **config), reference, random_inputs((2, 64, 64, 1), seed=2))


def test_any_size_equals_monai_on_the_zero_padded_image(small_pair):
    """50x70 pads to 64x96: the last stage is 4x6, a window shrunk on both axes."""
    reference, model = small_pair
    images = random_inputs((2, 50, 70, 1), seed=3)
    padded = np.pad(images, ((0, 0), (0, 14), (0, 26), (0, 0)))
    expected = monai_logits(reference, padded)[:, :50, :70]
    assert max_diff(model(images), expected) <= TOLERANCE

    # One graph for every size: the sizes, windows and masks come from the runtime shape.
    run = tf.function(model, input_signature=[tf.TensorSpec((None, None, None, 1))])
    assert max_diff(run(images), expected) <= TOLERANCE
    other = random_inputs((1, 33, 64, 1), seed=4)
    assert max_diff(run(other), keras.ops.convert_to_numpy(model(other))) <= 1e-5
    assert len(run._list_all_concrete_functions()) == 1

    levels = keras.Model(model.input, model.pyramid_outputs)(images)
    for index, state in enumerate(monai_hidden_states(reference, padded)):
        assert max_diff(levels[f"P{index + 1}"], state) <= 1e-5, index


def test_builtins_only_tflite_equals_keras(small_pair):
    _, model = small_pair
    images = random_inputs((1, 50, 70, 1), seed=5)
    function = tf.function(lambda x: model(x, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec(images.shape))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    flatbuffer = converter.convert()
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert max_diff(model(images), got) <= TOLERANCE


# --------------------------------------------------------------------------- checkpoints


def _save(state, path):
    if path.suffix == ".safetensors":
        save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(path))
    else:
        torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, path)


@pytest.mark.parametrize("file_name, wrapped", [("monai.pt", False), ("monai.pth", True), ("monai.safetensors", False)])
def test_monai_checkpoint_files_load(small_pair, tmp_path, file_name, wrapped):
    reference, converted_model = small_pair
    path = tmp_path / file_name
    state = monai_state(reference)
    if wrapped:
        torch.save({"state_dict": {k: torch.from_numpy(v) for k, v in state.items()}, "epoch": 3}, path)
    else:
        _save(state, path)
    model = SwinUNETR(**SMALL, weights=str(path))
    images = random_inputs((1, 64, 64, 1), seed=6)
    assert max_diff(model(images), keras.ops.convert_to_numpy(converted_model(images))) == 0.0


@pytest.mark.parametrize("prefix", ["module.", "module.swin_vit."])
def test_self_supervised_encoder_loads_with_a_fresh_decoder(small_pair, tmp_path, caplog, prefix):
    """MONAI's tutorials fine-tune from the encoder of a self-supervised model: `module.`
    keys, encoder only, and pretraining heads beside it."""
    reference, _ = small_pair
    encoder = {prefix + k[len("swinViT."):]: torch.from_numpy(v) for k, v in monai_state(reference).items()
               if k.startswith("swinViT.")}
    encoder["module.rotation_head.weight"] = torch.zeros(4, 192)
    path = tmp_path / "model_swinvit.pt"
    torch.save({"state_dict": encoder}, path)

    model = SwinUNETR(**SMALL)
    decoder = {w.path: keras.ops.convert_to_numpy(w) for w in model.get_layer("decoder1_block").weights
               + model.get_layer("output_conv").weights}
    with caplog.at_level(logging.WARNING, logger="keras_swin"):
        assert model.load_checkpoint(str(path)) == ENCODER_LAYOUT
    assert "rotation_head.weight" in caplog.text
    images = random_inputs((1, 64, 64, 1), seed=7)
    levels = keras.Model(model.input, model.pyramid_outputs)(images)
    for index, state in enumerate(monai_hidden_states(reference, images)):
        assert max_diff(levels[f"P{index + 1}"], state) <= 1e-5, index
    for weight in model.get_layer("decoder1_block").weights + model.get_layer("output_conv").weights:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), decoder[weight.path])


def test_other_checkpoints_are_refused_naming_keys_and_shapes(small_pair):
    _, model = small_pair
    state = monai_state(small_pair[0])
    unknown = {"stem.conv.weight": np.zeros((96, 3, 4, 4), "float32")}
    with pytest.raises(WeightsMismatchError, match=r"Unrecognised SwinUNETR.*stem.conv.weight \(96, 3, 4, 4\)"):
        load_state(model, unknown)
    swin_t_like = {"patch_embed.proj.weight": np.zeros((96, 3, 4, 4), "float32"),
                   "layers.0.blocks.0.norm1.weight": np.zeros(96, "float32")}
    with pytest.raises(WeightsMismatchError, match=r"embed_dim=96; model 'swin_unetr' has feature_size=12\. Build "
                                                   r"the SwinUNETR with feature_size=96"):
        load_state(model, swin_t_like)
    three_d = {**state, "swinViT.patch_embed.proj.weight": np.zeros((12, 1, 2, 2, 2), "float32")}
    with pytest.raises(WeightsMismatchError, match=r"\(12, 1, 2, 2, 2\): a 3D SwinUNETR.*spatial_dims=2"):
        load_state(model, three_d)
    four_channels = {**state, "swinViT.patch_embed.proj.weight": np.zeros((12, 4, 2, 2), "float32")}
    with pytest.raises(WeightsMismatchError, match=r"made for in_channels=4; model 'swin_unetr' has in_channels=1"):
        load_state(model, four_channels)
    reshaped = {**state, "encoder10.layer.conv2.conv.weight": np.zeros((192, 192, 1, 1), "float32")}
    with pytest.raises(WeightsMismatchError, match=r"'encoder10.layer.conv2.conv.weight'.*expected \(3, 3, 192, 192\), "
                                                   r"found \(1, 1, 192, 192\)"):
        load_state(model, reshaped)
    missing = {k: v for k, v in state.items() if not k.startswith("decoder2.")}
    with pytest.raises(WeightsMismatchError, match=r"missing keys \['decoder2.conv_block"):
        load_state(model, missing)
    with pytest.raises(ValueError, match="no preset weights; received weights='imagenet'"):
        model.load_checkpoint("imagenet")


def _swin_classifier(**overrides):
    """A Swin V1 classifier as wide and deep as SMALL's encoder (4x4 patches, as ImageNet's),
    its weights drawn at random so that each tensor is distinct."""
    swin = SwinTransformer(**{**dict(patch_size=4, embed_dim=12, depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24),
                                     window_size=7, include_top=True, classes=5), **overrides})
    rng = np.random.default_rng(3)
    for weight in swin.weights:
        weight.assign(rng.normal(0.0, 0.5, weight.shape).astype("float32"))
    return swin


def _values(layer):
    return [keras.ops.convert_to_numpy(w) for w in layer.weights]


@pytest.mark.parametrize("layout", ["timm", "keras_swin"])
def test_swin_classifier_loads_into_the_encoder(tmp_path, caplog, layout):
    """An ImageNet-style Swin V1 classifier (a timm checkpoint, or a keras_swin `.keras` file):
    every Swin block and the three patch mergings load stage for stage; the 4x4 patch
    embedding, stage 4's merging and the decoder keep their initial weights; one log line
    says what was loaded and what was not."""
    swin = _swin_classifier()
    if layout == "timm":
        path = tmp_path / "swin_timm.pth"
        torch.save({k: torch.from_numpy(v) for k, v in timm_state_dict(official_state(swin)).items()}, path)
    else:
        path = tmp_path / "swin.keras"
        swin.save(path)
    model = SwinUNETR(**{**SMALL, "in_channels": 3})
    fresh = {name: _values(model.get_layer(name)) for name in ("patch_embedding", "stage4_merging", "encoder1",
                                                             "decoder1_block", "output_conv")}
    with caplog.at_level(logging.INFO, logger="keras_swin"):
        assert model.load_checkpoint(str(path)).startswith("swin_")
    loaded = [f"stage{stage}_block{index}" for stage in range(1, 5) for index in (1, 2)]
    loaded += [f"stage{stage}_merging" for stage in range(1, 4)]
    for name in loaded:
        for got, expected in zip(_values(model.get_layer(name)), _values(swin.get_layer(name)), strict=True):
            np.testing.assert_array_equal(got, expected, err_msg=name)
    for name, values in fresh.items():
        for got, expected in zip(_values(model.get_layer(name)), values, strict=True):
            np.testing.assert_array_equal(got, expected, err_msg=name)
    line = [r.getMessage() for r in caplog.records if "into the encoder" in r.getMessage()]
    assert len(line) == 1
    assert f"loaded {sum(len(model.get_layer(name).weights) for name in loaded)} of the model's" in line[0]
    freshly, unused = line[0].split("freshly initialised: ")[1].split("; not used from the checkpoint: ")
    assert "swinViT.patch_embed.proj" in freshly and "swinViT.layers4.0" in freshly and "decoder1" in freshly
    assert "head" in unused and "patch_embed.norm" in unused and "patch_embed.proj" in unused


def test_swin_classifier_of_another_width_or_version_is_refused(tmp_path):
    swin = _swin_classifier()
    path = tmp_path / "swin.pth"
    torch.save({k: torch.from_numpy(v) for k, v in official_state(swin).items()}, path)
    with pytest.raises(WeightsMismatchError, match=r"embed_dim=12; model 'swin_unetr' has feature_size=24"):
        SwinUNETR(**{**SMALL, "in_channels": 3, "feature_size": 24}, weights=str(path))
    v2_state = {**official_state(swin), "layers.0.blocks.0.attn.logit_scale": np.zeros((3, 1, 1), "float32")}
    with pytest.raises(WeightsMismatchError, match=r"Swin V2 checkpoint.*is Swin V1"):
        load_state(SwinUNETR(**{**SMALL, "in_channels": 3}), v2_state)


# --------------------------------------------------------------------------- the Keras model


def test_include_preprocessing_normalises_rgb_pixels_in_the_model():
    """With `include_preprocessing=True` (the training recipe's, for photographs) the model
    takes pixels in [0, 255] and equals the plain model on ImageNet-normalised images."""
    config = {**SMALL, "in_channels": 3, "depths": (1, 1, 1, 1)}
    plain, preprocessing = SwinUNETR(**config), SwinUNETR(**config, include_preprocessing=True)
    preprocessing.set_weights(plain.get_weights())
    pixels = np.random.default_rng(0).uniform(0, 255, (1, 40, 56, 3)).astype("float32")
    normalised = (pixels / 255.0 - np.array(IMAGENET_MEAN, "float32")) / np.array(IMAGENET_STD, "float32")
    assert max_diff(preprocessing(pixels), keras.ops.convert_to_numpy(plain(normalised))) <= 1e-5
    assert preprocessing.get_config()["include_preprocessing"] is True
    with pytest.raises(ValueError, match=r"`include_preprocessing=True`.*needs in_channels=3; received in_channels=1"):
        SwinUNETR(**SMALL, include_preprocessing=True)


@pytest.mark.slow
def test_saved_model_of_one_and_of_three_channels(tmp_path):
    """A segmenter's signatures: `logits` and `class_map` at two sizes from one SavedModel;
    the bytes signature for an RGB model only (a 1-channel model has no image files)."""
    config = {**SMALL, "depths": (1, 1, 1, 1)}
    gray = SwinUNETR(**config, name="gray")
    rgb = SwinUNETR(**{**config, "in_channels": 3}, include_preprocessing=True, name="rgb")
    for model, channels in ((gray, 1), (rgb, 3)):
        loaded = tf.saved_model.load(export.to_saved_model(model, tmp_path / "serving", image_size=(64, 64)))
        assert ("serving_bytes" in loaded.signatures) == (channels == 3)
        for size in ((64, 64), (40, 72)):
            images = random_inputs((2,) + size + (channels,), seed=channels) * 100
            out = loaded.signatures["serving_default"](images=tf.constant(images))
            expected = keras.ops.convert_to_numpy(model(images))
            assert max_diff(out["logits"], expected) <= TOLERANCE
            np.testing.assert_array_equal(out["class_map"].numpy(), expected.argmax(-1))
    image = tf.io.encode_png(np.full((30, 50, 3), 128, np.uint8)).numpy()
    out = loaded.signatures["serving_bytes"](image_bytes=tf.constant([image]))
    assert set(out) == {"class_map"} and out["class_map"].shape == (1, 64, 64)
    path = tmp_path / "gray.tflite"
    export.to_tflite(gray, path, image_size=(48, 80))
    images = random_inputs((2, 48, 80, 1), seed=9)
    assert max_diff(export.run_tflite(path, images), keras.ops.convert_to_numpy(gray(images))) <= TOLERANCE
    with pytest.raises(ValueError, match=r"must be images of shape \(N, height, width, 1\); received shape "
                                         r"\(2, 48, 80, 3\)"):
        export.run_tflite(path, np.zeros((2, 48, 80, 3), "float32"))


@pytest.mark.parametrize("check", ["check_built", "check_config_round_trip", "check_save_and_load"])
def test_model_checks(check, tmp_path):
    ModelChecks(lambda **kw: SwinUNETR(**{**SMALL, "depths": (1, 1, 1, 1), **kw}), (1, 64, 64, 1)).run(check, tmp_path)


def test_every_weight_gets_a_gradient():
    model = SwinUNETR(**{**SMALL, "depths": (2, 1, 1, 1)})
    images, targets = random_inputs((2, 64, 64, 1)), random_inputs((2, 64, 64, 3), seed=1)
    with tf.GradientTape() as tape:
        loss = keras.ops.mean(keras.ops.square(model(images, training=True) - targets))
    gradients = tape.gradient(loss, [w.value for w in model.trainable_weights])
    # The bias tables' gradients are IndexedSlices (they are gathered from).
    gradients = [None if g is None else tf.convert_to_tensor(g).numpy() for g in gradients]
    zero = [w.path for w, g in zip(model.trainable_weights, gradients) if g is None or not np.any(g)]
    assert zero == []
    assert all(np.isfinite(g).all() for g in gradients)


@pytest.mark.slow
def test_jit_fit_step_updates_every_weight_of_v2_with_batch_norm():
    config = {**SMALL, "depths": (1, 1, 1, 1), "use_v2": True, "norm_name": "batch"}
    ModelChecks(lambda **kw: SwinUNETR(**config, **kw), (2, 64, 64, 1)).run("check_jit_fit_step", None)


def test_config_holds_monais_arguments():
    config = dict(in_channels=4, out_channels=2, feature_size=12, depths=(1, 2, 1, 1), num_heads=(1, 2, 4, 8),
                  window_size=5, norm_name="batch", normalize=False, use_v2=True, downsample="mergingv2",
                  drop_rate=0.1, attn_drop_rate=0.2, dropout_path_rate=0.3, qkv_bias=False, mlp_ratio=2.0)
    model = SwinUNETR(**config, name="unetr", dtype="mixed_bfloat16")
    stored = model.get_config()
    assert {k: stored[k] for k in config} == {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
    assert SwinUNETR.from_config(stored).get_config() == stored
    assert model.dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("stage1_block1").dtype_policy.name == "mixed_bfloat16"
    logits = model(random_inputs((1, 40, 40, 4)))
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert tuple(logits.shape) == (1, 40, 40, 2) and np.isfinite(keras.ops.convert_to_numpy(logits)).all()
    assert set(model.no_weight_decay()) >= {"bias", "gamma", "beta", "relative_position_bias_table"}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(depths=(2, 2, 2)), r"`depths` and `num_heads` must have 4 entries"),
        (dict(depths=(2, 0, 2, 2)), r"Every stage needs >= 1 block"),
        (dict(num_heads=(5, 6, 12, 24)), r"`num_heads\[0\]`=5 must divide the stage width 12"),
        (dict(window_size=(7, 7)), r"`window_size` must be an int >= 1 \(a square window\)"),
        (dict(norm_name="group"), r"`norm_name` must be one of \('instance', 'batch'\); received norm_name='group'"),
        (dict(downsample="conv"), r"`downsample` must be one of \('merging', 'mergingv2'\)"),
        (dict(in_channels=0), r"`in_channels` must be >= 1; received in_channels=0"),
        (dict(drop_rate=1.0), r"`drop_rate` must be in \[0, 1\); received drop_rate=1.0"),
        (dict(dtype="float33"), r"`dtype` must be a dtype policy name"),
    ],
)
def test_bad_arguments_are_value_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        SwinUNETR(**{**SMALL, **overrides})


def test_wrong_channel_counts_are_value_errors(small_pair):
    _, model = small_pair
    with pytest.raises(ValueError, match=r"expected images with 1 channel, shape \(batch, height, width, 1\); "
                                         r"received 3 channels in shape \(1, 32, 32, 3\)"):
        model(np.zeros((1, 32, 32, 3), "float32"))
    with pytest.raises(ValueError, match=r"predict: expected images with 1 channel.*received 4 channels"):
        model.predict(np.zeros((2, 32, 32, 4), "float32"), verbose=0)
    with pytest.raises(ValueError, match=r"rank 4 \(batch, height, width, 1\); received rank 3"):
        model(np.zeros((32, 32, 1), "float32"))


# --------------------------------------------------------------------------- layers


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_unet_residual_block_harness(norm):
    checks = LayerChecks(UnetResidualBlock, {"filters": 6, "norm": norm}, (2, 9, 7, 4), symbolic_shape=(None, None, 4))
    checks.check_config_round_trip()
    checks.check_shapes()
    checks.check_jit_fit_step()
    checks.check_mixed_precision()


def test_pad_and_crop_layers():
    for layer_class, kwargs, shape in (
        (PadToMultiple, {"multiple": 32}, (1, 50, 70, 2)),
        (CropToReference, {}, [(1, 64, 96, 2), (1, 50, 70, 1)]),
    ):
        checks = LayerChecks(layer_class, kwargs, shape)
        checks.check_config_round_trip()
        checks.check_shapes()
    x = random_inputs((1, 50, 70, 2))
    padded = keras.ops.convert_to_numpy(PadToMultiple(32)(x))
    np.testing.assert_array_equal(padded, np.pad(x, ((0, 0), (0, 14), (0, 26), (0, 0))))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(CropToReference()([padded, x])), x)
