"""The CPU's instruction set, and what `jit_compile="auto"` picks on it."""

import keras
import pytest

import keras_swin
from keras_swin import cpu

AMD_AVX2 = {"fpu", "sse4_2", "avx", "avx2", "fma", "f16c"}
AMD_AVX512 = AMD_AVX2 | {"avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}
INTEL_AMX = AMD_AVX512 | {"amx_tile", "amx_bf16", "amx_int8"}


@pytest.mark.parametrize(
    "flags, environ, expected",
    [
        (INTEL_AMX, {}, "amx"),
        (AMD_AVX512, {}, "avx512_bf16"),
        (AMD_AVX512 - {"avx512_bf16"}, {}, "avx512"),
        (AMD_AVX2, {}, "avx2"),
        ({"sse4_2", "avx"}, {}, "older"),
        (set(), {}, "avx2"),  # flags unknown (not Linux)
        # Caps that users set to pin an instruction set lower it, never raise it.
        (AMD_AVX512, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, "avx2"),
        (INTEL_AMX, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, "avx512_bf16"),
        (INTEL_AMX, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"}, "avx512"),
        (AMD_AVX512, {"XLA_FLAGS": "--xla_dump_to=/tmp/x --xla_cpu_max_isa=AVX2"}, "avx2"),
        (AMD_AVX2, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, "avx2"),
        (AMD_AVX512, {"ONEDNN_MAX_CPU_ISA": "ALL"}, "avx512_bf16"),
    ],
)
def test_instruction_set_from_flags_and_caps(flags, environ, expected):
    assert cpu.instruction_set(flags, environ) == expected


def test_cpu_flags_reads_cpuinfo(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 fma avx512f\n\nprocessor\t: 1\n")
    assert cpu.cpu_flags(str(path)) == {"fpu", "avx2", "fma", "avx512f"}
    assert cpu.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_xla_decision_per_instruction_set():
    # benchmarks/RESULTS.md, "XLA or the oneDNN graph": float32 was faster with XLA with
    # AVX-512 and AVX2; bf16 with oneDNN's native bf16 kernels (1.7x XLA), while without
    # them oneDNN's bf16 convolution does not build and XLA runs.
    for isa in cpu.INSTRUCTION_SETS:
        assert cpu.prefers_xla("float32", isa) is True
    for half in ("bfloat16", "float16"):
        assert cpu.prefers_xla(half, "amx") is False
        assert cpu.prefers_xla(half, "avx512_bf16") is False
        assert cpu.prefers_xla(half, "avx512") is True
        assert cpu.prefers_xla(half, "avx2") is True
    with pytest.raises(ValueError, match="`isa` must be one of .* received 'avx1024'"):
        cpu.prefers_xla("float32", "avx1024")


@pytest.mark.parametrize(
    "isa, policy, expected",
    [("avx512_bf16", "float32", True), ("avx2", "float32", True), ("avx512_bf16", "mixed_bfloat16", False),
     ("amx", "mixed_bfloat16", False), ("avx2", "mixed_bfloat16", True)],
)
def test_models_auto_jit_follows_the_cpu(isa, policy, expected, monkeypatch):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("the CPU default; with a GPU Keras's own choice applies")
    monkeypatch.setattr(cpu, "instruction_set", lambda: isa)
    model = keras_swin.SwinTransformer(patch_size=4, embed_dim=8, depths=(1,), num_heads=(1,), window_size=2,
                                       include_top=True, classes=3, dtype=policy)
    model.compile(loss="sparse_categorical_crossentropy")  # jit_compile="auto"
    assert model.jit_compile is expected
    # An explicit choice stays.
    model.compile(loss="sparse_categorical_crossentropy", jit_compile=not expected)
    assert model.jit_compile is (not expected)
