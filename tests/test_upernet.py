"""UPerNet segmentation: resize and pooling ops, the decoder layers, parity against the
Hugging Face UperNetForSemanticSegmentation, checkpoints, serialization and export."""

import logging

import keras
import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

import keras_swin
from checkpoints import mmseg_upernet_state_dict, official_state_dict, timm_state_dict
from harness import LayerChecks, random_inputs, run_python
from keras_swin import ops as swin_ops
from keras_swin.checkpoints.files import WeightsMismatchError
from keras_swin.checkpoints.upernet import load_upernet_weights
from reference import (
    hf_reference,
    hf_state_dict,
    hf_upernet_outputs,
    hf_upernet_reference,
    keras_upernet_like,
)

SIZE_PAIRS = [((5, 7), (13, 19)), ((13, 19), (5, 7)), ((1, 9), (3, 2)), ((16, 16), (64, 64)), ((7, 11), (25, 41))]


def _brute_force_adaptive_pool(x, bins):
    """PyTorch's definition, one output pixel at a time."""
    batch, height, width, channels = x.shape
    out = np.zeros((batch, bins, bins, channels), x.dtype)
    for i in range(bins):
        top, bottom = (i * height) // bins, -(-((i + 1) * height) // bins)
        for j in range(bins):
            left, right = (j * width) // bins, -(-((j + 1) * width) // bins)
            out[:, i, j] = x[:, top:bottom, left:right].mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("size", [(5, 7), (13, 19), (1, 9), (6, 6), (2, 3)])
@pytest.mark.parametrize("bins", [1, 2, 3, 6])
def test_adaptive_pool_matches_brute_force(size, bins):
    x = random_inputs((2,) + size + (3,))
    got = keras.ops.convert_to_numpy(swin_ops.adaptive_average_pool(x, bins))
    np.testing.assert_allclose(got, _brute_force_adaptive_pool(x, bins), atol=1e-6)


