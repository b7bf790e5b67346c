"""Loading Swin checkpoints in every layout and format, with parity against the reference."""

import hashlib
import logging
import os
import pickle

import keras
import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

import keras_swin
from checkpoints import hub_snapshot, official_state_dict, parity_reported, timm_state_dict
from harness import cli, random_inputs, weights_unchanged
from keras_swin.checkpoints.files import WeightsMismatchError
from keras_swin.checkpoints.swin import detect_layout, load_weights, resize_bias_table
from keras_swin.configs import IMAGENET_MEAN, IMAGENET_STD
from reference import assert_parity, hf_outputs, hf_reference, hf_state_dict, hf_swin_t, keras_from_hf, keras_like

SMALL = dict(embed_dim=32, depths=(2, 2), num_heads=(2, 4), window_size=4)


@pytest.fixture(scope="module")
def small_hf():
    return hf_reference(**SMALL)


def test_layouts_are_detected(small_hf):
    hf = hf_state_dict(small_hf)
    official = official_state_dict(hf)
    assert detect_layout(hf) == "huggingface"
    assert detect_layout(official) == "official"
    assert detect_layout(timm_state_dict(official)) == "timm"
    headless = {k: v for k, v in official.items() if not k.startswith("head.")}
    assert detect_layout(headless) == "official"
    assert detect_layout(timm_state_dict(headless)) == "timm"


@pytest.mark.parametrize("size", [(224, 224), (96, 160), (61, 83)])
def test_huggingface_parity_small(small_hf, size):
    images = random_inputs((2,) + size + (3,))
    assert_parity(keras_from_hf(small_hf), small_hf, images)


@pytest.fixture(scope="module")
def swin_t():
    """A SwinT with `hf_swin_t`'s weights, shared by the sizes (it is stateless; the HF
    reference is not, so each test builds its own)."""
    return keras_from_hf(hf_swin_t())


@pytest.mark.slow
@pytest.mark.parametrize("size", [(224, 224), (230, 300)])
def test_huggingface_parity_full_swin_t(swin_t, size):
    assert swin_t.count_params() == 28_288_354
    assert_parity(swin_t, hf_swin_t(), random_inputs((1,) + size + (3,)))


@pytest.mark.slow
def test_huggingface_parity_window_12_at_384():
    hf = hf_reference(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=12)
    assert_parity(keras_from_hf(hf), hf, random_inputs((1, 384, 384, 3)))


def test_official_pth_and_timm_safetensors_load_equal(small_hf, tmp_path):
    official = official_state_dict(hf_state_dict(small_hf))
    pth = tmp_path / "official.pth"
    torch.save({"model": {k: torch.from_numpy(v) for k, v in official.items()}}, pth)
    safetensors = tmp_path / "timm.safetensors"
    save_file(timm_state_dict(official), str(safetensors))
    images = random_inputs((2, 72, 100, 3))
    from_pth = keras_like(small_hf, weights=pth)
    from_safetensors = keras_like(small_hf, weights=safetensors)
    assert load_weights(from_pth, pth) == "official"
    assert load_weights(from_safetensors, safetensors) == "timm"
    np.testing.assert_array_equal(from_pth(images), from_safetensors(images))
    assert_parity(from_pth, small_hf, images)


def test_huggingface_bin_with_legacy_key_names(small_hf, tmp_path):
    """Checkpoints on the Hub use transformers 4 names (attention.self.query, ...)."""
    legacy = {}
    for key, value in hf_state_dict(small_hf).items():
        key = key.replace(".attention.q_proj.", ".attention.self.query.")
        key = key.replace(".attention.k_proj.", ".attention.self.key.")
        key = key.replace(".attention.v_proj.", ".attention.self.value.")
        key = key.replace(".attention.relative_position_bias.", ".attention.self.")
        key = key.replace(".attention.o_proj.", ".attention.output.dense.")
        key = key.replace(".mlp.fc1.", ".intermediate.dense.").replace(".mlp.fc2.", ".output.dense.")
        legacy[key] = torch.from_numpy(value)
    path = tmp_path / "pytorch_model.bin"
    torch.save(legacy, path)
    assert_parity(keras_like(small_hf, weights=path), small_hf, random_inputs((1, 64, 64, 3)))


def test_backbone_drops_head_and_new_classes_reinitialise(small_hf, tmp_path, caplog):
    path = tmp_path / "model.safetensors"
    save_file(official_state_dict(hf_state_dict(small_hf), with_buffers=False), str(path))
    backbone = keras_like(small_hf, include_top=False, weights=path)
    _, pyramid = hf_outputs(small_hf, images := random_inputs((1, 64, 64, 3)))
    features = keras.Model(backbone.input, backbone.pyramid_outputs)(images)
    np.testing.assert_allclose(features["P3"], pyramid["P3"], atol=1e-4)
    with caplog.at_level(logging.WARNING, logger="keras_swin"):
        fresh_head = keras_like(small_hf, classes=3, weights=path)
    assert "head is freshly initialised" in caplog.text
    assert fresh_head.output.shape[-1] == 3


def test_bias_tables_resize_bicubically_like_official_finetuning(small_hf, tmp_path):
    path = tmp_path / "model.safetensors"
    official = official_state_dict(hf_state_dict(small_hf), with_buffers=False)
    save_file(official, str(path))
    model = keras_like(small_hf, window_size=6, weights=path)
    table = official["layers.1.blocks.0.attn.relative_position_bias_table"]  # (49, 4)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(table).T.reshape(1, 4, 7, 7), size=(11, 11), mode="bicubic", align_corners=False
    ).reshape(4, 121).T.numpy()
    loaded = model.get_layer("stage2_block1").attention.relative_position_bias_table
    np.testing.assert_allclose(loaded, expected, atol=1e-5)
    np.testing.assert_allclose(resize_bias_table(table, 4), table, atol=1e-6)  # same size: unchanged


