"""UPerNet segmentation: the resize and pooling layers, the model through the harness, parity
against the Hugging Face UperNetForSemanticSegmentation, checkpoints, the detail branch and
export. (The resize and pooling ops on their own: tests/test_ops.py.)"""

import logging
import os

import keras
import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

import keras_swin
from checkpoints import hub_snapshot, mmseg_upernet_state_dict, official_state_dict, timm_state_dict
from harness import LayerChecks, ModelChecks, cli, random_inputs, weights_unchanged
from keras_swin.checkpoints.files import WeightsMismatchError
from keras_swin.checkpoints.upernet import load_upernet_weights, upernet_to_keras
from reference import (
    SWIN_T,
    hf_reference,
    hf_state_dict,
    hf_swin_t,
    hf_upernet_outputs,
    hf_upernet_reference,
    keras_upernet_like,
    torch_adaptive_average_pool,
    torch_resize_bilinear,
)

SIZE_PAIRS = [((5, 7), (13, 19)), ((13, 19), (5, 7)), ((1, 9), (3, 2)), ((16, 16), (64, 64)), ((7, 11), (25, 41))]


def test_resize_and_pool_layers_in_one_graph_for_every_size():
    """The layers against torch.nn.functional (interpolate bilinear with align_corners=False,
    adaptive_avg_pool2d), with sizes known only at run time, as after TensorFlow relaxes the
    traced shapes: one graph for every size."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 3)), tf.TensorSpec((None, None, None, 1))])
    def run(x, reference):
        resized = keras_swin.BilinearResize()([x, reference])
        return resized, keras_swin.AdaptiveAveragePooling2D(3)(x)

    for in_size, out_size in SIZE_PAIRS:
        x = random_inputs((1,) + in_size + (3,))
        resized, pooled = run(x, np.zeros((1,) + out_size + (1,), "float32"))
        np.testing.assert_allclose(resized, torch_resize_bilinear(x, out_size), atol=1e-5)
        np.testing.assert_allclose(pooled, torch_adaptive_average_pool(x, 3), atol=1e-6)
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
    upernet_to_keras(model, hf_state_dict(small_upernet))
    _assert_upernet_parity(model, small_upernet, random_inputs((2,) + size + (3,)))


def test_predict_at_one_size_then_another(small_upernet):
    model = keras_upernet_like(small_upernet, auxiliary_head=False)
    upernet_to_keras(model, hf_state_dict(small_upernet))
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
    with weights_unchanged(narrow), pytest.raises(
        WeightsMismatchError,
        match=r"decode_head\.psp_modules\.0\.1\.conv\.weight.*huggingface.*\(1, 1, 256, 32\).*\(1, 1, 256, 64\)",
    ):
        upernet_to_keras(narrow, state)
    broken = {k: v for k, v in state.items() if k != "decode_head.fpn_convs.1.conv.weight"}
    with pytest.raises(WeightsMismatchError, match=r"missing keys \['decode_head\.fpn_convs\.1\.conv\.weight'\]"):
        upernet_to_keras(keras_upernet_like(small_upernet), broken)
    classification = official_state_dict(hf_state_dict(hf_reference()))
    with pytest.raises(WeightsMismatchError, match="backbone_weights"):
        upernet_to_keras(keras_upernet_like(small_upernet), classification)
    with pytest.raises(OSError, match="nothere.pth"):
        load_upernet_weights(keras_upernet_like(small_upernet), tmp_path / "nothere.pth")
    with pytest.raises(ValueError, match="'coco'"):
        load_upernet_weights(keras_upernet_like(small_upernet), "coco")


def test_new_class_count_reinitialises_the_classifiers(small_upernet, caplog):
    model = keras_upernet_like(small_upernet, num_classes=3)
    with caplog.at_level(logging.WARNING, logger="keras_swin"):
        upernet_to_keras(model, hf_state_dict(small_upernet))
    assert "decode_head.classifier has 5 classes but the model has 3" in caplog.text
    assert model(random_inputs((1, 64, 64, 3)))["logits"].shape == (1, 64, 64, 3)
    fuse = small_upernet.decode_head.fpn_bottleneck.conv.weight.detach().numpy()
    np.testing.assert_array_equal(model.get_layer("fuse_conv").kernel, fuse.transpose(2, 3, 1, 0))


def test_backbone_weights_from_a_classification_checkpoint(tmp_path, caplog):
    """ImageNet Swin-T (timm layout) into UPerNetSwinT: the backbone loads, its pyramid norms
    and the decoder start fresh."""
    hf = hf_swin_t()
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


def hf_upernet_swin_t(auxiliary_head):
    """openmmlab/upernet-swin-tiny's architecture (ADE20K: 150 classes)."""
    return hf_upernet_reference(**SWIN_T, window_size=7, hidden_size=512, auxiliary_channels=256, num_labels=150,
                                use_auxiliary_head=auxiliary_head)


@pytest.fixture(scope="module")
def upernet_swin_t():
    """`(hf, model)`: a UPerNetSwinT with the weights of its HF reference (no auxiliary head),
    shared by the sizes: HF's SwinBackbone always partitions, so it keeps none of the window
    state that a Swin classifier does (reference.hf_swin_t)."""
    hf = hf_upernet_swin_t(auxiliary_head=False)
    model = keras_swin.UPerNetSwinT(include_preprocessing=False)
    upernet_to_keras(model, hf_state_dict(hf))
    return hf, model


