"""The sections of benchmarks/RESULTS.md and scaling.png, from the results of bench.py's modes."""

import datetime
import os
import platform

from workers import AVX2_ONLY, PRECISIONS

SCALING_SIZES = (224, 448, 896)
TFLITE_VARIANTS = ("none", "float16", "dynamic", "int8")
# RESULTS.md section written by train_epoch.py, which write_results keeps.
TRAIN_EPOCH_START, TRAIN_EPOCH_END = "<!-- train_epoch -->", "<!-- /train_epoch -->"
# RESULTS.md section written by `bench.py --extra` (UPerNet and Swin V2), which the full run keeps.
EXTRA_START, EXTRA_END = "<!-- extra -->", "<!-- /extra -->"
# RESULTS.md section written by `bench.py --jax`, which the full run keeps.
JAX_START, JAX_END = "<!-- jax -->", "<!-- /jax -->"
# RESULTS.md section written by benchmarks/gpu.py, which the full run keeps.
GPU_START, GPU_END = "<!-- gpu -->", "<!-- /gpu -->"
JAX_ROWS = ("keras predict fp32 b16", "keras predict fp32 b1", "keras fit fp32 b16")
# RESULTS.md section written by `bench.py --unet`, which the full run keeps.
UNET_START, UNET_END = "<!-- unet -->", "<!-- /unet -->"
# (name, model, image side, batch) of the --unet rows.
UNET_ROWS = (
    ("SwinUNETR 2D, feature size 48", "swin_unetr_48", 256, 1),
    ("SwinUNETR 2D, feature size 48", "swin_unetr_48", 256, 4),
)
# (name, model, image side, batch) of the --extra rows.
EXTRA_ROWS = (
    ("UPerNet-SwinT", "upernet_swin_t", 512, 1),
    ("UPerNet-SwinT", "upernet_swin_t", 512, 4),
    ("SwinV2T", "swinv2_t", 256, 16),
)


def paths_markers(precision):
    return f"<!-- paths {precision} -->", f"<!-- /paths {precision} -->"


def machine_description():
    model, flags = platform.processor() or "unknown CPU", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
                    flags = [f for f in line.split(":", 1)[1].split() if f in wanted]
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, flags: {' '.join(flags) or 'unknown'}"


def versions():
    import importlib.metadata as metadata

    names = ("tensorflow", "keras", "torch", "transformers", "ai-edge-litert")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return f"Python {platform.python_version()}, " + ", ".join(found)


def ratio(results, ours, theirs):
    return results[ours]["images_per_second"] / results[theirs]["images_per_second"]


def headline_ratios(headline, precisions):
    """The keras_swin / PyTorch ratios the full run prints."""
    names = [f"predict {p} b16" for p in precisions] + ["predict fp32 b1", "call fp32 b16"]
    lines = [f"ratio {name}: {ratio(headline, 'keras ' + name, 'torch eager ' + name.split(' ', 1)[1]):.2f}x"
             for name in names]
    return lines + [f"ratio fit fp32 b16: {ratio(headline, 'keras fit fp32 b16', 'torch fit fp32 b16'):.2f}x"]


def marked_section(text, start, end):
    """The part of RESULTS.md text between two markers, markers included ("" if none)."""
    if start not in text or end not in text:
        return ""
    return text[text.index(start):text.index(end) + len(end)]


def write_section(path, section, start, end):
    """Replaces (or appends) a marked section of RESULTS.md."""
    old = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    previous = marked_section(old, start, end)
    text = old.replace(previous, section) if previous else old.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(text)


