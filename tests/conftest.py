import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Every test starts with float32 and a fixed seed."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty Hugging Face cache (fill it with `checkpoints.hub_snapshot`) that
    huggingface_hub uses in this process, offline, as with HF_HUB_CACHE and HF_HUB_OFFLINE=1
    set before it was imported."""
    import huggingface_hub.constants

    hub = tmp_path / "hub"
    hub.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return hub


@pytest.fixture
def few_digits(monkeypatch):
    """`--data digits` on part of each split (`harness.use_few_digits`), for this test."""
    from harness import use_few_digits

    use_few_digits(monkeypatch.setattr)
