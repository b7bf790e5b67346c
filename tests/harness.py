"""One harness that every layer and model goes through.

`LayerChecks.run_all` applies the same checks to any layer: config round trip, symbolic vs
eager vs `compute_output_shape`, a jit-compiled `fit` step in which every trainable weight
gets a finite non-zero update, a safe-mode `.keras` reload, and mixed precision.

`ModelChecks` does the same for a whole model (SwinTransformer, SwinTransformerV2, UPerNet):
every layer built at construction, config round trip, symbolic vs eager vs
`compute_output_spec` (and a jit-compiled `predict`), the jit fit step, mixed precision
(`mixed_bfloat16` through the `dtype` argument, `mixed_float16` through the global policy),
`.keras` save and safe-mode load (alone and nested in another functional model) and
`quantize("int8")`.
"""

import contextlib
import dataclasses
import gc
import io
import json
import os
import subprocess
import sys
import textwrap
import warnings
from unittest import mock

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


def cli(*args):
    """`keras-swin ARGS` in this process, through `keras_swin.cli.main` (importing
    TensorFlow again in a fresh interpreter costs seconds a call): a `CompletedProcess`
    with the exit status (2 for argparse's errors) and what it printed."""
    from keras_swin.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            status = main([str(arg) for arg in args])
        except SystemExit as exit:
            status = exit.code
    return subprocess.CompletedProcess(["keras-swin", *map(str, args)], status, stdout.getvalue(), stderr.getvalue())


def cli_process(*args, few_digits=False, env=None, **popen_kwargs):
    """`keras-swin ARGS` started in a fresh interpreter at the repository root, for what
    needs a process of its own (killing it, another backend); with `few_digits`, `--data
    digits` is `use_few_digits`'s part of the digits."""
    code = (
        "import sys; sys.path.insert(0, 'tests'); import harness; harness.use_few_digits(); "
        "from keras_swin.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    command = ["-c", code] if few_digits else ["-m", "keras_swin.cli"]
    return subprocess.Popen(
        [sys.executable, *command, *map(str, args)], cwd=REPO_ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}, **popen_kwargs,
    )


FEW_DIGITS = {"train": 384, "validation": 64, "test": 128}


def use_few_digits(patch=setattr, counts=None):
    """Makes `keras_swin.data.classification.load_digits` (`--data digits`) keep the first
    `counts` (default `FEW_DIGITS`: 384 / 64 / 128) of the 1,257 / 180 / 360 train /
    validation / test images, each split being in a stratified random order: for tests of the
    training loop that need its behaviour rather than its accuracy. `patch`: pytest's
    `monkeypatch.setattr`, to undo it after the test."""
    counts = {**FEW_DIGITS, **(counts or {})}
    from keras_swin.data import classification

    full = classification.load_digits

    def load_digits(image_size, seed=0):
        splits = full(image_size, seed)
        return dataclasses.replace(splits, **{name: getattr(splits, name).take(count)
                                              for name, count in counts.items()})

    patch(classification, "load_digits", load_digits)


@contextlib.contextmanager
def weights_unchanged(model):
    """Asserts that the block leaves every weight of `model` as it was (a refused checkpoint
    writes nothing: the model is not left half-loaded)."""
    before = [keras.ops.convert_to_numpy(w) for w in model.weights]
    yield
    for weight, old in zip(model.weights, before):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), old, err_msg=weight.path)


def random_inputs(shape, seed=0):
    return np.random.RandomState(seed).standard_normal(shape).astype("float32")


def _numpy(tensor):
    return keras.ops.convert_to_numpy(keras.ops.cast(tensor, "float32"))


def _dtype(tensor):
    return keras.backend.standardize_dtype(tensor.dtype)


def _flat(structure):
    """`[(key, tensor)]` of a model's output: one tensor, or a dict of them."""
    if isinstance(structure, dict):
        return sorted(structure.items())
    return [("output", structure)]