def jax_section(machine, results, rounds):
    """The JAX-on-CPU rows: keras_swin on the JAX backend against the same PyTorch rows."""
    lines = [
        JAX_START,
        "## JAX backend on CPU (SwinT 224², fp32)",
        "",
        f"Measured {datetime.date.today().isoformat()} by `python benchmarks/bench.py --jax --rounds {rounds}` "
        f"on {machine}; {versions()}. The same rows as above with `KERAS_BACKEND=jax` (XLA-compiled",
        "`predict` and `fit`), against PyTorch eager in the same run.",
        "",
        "| measurement | keras_swin on JAX (img/s) | PyTorch (img/s) | ratio |",
        "|---|---|---|---|",
    ]
    for ours in JAX_ROWS:
        kind, precision, batch = ours.split()[1:]
        theirs = f"torch fit {precision} {batch}" if kind == "fit" else f"torch eager {precision} {batch}"
        lines.append(f"| {kind} {precision} batch {batch[1:]} | {results[ours]['images_per_second']:.2f} | "
                     f"{results[theirs]['images_per_second']:.2f} | {ratio(results, ours, theirs):.2f}x |")
    return "\n".join(lines + ["", JAX_END])


def paths_section(machine, results, rounds, precision):
    # keras_swin imports TensorFlow: imported here, when the section is written, so that
    # the driver and the PyTorch workers (which import this module) never load it.
    from keras_swin.cpu import INSTRUCTION_SETS

    labels = sorted({name.split()[0] for name in results}, key=("native", "avx2").index)
    start, end = paths_markers(precision)
    lines = [
        start,
        f"## XLA or the oneDNN graph, per instruction set (SwinT 224², `predict` {precision}, batch 16)",
        "",
        f"Measured {datetime.date.today().isoformat()} by `python benchmarks/bench.py --paths --precisions "
        f"{precision} --rounds {rounds}` on {machine}; {versions()}.",
        "Row \"avx2\" caps every library at AVX2 on the same CPU (" + ", ".join(f"`{k}={v}`" for k, v in AVX2_ONLY.items())
        + "): an AVX2 machine's kernels, not its clock, caches or memory. Alternating fresh processes, median.",
        "",
        "| instruction set | XLA (img/s) | oneDNN graph (img/s) | `auto` picks | `auto` (img/s) | PyTorch eager (img/s) | auto / PyTorch |",
        "|---|---|---|---|---|---|---|",
    ]
    def rate(name):
        row = results[name]
        return "fails" if "error" in row else f"{row['images_per_second']:.2f}"

    failures = []
    for label in labels:
        auto = results[f"{label} keras auto"]
        picked = "fails" if "error" in auto else ("XLA" if auto["xla"] else "graph")
        isa = INSTRUCTION_SETS[int(auto["isa"])] if "isa" in auto else label
        versus = "n/a" if "error" in auto or "error" in results[f"{label} torch"] else \
            f"{ratio(results, f'{label} keras auto', f'{label} torch'):.2f}x"
        lines.append(f"| {isa} ({label}) | {rate(f'{label} keras xla')} | {rate(f'{label} keras graph')} | {picked} | "
                     f"{rate(f'{label} keras auto')} | {rate(f'{label} torch')} | {versus} |")
        failures += [f"{name}: {row['error']}" for name, row in results.items()
                     if name.startswith(label) and "error" in row]
    if failures:
        lines += ["", "Failed: " + "; ".join(failures)]
    return "\n".join(lines + ["", end])


def comparison_rows(rows, results):
    """The table rows of `(name, model, size, batch)` rows: keras_swin against PyTorch in
    images per second, their ratio and each side's peak memory growth."""
    lines = []
    for name, model, size, batch in rows:
        ours, theirs = results[f"keras {model} b{batch}"], results[f"torch {model} b{batch}"]
        lines.append(
            f"| {name} | {size}² | {batch} | {ours['images_per_second']:.2f} | {theirs['images_per_second']:.2f} | "
            f"{ours['images_per_second'] / theirs['images_per_second']:.2f}x | "
            f"{ours['memory_growth_mb']:.0f} | {theirs['memory_growth_mb']:.0f} |")
    return lines