@pytest.mark.parametrize("in_size,out_size", SIZE_PAIRS)
def test_bilinear_resize_matches_torch(in_size, out_size):
    x = random_inputs((2,) + in_size + (4,))
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(x).permute(0, 3, 1, 2), size=out_size, mode="bilinear", align_corners=False
    ).permute(0, 2, 3, 1).numpy()
    got = keras.ops.convert_to_numpy(swin_ops.resize_bilinear(x, *out_size))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_resize_and_pool_in_one_graph_for_every_size():
    """Sizes known only at run time, as after TensorFlow relaxes the traced shapes."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 3)), tf.TensorSpec((None, None, None, 1))])
    def run(x, reference):
        resized = keras_swin.BilinearResize()([x, reference])
        return resized, keras_swin.AdaptiveAveragePooling2D(3)(x)

    for in_size, out_size in SIZE_PAIRS:
        x = random_inputs((1,) + in_size + (3,))
        resized, pooled = run(x, np.zeros((1,) + out_size + (1,), "float32"))
        np.testing.assert_allclose(resized, swin_ops.resize_bilinear(x, *out_size), atol=1e-6)
        np.testing.assert_allclose(pooled, _brute_force_adaptive_pool(x, 3), atol=1e-6)
    assert len(run._list_all_concrete_functions()) == 1


def test_adaptive_pooling_layer_harness(tmp_path):
    LayerChecks(
        keras_swin.AdaptiveAveragePooling2D, {"output_size": 3}, (2, 7, 5, 4), symbolic_shape=(None, None, 4)
    ).run_all(tmp_path)


def test_bilinear_resize_layer_harness(tmp_path):
    LayerChecks(
        keras_swin.BilinearResize,
        {},
        [(2, 5, 7, 4), (2, 13, 19, 1)],
        symbolic_shape=[(None, None, 4), (None, None, 1)],
    ).run_all(tmp_path)


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="output_size"):
        keras_swin.AdaptiveAveragePooling2D(0)
    with pytest.raises(ValueError, match="pyramid_outputs"):
        keras_swin.UPerNet(keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 1)]), num_classes=3)
    backbone = keras_swin.SwinTransformer(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=4)
    with pytest.raises(ValueError, match=r"num_classes.*received num_classes=0"):
        keras_swin.UPerNet(backbone, num_classes=0)
    with pytest.raises(ValueError, match=r"pool_scales"):
        keras_swin.UPerNet(backbone, num_classes=3, pool_scales=(0, 2))
    with pytest.raises(ValueError, match="activation"):
        keras_swin.UPerNet(backbone, num_classes=3, activation="relu")
    with pytest.raises(ValueError, match=r"detail_channels.*received detail_channels=-1"):
        keras_swin.UPerNet(backbone, num_classes=3, detail_channels=-1)
    with pytest.raises(ValueError, match="include_final_norm"):
        keras_swin.SwinTransformer(include_top=True, include_final_norm=False)


@pytest.fixture(scope="module")
def small_upernet():
    return hf_upernet_reference()


def _assert_upernet_parity(model, hf, images, atol=1e-4):
    logits, auxiliary = hf_upernet_outputs(hf, images)
    out = model(images)
    if auxiliary is not None and model.auxiliary_head:
        np.testing.assert_allclose(out["logits"], logits, atol=atol)
        np.testing.assert_allclose(out["auxiliary_logits"], auxiliary, atol=atol)
    else:
        np.testing.assert_allclose(out, logits, atol=atol)


@pytest.mark.parametrize("size", [(64, 64), (75, 101), (40, 52), (130, 70)])
def test_huggingface_parity_small_with_auxiliary_head(small_upernet, size):
    """Small maps keep the window and shift (always_partition), as HF's SwinBackbone does."""
    model = keras_upernet_like(small_upernet)
    load_upernet_weights_from_state(model, hf_state_dict(small_upernet))
    _assert_upernet_parity(model, small_upernet, random_inputs((2,) + size + (3,)))


def load_upernet_weights_from_state(model, state):
    from keras_swin.checkpoints.upernet import upernet_to_keras

    return upernet_to_keras(model, state)


def test_predict_at_one_size_then_another(small_upernet):
    model = keras_upernet_like(small_upernet, auxiliary_head=False)
    load_upernet_weights_from_state(model, hf_state_dict(small_upernet))
    for size in [(64, 64), (75, 101), (33, 47)]:
        images = random_inputs((2,) + size + (3,))
        logits, _ = hf_upernet_outputs(small_upernet, images)
        np.testing.assert_allclose(model.predict(images, verbose=0), logits, atol=1e-4)


def test_mmseg_layout_and_bin_vs_safetensors(small_upernet, tmp_path, caplog):
    state = hf_state_dict(small_upernet)
    mmseg = mmseg_upernet_state_dict(state)
    assert any(".attn.w_msa." in k for k in mmseg) and "decode_head.conv_seg.weight" in mmseg
    pth = tmp_path / "upernet_swin_small_ade20k.pth"
    torch.save({"meta": {}, "state_dict": {k: torch.from_numpy(v) for k, v in mmseg.items()}}, pth)
    bin_path = tmp_path / "pytorch_model.bin"
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, bin_path)
    safetensors = tmp_path / "model.safetensors"
    save_file(state, str(safetensors))
    images = random_inputs((1, 70, 90, 3))
    loaded = {}
    for path, layout in ((pth, "mmseg"), (bin_path, "huggingface"), (safetensors, "huggingface")):
        model = keras_upernet_like(small_upernet)
        assert load_upernet_weights(model, path) == layout
        loaded[path.name] = model(images)
        _assert_upernet_parity(model, small_upernet, images)
    np.testing.assert_array_equal(loaded["pytorch_model.bin"]["logits"], loaded["model.safetensors"]["logits"])
    # Without an auxiliary head its weights are skipped, with a log line.
    with caplog.at_level(logging.INFO, logger="keras_swin"):
        plain = keras_upernet_like(small_upernet, auxiliary_head=False, weights=pth)
    assert "auxiliary_head" in caplog.text
    _assert_upernet_parity(plain, small_upernet, images)