def assert_outputs_close(got, expected, atol, what):
    got, expected = _flat(got), _flat(expected)
    assert [k for k, _ in got] == [k for k, _ in expected], what
    for (key, a), (_, b) in zip(got, expected):
        np.testing.assert_allclose(_numpy(a), _numpy(b), atol=atol, err_msg=f"{what}: {key}")


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
        model.optimizer.build(model.trainable_variables)  # one trace, not two (recipe.build_optimizer)
        history = model.fit(x, y, batch_size=self._batch_size, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        for weight, old in zip(layer.trainable_weights, before):
            new = keras.ops.convert_to_numpy(weight)
            assert np.all(np.isfinite(new)), f"{weight.path} is not finite after a fit step"
            assert np.any(new != old), f"{weight.path} got a zero gradient"

    def check_reload(self, tmp_path):
        """A `.keras` file of a model around the layer loads with `safe_mode=True` (no
        custom_objects) and gives the same outputs. That `import keras_swin` alone registers
        every class, in a fresh interpreter: tests/test_compatibility.py."""
        layer = self.make()
        model = self._wrap(layer)
        x = _inputs_for(self.input_shape)
        path = tmp_path / "layer.keras"
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        assert type(loaded.layers[-1]) is self.layer_cls, type(loaded.layers[-1])
        assert loaded.layers[-1].get_config() == layer.get_config()
        np.testing.assert_allclose(_numpy(loaded(x)), _numpy(model(x)), atol=1e-6)

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
        self.check_reload(tmp_path)


class ModelChecks:
    """Checks for one keras_swin model class on a model that `factory(**overrides)` builds.

    The checks share one model (`self.model`, built on first use; use the instance from a
    module-scoped fixture); those that change a model (fit, quantize, mixed precision)
    build their own.

    Args:
        factory: builds the model; accepts `dtype=`.
        input_shape: the full input shape (batch included) of the eager calls, pixels in
            [0, 255].
        float32_layers: names of the layers documented to compute in float32 whatever the
            policy (a classifier head); every other layer takes the model's policy.
        float32_outputs: whether the outputs stay float32 under mixed precision (True for
            a model ending in such layers), else they are in the compute dtype.
        loss, loss_weights, targets: the fit step's loss (default mean squared error on every
            output) and `targets(outputs) -> y` (default: random arrays of the outputs'
            shapes).
        quantize_tolerance: the largest relative error (Frobenius norms) of an output or a
            pyramid level after `quantize("int8")`.
    """

    CHECKS = (
        "check_built",
        "check_config_round_trip",
        "check_outputs",
        "check_jit_fit_step",
        "check_mixed_precision",
        "check_save_and_load",
        "check_quantize_int8",
    )

    def __init__(self, factory, input_shape, float32_layers=(), float32_outputs=False, loss="mse",
                 loss_weights=None, targets=None, quantize_tolerance=0.05):
        self.factory = factory
        self.input_shape = tuple(input_shape)
        self.float32_layers = set(float32_layers)
        self.float32_outputs = float32_outputs
        self.loss = loss
        self.loss_weights = loss_weights
        self.targets = targets
        self.quantize_tolerance = quantize_tolerance
        self.images = random_inputs(self.input_shape) * 50 + 120
        self._model = None

    @classmethod
    def classifier(cls, factory, input_shape, float32_layers=(), **kwargs):
        """For a classifier giving logits: its head ("predictions") and so its outputs
        compute in float32; trained with sparse categorical cross-entropy."""
        labels = np.arange(input_shape[0]) % 3
        return cls(
            factory, input_shape, float32_layers=("predictions",) + tuple(float32_layers), float32_outputs=True,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), targets=lambda outputs: labels,
            **kwargs,
        )

    @property
    def model(self):
        if self._model is None:
            self._model = self.factory()
        return self._model

    def run(self, check, tmp_path):
        getattr(self, check)(tmp_path)

    # ------------------------------------------------------------------ checks

    def check_built(self, tmp_path=None):
        """Every layer is built at construction (Keras's JAX `predict` runs an unbuilt model
        eagerly op by op first: minutes for SwinT on a GPU)."""
        layers = self.model._flatten_layers()
        unbuilt = sorted({f"{type(layer).__name__} {layer.name}" for layer in layers if not layer.built})
        assert unbuilt == [], f"{self.model.name}: unbuilt layers {unbuilt}"

    def check_config_round_trip(self, tmp_path=None):
        model = self.model
        cls = type(model)
        config = model.get_config()
        assert json.loads(json.dumps(config)) == config
        clone = cls.from_config(config)
        assert type(clone) is cls
        assert clone.get_config() == config
        assert clone.count_params() == model.count_params()
        # Through the registered serializer and JSON, as a .keras file stores it.
        serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(model)))
        assert serialized["registered_name"] == f"keras_swin>{cls.__name__}"
        restored = keras.saving.deserialize_keras_object(serialized)
        assert type(restored) is cls
        assert restored.get_config() == json.loads(json.dumps(config))

    def check_outputs(self, tmp_path=None):
        """Shapes and dtypes agree between the symbolic graph, an eager call and
        `compute_output_spec`; a jit-compiled `predict` gives the eager values."""
        model = self.model
        eager = model(self.images)
        spec = model.compute_output_spec(keras.KerasTensor(self.input_shape))
        symbolic = model(keras.Input(self.input_shape[1:]))
        stored = model.output
        for structure in (spec, symbolic, stored):
            assert [k for k, _ in _flat(structure)] == [k for k, _ in _flat(eager)]
        for (key, value), (_, out_spec), (_, sym), (_, out) in zip(
            _flat(eager), _flat(spec), _flat(symbolic), _flat(stored)
        ):
            assert tuple(out_spec.shape) == tuple(value.shape), key
            assert _dtype(out_spec) == _dtype(sym) == _dtype(out) == _dtype(value), key
            for shape in (sym.shape, out.shape):
                assert len(shape) == len(value.shape), key
                assert all(s is None or s == v for s, v in zip(shape, value.shape)), (key, shape, value.shape)
            assert np.all(np.isfinite(_numpy(value))), key
        # XLA without compile(): the shared model is saved later, with no optimizer state.
        model.jit_compile, model.predict_function = True, None
        assert_outputs_close(model.predict(self.images, verbose=0), eager, 1e-4, "jit predict vs eager")

    def _targets(self, outputs):
        if self.targets is not None:
            return self.targets(outputs)
        if isinstance(outputs, dict):
            return {key: random_inputs(tuple(value.shape), seed=1) for key, value in outputs.items()}
        return random_inputs(tuple(outputs.shape), seed=1)

    def check_jit_fit_step(self, tmp_path=None):
        """One jit-compiled training step: a finite loss, and every trainable weight gets a
        finite, non-zero update.

        Adam with a tiny epsilon moves every weight whose gradient is not zero by about the
        learning rate, however small the gradient (an SGD update of a 1e-7 gradient, as the
        first LayerNorm of a small UPerNet gets at initialisation, rounds away on a weight
        of 1.0), so an unchanged weight means a gradient that is exactly zero."""
        model = self.factory()
        y = self._targets(model(self.images))
        before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
        model.compile(optimizer=keras.optimizers.Adam(0.01, epsilon=1e-12), loss=self.loss,
                      loss_weights=self.loss_weights, jit_compile=True)
        model.optimizer.build(model.trainable_variables)  # one trace, not two (recipe.build_optimizer)
        history = model.fit(self.images, y, batch_size=self.input_shape[0], epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        unmoved = []
        for weight, old in zip(model.trainable_weights, before):
            new = keras.ops.convert_to_numpy(weight)
            assert np.all(np.isfinite(new)), f"{weight.path} is not finite after a fit step"
            if np.all(new == old):
                unmoved.append(weight.path)
        assert unmoved == [], f"no update (zero gradient) for {unmoved}"

    def check_mixed_precision(self, tmp_path=None):
        """Under `mixed_bfloat16` (the `dtype` argument) and `mixed_float16` (the global
        policy): every layer computes in the policy but the documented float32 ones, every
        weight is stored in float32, the outputs have the documented dtype and are finite,
        and under float16 (with Keras's loss scaling) a training step gives a finite loss and
        finite weights."""
        for policy, through_global in (("mixed_bfloat16", False), ("mixed_float16", True)):
            compute = policy.split("_")[1]
            try:
                if through_global:
                    keras.config.set_dtype_policy(policy)
                    model = self.factory()
                else:
                    model = self.factory(dtype=policy)
            finally:
                keras.config.set_dtype_policy("float32")
            assert model.dtype_policy.name == policy
            found, wrong = set(), {}
            for layer in model._flatten_layers(include_self=False):
                if isinstance(layer, (keras.layers.InputLayer, keras.Model)):
                    continue  # containers: their layers compute, each under its own policy
                expected = "float32" if layer.name in self.float32_layers else policy
                found.update({layer.name} & self.float32_layers)
                if layer.dtype_policy.name != expected:
                    wrong[layer.path] = layer.dtype_policy.name
            assert wrong == {}, f"{policy}: layers under another policy: {wrong}"
            assert found == self.float32_layers, f"float32 layers not in the model: {self.float32_layers - found}"
            stored = {w.path: w.dtype for w in model.weights if w.dtype != "float32"}
            assert stored == {}, f"weights not stored in float32: {stored}"
            outputs = model(self.images)
            for key, value in _flat(outputs):
                assert _dtype(value) == ("float32" if self.float32_outputs else compute), (policy, key)
                assert np.all(np.isfinite(_numpy(value))), (policy, key)
            if compute != "float16":
                continue
            model.compile(optimizer=keras.optimizers.SGD(0.01), loss=self.loss, loss_weights=self.loss_weights,
                          jit_compile=False)
            assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
            model.optimizer.build(model.trainable_variables)  # one trace, not two
            logs = model.train_on_batch(self.images, self._targets(outputs), return_dict=True)
            assert np.isfinite(logs["loss"]), (policy, logs)
            for weight in model.trainable_weights:
                assert np.all(np.isfinite(keras.ops.convert_to_numpy(weight))), (policy, weight.path)

    def check_save_and_load(self, tmp_path):
        """`.keras` files load with `safe_mode=True` and give the same outputs (pyramid
        levels included), alone and nested in another functional model."""
        model = self.model
        cls = type(model)
        expected = model(self.images)
        model.save(tmp_path / "model.keras")
        loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
        assert type(loaded) is cls
        assert loaded.get_config() == model.get_config()
        assert_outputs_close(loaded(self.images), expected, 1e-6, "reloaded")
        if hasattr(model, "pyramid_outputs"):
            assert sorted(loaded.pyramid_outputs) == sorted(model.pyramid_outputs)
            levels = keras.Model(model.input, model.pyramid_outputs)(self.images)
            reloaded_levels = keras.Model(loaded.input, loaded.pyramid_outputs)(self.images)
            assert_outputs_close(reloaded_levels, levels, 1e-6, "reloaded pyramid")

        inputs = keras.Input(self.input_shape[1:])
        nested = model(inputs)
        if isinstance(nested, dict):
            head = {key: keras.layers.Rescaling(2.0, name=f"head_{key}")(value) for key, value in nested.items()}
        else:
            head = keras.layers.Rescaling(2.0, name="head")(nested)
        wrapper = keras.Model(inputs, head, name="wrapper")
        wrapped = wrapper(self.images)
        wrapper.save(tmp_path / "wrapper.keras")
        loaded_wrapper = keras.saving.load_model(tmp_path / "wrapper.keras", safe_mode=True)
        assert type(loaded_wrapper.get_layer(model.name)) is cls
        assert_outputs_close(loaded_wrapper(self.images), wrapped, 1e-6, "reloaded wrapper")
        assert_outputs_close(wrapped, {k: 2 * v for k, v in _flat(expected)} if isinstance(expected, dict)
                             else 2 * _numpy(expected), 1e-5, "wrapper")

    def _outputs_and_levels(self, model):
        """`{name: float32 array}` of the outputs and, for a model with `pyramid_outputs`,
        of every level."""
        arrays = {key: _numpy(value) for key, value in _flat(model(self.images))}
        if hasattr(model, "pyramid_outputs"):
            levels = keras.Model(model.input, model.pyramid_outputs)(self.images)
            arrays.update({key: _numpy(value) for key, value in levels.items()})
        return arrays

    def check_quantize_int8(self, tmp_path=None):
        """`quantize("int8")` turns every Dense kernel into int8, and each output (and
        pyramid level) keeps a relative error `|int8 - float| / |float|` (Frobenius norms)
        of at most `quantize_tolerance`, above zero (the int8 kernels are used).

        Keras's int8 mode rounds each kernel column to its abs-max / 127 and each input row
        to its own abs-max / 127 at run time, so one quantized Dense is off by about 1%
        (RMS) of its output; these small models chain 6-12 of them. The default 5% is above
        every value measured over seeds 0-3 (Swin V1 at most 1.5%, UPerNet 1.3%), and far
        below what a missing or wrong dequantization scale gives (errors of order 100%)."""
        model = self.factory()
        expected = self._outputs_and_levels(model)
        dense_kernels = [w.path for w in model.weights if w.path.endswith("kernel") and len(w.shape) == 2]
        # Keras runs gc.collect() after each kernel it replaces (Layer.__delattr__): 0.3-1.5 s
        # a Dense layer in a test session holding many models, so once, after all of them.
        collect = gc.collect
        with warnings.catch_warnings(), mock.patch.object(gc, "collect", lambda *args: 0):
            warnings.filterwarnings("ignore", message=".*does not have a `quantize` method")
            model.quantize("int8")
        collect()
        quantized = [w.path for w in model.weights if w.dtype == "int8"]
        assert len(quantized) == len(dense_kernels) > 0, (quantized, dense_kernels)
        got = self._outputs_and_levels(model)
        errors = {key: float(np.linalg.norm(got[key] - value) / np.linalg.norm(value))
                  for key, value in expected.items()}
        assert all(error <= self.quantize_tolerance for error in errors.values()), errors
        outputs = [key for key, _ in _flat(model.output)]
        assert all(errors[key] > 0 for key in outputs), errors