def test_mismatches_name_key_shapes_and_layout(small_hf, tmp_path):
    official = official_state_dict(hf_state_dict(small_hf), with_buffers=False)
    wider = keras_swin.SwinTransformer(embed_dim=48, depths=(2, 2), num_heads=(2, 4), window_size=4, classes=10)
    with pytest.raises(WeightsMismatchError, match=r"patch_embed\.proj\.weight.*official.*\(4, 4, 3, 48\).*\(4, 4, 3, 32\)"):
        from keras_swin.checkpoints.swin import official_to_keras
        official_to_keras(wider, official, "official")
    model = keras_like(small_hf)
    broken = dict(official)
    del broken["layers.1.blocks.1.mlp.fc2.weight"]
    path = tmp_path / "broken.safetensors"
    save_file(timm_state_dict(broken), str(path))
    with weights_unchanged(model), pytest.raises(
        WeightsMismatchError, match=r"timm layout.*missing keys \['layers\.1\.blocks\.1\.mlp\.fc2\.weight'\]"
    ):
        load_weights(model, path)
    deeper = keras_swin.SwinTransformer(embed_dim=32, depths=(2, 2, 2), num_heads=(2, 4, 8), window_size=4, classes=10)
    with pytest.raises(WeightsMismatchError, match="missing keys.*layers.2"):
        load_weights(deeper, tmp_path / "broken.safetensors")


def test_file_errors_name_the_path(small_hf, tmp_path):
    model = keras_like(small_hf)
    with pytest.raises(OSError, match="nothere.pth"):
        load_weights(model, tmp_path / "nothere.pth")
    path = tmp_path / "model.safetensors"
    save_file(official_state_dict(hf_state_dict(small_hf)), str(path))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(OSError, match="truncated.safetensors"):
        load_weights(model, truncated)
    pth = tmp_path / "truncated.pth"
    torch.save({"x": torch.zeros(1000)}, tmp_path / "full.pth")
    pth.write_bytes((tmp_path / "full.pth").read_bytes()[:200])
    with pytest.raises(OSError, match="truncated.pth"):
        load_weights(model, pth)
    with pytest.raises(ValueError, match="unknown-tag"):
        load_weights(model, "unknown-tag")


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path, small_hf):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": _RunsCode(str(marker))}, f)
    with pytest.raises(OSError, match="evil.pth"):
        load_weights(keras_like(small_hf), path)
    assert not marker.exists()


def test_keras_weights_files_load(small_hf, tmp_path):
    source = keras_from_hf(small_hf)
    source.save_weights(tmp_path / "m.weights.h5")
    source.save(tmp_path / "m.keras")
    images = random_inputs((1, 48, 48, 3))
    for name in ("m.weights.h5", "m.keras"):
        target = keras_like(small_hf, weights=tmp_path / name)
        np.testing.assert_array_equal(target(images), source(images))


@pytest.mark.slow
def test_imagenet_preset_resolves_through_the_hub_cache(offline_hub):
    """A real timm-layout checkpoint placed in a temporary Hugging Face cache, offline."""
    hf = hf_swin_t()
    snapshot = hub_snapshot(offline_hub, "timm/swin_tiny_patch4_window7_224.ms_in1k")
    save_file(timm_state_dict(official_state_dict(hf_state_dict(hf))), str(snapshot / "model.safetensors"))
    images = random_inputs((1, 224, 224, 3))
    model = keras_swin.SwinT(weights="imagenet", include_preprocessing=False, classifier_activation=None)
    np.testing.assert_allclose(model(images), hf_outputs(hf, images)[0], atol=1e-4)
    # Not in the cache while offline: a clear OSError naming the repository.
    with pytest.raises(OSError, match=r"'timm/swin_small_patch4_window7_224\.ms_in22k'.*HF_HUB_OFFLINE is set"):
        keras_swin.SwinS(weights="in22k")


def test_sha256_mismatch_is_an_error(tmp_path):
    from keras_swin.checkpoints.presets import verify_sha256

    path = tmp_path / "f.bin"
    path.write_bytes(b"swin")
    verify_sha256(path, hashlib.sha256(b"swin").hexdigest())
    with pytest.raises(OSError, match="Checksum mismatch"):
        verify_sha256(path, "0" * 64)


@pytest.mark.slow
def test_cli_convert_reports_parity(tmp_path):
    hf = hf_swin_t()
    src = tmp_path / "swin_tiny.pth"
    torch.save({"model": {k: torch.from_numpy(v) for k, v in official_state_dict(hf_state_dict(hf)).items()}}, src)
    dst = tmp_path / "out" / "swin_t.weights.h5"
    result = cli("convert", src, dst, "--arch", "swin_t")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "official layout" in result.stdout
    parity = parity_reported(result.stdout)
    assert sorted(parity) == ["features", "outputs"]
    assert parity["features"] <= 1e-4 and parity["outputs"] <= 1e-4
    # The written file holds the checkpoint: the model it loads into (preprocessing included)
    # gives HF's logits on the pixels whose normalisation HF was given.
    model = keras_swin.SwinT(weights=dst, classifier_activation=None)
    images = random_inputs((1, 224, 224, 3))
    pixels = images * 255 * np.array(IMAGENET_STD, "float32") + 255 * np.array(IMAGENET_MEAN, "float32")
    np.testing.assert_allclose(model(pixels), hf_outputs(hf, images)[0], atol=1e-4)
    bad = cli("convert", src, tmp_path / "x.weights.h5", "--arch", "swin_s")
    assert bad.returncode == 2 and "missing keys" in bad.stderr