def test_checkpoint_mismatch_names_key_shapes_layout_and_writes_nothing(small_upernet, tmp_path):
    state = hf_state_dict(small_upernet)
    wide = keras_upernet_like(small_upernet)
    wide_backbone = wide.backbone
    narrow = keras_swin.UPerNet(wide_backbone, num_classes=5, channels=32, auxiliary_head=True, auxiliary_channels=32)
    before = [keras.ops.convert_to_numpy(w) for w in narrow.weights]
    with pytest.raises(WeightsMismatchError, match=r"decode_head\.psp_modules\.0\.1\.conv\.weight.*huggingface.*\(1, 1, 256, 32\).*\(1, 1, 256, 64\)"):
        load_upernet_weights_from_state(narrow, state)
    for weight, old in zip(narrow.weights, before):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), old)
    broken = {k: v for k, v in state.items() if k != "decode_head.fpn_convs.1.conv.weight"}
    with pytest.raises(WeightsMismatchError, match=r"missing keys \['decode_head\.fpn_convs\.1\.conv\.weight'\]"):
        load_upernet_weights_from_state(keras_upernet_like(small_upernet), broken)
    classification = official_state_dict(hf_state_dict(hf_reference()))
    with pytest.raises(WeightsMismatchError, match="backbone_weights"):
        load_upernet_weights_from_state(keras_upernet_like(small_upernet), classification)
    with pytest.raises(OSError, match="nothere.pth"):
        load_upernet_weights(keras_upernet_like(small_upernet), tmp_path / "nothere.pth")
    with pytest.raises(ValueError, match="'coco'"):
        load_upernet_weights(keras_upernet_like(small_upernet), "coco")


def test_new_class_count_reinitialises_the_classifiers(small_upernet, caplog):
    model = keras_upernet_like(small_upernet, num_classes=3)
    with caplog.at_level(logging.WARNING, logger="keras_swin"):
        load_upernet_weights_from_state(model, hf_state_dict(small_upernet))
    assert "decode_head.classifier has 5 classes but the model has 3" in caplog.text
    assert model(random_inputs((1, 64, 64, 3)))["logits"].shape == (1, 64, 64, 3)
    fuse = small_upernet.decode_head.fpn_bottleneck.conv.weight.detach().numpy()
    np.testing.assert_array_equal(model.get_layer("fuse_conv").kernel, fuse.transpose(2, 3, 1, 0))


def test_backbone_weights_from_a_classification_checkpoint(tmp_path, caplog):
    """ImageNet Swin-T (timm layout) into UPerNetSwinT: the backbone loads, its pyramid norms
    and the decoder start fresh."""
    hf = hf_reference(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7, num_labels=1000)
    path = tmp_path / "model.safetensors"
    save_file(timm_state_dict(official_state_dict(hf_state_dict(hf), with_buffers=False)), str(path))
    with caplog.at_level(logging.WARNING, logger="keras_swin"):
        model = keras_swin.UPerNetSwinT(num_classes=4, backbone_weights=path, include_preprocessing=False)
    assert "pyramid norms" in caplog.text
    block = model.backbone.get_layer("stage3_block4").mlp_fc1.kernel
    expected = hf.swin.encoder.layers[2].blocks[3].mlp.fc1.weight.detach().numpy().T
    np.testing.assert_array_equal(block, expected)


