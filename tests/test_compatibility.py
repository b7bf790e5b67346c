"""Files saved by earlier versions keep loading: the `.keras` files in tests/data/legacy/ were
saved by keras_swin at ce8307c, before the package moved into models/, checkpoints/, ...
(their README). Each loads with `safe_mode=True` as the same public class and gives the
outputs stored with it; and a fresh interpreter needs nothing but `import keras_swin`."""

import os

import keras
import numpy as np
import pytest

import keras_swin
from harness import run_python

LEGACY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "legacy")
# name -> (public class, its architecture as saved)
FILES = {
    "legacy_classifier": (keras_swin.SwinTransformer, dict(patch_size=2, embed_dim=16, depths=[1, 1], classes=3)),
    "legacy_v2": (keras_swin.SwinTransformerV2, dict(patch_size=2, embed_dim=16, pretrained_window_sizes=[0, 3])),
    "legacy_upernet": (keras_swin.UPerNet, dict(num_classes=4, channels=8, auxiliary_head=True, detail_channels=4)),
}


def _outputs(model, images):
    out = model(images)
    if isinstance(out, dict):
        return {key: keras.ops.convert_to_numpy(value) for key, value in out.items()}
    return {"output": keras.ops.convert_to_numpy(out)}


@pytest.mark.parametrize("name", sorted(FILES))
def test_legacy_file_loads_with_the_same_outputs(name):
    cls, architecture = FILES[name]
    model = keras.saving.load_model(os.path.join(LEGACY, f"{name}.keras"), safe_mode=True)
    assert type(model) is cls
    config = model.get_config()
    assert {key: config[key] for key in architecture} == architecture
    if cls is keras_swin.UPerNet:
        assert type(model.backbone) is keras_swin.SwinTransformer
    images = np.load(os.path.join(LEGACY, "inputs.npy"))
    stored = np.load(os.path.join(LEGACY, f"{name}_outputs.npz"))
    got = _outputs(model, images)
    assert sorted(got) == sorted(stored.files)
    for key in stored.files:
        np.testing.assert_allclose(got[key], stored[key], atol=1e-6, rtol=0, err_msg=key)


def test_a_fresh_interpreter_needs_only_import_keras_swin():
    """Every public layer and model is registered by `import keras_swin` itself (the other
    tests reload their files in this process, where the tests' imports have run), and the
    legacy files load there too, without custom_objects."""
    out = run_python(
        f"""
        import os, inspect, numpy as np, keras
        import keras_swin
        classes = [name for name in keras_swin.__all__
                   if inspect.isclass(getattr(keras_swin, name)) and issubclass(getattr(keras_swin, name), keras.layers.Layer)]
        missing = [name for name in classes
                   if keras.saving.get_registered_object(f"keras_swin>{{name}}") is not getattr(keras_swin, name)]
        print(",".join(classes), "unregistered:", missing)
        images = np.load(os.path.join({LEGACY!r}, "inputs.npy"))
        for name in {sorted(FILES)!r}:
            model = keras.saving.load_model(os.path.join({LEGACY!r}, name + ".keras"), safe_mode=True)
            out = model(images)
            out = out if isinstance(out, dict) else {{"output": out}}
            stored = np.load(os.path.join({LEGACY!r}, name + "_outputs.npz"))
            diff = max(float(np.abs(np.asarray(out[key]) - stored[key]).max()) for key in stored.files)
            print(name, type(model).__name__, diff)
        """
    )
    lines = out.strip().splitlines()
    public = [name for name in keras_swin.__all__
              if isinstance(getattr(keras_swin, name), type) and issubclass(getattr(keras_swin, name), keras.layers.Layer)]
    assert {"SwinTransformer", "SwinTransformerV2", "UPerNet", "SwinBlock", "WindowAttentionV2"} <= set(public)
    assert lines[0] == f"{','.join(public)} unregistered: []", lines[0]
    loaded = {line.split()[0]: (line.split()[1], float(line.split()[2])) for line in lines[1:]}
    assert loaded.keys() == FILES.keys()
    for name, (cls, _) in FILES.items():
        assert loaded[name][0] == cls.__name__ and loaded[name][1] <= 1e-6, (name, loaded[name])
