"""Swin V2: layers through the harness, parity against Hugging Face's Swinv2, checkpoints in
every layout, presets, conversion and export."""

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

import keras_swin
from checkpoints import (
    hub_snapshot,
    official_state_dict,
    official_v2_state_dict,
    parity_reported,
    timm_v2_state_dict,
)
from harness import LayerChecks, ModelChecks, cli, random_inputs, weights_unchanged
from keras_swin.checkpoints.files import WeightsMismatchError
from keras_swin.checkpoints.swin import official_to_keras
from keras_swin.models import build_model_v2
from reference import (
    SWIN_T,
    assert_parity,
    hf_outputs,
    hf_reference,
    hf_state_dict,
    hf_v2_reference,
    keras_from_hf,
    keras_like,
)


def harness_classifier(**kwargs):
    """Two stages of a regular and a shifted block, the second with a pretrained window."""
    return keras_swin.SwinTransformerV2(
        patch_size=2, embed_dim=8, depths=(2, 2), num_heads=(1, 2), window_size=4, pretrained_window_sizes=(0, 3),
        drop_path_rate=0.0, include_top=True, classes=3, classifier_activation=None, **kwargs,
    )


@pytest.fixture(scope="module")
def classifier_checks():
    return ModelChecks.classifier(
        harness_classifier, (2, 30, 22, 3),
        # The continuous-position-bias MLPs compute in float32 by design, as the head does.
        float32_layers=("cpb_fc1", "cpb_fc2"),
        # V2's post-norm puts each branch's int8 error into the residual stream at full scale:
        # 0.7-5.7% on the logits over seeds 0-3 (3.2% at this seed), against <= 1.5% for V1.
        quantize_tolerance=0.1,
    )


@pytest.mark.parametrize("check", ModelChecks.CHECKS)
def test_model_harness(classifier_checks, check, tmp_path):
    classifier_checks.run(check, tmp_path)


def test_pretrained_window_sizes_come_back_from_the_config(classifier_checks):
    restored = keras_swin.SwinTransformerV2.from_config(classifier_checks.model.get_config())
    assert restored.pretrained_window_sizes == (0, 3)
    windows = {name: tuple(restored.get_layer(name).attention.pretrained_window_size)
               for name in ("stage1_block2", "stage2_block1")}
    assert windows == {"stage1_block2": (0, 0), "stage2_block1": (3, 3)}


@pytest.mark.parametrize(
    "layer_cls,kwargs,shape,symbolic",
    [
        (keras_swin.WindowAttentionV2, {"num_heads": 2, "window_size": (4, 4), "pretrained_window_size": (6, 6)},
         (3, 16, 8), (16, 8)),
        (keras_swin.SwinBlockV2, {"num_heads": 2, "window_size": 4, "shift_size": 2, "pretrained_window_size": 3},
         (2, 9, 11, 8), (None, None, 8)),
        (keras_swin.PatchMergingV2, {"norm_epsilon": 1e-5}, (2, 7, 6, 8), (None, None, 8)),
    ],
)
def test_v2_layer_harness(layer_cls, kwargs, shape, symbolic, tmp_path):
    LayerChecks(layer_cls, kwargs, shape, symbolic_shape=symbolic).run_all(tmp_path)


@pytest.fixture(scope="module")
def small_v2():
    return hf_v2_reference()


@pytest.mark.parametrize("size", [(256, 256), (250, 330), (128, 128)])
def test_huggingface_parity_small(small_v2, size):
    """(128, 128): stage 4's map is 4x4 < window 8, so the window shrinks to 4 at run time
    (HF decides it from image_size, so that size gets its own reference)."""
    hf = small_v2 if size != (128, 128) else hf_v2_reference(image_size=128)
    assert_parity(keras_from_hf(hf), hf, random_inputs((1,) + size + (3,)))


def test_huggingface_parity_with_pretrained_windows():
    """Window 16 with pretrained windows (12, 12, 12, 6), as the 192to256 fine-tunes."""
    hf = hf_v2_reference(window_size=16, pretrained_window_sizes=(12, 12, 12, 6))
    assert_parity(keras_from_hf(hf), hf, random_inputs((1, 256, 256, 3)))


def hf_swin_v2_t():
    return hf_v2_reference(**SWIN_T, num_labels=1000)


@pytest.fixture(scope="module")
def swin_v2_t():
    """A SwinV2T with `hf_swin_v2_t`'s weights, shared by the sizes (each test builds its own
    HF reference, the same at every call: see reference.hf_swin_t)."""
    return keras_from_hf(hf_swin_v2_t())


@pytest.mark.slow
@pytest.mark.parametrize("size", [(256, 256), (250, 330)])
def test_huggingface_parity_swin_v2_t(swin_v2_t, size):
    assert swin_v2_t.count_params() == 28_347_154
    assert_parity(swin_v2_t, hf_swin_v2_t(), random_inputs((1,) + size + (3,)))


def test_official_and_timm_layouts_load_equal(small_v2, tmp_path):
    official = official_v2_state_dict(small_v2)
    pth = tmp_path / "swinv2_official.pth"
    torch.save({"model": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in official.items()}}, pth)
    timm = tmp_path / "model.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in timm_v2_state_dict(official).items()}, str(timm))
    images = random_inputs((1, 250, 330, 3))  # every stage keeps the window HF chose at 256
    from_pth, from_timm = keras_like(small_v2), keras_like(small_v2)
    assert from_pth.load_checkpoint(pth) == "official"
    assert from_timm.load_checkpoint(timm) == "timm"
    np.testing.assert_array_equal(from_pth(images), from_timm(images))
    assert_parity(from_pth, small_v2, images)