def test_factory_parameter_counts_equal_huggingface():
    """Trainable weights equal HF's parameters less the final norm that transformers >= 5
    keeps unused in SwinBackbone; BatchNorm statistics are weights in Keras, buffers in torch."""
    from transformers import SwinConfig, UperNetConfig, UperNetForSemanticSegmentation

    for auxiliary in (False, True):
        model = keras_swin.UPerNetSwinT(auxiliary_head=auxiliary)
        config = UperNetConfig(
            backbone_config=SwinConfig(
                embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
                out_features=["stage1", "stage2", "stage3", "stage4"],
            ),
            auxiliary_in_channels=384,
            num_labels=150,
            use_auxiliary_head=auxiliary,
        )
        with torch.device("meta"):
            hf = UperNetForSemanticSegmentation(config)
        unused = sum(p.numel() for n, p in hf.named_parameters() if n.startswith("backbone.swin.layernorm."))
        hf_params = sum(p.numel() for p in hf.parameters()) - unused
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert trainable == hf_params, (auxiliary, trainable, hf_params)
        assert trainable == (59_941_862 if auxiliary else 59_018_064)


@pytest.mark.slow
@pytest.mark.parametrize("size", [(512, 512), (300, 420)])
def test_huggingface_parity_swin_t(size):
    hf = hf_upernet_reference(
        embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7,
        hidden_size=512, auxiliary_channels=256, num_labels=150, use_auxiliary_head=False,
    )
    model = keras_swin.UPerNetSwinT(include_preprocessing=False)
    load_upernet_weights_from_state(model, hf_state_dict(hf))
    _assert_upernet_parity(model, hf, random_inputs((1,) + size + (3,)))


def test_keras_file_reload_in_fresh_process_and_nested(small_upernet, tmp_path):
    model = keras_upernet_like(small_upernet)
    load_upernet_weights_from_state(model, hf_state_dict(small_upernet))
    config = model.get_config()
    clone = keras_swin.UPerNet.from_config(config)
    assert clone.get_config() == config
    inputs = keras.Input((None, None, 3))
    wrapper = keras.Model(inputs, keras.layers.Softmax(name="probabilities")(model(inputs)["logits"]))
    model.save(tmp_path / "upernet.keras")
    wrapper.save(tmp_path / "wrapper.keras")
    images = random_inputs((1, 57, 83, 3))
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", keras.ops.convert_to_numpy(model(images)["logits"]))
    np.save(tmp_path / "p.npy", keras.ops.convert_to_numpy(wrapper(images)))
    out = run_python(
        f"""
        import numpy as np, keras
        import keras_swin
        x = np.load({str(tmp_path / "x.npy")!r})
        model = keras.saving.load_model({str(tmp_path / "upernet.keras")!r}, safe_mode=True)
        assert type(model).__name__ == "UPerNet" and model.auxiliary_head
        wrapper = keras.saving.load_model({str(tmp_path / "wrapper.keras")!r}, safe_mode=True)
        a = np.abs(np.asarray(model(x)["logits"]) - np.load({str(tmp_path / "y.npy")!r})).max()
        b = np.abs(np.asarray(wrapper(x)) - np.load({str(tmp_path / "p.npy")!r})).max()
        print("maxdiff", max(a, b))
        """
    )
    assert float(out.split("maxdiff")[-1]) <= 1e-6


def unmoved_after_one_fit_step(model, images, labels):
    """One jit-compiled SGD fit step with the auxiliary loss at 0.4; the paths of the
    trainable weights it left exactly as they were."""
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              "auxiliary_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
        loss_weights={"logits": 1.0, "auxiliary_logits": 0.4},
        jit_compile=True,
    )
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    model.fit(images, {"logits": labels, "auxiliary_logits": labels}, epochs=1, verbose=0)
    return [w.path for w, old in zip(model.trainable_weights, before) if np.all(keras.ops.convert_to_numpy(w) == old)]


def test_fit_step_updates_every_weight(small_upernet):
    """A jit-compiled fit step with the auxiliary loss at 0.4: every trainable weight moves."""
    model = keras_upernet_like(small_upernet)
    images = random_inputs((2, 48, 64, 3))
    labels = np.random.default_rng(0).integers(0, 5, (2, 48, 64))
    assert unmoved_after_one_fit_step(model, images, labels) == []