@pytest.mark.slow
@pytest.mark.parametrize("size", [(512, 512), (300, 420)])
def test_huggingface_parity_swin_t(upernet_swin_t, size):
    hf, model = upernet_swin_t
    _assert_upernet_parity(model, hf, random_inputs((1,) + size + (3,)))


@pytest.mark.slow
def test_ade20k_preset_resolves_through_the_hub_cache(offline_hub):
    hf = hf_upernet_swin_t(auxiliary_head=True)
    torch.save(hf.state_dict(), hub_snapshot(offline_hub, "openmmlab/upernet-swin-tiny") / "pytorch_model.bin")
    images = random_inputs((1, 96, 128, 3))
    model = keras_swin.UPerNetSwinT(weights="ade20k", include_preprocessing=False)
    np.testing.assert_allclose(model(images), hf_upernet_outputs(hf, images)[0], atol=1e-4)
    with pytest.raises(OSError, match=r"'openmmlab/upernet-swin-small'.*HF_HUB_OFFLINE is set"):
        keras_swin.UPerNetSwinS(weights="ade20k")


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
    tiny_segmenter.save(tmp_path / "seg.keras")
    # TFLite (the SavedModel's segmenter signatures: above; ONNX: tests/test_export_onnx.py).
    result = cli("export", tmp_path / "seg.keras", "--format", "tflite", "--output", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / "out")) == [f"{tiny_segmenter.name}.tflite"]
    diff = float(result.stdout.split("max abs diff ")[1].split(",")[0])
    assert diff <= 1e-4


def test_flops_match_the_paper_upernet_swin_t():
    """mmseg and the Swin paper: 945G for UPerNet Swin-T at 512x2048 (backbone + decode head)."""
    from keras_swin.utils import flops

    count = flops(keras_swin.UPerNetSwinT(), (512, 2048))
    assert abs(count / 945e9 - 1) < 0.03, count


def harness_segmenter(**kwargs):
    """UPerNet with the auxiliary head and the detail branch on a four-stage Swin (patch 2);
    its 29x35 images make maps of 15x18, 8x9, 4x5 and 2x3."""
    backbone = keras_swin.SwinTransformer(
        patch_size=2, embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=4, pyramid_norm=True,
        include_final_norm=False, always_partition=True, drop_path_rate=0.0, **kwargs,
    )
    return keras_swin.UPerNet(backbone, num_classes=3, channels=8, pool_scales=(1, 3), auxiliary_head=True,
                              auxiliary_channels=4, detail_channels=4, **kwargs)


def _pixel_labels(outputs):
    labels = np.random.default_rng(0).integers(0, 3, tuple(outputs["logits"].shape[:3]))
    return {"logits": labels, "auxiliary_logits": labels}


@pytest.fixture(scope="module")
def segmenter_checks():
    return ModelChecks(
        harness_segmenter, (2, 29, 35, 3),
        # The classifiers and their final resizes compute in float32 by design.
        float32_layers=("decode_classifier", "decode_upsample", "auxiliary_classifier", "auxiliary_upsample"),
        float32_outputs=True,
        # The recipe's losses: the auxiliary head's at 0.4.
        loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              "auxiliary_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
        loss_weights={"logits": 1.0, "auxiliary_logits": 0.4}, targets=_pixel_labels,
    )


@pytest.mark.parametrize("check", ModelChecks.CHECKS)
def test_model_harness(segmenter_checks, check, tmp_path):
    segmenter_checks.run(check, tmp_path)


def test_detail_branch_layers_and_any_size_in_one_graph(segmenter_checks):
    """`detail_channels`: the 1/2-resolution skip. Off by default (parity above); on, it adds
    three conv-BN-ReLUs (the first of stride 2) and the output keeps the input size at odd
    sizes in one graph. (Its training, config and `.keras` file: the harness above.)"""
    model = segmenter_checks.model
    plain = keras_swin.UPerNet(model.backbone, num_classes=3, channels=8, pool_scales=(1, 3))
    assert not [layer for layer in plain.layers if layer.name.startswith("detail")]
    detail = sorted(layer.name for layer in model.layers if layer.name.startswith("detail"))
    assert detail == ["detail1_bn", "detail1_conv", "detail1_relu", "detail2_bn", "detail2_conv", "detail2_relu",
                      "detail_concat", "detail_fuse_bn", "detail_fuse_conv", "detail_fuse_relu", "detail_rescale",
                      "detail_upsample"]
    assert model.get_layer("detail1_conv").strides == (2, 2)
    assert model.get_config()["detail_channels"] == 4
    backbone_paths = {w.path for w in model.backbone.trainable_weights}
    decoder_paths = [w.path for w in model.trainable_weights if w.path not in backbone_paths]
    assert len([path for path in decoder_paths if path.startswith("detail")]) == 9  # 3 convs, each with a BN (2)

    any_size = keras_swin.UPerNet.from_config(model.get_config())
    any_size.set_weights(model.get_weights())
    any_size.compile(jit_compile=False)  # one TensorFlow graph, relaxed to unknown sizes after the first
    for size in ((37, 45), (64, 64), (33, 20)):
        images = random_inputs((2,) + size + (3,)) * 60 + 120
        out = any_size.predict(images, verbose=0)
        assert out["logits"].shape == (2,) + size + (3,) and out["auxiliary_logits"].shape == (2,) + size + (3,)
        np.testing.assert_allclose(out["logits"], model(images)["logits"], atol=1e-5)