def test_window_mismatch_names_both_values(tmp_path):
    hf = hf_v2_reference(window_size=16, pretrained_window_sizes=(12, 12, 12, 6))
    path = tmp_path / "official.pth"
    torch.save({"model": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in official_v2_state_dict(hf).items()}}, path)
    model = keras_like(hf, pretrained_window_sizes=(0, 0, 0, 0))
    with weights_unchanged(model), pytest.raises(
        WeightsMismatchError,
        match=r"window 16 and pretrained window 12.*window_size=16 and pretrained_window_sizes\[0\]=0",
    ):
        model.load_checkpoint(path)
    with pytest.raises(WeightsMismatchError, match=r"window 16 .*window_size=8"):
        keras_like(hf, window_size=8).load_checkpoint(path)
    keras_like(hf).load_checkpoint(path)  # the right values load


def test_v1_and_v2_checkpoints_are_not_mixed_up(small_v2, tmp_path):
    v1 = hf_reference()
    with pytest.raises(WeightsMismatchError, match="This is a Swin V1 checkpoint"):
        official_to_keras(keras_like(small_v2), official_state_dict(hf_state_dict(v1)))
    path = tmp_path / "v2.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in hf_state_dict(small_v2).items()}, str(path))
    v1_model = keras_swin.SwinTransformer(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), classes=10)
    with pytest.raises(WeightsMismatchError, match="This is a Swin V2 checkpoint"):
        v1_model.load_checkpoint(path)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"pretrained_window_sizes.*one int per stage.*\(12, 12\).*4 stages"):
        keras_swin.SwinTransformerV2(pretrained_window_sizes=(12, 12))
    with pytest.raises(ValueError, match="pretrained_window_size"):
        keras_swin.WindowAttentionV2(2, pretrained_window_size=1)
    with pytest.raises(ValueError, match=r"no swinv2_t preset with window 12"):
        keras_swin.SwinV2T(weights="imagenet", window_size=12)


def test_presets_carry_their_windows():
    from keras_swin.checkpoints.presets import v2_preset

    assert v2_preset("swinv2_t", "imagenet") == ("timm/swinv2_tiny_window8_256.ms_in1k", 8, (0, 0, 0, 0), 256)
    assert v2_preset("swinv2_b", "in22k-ft-in1k", 24)[2] == (12, 12, 12, 6)
    with pytest.raises(ValueError, match=r"'in1k'.*swinv2_l.*\['imagenet', 'in22k', 'in22k-ft-in1k'\]"):
        v2_preset("swinv2_l", "in1k")


def test_parameter_counts_equal_huggingface():
    from transformers import Swinv2Config, Swinv2ForImageClassification

    from keras_swin.configs import MODEL_CONFIGS

    expected = {"swinv2_t": 28_347_154, "swinv2_s": 49_728_418, "swinv2_b": 87_918_816, "swinv2_l": 196_739_932}
    for variant, count in expected.items():
        config = MODEL_CONFIGS[variant.replace("swinv2_", "swin_")]
        with torch.device("meta"):
            hf = Swinv2ForImageClassification(Swinv2Config(
                embed_dim=config["embed_dim"], depths=list(config["depths"]), num_heads=list(config["num_heads"]),
                window_size=8, num_labels=1000,
            ))
        model = build_model_v2(variant)
        assert model.count_params() == sum(p.numel() for p in hf.parameters()) == count, variant


def test_predict_at_one_size_then_another(small_v2):
    model = keras_from_hf(small_v2)
    # Sizes whose stages keep the windows HF fixed at image_size=256.
    for size in ((256, 256), (250, 330)):
        images = random_inputs((2,) + size + (3,))
        np.testing.assert_allclose(model.predict(images, verbose=0), hf_outputs(small_v2, images)[0], atol=1e-4)


@pytest.mark.slow
def test_tflite_swin_v2_t_builtins_only_and_parity(tmp_path):
    from keras_swin import export

    model = keras_swin.SwinV2T()
    path = tmp_path / "swinv2_t.tflite"
    export.to_tflite(model, path, image_size=(256, 256))
    assert not [op for op in export.tflite_op_names(path) if op.startswith("Flex") or op == "CUSTOM"]
    images = np.random.default_rng(0).uniform(0, 255, (1, 256, 256, 3)).astype("float32")
    np.testing.assert_allclose(export.run_tflite(path, images), model.predict(images, verbose=0), atol=1e-4)


@pytest.mark.slow
def test_imagenet_preset_resolves_through_the_hub_cache_and_convert_cli(offline_hub, tmp_path):
    hf = hf_swin_v2_t()
    snapshot = hub_snapshot(offline_hub, "timm/swinv2_tiny_window8_256.ms_in1k")
    timm = {k: np.ascontiguousarray(v) for k, v in timm_v2_state_dict(official_v2_state_dict(hf)).items()}
    save_file(timm, str(snapshot / "model.safetensors"))
    images = random_inputs((1, 256, 256, 3))
    model = keras_swin.SwinV2T(weights="imagenet", include_preprocessing=False, classifier_activation=None)
    np.testing.assert_allclose(model(images), hf_outputs(hf, images)[0], atol=1e-4)
    # keras-swin convert on the same checkpoint reports its measured parity.
    result = cli("convert", snapshot / "model.safetensors", tmp_path / "v2.weights.h5", "--arch", "swinv2_t")
    assert result.returncode == 0, result.stderr[-3000:]
    parity = parity_reported(result.stdout)
    assert sorted(parity) == ["features", "outputs"]
    assert parity["features"] <= 1e-4 and parity["outputs"] <= 1e-4
