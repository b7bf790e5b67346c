"""Swin V2: layers through the harness, parity against Hugging Face's Swinv2, checkpoints in
every layout, presets, conversion and export."""

import keras
import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

import keras_swin
from checkpoints import official_state_dict, official_v2_state_dict, timm_v2_state_dict
from harness import LayerChecks, random_inputs, run_python
from keras_swin import ops as swin_ops
from keras_swin.checkpoints.files import WeightsMismatchError
from keras_swin.checkpoints.swin import official_to_keras
from keras_swin.models import build_model_v2
from reference import assert_parity, hf_outputs, hf_reference, hf_state_dict, hf_v2_reference, keras_v2_from_hf


def _keras_like(hf, **kwargs):
    config = hf.config
    return keras_swin.SwinTransformerV2(
        embed_dim=config.embed_dim, depths=config.depths, num_heads=config.num_heads,
        window_size=kwargs.pop("window_size", config.window_size),
        pretrained_window_sizes=kwargs.pop("pretrained_window_sizes", config.pretrained_window_sizes),
        include_top=True, classes=config.num_labels, classifier_activation=None, include_preprocessing=False,
        **kwargs,
    )


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


@pytest.mark.parametrize("window,pretrained", [(8, 0), (5, 0), (16, 12), (1, 0), (8, 6)])
def test_log_spaced_coordinates_match_huggingface(window, pretrained):
    hf = hf_v2_reference(embed_dim=8, depths=(1,), num_heads=(1,), window_size=window,
                         pretrained_window_sizes=(pretrained,), image_size=4 * window)
    expected = hf.swinv2.encoder.layers[0].blocks[0].attention.self.relative_coords_table.numpy()
    got = keras.ops.convert_to_numpy(swin_ops.log_spaced_coordinates(window, window, pretrained, pretrained))
    np.testing.assert_allclose(got, expected.reshape(-1, 2), atol=1e-6)


@pytest.fixture(scope="module")
def small_v2():
    return hf_v2_reference()


@pytest.mark.parametrize("size", [(256, 256), (250, 330), (128, 128)])
def test_huggingface_parity_small(small_v2, size):
    """(128, 128): stage 4's map is 4x4 < window 8, so the window shrinks to 4 at run time
    (HF decides it from image_size, so that size gets its own reference)."""
    hf = small_v2 if size != (128, 128) else hf_v2_reference(image_size=128)
    assert_parity(keras_v2_from_hf(hf), hf, random_inputs((1,) + size + (3,)))


def test_huggingface_parity_with_pretrained_windows():
    """Window 16 with pretrained windows (12, 12, 12, 6), as the 192to256 fine-tunes."""
    hf = hf_v2_reference(window_size=16, pretrained_window_sizes=(12, 12, 12, 6))
    assert_parity(keras_v2_from_hf(hf), hf, random_inputs((1, 256, 256, 3)))


@pytest.mark.slow
@pytest.mark.parametrize("size", [(256, 256), (250, 330)])
def test_huggingface_parity_swin_v2_t(size):
    hf = hf_v2_reference(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), num_labels=1000)
    model = keras_v2_from_hf(hf)
    assert model.count_params() == 28_347_154
    assert_parity(model, hf, random_inputs((1,) + size + (3,)))


def test_official_and_timm_layouts_load_equal(small_v2, tmp_path):
    official = official_v2_state_dict(small_v2)
    pth = tmp_path / "swinv2_official.pth"
    torch.save({"model": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in official.items()}}, pth)
    timm = tmp_path / "model.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in timm_v2_state_dict(official).items()}, str(timm))
    images = random_inputs((1, 250, 330, 3))  # every stage keeps the window HF chose at 256
    from_pth, from_timm = _keras_like(small_v2), _keras_like(small_v2)
    assert from_pth.load_checkpoint(pth) == "official"
    assert from_timm.load_checkpoint(timm) == "timm"
    np.testing.assert_array_equal(from_pth(images), from_timm(images))
    assert_parity(from_pth, small_v2, images)