def extra_section(machine, results, rounds):
    # keras_swin imports TensorFlow: imported here, as in paths_section, to count the FLOPs.
    from keras_swin import UPerNetSwinT
    from keras_swin.utils import flops

    lines = [
        EXTRA_START,
        "## UPerNet segmentation and Swin V2 (`predict` fp32)",
        "",
        f"Measured {datetime.date.today().isoformat()} by `python benchmarks/bench.py --extra --rounds {rounds}` "
        f"on {machine}; {versions()}. keras_swin `UPerNetSwinT()` (150 classes, logits at the input",
        "size) against Hugging Face `UperNetForSemanticSegmentation` with the same Swin-T configuration;",
        "`SwinV2T()` against `Swinv2ForImageClassification` (window 8). PyTorch eager under",
        "`torch.no_grad`; alternating fresh processes, median of the rounds.",
        "",
        "| model | size | batch | keras_swin (img/s) | PyTorch (img/s) | ratio | keras peak growth (MB) | torch peak growth (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += comparison_rows(EXTRA_ROWS, results)
    count = flops(UPerNetSwinT(), (512, 2048))
    lines += [
        "",
        f"`keras_swin.utils.flops(UPerNetSwinT(), (512, 2048))`: {count / 1e9:.1f}G multiply-accumulates",
        f"(backbone and decode head; the Swin paper and mmseg give 945G: {100 * (count / 945e9 - 1):+.1f}%).",
        "",
        EXTRA_END,
    ]
    return "\n".join(lines)


def unet_section(machine, results, rounds):
    lines = [
        UNET_START,
        "## SwinUNETR against MONAI (`predict` fp32)",
        "",
        f"Measured {datetime.date.today().isoformat()} by `python benchmarks/bench.py --unet --rounds {rounds}` "
        f"on {machine}; {versions()}. keras_swin `SwinUNETR(in_channels=1, out_channels=14,",
        "feature_size=48)` (`predict`, its default path) against MONAI 1.6.1's `SwinUNETR(spatial_dims=2)` with the",
        "same arguments, eager under `torch.no_grad`; alternating fresh processes, median of the rounds.",
        "",
        "| model | size | batch | keras_swin (img/s) | MONAI (img/s) | ratio | keras peak growth (MB) | torch peak growth (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += comparison_rows(UNET_ROWS, results)
    lines += ["", UNET_END]
    return "\n".join(lines)


def _headline_row(headline, label, ours, theirs):
    return (f"| {label} | {headline[ours]['images_per_second']:.2f} | {headline[theirs]['images_per_second']:.2f} | "
            f"{ratio(headline, ours, theirs):.2f}x | {headline[ours]['memory_growth_mb']:.0f} | "
            f"{headline[theirs]['memory_growth_mb']:.0f} |")


def results_text(old, machine, headline, tflite, scaling, rounds, precisions):
    """The full run's RESULTS.md: its own tables, then the sections of `old` that other modes
    and scripts wrote (train_epoch, --extra, --jax, --paths, gpu.py)."""
    lines = [
        "# Benchmark results",
        "",
        f"Measured {datetime.date.today().isoformat()} by `python benchmarks/bench.py --rounds {rounds}` on "
        f"{machine}; {versions()}.",
        "Each figure is the median of the rounds, each round a fresh process; keras_swin and PyTorch",
        "alternate. keras_swin is `keras_swin.SwinT()` with its defaults, called through",
        "`model.predict`, `model(x)` and `model.fit`; PyTorch is Hugging Face transformers",
        "`SwinForImageClassification`, eager (`torch.no_grad`, `torch.autocast` for bf16/fp16). SwinT, 224².",
        "Memory is the growth of the peak resident set over the process after the model was built.",
        "Each keras_swin row names the path that `jit_compile=\"auto\"` took: XLA or TensorFlow's graph.",
        "",
        "## Inference and training (img/s, higher is better)",
        "",
        "| measurement | keras_swin | PyTorch | ratio | keras peak growth (MB) | torch peak growth (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for precision in precisions:
        for batch in (16, 1):
            for kind in ("predict", "call"):
                ours = f"keras {kind} {precision} b{batch}"
                route = " (XLA)" if headline[ours].get("xla") else " (graph)" if "xla" in headline[ours] else ""
                lines.append(_headline_row(headline, f"{kind} {precision} batch {batch}{route}", ours,
                                           f"torch eager {precision} b{batch}"))
        lines.append(_headline_row(headline, f"fit {precision} batch 16", f"keras fit {precision} b16",
                                   f"torch fit {precision} b16"))
    lines += [
        "",
        "Targets: predict fp32 batch 16 >= 1.5x, predict bf16 batch 16 >= 1.0x (against bf16 autocast),",
        "fit fp32 >= 1.2x (against PyTorch fp32: "
        f"{ratio(headline, 'keras fit fp32 b16', 'torch fit fp32 b16'):.2f}x).",
        "",
        "## TFLite, batch 1 (LiteRT interpreter, all cores)",
        "",
        "| variant | latency (ms) | size (MB) | max abs diff vs Keras | top-1 agreement |",
        "|---|---|---|---|---|",
    ]
    for quantize in TFLITE_VARIANTS:
        row = tflite[f"tflite {quantize} b1"]
        lines.append(f"| {quantize if quantize != 'none' else 'float32'} | {1e3 * row['seconds']:.1f} | "
                     f"{row['size_mb']:.1f} | {row['max_abs_diff']:.2e} | {row['top1_agreement']:.2f} |")
    lines.append(f"| Keras predict fp32 (for comparison) | {1e3 * headline['keras predict fp32 b1']['seconds']:.1f} | | | |")
    lines += [
        "",
        "Agreement here is on 4 random-noise images with an untrained model, whose near-uniform",
        "probabilities make top-1 meaningless for int8; the quantised",
        "agreement targets are tested on the trained digits model (`tests/test_export.py`).",
        "",
        "## Linear scaling (batch 1, fp32, `predict_on_batch`)",
        "",
        "| side | SwinT backbone ms | per-pixel vs 224² | memory growth (MB) | ViT-S/16 ms | per-pixel vs 224² | memory growth (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in SCALING_SIZES:
        pixels = (size / SCALING_SIZES[0]) ** 2
        cells = []
        for model in ("swin", "vit"):
            row, base = scaling[f"{model} {size}"], scaling[f"{model} {SCALING_SIZES[0]}"]
            cells.append(f"{1e3 * row['seconds']:.0f} | {row['seconds'] / base['seconds'] / pixels:.2f}x | "
                         f"{row['memory_growth_mb']:.0f}")
        lines.append(f"| {size} | {cells[0]} | {cells[1]} |")
    lines += ["", "![scaling](scaling.png)", ""]
    kept = [(TRAIN_EPOCH_START, TRAIN_EPOCH_END), (EXTRA_START, EXTRA_END), (UNET_START, UNET_END), (JAX_START, JAX_END),
            *(paths_markers(precision) for precision in PRECISIONS), (GPU_START, GPU_END),
            # Written by benchmarks/deploy.py and benchmarks/remat.py.
            ("<!-- deploy -->", "<!-- /deploy -->"), ("<!-- remat -->", "<!-- /remat -->")]
    for section in (marked_section(old, start, end) for start, end in kept):
        if section:
            lines += [section, ""]
    return "\n".join(lines)


def write_results(path, machine, headline, tflite, scaling, rounds, precisions):
    """Rewrites RESULTS.md at `path` from the full run, keeping the other modes' sections."""
    old = open(path).read() if os.path.exists(path) else ""
    text = results_text(old, machine, headline, tflite, scaling, rounds, precisions)
    with open(path, "w") as f:
        f.write(text)


def write_plot(scaling, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for model, label in (("swin", "keras_swin SwinT (windows)"), ("vit", "ViT-S/16 (global attention)")):
        megapixels = [size * size / 1e6 for size in SCALING_SIZES]
        seconds = [scaling[f"{model} {size}"]["seconds"] for size in SCALING_SIZES]
        memory = [scaling[f"{model} {size}"]["memory_growth_mb"] for size in SCALING_SIZES]
        time_axis.plot(megapixels, [1e3 * s / mp for s, mp in zip(seconds, megapixels)], "o-", label=label)
        memory_axis.plot(megapixels, memory, "o-", label=label)
    time_axis.set_xlabel("megapixels (224², 448², 896²)")
    time_axis.set_ylabel("ms per megapixel (batch 1, fp32)")
    time_axis.set_title("time per pixel: flat means linear")
    memory_axis.set_xlabel("megapixels")
    memory_axis.set_ylabel("peak memory growth (MB)")
    memory_axis.set_title("memory")
    for axis in (time_axis, memory_axis):
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
