"""One harness that every layer and model goes through.

`LayerChecks.run_all` applies the same checks to any layer: config round trip, symbolic vs
eager vs `compute_output_shape`, a jit-compiled `fit` step in which every trainable weight
gets a finite non-zero update, `.keras` reload in a fresh process, and mixed precision.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code, env=None, timeout=600):
    """Runs `code` in a fresh interpreter at the repository root; returns its stdout."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"subprocess failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    return result.stdout


def random_inputs(shape, seed=0):
    return np.random.RandomState(seed).standard_normal(shape).astype("float32")


def _is_multi(shape):
    return isinstance(shape, list)


def _inputs_for(shape, seed=0):
    """One array for a shape, a list of arrays for a list of shapes (multi-input layers)."""
    if _is_multi(shape):
        return [random_inputs(s, seed=seed + index) for index, s in enumerate(shape)]
    return random_inputs(shape, seed)


class LayerChecks:
    """Checks for one layer class.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor arguments.
        input_shape: a full input shape (batch included) used for eager calls, or a list
            of them for a layer called on a list of tensors.
        symbolic_shape: the shape given to `keras.Input` (no batch); may hold None. A
            list of them for a multi-input layer.
    """

    def __init__(self, layer_cls, init_kwargs, input_shape, symbolic_shape=None):
        self.layer_cls = layer_cls
        self.init_kwargs = init_kwargs
        if _is_multi(input_shape):
            self.input_shape = [tuple(s) for s in input_shape]
            self.symbolic_shape = [tuple(s) for s in (symbolic_shape or [s[1:] for s in input_shape])]
        else:
            self.input_shape = tuple(input_shape)
            self.symbolic_shape = tuple(symbolic_shape or input_shape[1:])

    def _symbolic_inputs(self):
        if _is_multi(self.symbolic_shape):
            return [keras.Input(s) for s in self.symbolic_shape]
        return keras.Input(self.symbolic_shape)

    def _batched_symbolic_shape(self):
        if _is_multi(self.symbolic_shape):
            return [(None,) + s for s in self.symbolic_shape]
        return (None,) + self.symbolic_shape

    @property
    def _batch_size(self):
        return (self.input_shape[0] if _is_multi(self.input_shape) else self.input_shape)[0]

    def make(self, **overrides):
        return self.layer_cls(**{**self.init_kwargs, **overrides})

    def check_config_round_trip(self):
        layer = self.make()
        layer.build(self.input_shape)
        config = layer.get_config()
        clone = self.layer_cls.from_config(config)
        assert clone.get_config() == config
        # Through the registered serializer and JSON, as a .keras file stores it.
        serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
        assert serialized["registered_name"] == f"keras_swin>{self.layer_cls.__name__}"
        restored = keras.saving.deserialize_keras_object(serialized)
        assert type(restored) is self.layer_cls
        assert restored.get_config() == json.loads(json.dumps(config))
        for key, value in self.init_kwargs.items():
            stored = config[key]
            expected = list(value) if isinstance(value, tuple) else value
            assert stored == expected, f"{key}: get_config has {stored}, constructor got {value}"

    def check_shapes(self):
        layer = self.make()
        x = _inputs_for(self.input_shape)
        eager = layer(x)
        assert tuple(eager.shape) == tuple(layer.compute_output_shape(self.input_shape))
        symbolic = self.make()(self._symbolic_inputs())
        expected = layer.compute_output_shape(self._batched_symbolic_shape())
        assert tuple(symbolic.shape) == tuple(expected)
        for got, want in zip(symbolic.shape, eager.shape):
            assert got is None or got == want

    def _wrap(self, layer):
        inputs = self._symbolic_inputs()
        return keras.Model(inputs, layer(inputs))

    def check_jit_fit_step(self):
        layer = self.make()
        model = self._wrap(layer)
        x = _inputs_for(self.input_shape)
        y = random_inputs(tuple(layer(x).shape), seed=1)
        before = [keras.ops.convert_to_numpy(w) for w in layer.trainable_weights]
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss="mse", jit_compile=True)
        history = model.fit(x, y, batch_size=self._batch_size, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        for weight, old in zip(layer.trainable_weights, before):
            new = keras.ops.convert_to_numpy(weight)
            assert np.all(np.isfinite(new)), f"{weight.path} is not finite after a fit step"
            assert np.any(new != old), f"{weight.path} got a zero gradient"

    def check_fresh_process_reload(self, tmp_path):
        layer = self.make()
        model = self._wrap(layer)
        x = _inputs_for(self.input_shape)
        path = str(tmp_path / "layer.keras")
        model.save(path)
        np.savez(tmp_path / "x.npz", *(x if isinstance(x, list) else [x]))
        np.save(tmp_path / "y.npy", np.asarray(model(x)))
        out = run_python(
            f"""
            import numpy as np, keras
            import keras_swin  # registers the classes; no custom_objects are passed
            model = keras.saving.load_model({path!r}, safe_mode=True)
            layer = model.layers[-1]
            assert type(layer).__name__ == {self.layer_cls.__name__!r}, type(layer)
            arrays = np.load({str(tmp_path / "x.npz")!r})
            x = [arrays[f"arr_{{i}}"] for i in range(len(arrays.files))]
            x = x if len(x) > 1 else x[0]
            y = np.load({str(tmp_path / "y.npy")!r})
            print("maxdiff", float(np.abs(np.asarray(model(x)) - y).max()))
            """
        )
        assert float(out.split("maxdiff")[-1]) <= 1e-6

    def check_mixed_precision(self):
        for policy, dtype in (("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")):
            layer = self.make(dtype=policy)
            out = layer(_inputs_for(self.input_shape))
            assert keras.backend.standardize_dtype(out.dtype) == dtype
            for weight in layer.weights:
                assert weight.dtype == "float32", f"{weight.path} stored as {weight.dtype}"
            assert np.all(np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(out, "float32"))))

    def run_all(self, tmp_path):
        self.check_config_round_trip()
        self.check_shapes()
        self.check_jit_fit_step()
        self.check_mixed_precision()
        self.check_fresh_process_reload(tmp_path)