@pytest.mark.slow
def test_ade20k_preset_resolves_through_the_hub_cache(tmp_path):
    hf = hf_upernet_reference(
        embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7,
        hidden_size=512, auxiliary_channels=256, num_labels=150, use_auxiliary_head=True,
    )
    snapshot = tmp_path / "hub" / "models--openmmlab--upernet-swin-tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (snapshot / "refs").mkdir(parents=True)
    (snapshot / "refs" / "main").write_text(commit)
    (snapshot / "snapshots" / commit).mkdir(parents=True)
    torch.save(hf.state_dict(), snapshot / "snapshots" / commit / "pytorch_model.bin")
    images = random_inputs((1, 96, 128, 3))
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", hf_upernet_outputs(hf, images)[0])
    code = f"""
        import numpy as np, keras_swin
        model = keras_swin.UPerNetSwinT(weights="ade20k", include_preprocessing=False)
        y = np.asarray(model(np.load({str(tmp_path / "x.npy")!r})))
        print("maxdiff", float(np.abs(y - np.load({str(tmp_path / "y.npy")!r})).max()))
        try:
            keras_swin.UPerNetSwinS(weights="ade20k")
        except OSError as error:
            print("error:", error)
    """
    out = run_python(code, env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")})
    assert float(out.split("maxdiff")[-1].split()[0]) <= 1e-4
    assert "openmmlab/upernet-swin-small" in out and "HF_HUB_OFFLINE" in out


@pytest.fixture(scope="module")
def tiny_segmenter():
    keras.utils.set_random_seed(1)
    backbone = keras_swin.SwinTransformer(
        embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
        pyramid_norm=True, include_final_norm=False, always_partition=True,
    )
    return keras_swin.UPerNet(backbone, num_classes=4, channels=16, auxiliary_head=True, auxiliary_channels=8,
                              detail_channels=4)


@pytest.mark.slow
def test_tflite_builtins_only_and_parity(tiny_segmenter, tmp_path):
    from keras_swin import export

    for size in ((256, 256), (100, 140)):
        path = tmp_path / f"seg_{size[0]}x{size[1]}.tflite"
        export.to_tflite(tiny_segmenter, path, image_size=size)
        assert not [op for op in export.tflite_op_names(path) if op.startswith("Flex") or op == "CUSTOM"]
        images = np.random.default_rng(0).uniform(0, 255, (2,) + size + (3,)).astype("float32")
        found = export.run_tflite(path, images)
        expected = keras.ops.convert_to_numpy(tiny_segmenter(images)["logits"])
        assert found.shape == expected.shape
        np.testing.assert_allclose(found, expected, atol=1e-4)


@pytest.mark.slow
def test_saved_model_signatures_for_a_segmenter(tiny_segmenter, tmp_path):
    import io

    import tensorflow as tf
    from PIL import Image

    from keras_swin import export

    directory = export.to_saved_model(tiny_segmenter, tmp_path / "serving", name="seg", image_size=(64, 96))
    loaded = tf.saved_model.load(directory)
    serve = loaded.signatures["serving_default"]
    for size in ((64, 64), (45, 77)):
        images = np.random.default_rng(0).uniform(0, 255, (2,) + size + (3,)).astype("float32")
        out = serve(images=tf.constant(images))
        expected = keras.ops.convert_to_numpy(tiny_segmenter(images)["logits"])
        np.testing.assert_allclose(out["logits"].numpy(), expected, atol=1e-4)
        assert out["class_map"].dtype == tf.int32 and out["class_map"].shape == (2,) + size
        np.testing.assert_array_equal(out["class_map"].numpy(), expected.argmax(-1))
    buffer = io.BytesIO()
    Image.fromarray(np.full((30, 50, 3), 128, np.uint8)).save(buffer, format="PNG")
    out = loaded.signatures["serving_bytes"](image_bytes=tf.constant([buffer.getvalue()]))
    assert set(out) == {"class_map"} and out["class_map"].shape == (1, 64, 96)


@pytest.mark.slow
def test_cli_export_accepts_a_segmenter(tiny_segmenter, tmp_path):
    import subprocess
    import sys

    tiny_segmenter.save(tmp_path / "seg.keras")
    command = [sys.executable, "-m", "keras_swin.cli", "export", str(tmp_path / "seg.keras"),
               "--format", "all", "--output", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "serving" / tiny_segmenter.name / "1" / "saved_model.pb").is_file()
    diff = float(result.stdout.split("max abs diff ")[1].split(",")[0])
    assert diff <= 1e-4


def test_flops_match_the_paper_upernet_swin_t():
    """mmseg and the Swin paper: 945G for UPerNet Swin-T at 512x2048 (backbone + decode head)."""
    from keras_swin.utils import flops

    count = flops(keras_swin.UPerNetSwinT(), (512, 2048))
    assert abs(count / 945e9 - 1) < 0.03, count


def test_detail_branch_any_size_trains_and_reloads(tmp_path):
    """`detail_channels`: the 1/2-resolution skip. Off by default (parity above); on, the
    output keeps the input size at odd sizes in one graph, every decoder weight (the branch's
    included) trains, and the model round-trips through its config and a safe-mode `.keras`
    file."""
    keras.utils.set_random_seed(0)
    backbone = keras_swin.SwinTransformer(
        embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=4, pyramid_norm=True,
        include_final_norm=False, always_partition=True,
    )
    plain = keras_swin.UPerNet(backbone, num_classes=3, channels=8)
    assert not [layer for layer in plain.layers if layer.name.startswith("detail")]
    model = keras_swin.UPerNet(backbone, num_classes=3, channels=8, detail_channels=4, auxiliary_head=True,
                               auxiliary_channels=4)
    detail = sorted(layer.name for layer in model.layers if layer.name.startswith("detail"))
    assert detail == ["detail1_bn", "detail1_conv", "detail1_relu", "detail2_bn", "detail2_conv", "detail2_relu",
                      "detail_concat", "detail_fuse_bn", "detail_fuse_conv", "detail_fuse_relu", "detail_rescale",
                      "detail_upsample"]
    assert model.get_layer("detail1_conv").strides == (2, 2)
    for size in ((37, 45), (64, 64), (33, 20)):
        out = model.predict(random_inputs((2,) + size + (3,)) * 60 + 120, verbose=0)
        assert out["logits"].shape == (2,) + size + (3,) and out["auxiliary_logits"].shape == (2,) + size + (3,)
    config = model.get_config()
    assert config["detail_channels"] == 4
    assert keras_swin.UPerNet.from_config(config).get_config() == config

    images = random_inputs((4, 40, 48, 3)) * 60 + 120
    labels = np.random.default_rng(0).integers(0, 3, (4, 40, 48))
    backbone_paths = {w.path for w in backbone.trainable_weights}
    decoder_paths = [w.path for w in model.trainable_weights if w.path not in backbone_paths]
    assert len([path for path in decoder_paths if path.startswith("detail")]) == 9  # 3 convs, each with a BN (2)
    unmoved = unmoved_after_one_fit_step(model, images, labels)
    assert [path for path in unmoved if path in decoder_paths] == []  # (the backbone's: tested with the Swin models)

    model.save(tmp_path / "detail.keras")
    reloaded = keras.saving.load_model(tmp_path / "detail.keras", safe_mode=True)
    assert reloaded.detail_channels == 4
    np.testing.assert_allclose(reloaded.predict(images, verbose=0)["logits"], model.predict(images, verbose=0)["logits"],
                               atol=1e-6)