def test_window_mismatch_names_both_values(tmp_path):
    hf = hf_v2_reference(window_size=16, pretrained_window_sizes=(12, 12, 12, 6))
    path = tmp_path / "official.pth"
    torch.save({"model": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in official_v2_state_dict(hf).items()}}, path)
    model = _keras_like(hf, pretrained_window_sizes=(0, 0, 0, 0))
    before = [keras.ops.convert_to_numpy(w) for w in model.weights]
    with pytest.raises(WeightsMismatchError, match=r"window 16 and pretrained window 12.*window_size=16 and pretrained_window_sizes\[0\]=0"):
        model.load_checkpoint(path)
    for weight, old in zip(model.weights, before):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), old)
    with pytest.raises(WeightsMismatchError, match=r"window 16 .*window_size=8"):
        _keras_like(hf, window_size=8).load_checkpoint(path)
    _keras_like(hf).load_checkpoint(path)  # the right values load


def test_v1_and_v2_checkpoints_are_not_mixed_up(small_v2, tmp_path):
    v1 = hf_reference()
    with pytest.raises(WeightsMismatchError, match="This is a Swin V1 checkpoint"):
        official_to_keras(_keras_like(small_v2), official_state_dict(hf_state_dict(v1)))
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


def test_keras_file_reload_in_fresh_process(small_v2, tmp_path):
    model = keras_v2_from_hf(small_v2, dtype="float32")
    config = model.get_config()
    assert type(model).from_config(config).get_config() == config
    model.save(tmp_path / "v2.keras")
    images = random_inputs((1, 70, 90, 3))
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", keras.ops.convert_to_numpy(model(images)))
    out = run_python(
        f"""
        import numpy as np, keras
        import keras_swin
        model = keras.saving.load_model({str(tmp_path / "v2.keras")!r}, safe_mode=True)
        assert type(model).__name__ == "SwinTransformerV2", type(model)
        assert model.pretrained_window_sizes == (0, 0, 0, 0)
        x = np.load({str(tmp_path / "x.npy")!r})
        print("maxdiff", float(np.abs(np.asarray(model(x)) - np.load({str(tmp_path / "y.npy")!r})).max()))
        """
    )
    assert float(out.split("maxdiff")[-1]) <= 1e-6


def test_predict_at_one_size_then_another(small_v2):
    model = keras_v2_from_hf(small_v2)
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
def test_imagenet_preset_resolves_through_the_hub_cache_and_convert_cli(tmp_path):
    import subprocess
    import sys

    hf = hf_v2_reference(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), num_labels=1000)
    snapshot = tmp_path / "hub" / "models--timm--swinv2_tiny_window8_256.ms_in1k"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (snapshot / "refs").mkdir(parents=True)
    (snapshot / "refs" / "main").write_text(commit)
    (snapshot / "snapshots" / commit).mkdir(parents=True)
    timm = {k: np.ascontiguousarray(v) for k, v in timm_v2_state_dict(official_v2_state_dict(hf)).items()}
    save_file(timm, str(snapshot / "snapshots" / commit / "model.safetensors"))
    images = random_inputs((1, 256, 256, 3))
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", hf_outputs(hf, images)[0])
    code = f"""
        import numpy as np, keras_swin
        model = keras_swin.SwinV2T(weights="imagenet", include_preprocessing=False, classifier_activation=None)
        y = np.asarray(model(np.load({str(tmp_path / "x.npy")!r})))
        print("maxdiff", float(np.abs(y - np.load({str(tmp_path / "y.npy")!r})).max()))
    """
    out = run_python(code, env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")})
    assert float(out.split("maxdiff")[-1]) <= 1e-4
    # keras-swin convert on the same checkpoint reports its measured parity.
    src = snapshot / "snapshots" / commit / "model.safetensors"
    result = subprocess.run(
        [sys.executable, "-m", "keras_swin.cli", "convert", str(src), str(tmp_path / "v2.weights.h5"),
         "--arch", "swinv2_t"], capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    parity = dict(
        item.strip().split(" ") for item in result.stdout.split("(max abs diff, fp32): ")[1].strip().split(",")
    )
    assert float(parity["features"]) <= 1e-4 and float(parity["outputs"]) <= 1e-4
