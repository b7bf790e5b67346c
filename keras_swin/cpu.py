"""What this CPU's vector units are, for choices whose best answer depends on them.

`jit_compile="auto"` (`SwinTransformer._resolve_auto_jit_compile`) asks `prefers_xla`.
Measured (benchmarks/RESULTS.md, "XLA or the oneDNN graph"; benchmarks/PROFILE.md): in
float32, XLA beat TensorFlow's oneDNN graph with AVX-512 and, by more, with AVX2. In
bfloat16, oneDNN's native bf16 kernels (AVX-512 BF16, AMX) beat XLA by 1.7x; without
native bf16, oneDNN has no bf16 convolution (under an AVX2 cap it fails to build one), and
XLA is the path that runs.
"""

import os

# Widest first. "amx": AMX tiles; "avx512_bf16": AVX-512 with bf16 instructions;
# "avx512": AVX-512 (F) without them; "avx2": AVX2 with FMA; "older": less.
INSTRUCTION_SETS = ("amx", "avx512_bf16", "avx512", "avx2", "older")
# Where oneDNN has native bf16 kernels, which beat XLA in half precision.
NATIVE_BF16 = frozenset({"amx", "avx512_bf16"})


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags (Linux `/proc/cpuinfo`); an empty set where unreadable."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _cap_from_onednn(value):
    """The instruction set that an `ONEDNN_MAX_CPU_ISA` value allows at most (None: no cap)."""
    value = value.strip().upper()
    if not value or value in ("ALL", "DEFAULT"):
        return None
    if "AMX" in value:
        return "amx"
    if value.startswith("AVX512_CORE_BF16") or value.startswith("AVX10"):
        return "avx512_bf16"
    if value.startswith("AVX512"):
        return "avx512"
    if value.startswith("AVX2"):
        return "avx2"
    return "older"


def instruction_set(flags=None, environ=None):
    """The widest instruction set oneDNN and XLA will use here: one of `INSTRUCTION_SETS`.

    It is the CPU's (from `flags`, default `/proc/cpuinfo`), lowered by the caps that
    users set to pin an instruction set: `ONEDNN_MAX_CPU_ISA` and XLA's `--xla_cpu_max_isa`
    in `XLA_FLAGS`. Where the flags are unknown (not Linux), "avx2" is assumed.
    """
    flags = cpu_flags() if flags is None else frozenset(flags)
    environ = os.environ if environ is None else environ
    if not flags:
        found = "avx2"
    elif {"amx_tile", "amx_bf16"} & flags:
        found = "amx"
    elif {"avx512f", "avx512_bf16"} <= flags:
        found = "avx512_bf16"
    elif "avx512f" in flags:
        found = "avx512"
    elif {"avx2", "fma"} <= flags:
        found = "avx2"
    else:
        found = "older"
    caps = [_cap_from_onednn(environ.get("ONEDNN_MAX_CPU_ISA", ""))]
    for flag in environ.get("XLA_FLAGS", "").split():
        if flag.startswith("--xla_cpu_max_isa="):
            caps.append(_cap_from_onednn(flag.split("=", 1)[1]))
    for cap in caps:
        if cap is not None and INSTRUCTION_SETS.index(cap) > INSTRUCTION_SETS.index(found):
            found = cap
    return found


def prefers_xla(compute_dtype, isa=None):
    """Whether a CPU model should compile with XLA: in float32 always (it was faster with
    AVX-512 and AVX2; AMX and older sets were not measured and follow them); in half
    precision only without native bf16 kernels (`NATIVE_BF16`)."""
    isa = instruction_set() if isa is None else isa
    if isa not in INSTRUCTION_SETS:
        raise ValueError(f"`isa` must be one of {list(INSTRUCTION_SETS)}; received {isa!r}.")
    if compute_dtype == "float32":
        return True
    return isa not in NATIVE_BF16
